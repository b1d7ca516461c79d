"""OCPS:101, the front door existing observing scripts use (`lsst.ts.rapidanalysis.ocps`).

The first part tests the pure reading of ``execute``'s ``config`` and the routing rule. The
second runs the OCPS CSC and a RapidAnalysis CSC (simulation mode, a real Dask pool, the test
configuration of test_csc.py) on real DDS, with a script-like Remote of its own that sends
``execute`` as ts_standardscripts does. Routing is tested with FOCUSSWEEP pointed at
``test.succeed`` / ``test.sleep`` (``requests.ROUTES`` is a module-level table), so that it does
not depend on the ``focus_sweep`` pipeline.
"""

from __future__ import annotations

import json

import pytest

from lsst.ts.rapidanalysis.ocps import requests as ocps_requests
from lsst.ts.rapidanalysis.ocps.requests import (
    INSTRUMENTS,
    ROUTES,
    Kind,
    OcpsExitCode,
    RequestError,
    Route,
    Visit,
    parse_execute_config,
    parse_visit_id,
    processdata_fields,
)

SWEEP = [2025111500042, 2025111500043, 2025111500044, 2025111500045, 2025111500046]


def sweep_config(instrument: str = "LSSTCam", visits: list[int] | None = None) -> str:
    """``execute``'s config as ts_standardscripts' BaseFocusSweep writes it."""
    visits = SWEEP if visits is None else visits
    return json.dumps({f"{instrument}-FROM-OCS_FOCUSSWEEP": ",".join(str(v) for v in visits)})


# -- pure: reading execute's config --


def test_instruments_are_the_rapid_analysis_indices() -> None:
    assert INSTRUMENTS == {"LATISS": 1, "LSSTComCam": 2, "LSSTCam": 3}


def test_visit_id() -> None:
    visit = parse_visit_id("2025111500042")
    assert visit == Visit(2025111500042, 20251115, 42)
    assert visit.data_id == {"dayObs": 20251115, "seqNum": 42}
    assert parse_visit_id("2024022999999").seq_num == 99999


@pytest.mark.parametrize(
    "text, message",
    [
        ("202511150004", "13 ASCII digits"),
        ("20251115000420", "13 ASCII digits"),
        ("2025111500042\n", "13 ASCII digits"),
        ("2025111500042 ", "13 ASCII digits"),
        ("20251115000٤٢", "13 ASCII digits"),
        ("-2025111500042", "13 ASCII digits"),
        ("2025111500000", "sequence number 0"),
        ("2025023000042", "not a real date"),
        ("2025131500042", "not a real date"),
    ],
)
def test_bad_visit_id(text: str, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_visit_id(text)


def test_focus_sweep_as_scripts_send_it() -> None:
    (request,) = parse_execute_config(sweep_config())
    assert request.key == "LSSTCam-FROM-OCS_FOCUSSWEEP"
    assert request.instrument == "LSSTCam" and request.sal_index == 3
    assert request.kind == Kind.FOCUSSWEEP
    assert request.visit_ids == SWEEP
    assert request.describe() == {
        "key": "LSSTCam-FROM-OCS_FOCUSSWEEP",
        "instrument": "LSSTCam",
        "kind": "FOCUSSWEEP",
        "visits": SWEEP,
    }


def test_several_requests_and_spellings() -> None:
    config = json.dumps(
        {
            "LATISS-FROM-OCS_FOCUSSWEEP": "2025111500001, 2025111500002, 2025111500003",
            "LSSTComCam-FROM-OCS_DONUTPAIR": "2025111500086,2025111500087",
            "LSSTCam-FROM-OCS_CWFS": "2025111500090",
            "LSSTCam-FROM-OCS_CWFSIMAGE": 2025111500091,
        }
    )
    requests = parse_execute_config(config)
    assert [(r.instrument, r.sal_index, r.kind, len(r.visits)) for r in requests] == [
        ("LATISS", 1, Kind.FOCUSSWEEP, 3),
        ("LSSTComCam", 2, Kind.DONUTPAIR, 2),
        ("LSSTCam", 3, Kind.CWFS, 1),
        ("LSSTCam", 3, Kind.CWFSIMAGE, 1),
    ]
    assert requests[1].visit_ids == [2025111500086, 2025111500087]  # intra, extra: order kept


@pytest.mark.parametrize(
    "config, message",
    [
        ("", "config is blank"),
        ("not json", "config is not valid JSON"),
        ('{"LSSTCam-FROM-OCS_CWFS": "2025111500090"', "config is not valid JSON"),
        ('{"LSSTCam-FROM-OCS_CWFS": "2025111500090", "LSSTCam-FROM-OCS_CWFS": "2025111500091"}', "twice"),
        ("[]", "must be a JSON object"),
        ('"LSSTCam-FROM-OCS_CWFS"', "must be a JSON object"),
        ("{}", "holds no request"),
        ('{"LSSTCam_FOCUSSWEEP": "1"}', "not of the form <instrument>-FROM-OCS_<KIND>"),
        ('{"LSSTCam-FROM-OCS_CWFS\\n": "2025111500090"}', "not of the form"),
        ('{"LSSTComCamSim-FROM-OCS_DONUTPAIR": "7024072400001,7024072400003"}', "unknown instrument 'LSSTComCamSim'"),
        ('{"LSSTCam-FROM-OCS_WEP": "2025111500090"}', "unknown request kind 'WEP'"),
        (
            '{"LSSTCam-FROM-OCS_FOCUSSWEEP": "2025111500042,2025111500043"}',
            "given, FOCUSSWEEP takes 3",
        ),
        ('{"LSSTCam-FROM-OCS_DONUTPAIR": "2025111500086"}', "DONUTPAIR takes 2"),
        ('{"LSSTCam-FROM-OCS_DONUTPAIR": "2025111500086,2025111500087,2025111500088"}', "DONUTPAIR takes 2"),
        ('{"LSSTCam-FROM-OCS_CWFS": "2025111500086,2025111500087"}', "CWFS takes 1"),
        ('{"LSSTCam-FROM-OCS_CWFS": ""}', "no visit ids given"),
        ('{"LSSTCam-FROM-OCS_CWFS": null}', "the value must be a string"),
        ('{"LSSTCam-FROM-OCS_CWFS": [2025111500086]}', "the value must be a string"),
        ('{"LSSTCam-FROM-OCS_CWFS": true}', "the value must be a string"),
        ('{"LSSTCam-FROM-OCS_FOCUSSWEEP": "2025111500042,,2025111500043,2025111500044"}', "visit id ''"),
        ('{"LSSTCam-FROM-OCS_FOCUSSWEEP": "2025111500042,2025111500042,2025111500044"}', "given twice"),
        ('{"LSSTCam-FROM-OCS_FOCUSSWEEP": "2025111500042;2025111500043;2025111500044"}', "13 ASCII digits"),
        ('{"LSSTCam-FROM-OCS_CWFS": "AT_O_20251115_000042"}', "13 ASCII digits"),
        ('{"LSSTCam-FROM-OCS_CWFS": NaN}', "NaN"),
    ],
)
def test_bad_config(config: str, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_execute_config(config)


def test_bad_config_messages_are_sendable() -> None:
    """A lone surrogate or a control character is quoted, never put raw in the message."""
    for config in ('{"\\ud800-FROM-OCS_CWFS": "1"}', '{"LSSTCam-FROM-OCS_CWFS": "\\ud800"}'):
        with pytest.raises(RequestError) as info:
            parse_execute_config(config)
        str(info.value).encode("utf-8")


def test_too_long_config() -> None:
    with pytest.raises(RequestError, match="longer than"):
        parse_execute_config(" " * (ocps_requests.MAX_CONFIG_LEN + 1))


# -- pure: the routing rule --


def test_focus_sweep_route() -> None:
    """FOCUSSWEEP → focus_sweep on the newest visit, every visit in config["visits"]."""
    assert ROUTES[Kind.FOCUSSWEEP] == Route("focus_sweep")
    unordered = [SWEEP[2], SWEEP[4], SWEEP[0]]
    (request,) = parse_execute_config(sweep_config(visits=unordered))
    fields = processdata_fields(request, ROUTES[Kind.FOCUSSWEEP])
    assert fields == {
        "pipeline": "focus_sweep",
        "dataId": json.dumps({"dayObs": 20251115, "seqNum": 46}),
        "config": json.dumps({"visits": unordered}),
    }


def test_route_without_visits() -> None:
    (request,) = parse_execute_config(sweep_config())
    fields = processdata_fields(request, Route("test.succeed", visits_in_config=False))
    assert fields == {"pipeline": "test.succeed", "dataId": '{"dayObs": 20251115, "seqNum": 46}', "config": ""}


def test_wavefront_kinds_have_no_pipeline() -> None:
    values = {
        Kind.DONUTPAIR: "2025111500001,2025111500002",
        Kind.CWFS: "2025111500001",
        Kind.CWFSIMAGE: "2025111500001",
    }
    for kind, value in values.items():
        assert ROUTES[kind].pipeline is None
        assert "no wavefront" in ROUTES[kind].reason
        (request,) = parse_execute_config(json.dumps({f"LATISS-FROM-OCS_{kind.value}": value}))
        with pytest.raises(ValueError, match="no pipeline"):
            processdata_fields(request, ROUTES[kind])


def test_exit_codes_do_not_collide_with_rapid_analysis() -> None:
    from lsst.ts.rapidanalysis.pipelines.base import ExitCode

    facade_own = {c.value for c in OcpsExitCode} - {OcpsExitCode.SUCCESS, OcpsExitCode.ABORTED}
    assert not facade_own & {c.value for c in ExitCode}
    assert OcpsExitCode.ABORTED == ExitCode.ABORTED == 255
