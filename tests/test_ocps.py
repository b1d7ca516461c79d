"""OCPS:101, the front door existing observing scripts use (`lsst.ts.rapidanalysis.ocps`).

The first part tests the pure reading of ``execute``'s ``config`` and the routing rule. The
second runs the OCPS CSC and a RapidAnalysis CSC (simulation mode, a real Dask pool, the test
configuration of test_csc.py) on real DDS, with a script-like Remote of its own that sends
``execute`` as ts_standardscripts does. Routing, aborts and ordering are tested with FOCUSSWEEP
pointed at ``test.succeed`` / ``test.sleep`` (``requests.ROUTES`` is a module-level table), so
that they do not depend on the ``focus_sweep`` pipeline; one test runs the shipped route on a
simulated sweep end to end. The last part puts a stand-in RapidAnalysis Controller behind it, for
what a real one seldom does (jobResults before the ack, a CSC that dies with a job queued).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import pathlib
import time
import unittest
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml

from lsst.ts.rapidanalysis.ocps import requests as ocps_requests
from lsst.ts.rapidanalysis.ocps.csc import DEFAULT_INDEX, OcpsRapidAnalysisCsc
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
from lsst.ts.rapidanalysis.sal import Controller, Domain, Remote, SalRetCode, State
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase, assert_raises_ack_error
from lsst.ts.rapidanalysis.sim.focus import simulate_focus_sweep, sweep_offsets
from lsst.ts.rapidanalysis.sim.scene import SceneConfig
from test_csc import STD_TIMEOUT, RapidAnalysisTestMixin

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


# -- on real DDS: the OCPS CSC, a script-like Remote, and a RapidAnalysis CSC --

#: ts_observatory_control's RemoteGroup.fast_timeout: how long the scripts wait for execute.
FAST_TIMEOUT = 5.0
#: The sweep the routing tests send (their RapidAnalysis CSC is LSSTCam's, index 3).
LSSTCAM_SWEEP = sweep_config("LSSTCam")


def write_ocps_config(directory: pathlib.Path, **settings: Any) -> pathlib.Path:
    """An OCPS configuration directory whose _init.yaml holds ``settings``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "_init.yaml").write_text(yaml.safe_dump(settings))
    return directory


@contextlib.asynccontextmanager
async def ocps_and_script(
    config_dir: pathlib.Path, initial_state: State = State.ENABLED
) -> AsyncIterator[tuple[OcpsRapidAnalysisCsc, Remote]]:
    """An OCPS:101 CSC, and a Remote of it in a Domain of its own, as a script has."""
    csc = OcpsRapidAnalysisCsc(index=DEFAULT_INDEX, config_dir=config_dir, initial_state=initial_state)
    domain = Domain()
    script = Remote(domain, "OCPS", DEFAULT_INDEX)
    try:
        await asyncio.wait_for(asyncio.gather(csc.start_task, script.start_task), STD_TIMEOUT)
        while (await script.evt_summaryState.next(flush=False, timeout=STD_TIMEOUT)).summaryState != initial_state:
            pass
        yield csc, script
    finally:
        await script.close()
        await domain.close()
        await csc.close()


async def execute(script: Remote, config: str) -> tuple[Any, float]:
    """Send execute as ts_standardscripts does; return its first ack (which must be final) and the time taken."""
    start = time.monotonic()
    ackcmd = await script.cmd_execute.set_start(config=config, timeout=FAST_TIMEOUT, wait_done=False)
    return ackcmd, time.monotonic() - start


async def next_job_result(script: Remote, job_id: str | None = None, timeout: float = STD_TIMEOUT) -> Any:
    """The next job_result (which must be for ``job_id`` if given) and its parsed result."""
    data = await script.evt_job_result.next(flush=False, timeout=timeout)
    if job_id is not None:
        assert data.job_id == job_id, f"job_result for {data.job_id} ({data.result}); expected {job_id}"
    data.parsed = json.loads(data.result)
    return data


async def log_message_containing(script: Remote, text: str, timeout: float = STD_TIMEOUT) -> Any:
    """The next logMessage whose message contains ``text`` (others are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        data = await script.evt_logMessage.next(flush=False, timeout=max(0.01, deadline - loop.time()))
        if text in data.message:
            return data


class OcpsCscTestCase(BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    """The OCPS CSC alone: standard behaviour, its script, and RapidAnalysis CSCs that are not there."""

    @pytest.fixture(autouse=True)
    def _config_dir(self, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("TS_CONFIG_OCS_DIR", raising=False)
        self.config_dir = write_ocps_config(tmp_path / "ocps", discovery_timeout=2.0)

    def basic_make_csc(
        self, initial_state: State | int | None, config_dir: str | pathlib.Path | None, simulation_mode: int
    ) -> OcpsRapidAnalysisCsc:
        return OcpsRapidAnalysisCsc(
            index=DEFAULT_INDEX, config_dir=config_dir or self.config_dir, initial_state=initial_state
        )

    async def test_standard_state_transitions(self) -> None:
        async with self.make_csc(initial_state=State.STANDBY):
            await self.check_standard_state_transitions(enabled_commands=("execute", "abort_job"))

    async def test_bin_script(self) -> None:
        await self.check_bin_script(name="OCPS", index=DEFAULT_INDEX, exe_name="run_ocps_rapid_analysis")
        await self.check_bin_script(
            name="OCPS",
            index=None,  # the default index, 101
            exe_name="run_ocps_rapid_analysis",
            initial_state=State.ENABLED,
            cmdline_args=["--configdir", str(self.config_dir)],
        )

    async def test_shipped_configuration(self) -> None:
        """The shipped _init.yaml sets nothing; the schema's defaults apply."""
        csc = OcpsRapidAnalysisCsc(initial_state=State.DISABLED)
        try:
            await asyncio.wait_for(csc.start_task, STD_TIMEOUT)
            assert csc.summary_state == State.DISABLED
            assert csc.salinfo.name_index == "OCPS:101"
            assert csc.config_dir.parts[-2:] == ("OCPS", "v1")
            assert vars(csc.config) == {
                "processdata_timeout": 10.0,
                "discovery_timeout": 5.0,
                "heartbeat_timeout": 5.0,
                "job_result_timeout": 3600.0,
                "max_pending": 100,
            }
        finally:
            await csc.close()

    async def test_rapid_analysis_not_running(self) -> None:
        """No RapidAnalysis CSC: execute still completes at once; the job ends saying so (11).

        A second request, waiting behind the first (which waits up to discovery_timeout for the
        CSC to be heard from), ends (15) when OCPS is disabled."""
        config_dir = write_ocps_config(self.config_dir.parent / "slow_discovery", discovery_timeout=10.0)
        async with ocps_and_script(config_dir) as (csc, script):
            first, elapsed = await execute(script, sweep_config("LSSTCam"))
            assert first.ack == SalRetCode.CMD_COMPLETE and elapsed < 1.0, (first, elapsed)
            second, _ = await execute(script, sweep_config("LSSTCam"))
            first_id, second_id = json.loads(first.result)["job_id"], json.loads(second.result)["job_id"]
            await script.cmd_disable.start(timeout=STD_TIMEOUT)
            stopped = await next_job_result(script, second_id)
            assert stopped.exit_code == OcpsExitCode.OCPS_STOPPED, stopped
            assert "went to DISABLED before the request was sent to RapidAnalysis:3" in stopped.parsed["reason"]
            absent = await next_job_result(script, first_id)
            assert absent.exit_code == OcpsExitCode.RA_ABSENT, absent
            assert absent.parsed["reason"].startswith("RapidAnalysis:3 is not running"), absent.parsed
            assert absent.parsed["outcome"] == "not routed" and absent.parsed["jobIds"] == []
            # Not ENABLED: execute fails, saying why.
            with assert_raises_ack_error(SalRetCode.CMD_FAILED, result_contains="execute not allowed in state"):
                await script.cmd_execute.set_start(config=sweep_config("LSSTCam"), timeout=FAST_TIMEOUT)

    async def test_bad_requests(self) -> None:
        """Every malformed request is CMD_FAILED with the reason; nothing is started."""
        async with ocps_and_script(self.config_dir) as (csc, script):
            cases = [
                ("not json", "config is not valid JSON"),
                ('{"LSSTCam-FROM-OCS_FOCUSSWEEP": "2025111500042,2025111500043"}', "FOCUSSWEEP takes 3"),
                ('{"LSSTComCamSim-FROM-OCS_DONUTPAIR": "7024072400001,7024072400003"}', "unknown instrument"),
                ('{"LSSTCam-FROM-OCS_WEP": "2025111500090"}', "unknown request kind 'WEP'"),
                ('{"LSSTCam-FROM-OCS_CWFS": "2025111500090\\n"}', "13 ASCII digits"),
                ('{"\\ud800": 1}', "not of the form"),
                # All or nothing: one bad request fails the command, the good one does not start.
                (json.dumps({"LATISS-FROM-OCS_CWFS": "2025111500001", "LATISS-FROM-OCS_X": "1"}), "kind 'X'"),
            ]
            for config, message in cases:
                with assert_raises_ack_error(SalRetCode.CMD_FAILED, result_contains=message):
                    await script.cmd_execute.set_start(config=config, timeout=FAST_TIMEOUT)
            assert not csc.jobs and not csc.ended
            with assert_raises_ack_error(SalRetCode.CMD_FAILED, result_contains="no job 'ocps-nope'"):
                await script.cmd_abort_job.set_start(job_id="ocps-nope", timeout=FAST_TIMEOUT)

    async def test_wavefront_requests(self) -> None:
        """DONUTPAIR and CWFS (and MTAOS's CWFSIMAGE) are accepted and end at once with exit code 10."""
        async with ocps_and_script(self.config_dir) as (csc, script):
            config = json.dumps(
                {
                    "LSSTComCam-FROM-OCS_DONUTPAIR": "2025111500086,2025111500087",
                    "LSSTCam-FROM-OCS_CWFS": "2025111500090",
                    "LSSTCam-FROM-OCS_CWFSIMAGE": "2025111500091",
                }
            )
            ackcmd, elapsed = await execute(script, config)
            assert ackcmd.ack == SalRetCode.CMD_COMPLETE and elapsed < 1.0, (ackcmd, elapsed)
            ids = json.loads(ackcmd.result)["job_ids"]
            assert sorted(ids) == sorted(json.loads(config))
            announced = [await script.evt_job_id.next(flush=False, timeout=STD_TIMEOUT) for _ in ids]
            assert [a.job_id for a in announced] == list(ids.values())
            assert {(a.event_name, a.seq_num) for a in announced} == {("cmd_execute", ackcmd.private_seqNum)}
            for key, job_id in ids.items():
                data = await next_job_result(script, job_id)
                assert data.exit_code == OcpsExitCode.NOT_SUPPORTED, data
                assert data.parsed["key"] == key and data.parsed["outcome"] == "not supported"
                assert "no wavefront-estimation pipeline" in data.parsed["reason"]
            log = await log_message_containing(script, "not supported")
            assert log.level == logging.WARNING and "no wavefront-estimation pipeline" in log.message
            with assert_raises_ack_error(SalRetCode.CMD_FAILED, result_contains="has already ended (exit code 10)"):
                await script.cmd_abort_job.set_start(job_id=ids["LSSTCam-FROM-OCS_CWFS"], timeout=FAST_TIMEOUT)


class OcpsRoutingTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    """OCPS:101 in front of a real RapidAnalysis CSC (LSSTCam, simulation mode, a real Dask pool)."""

    csc_index = 3

    def route_focus_sweep(self, pipeline: str, **settings: Any) -> None:
        """Point FOCUSSWEEP at a test pipeline (no ``visits`` setting) for this test."""
        self.monkeypatch.setitem(ROUTES, Kind.FOCUSSWEEP, Route(pipeline, visits_in_config=False, settings=settings))

    def ocps(self, **settings: Any) -> contextlib.AbstractAsyncContextManager[tuple[OcpsRapidAnalysisCsc, Remote]]:
        return ocps_and_script(write_ocps_config(self.root / "ocps", **settings))

    async def test_focus_sweep_routed(self) -> None:
        """FOCUSSWEEP → processData on the sweep's newest visit; job_result when its job ends."""
        self.route_focus_sweep("test.succeed")
        async with self.enabled_csc(warm=True), self.ocps() as (ocps, script):
            ackcmd, elapsed = await execute(script, LSSTCAM_SWEEP)
            assert ackcmd.ack == SalRetCode.CMD_COMPLETE and elapsed < 1.0, (ackcmd, elapsed)
            job_id = json.loads(ackcmd.result)["job_id"]
            announced = await script.evt_job_id.next(flush=False, timeout=STD_TIMEOUT)
            assert (announced.job_id, announced.event_name) == (job_id, "cmd_execute")
            ra_result = await self.next_job_result()
            assert ra_result.pipeline == "test.succeed" and ra_result.trigger == "command", ra_result
            assert json.loads(ra_result.dataId)["seqNum"] == 46 and ra_result.imageName == "MC_O_20251115_000046"
            data = await next_job_result(script, job_id)
            assert data.exit_code == 0, data
            parsed = data.parsed
            assert parsed["outcome"] == "succeeded" and parsed["reason"] == ""
            assert parsed["visits"] == SWEEP and parsed["rapidAnalysis"] == "RapidAnalysis:3"
            assert parsed["pipeline"] == "test.succeed" and parsed["jobIds"] == [ra_result.jobId]
            (job,) = parsed["jobs"]
            assert job["jobId"] == ra_result.jobId and job["exitCode"] == 0 and job["success"] is True
            assert job["result"] == json.loads(ra_result.result)
            assert not ocps.jobs

            # A RapidAnalysis CSC that refuses (not ENABLED): the job ends saying why (12).
            await self.remote.cmd_disable.start(timeout=STD_TIMEOUT)
            ackcmd, _ = await execute(script, LSSTCAM_SWEEP)
            assert ackcmd.ack == SalRetCode.CMD_COMPLETE, ackcmd
            data = await next_job_result(script, json.loads(ackcmd.result)["job_id"])
            assert data.exit_code == OcpsExitCode.RA_REFUSED, data
            assert data.parsed["reason"].startswith("RapidAnalysis:3 refused processData (CMD_FAILED)"), data.parsed
            assert "not allowed in state" in data.parsed["reason"]

    async def test_focus_sweep_pipeline(self) -> None:
        """The shipped route, end to end: a simulated 5-visit LSSTCam sweep (focus_sweep's three
        default detectors at a quarter of full size) → focus_sweep → job_result carrying the best focus."""
        sweep = simulate_focus_sweep(
            self.root / "raw",
            "LSSTCam",
            offsets=sweep_offsets(5, 0.1),
            scene=SceneConfig(n_stars=150, mag_bright=16.0, mag_faint=22.0, seeing_fwhm=0.8),
            scale=0.25,
            first_seq=42,
            best_focus=0.037,
            seed=3,
        )
        assert sweep.visits == SWEEP
        async with self.enabled_csc(warm=True), self.ocps() as (ocps, script):
            ackcmd, elapsed = await execute(script, LSSTCAM_SWEEP)
            assert ackcmd.ack == SalRetCode.CMD_COMPLETE and elapsed < 1.0, (ackcmd, elapsed)
            data = await next_job_result(script, json.loads(ackcmd.result)["job_id"], timeout=60)
            ra_result = await self.next_job_result()
            assert ra_result.pipeline == "focus_sweep" and ra_result.imageName == "MC_O_20251115_000046", ra_result
            assert data.exit_code == 0 and data.parsed["jobIds"] == [ra_result.jobId], data
            metrics = data.parsed["jobs"][0]["result"]["metrics"]
            assert metrics["nVisits"] == 5 and metrics["fitOk"] == 1, metrics
            assert abs(metrics["bestFocus"] - 0.037) < 0.05 * 0.1, metrics  # the target: 5 % of the step

    async def test_abort_job(self) -> None:
        """abort_job aborts the RapidAnalysis job; the OCPS job ends with its jobResult (255)."""
        self.route_focus_sweep("test.sleep", duration=20)
        async with self.enabled_csc(warm=True, override="long_jobs.yaml"), self.ocps() as (ocps, script):
            ackcmd, _ = await execute(script, LSSTCAM_SWEEP)
            job_id = json.loads(ackcmd.result)["job_id"]
            await self.wait_running(1)
            await script.cmd_abort_job.set_start(job_id=job_id, timeout=FAST_TIMEOUT)
            ra_result = await self.next_job_result()
            assert ra_result.exitCode == 255, ra_result
            data = await next_job_result(script, job_id)
            assert data.exit_code == 255 and data.parsed["outcome"] == "aborted", data
            assert data.parsed["jobIds"] == [ra_result.jobId]
            with assert_raises_ack_error(SalRetCode.CMD_FAILED, result_contains="already ended (exit code 255)"):
                await script.cmd_abort_job.set_start(job_id=job_id, timeout=FAST_TIMEOUT)

    async def test_newest_first(self) -> None:
        """Requests waiting for a busy RapidAnalysis CSC (synchronous mode) are sent newest first."""
        self.route_focus_sweep("test.sleep", duration=1.0)
        async with self.enabled_csc(warm=True, override="synchronous.yaml"), self.ocps() as (ocps, script):
            job_ids = []
            for n in range(3):
                visits = [2025111500010 + 10 * n + i for i in range(3)]
                ackcmd, _ = await execute(script, sweep_config("LSSTCam", visits))
                assert ackcmd.ack == SalRetCode.CMD_COMPLETE, ackcmd
                job_ids.append(json.loads(ackcmd.result)["job_id"])
            ended = [await next_job_result(script, timeout=STD_TIMEOUT) for _ in job_ids]
            assert [d.exit_code for d in ended] == [0, 0, 0], ended
            assert [d.job_id for d in ended] == [job_ids[0], job_ids[2], job_ids[1]]


class FakeRapidAnalysis:
    """A stand-in RapidAnalysis CSC (a bare Controller): heartbeats while ``beating``, and answers
    processData as ``mode`` says, to reach what a real one rarely does.

    Modes: ``"early"`` (two job ids; both jobResults written before the ack), ``"fail"`` (one job
    ending with exit code 2), ``"silent"`` (one job id, never a jobResult: a CSC that died).
    """

    def __init__(self, index: int = 3) -> None:
        self.controller = Controller("RapidAnalysis", index)
        self.controller.cmd_processData.callback = self.do_processData
        self.mode = "early"
        self.beating = True
        self.requests: list[Any] = []
        self._heartbeat = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        await self.controller.start_task
        while True:
            if self.beating:
                self.controller.evt_heartbeat.write()
            await asyncio.sleep(0.2)

    def job_result(self, job_id: str, exit_code: int = 0, error: str = "") -> None:
        self.controller.evt_jobResult.set_write(
            jobId=job_id,
            pipeline="focus_sweep",
            success=exit_code == 0,
            exitCode=exit_code,
            errorReport=error,
            duration=0.5,
            result=json.dumps({"metrics": {"bestFocus": 0.04}}),
            force_output=True,
        )

    async def do_processData(self, data: Any) -> Any:  # noqa: N802
        self.requests.append(data)
        n = len(self.requests)
        ids = {"jobId": f"ra-{self.mode}-{n}"}
        if self.mode == "early":
            ids = {"jobIds": [f"ra-early-{n}a", f"ra-early-{n}b"], "imageName": "MC_O_20251115_000046"}
            for job_id in ids["jobIds"]:
                self.job_result(job_id)
        elif self.mode == "fail":
            asyncio.get_running_loop().call_later(0.05, self.job_result, ids["jobId"], 2, "no star found")
        return self.controller.salinfo.make_ackcmd(
            private_seqNum=data.private_seqNum, ack=SalRetCode.CMD_COMPLETE, result=json.dumps(ids)
        )

    async def close(self) -> None:
        self._heartbeat.cancel()
        await self.controller.close()


class OcpsFakeRapidAnalysisTestCase(unittest.IsolatedAsyncioTestCase):
    """What a real RapidAnalysis CSC seldom does: jobResults before the ack, several job ids, a
    failing job, a CSC that stops answering or dies. (conftest.py gives each test its own DDS
    partition and LSST_SITE=test.)"""

    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path: pathlib.Path) -> None:
        self.tmp = tmp_path

    async def test_corner_cases(self) -> None:
        fake = FakeRapidAnalysis(index=3)
        try:
            await asyncio.wait_for(fake.controller.start_task, STD_TIMEOUT)
            config_dir = write_ocps_config(
                pathlib.Path(self.tmp) / "ocps", job_result_timeout=1.0, heartbeat_timeout=1.0, discovery_timeout=5.0
            )
            async with ocps_and_script(config_dir) as (csc, script):
                # jobResults before the ack, two job ids: the job ends when both are in, once.
                ackcmd, _ = await execute(script, LSSTCAM_SWEEP)
                data = await next_job_result(script, json.loads(ackcmd.result)["job_id"])
                assert data.exit_code == 0 and data.parsed["jobIds"] == ["ra-early-1a", "ra-early-1b"], data
                assert [j["result"]["metrics"]["bestFocus"] for j in data.parsed["jobs"]] == [0.04, 0.04]
                request = fake.requests[0]
                assert (request.pipeline, json.loads(request.dataId)) == (
                    "focus_sweep",
                    {"dayObs": 20251115, "seqNum": 46},
                )
                assert json.loads(request.config) == {"visits": SWEEP}

                # A failing job: its exit code and errorReport.
                fake.mode = "fail"
                ackcmd, _ = await execute(script, LSSTCAM_SWEEP)
                data = await next_job_result(script, json.loads(ackcmd.result)["job_id"])
                assert data.exit_code == 2 and data.parsed["outcome"] == "failed", data
                assert data.parsed["reason"] == "RapidAnalysis job ra-fail-2: no star found"

                # No jobResult ever (a CSC that died after queuing the job): job_result_timeout.
                fake.mode = "silent"
                ackcmd, _ = await execute(script, LSSTCAM_SWEEP)
                data = await next_job_result(script, json.loads(ackcmd.result)["job_id"])
                assert data.exit_code == OcpsExitCode.NO_JOB_RESULT and data.parsed["outcome"] == "lost", data
                assert data.parsed["reason"].startswith("no jobResult for ra-silent-3 within job_result_timeout")

                # Heartbeats stop: the CSC is taken as not running.
                fake.beating = False
                await asyncio.sleep(1.5)
                ackcmd, _ = await execute(script, LSSTCAM_SWEEP)
                data = await next_job_result(script, json.loads(ackcmd.result)["job_id"])
                assert data.exit_code == OcpsExitCode.RA_ABSENT, data
                assert "its last heartbeat was" in data.parsed["reason"], data.parsed
                assert len(fake.requests) == 3
                assert not csc.jobs and not csc._by_ra_id
        finally:
            await fake.close()
