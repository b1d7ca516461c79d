"""What ``OCPS:101 execute`` asks for, and where each request goes: pure, no SAL, no asyncio.

Observing scripts send ``execute(config='{"<instrument>-FROM-OCS_<KIND>": "<visit ids>"}')``
(ts_standardscripts' focus sweep and AOS sequences, ts_externalscripts' parameter marches, MTAOS),
as dm_OCPS's Rapid Analysis backend reads it: a JSON object of ``{key: value}`` requests.

Keys
    ``<instrument>-FROM-OCS_<KIND>``: instrument ``LATISS``, ``LSSTComCam`` or ``LSSTCam`` (the
    RapidAnalysis SAL index of each is its ``OCPS.SalIndex``: 1, 2, 3); kind ``FOCUSSWEEP`` (3 or
    more visits), ``DONUTPAIR`` (exactly 2: intra-focal, extra-focal), ``CWFS`` (exactly 1;
    ``CWFSIMAGE``, the spelling MTAOS sends, is the same).
Values
    Comma-separated visit ids, as the scripts write them (``",".join(str(v) for v in ids)``); a
    single visit may also be a JSON integer. A visit id is ``dayObs * 100000 + seqNum``
    (``2025111500042`` = day 2025-11-15, sequence number 42): 13 ASCII digits, a real date, a
    sequence number 1-99999. It maps to the RapidAnalysis data id ``{"dayObs": 20251115,
    "seqNum": 42}``.

Routing (`ROUTES`, a module-level table that tests may point elsewhere)
    ``FOCUSSWEEP`` → ``processData(pipeline="focus_sweep", dataId=<the newest visit of the sweep>,
    config={"visits": [<every visit id, as given>]})``. The data id names the sweep's newest
    (highest-numbered) visit, the last one a script sends, so that a RapidAnalysis job, its
    jobResult.imageName and its database row name one real image; the pipeline reads the whole
    sweep from ``config["visits"]``. ``DONUTPAIR`` and ``CWFS``: no pipeline here (this package
    has no wavefront estimation); accepted, and answered with a failing job_result.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import re
from typing import Any

from lsst.ts.idl.enums.OCPS import SalIndex

from ..data.strict_json import StrictJsonError, loads_strict, quote

__all__ = [
    "INSTRUMENTS",
    "Kind",
    "OcpsExitCode",
    "Request",
    "RequestError",
    "Route",
    "ROUTES",
    "Visit",
    "parse_execute_config",
    "parse_visit_id",
    "parse_visits",
    "processdata_fields",
]

#: Instrument name → RapidAnalysis SAL index (``OCPS.SalIndex``; 101, the RA facade itself, excluded).
INSTRUMENTS: dict[str, int] = {e.name: int(e) for e in SalIndex if int(e) < 100}

#: ``<instrument>-FROM-OCS_<KIND>``; ASCII only and anchored at the very end (\Z, not $).
KEY_RE = re.compile(r"\A(?P<instrument>[A-Za-z0-9]+)-FROM-OCS_(?P<kind>[A-Za-z]+)\Z")
VISIT_ID_RE = re.compile(r"\A(?P<day>[0-9]{8})(?P<seq>[0-9]{5})\Z")
#: Longest ``config`` text read (a 100-visit sweep is ~1.4 kB).
MAX_CONFIG_LEN = 65536
#: Most visits in one focus sweep (scripts take 5-15).
MAX_SWEEP_VISITS = 200


class RequestError(ValueError):
    """A request that cannot be served; the message says what is wrong and what is allowed."""


class OcpsExitCode(enum.IntEnum):
    """``job_result.exit_code`` values of this facade.

    A routed request's exit code is its RapidAnalysis job's (``jobResult.exitCode``: 0 success,
    1 crash, 2 pipeline failure, 3 no input, 4 worker died, 5 pool lost or CSC restarted,
    124 time limit, 255 aborted); the codes below are the facade's own, for requests that got no
    RapidAnalysis job or whose job was lost sight of. They do not collide with RapidAnalysis's.
    """

    SUCCESS = 0
    #: No pipeline here for this kind (DONUTPAIR, CWFS: no wavefront estimation in this package).
    NOT_SUPPORTED = 10
    #: The instrument's RapidAnalysis CSC is not running (no summaryState seen).
    RA_ABSENT = 11
    #: RapidAnalysis refused processData (not ENABLED, queue full, pipeline unknown, ...).
    RA_REFUSED = 12
    #: RapidAnalysis did not answer processData in time.
    RA_NO_ANSWER = 13
    #: No jobResult from RapidAnalysis within ``job_result_timeout``.
    NO_JOB_RESULT = 14
    #: This CSC left ENABLED (not yet routed) or closed (not yet ended) first.
    OCPS_STOPPED = 15
    #: abort_job (before the request reached RapidAnalysis; RapidAnalysis's own abort is 255 too).
    ABORTED = 255


class Kind(enum.StrEnum):
    """The request kinds of ``<instrument>-FROM-OCS_<KIND>`` keys."""

    FOCUSSWEEP = "FOCUSSWEEP"
    DONUTPAIR = "DONUTPAIR"
    CWFS = "CWFS"
    #: MTAOS's spelling of CWFS (``LSSTCam-FROM-OCS_CWFSIMAGE``).
    CWFSIMAGE = "CWFSIMAGE"


#: How many visits each kind takes: (fewest, most).
VISIT_COUNTS: dict[Kind, tuple[int, int]] = {
    Kind.FOCUSSWEEP: (3, MAX_SWEEP_VISITS),
    Kind.DONUTPAIR: (2, 2),
    Kind.CWFS: (1, 1),
    Kind.CWFSIMAGE: (1, 1),
}
_VISIT_WORDS = {
    Kind.FOCUSSWEEP: '3 or more comma-separated visit ids, e.g. "2025111500042,2025111500043,2025111500044"',
    Kind.DONUTPAIR: '"<intra-focal visit id>,<extra-focal visit id>", e.g. "2025111500086,2025111500087"',
    Kind.CWFS: 'one visit id, e.g. "2025111500086"',
    Kind.CWFSIMAGE: 'one visit id, e.g. "2025111500086"',
}


@dataclasses.dataclass(frozen=True)
class Route:
    """Where one kind of request goes.

    Attributes
    ----------
    pipeline : `str` or None
        The RapidAnalysis pipeline run by ``processData``; None: none here (the request is
        accepted and ends at once with a `OcpsExitCode.NOT_SUPPORTED` job_result saying ``reason``).
    visits_in_config : `bool`
        Send ``{"visits": [<visit ids>]}`` as processData's ``config`` (the pipeline must take a
        ``visits`` setting, as ``focus_sweep`` does); else send no config (e.g. ``test.succeed``).
    reason : `str`
        Why there is no pipeline (``pipeline`` None).
    settings : `dict`
        Pipeline settings sent in processData's ``config`` with every request of this kind (besides
        ``visits``); e.g. ``{"duration": 20}`` for ``test.sleep`` in tests.
    """

    pipeline: str | None
    visits_in_config: bool = True
    reason: str = ""
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


_NO_WAVEFRONT = (
    "Rapid Analysis has no wavefront-estimation pipeline, so {kind} requests are accepted but not processed here"
)
#: Where each kind goes. A module-level table: tests point FOCUSSWEEP at ``test.succeed``
#: (``Route("test.succeed", visits_in_config=False)``) to test routing without ``focus_sweep``.
ROUTES: dict[Kind, Route] = {
    Kind.FOCUSSWEEP: Route("focus_sweep"),
    Kind.DONUTPAIR: Route(None, reason=_NO_WAVEFRONT.format(kind="DONUTPAIR")),
    Kind.CWFS: Route(None, reason=_NO_WAVEFRONT.format(kind="CWFS")),
    Kind.CWFSIMAGE: Route(None, reason=_NO_WAVEFRONT.format(kind="CWFSIMAGE")),
}


@dataclasses.dataclass(frozen=True, order=True)
class Visit:
    """A visit id and its RapidAnalysis data id."""

    visit_id: int
    day_obs: int
    seq_num: int

    @property
    def data_id(self) -> dict[str, int]:
        """RapidAnalysis's data id of this visit."""
        return {"dayObs": self.day_obs, "seqNum": self.seq_num}


@dataclasses.dataclass(frozen=True)
class Request:
    """One ``{key: value}`` of an execute: one OCPS job.

    Attributes
    ----------
    key : `str`
        The key as sent.
    instrument : `str`
    sal_index : `int`
        SAL index of the instrument's RapidAnalysis CSC.
    kind : `Kind`
    visits : `tuple` [`Visit`]
        In the order given.
    """

    key: str
    instrument: str
    sal_index: int
    kind: Kind
    visits: tuple[Visit, ...]

    @property
    def visit_ids(self) -> list[int]:
        return [v.visit_id for v in self.visits]

    def describe(self) -> dict[str, Any]:
        """What job_result's ``result`` says of the request."""
        return {
            "key": self.key,
            "instrument": self.instrument,
            "kind": self.kind.value,
            "visits": self.visit_ids,
        }


def parse_visit_id(text: str) -> Visit:
    """Parse one visit id (``dayObs * 100000 + seqNum``, 13 ASCII digits).

    Raises
    ------
    RequestError
        Not 13 ASCII digits, not a real date, or sequence number 0.
    """
    match = VISIT_ID_RE.match(text)
    if match is None:
        raise RequestError(
            f"visit id {quote(text)} is not dayObs*100000+seqNum: 13 ASCII digits YYYYMMDDNNNNN, e.g. 2025111500042"
        )
    day = match["day"]
    try:
        datetime.date(int(day[:4]), int(day[4:6]), int(day[6:]))
    except ValueError:
        raise RequestError(f"visit id {text}: dayObs {day} is not a real date") from None
    seq_num = int(match["seq"])
    if seq_num == 0:
        raise RequestError(f"visit id {text}: sequence number 0 does not exist (they start at 1)")
    return Visit(int(text), int(day), seq_num)


def parse_visits(value: Any, kind: Kind, key: str) -> tuple[Visit, ...]:
    """The visits of one request's value (a comma-separated string, or one JSON integer)."""
    fewest, most = VISIT_COUNTS[kind]
    words = _VISIT_WORDS[kind]
    if isinstance(value, int) and not isinstance(value, bool):
        items = [str(value)]
    elif isinstance(value, str):
        items = [item.strip(" ") for item in value.split(",")] if value.strip(" ") else []
    else:
        raise RequestError(f"{key}: the value must be a string of {words}, not {quote(value)}")
    if not items:
        raise RequestError(f"{key}: no visit ids given; expected {words}")
    try:
        visits = tuple(parse_visit_id(item) for item in items)
    except RequestError as e:
        raise RequestError(f"{key}: {e}") from None
    if not fewest <= len(visits) <= most:
        count = f"{fewest}" if fewest == most else f"{fewest} to {most}"
        raise RequestError(f"{key}: {len(visits)} visit id(s) given, {kind.value} takes {count}; expected {words}")
    seen: set[int] = set()
    for visit in visits:
        if visit.visit_id in seen:
            raise RequestError(f"{key}: visit id {visit.visit_id} is given twice")
        seen.add(visit.visit_id)
    return visits


def _parse_key(key: str) -> tuple[str, Kind]:
    match = KEY_RE.match(key)
    kinds = ", ".join(k.value for k in Kind)
    instruments = ", ".join(INSTRUMENTS)
    if match is None:
        raise RequestError(
            f"key {quote(key)} is not of the form <instrument>-FROM-OCS_<KIND> "
            f"(instrument one of {instruments}; KIND one of {kinds})"
        )
    instrument, kind_text = match["instrument"], match["kind"]
    if instrument not in INSTRUMENTS:
        raise RequestError(f"key {key}: unknown instrument {instrument!r}; known: {instruments}")
    try:
        kind = Kind(kind_text)
    except ValueError:
        raise RequestError(f"key {key}: unknown request kind {kind_text!r}; known: {kinds}") from None
    return instrument, kind


def parse_execute_config(text: str) -> list[Request]:
    """The requests of an ``execute``'s ``config``: a JSON object of ``{key: value}``.

    All or nothing: one bad key or value fails the whole command, so that a caller never has
    half of its requests run.

    Raises
    ------
    RequestError
        Malformed or non-strict JSON, not an object, empty, an unknown key, instrument or kind,
        a bad visit list.
    """
    if not isinstance(text, str):
        raise RequestError(f"config must be a string of JSON, not {type(text).__name__}")
    if len(text) > MAX_CONFIG_LEN:
        raise RequestError(f"config is longer than {MAX_CONFIG_LEN} characters ({len(text)})")
    if not text.strip():
        raise RequestError(
            'config is blank; OCPS:101 expects a JSON object such as {"LSSTCam-FROM-OCS_FOCUSSWEEP": '
            '"2025111500042,2025111500043,2025111500044"}'
        )
    try:
        raw = loads_strict(text, "config")
    except StrictJsonError as e:
        raise RequestError(str(e)) from None
    if not isinstance(raw, dict):
        raise RequestError(f"config must be a JSON object of {{key: visit ids}} requests, not {quote(raw)}")
    if not raw:
        raise RequestError("config holds no request (an empty JSON object)")
    requests = []
    for key, value in raw.items():
        instrument, kind = _parse_key(key)
        visits = parse_visits(value, kind, key)
        requests.append(Request(key, instrument, INSTRUMENTS[instrument], kind, visits))
    return requests


def processdata_fields(request: Request, route: Route) -> dict[str, str]:
    """The ``processData`` fields (pipeline, dataId, config) of a routed request.

    The data id is the newest (highest-numbered) visit's; the config is ``route.settings`` plus,
    with ``route.visits_in_config``, ``"visits": [<visit ids, as given>]``; blank if that is empty.
    """
    if route.pipeline is None:
        raise ValueError(f"{request.kind.value} has no pipeline here")
    newest = max(request.visits)
    settings = dict(route.settings)
    if route.visits_in_config:
        settings["visits"] = request.visit_ids
    config = json.dumps(settings) if settings else ""
    return {"pipeline": route.pipeline, "dataId": json.dumps(newest.data_id), "config": config}
