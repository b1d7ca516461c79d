"""Focal-plane selection: which detectors of each visit are sent to single-frame measurement (SFM).

Pure, deterministic logic (no I/O, no clock, no asyncio): the CSC calls `FocalPlaneSelector.select` once per
dispatched visit and feeds `ThroughputModel` with measured job costs and visit arrival times.

Only *imaging* detectors (physical type ``E2V`` or ``ITL``) are ever selected. Guiders (``ITL_G``) are never
sent to SFM, and the wavefront sensors (``ITL_WF``) are processed by AOS, not SFM, so no pattern includes them
and a custom list naming one is rejected.

The named patterns and the checkerboard rules follow rubintv_production's ``CameraControlConfig`` exactly
(see ``ra-algorithms.md`` §1). Two things differ from it, on purpose:

- the time variation really is applied, once per dispatched visit (in rubintv_production it is dormant);
- an automatic down-selection, described in TN-100 but never built there, chooses a smaller pattern when the
  measured throughput of the worker pool cannot keep up with the visit cadence.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
import re
import statistics
from collections.abc import Iterable, Sequence

import numpy as np

from ..data.camera import Detector, Instrument, get_instrument
from ..data.camera_layout import detector_center_mm
from ..data.data_id import OBSID_RE

__all__ = [
    "FocalPlaneVariation",
    "WorkerMode",
    "PATTERNS",
    "LADDER",
    "pattern_detectors",
    "spread_order",
    "parse_detector_list",
    "parse_obsid_list",
    "FocalPlaneMode",
    "Selection",
    "ThroughputModel",
    "FocalPlaneSelector",
]


class FocalPlaneVariation(enum.IntEnum):
    """How the pattern varies from visit to visit (SAL enumeration ``FocalPlaneVariation``).

    The phase of a visit is counted over *dispatched* visits since the mode was last set:

    - ``FIXED``: phase 0 for every visit.
    - ``ALTERNATING_PHASE``: 0, 1, 0, 1, ... (flips every visit).
    - ``ALTERNATING_BY_TWOS``: 0, 0, 1, 1, 0, 0, ... (flips every other visit, so each CCD is processed in
      consecutive pairs, e.g. both snaps of a pair or two dithers).
    """

    FIXED = 0
    ALTERNATING_PHASE = 1
    ALTERNATING_BY_TWOS = 2


class WorkerMode(enum.IntEnum):
    """How workers treat their backlog (SAL enumeration ``WorkerMode``); held here, applied by the pool.

    - ``WAITING``: run only the newest visit, then idle.
    - ``CONSUMING``: after the newest visit, drain the backlog newest first until a new visit lands.
    - ``MURDEROUS``: like CONSUMING, but abandon (and requeue) a *backlog* job when a new visit lands.
    """

    WAITING = 0
    CONSUMING = 1
    MURDEROUS = 2


#: Pattern names accepted by ``setFocalPlaneMode`` (lower case, as in rubintv_production).
PATTERNS = (
    "all",
    "ccd_checkerboard",
    "raft_checkerboard",
    "5-on-a-die",
    "minimal",
    "ultra-minimal",
    "e2v",
    "itl",
    "custom",
)

#: Patterns the automatic down-selection may use, largest first (LSSTCam: 189, 108, 96/93, 45, 17).
#: For a given instrument, rungs that select nothing or are not strictly smaller than the rung above are
#: dropped (see `FocalPlaneSelector`).
LADDER = ("all", "raft_checkerboard", "ccd_checkerboard", "minimal", "ultra-minimal")

# Patterns whose selection depends on the phase; for every other pattern the variation has no effect.
_PHASED = frozenset({"ccd_checkerboard", "raft_checkerboard"})

# The fixed detector sets of rubintv_production, by name (not id) so that they also apply to ComCam, whose
# raft R22 has ids 0-8. LSSTCam ids given in the reference are in the comments.
_FIVE_ON_A_DIE_RAFTS = frozenset({"R22", "R33", "R11", "R13", "R31"})
# DIAG = (90, 94, 98, 144, 148, 152, 36, 40, 44): S00, S11, S22 of R22, R33, R11.
_DIAG = frozenset(f"{r}_{s}" for r in ("R22", "R33", "R11") for s in ("S00", "S11", "S22"))
# DIAG2 = (92, 94, 96, 132, 130, 128, 58, 56, 60): S02, S11, S20 of R22, R31, R13.
_DIAG2 = frozenset(f"{r}_{s}" for r in ("R22", "R31", "R13") for s in ("S02", "S11", "S20"))
# HORIZONTAL = S10, S11, S12 of R20-R24 (ids 75-77, 84-86, 93-95, 102-104, 111-113).
_HORIZONTAL = frozenset(f"R2{x}_S1{s}" for x in range(5) for s in range(3))
# VERTICAL = S01, S11, S21 of R02, R12, R22, R32, R42 (ids 10, 13, 16, 46, ..., 172, 175, 178).
_VERTICAL = frozenset(f"R{y}2_S{s}1" for y in range(5) for s in range(3))
_ULTRA_MINIMAL = _DIAG | _DIAG2
_MINIMAL = _ULTRA_MINIMAL | _VERTICAL | _HORIZONTAL

_NAME_DIGITS_RE = re.compile(r"^R(\d)(\d)_S(\d)(\d)$")


def _instrument(instrument: Instrument | str) -> Instrument:
    return instrument if isinstance(instrument, Instrument) else get_instrument(instrument)


def _digits(detector: Detector) -> tuple[int, int, int, int]:
    """(a, b, c, d) from the name ``Rab_Scd``."""
    match = _NAME_DIGITS_RE.match(detector.name)
    if match is None:  # only LATISS (RXX_S00), which never gets here: it has a single detector
        raise ValueError(f"Detector name {detector.name!r} is not of the form Rab_Scd")
    a, b, c, d = (int(g) for g in match.groups())
    return a, b, c, d


def _ccd_checkerboard_on(detector: Detector, phase: int) -> bool:
    # Global CCD column/row across the focal plane (3 CCDs per raft); the +1 is the reference's.
    a, b, c, d = _digits(detector)
    col = 3 * a + c + 1
    row = 3 * b + d + 1
    return ((col % 2) + (row % 2) + phase) % 2 == 1


def _raft_checkerboard_on(detector: Detector, phase: int) -> bool:
    a, b, _, _ = _digits(detector)
    return ((a % 2) + (b % 2) + phase) % 2 == 1


def _allowed_text(instrument: Instrument) -> str:
    """What a detector entry may be, for error messages."""
    science = instrument.science_detectors
    ids = sorted(d.id for d in science)
    id_text = f"id {ids[0]}" if len(ids) == 1 else f"ids {ids[0]}-{ids[-1]}"
    if ids != list(range(ids[0], ids[-1] + 1)):  # not contiguous: list them
        id_text = "ids " + ",".join(map(str, ids))
    example = science[len(science) // 2].name
    name_text = f"name {example}" if len(science) == 1 else f"names like {example}"
    return f"imaging detector {id_text} or {name_text}"


def _resolve_entries(instrument: Instrument, entries: Iterable[int | str]) -> frozenset[int]:
    """Detector ids from ids or names; ValueError naming every bad entry, why, and what is allowed."""
    selected: set[int] = set()
    problems: list[str] = []
    for entry in entries:
        detector: Detector | None = None
        if isinstance(entry, bool):  # bool is an int, but True is surely not detector 1
            problems.append(f"{entry!r} (not a detector id or name)")
            continue
        if isinstance(entry, int):
            detector = instrument.by_id.get(entry)
            label = repr(entry)
        else:
            text = str(entry).strip()
            label = repr(text)
            if text.isdigit():
                detector = instrument.by_id.get(int(text))
                if detector is None:
                    problems.append(f"{label} (no such detector id)")
                    continue
            else:
                detector = instrument.by_name.get(text.upper())
                if detector is None:
                    problems.append(f"{label} (not a detector id or name of {instrument.name})")
                    continue
        if detector is None:
            problems.append(f"{label} (no such detector id)")
        elif detector.physical_type == "ITL_G":
            problems.append(f"{label} ({detector.name} is a guider: guiders are never sent to SFM)")
        elif detector.physical_type == "ITL_WF":
            problems.append(f"{label} ({detector.name} is a wavefront sensor: those go to AOS, not SFM)")
        elif not detector.is_science:
            problems.append(f"{label} ({detector.name} is not an imaging detector)")
        else:
            selected.add(detector.id)
    if problems:
        raise ValueError(
            f"Bad detector(s) for {instrument.name}: {'; '.join(problems)}. Allowed: {_allowed_text(instrument)}."
        )
    return frozenset(selected)


def parse_detector_list(instrument: Instrument | str, text: str) -> frozenset[int]:
    """Parse a comma-separated list of detector ids and/or ``Rxy_Sxy`` names.

    Parameters
    ----------
    instrument : `Instrument` or `str`
        The camera.
    text : `str`
        E.g. ``"94, R22_S10, 40"``. Whitespace around entries and empty entries (a trailing comma) are
        ignored; names are case-insensitive.

    Returns
    -------
    detectors : `frozenset` [`int`]
        The detector ids; empty if ``text`` has no entries.

    Raises
    ------
    ValueError
        If any entry is not an imaging detector of this instrument. The message names every bad entry,
        why it is bad (unknown, guider, wavefront sensor), and what is allowed.
    """
    inst = _instrument(instrument)
    entries = [part.strip() for part in text.split(",")]
    return _resolve_entries(inst, [e for e in entries if e])


def parse_obsid_list(instrument: Instrument | str, text: str | Iterable[str]) -> frozenset[str]:
    """Parse the guaranteed-exposure list: comma-separated obsids of this instrument.

    Parameters
    ----------
    instrument : `Instrument` or `str`
        The camera; every obsid must carry its camera code (``MC``, ``CC`` or ``AT``).
    text : `str` or iterable of `str`
        E.g. ``"MC_O_20251115_000226,MC_O_20251115_000227"``; empty entries are ignored.

    Returns
    -------
    obsids : `frozenset` [`str`]

    Raises
    ------
    ValueError
        Naming every malformed obsid or one of another camera.
    """
    inst = _instrument(instrument)
    parts = text.split(",") if isinstance(text, str) else list(text)
    obsids: set[str] = set()
    problems: list[str] = []
    for part in parts:
        obsid = str(part).strip()
        if not obsid:
            continue
        match = OBSID_RE.match(obsid)
        if match is None:
            problems.append(f"{obsid!r} (not of the form CAMCODE_CONTROLLER_YYYYMMDD_NNNNNN)")
        elif match["cam"] != inst.cam_code:
            problems.append(f"{obsid!r} (camera code {match['cam']}, but {inst.name} is {inst.cam_code})")
        else:
            obsids.add(obsid)
    if problems:
        raise ValueError(
            f"Bad guaranteedExposures: {'; '.join(problems)}. Expected comma-separated obsids like "
            f"{inst.cam_code}_O_20251115_000226 (controller one of O, C, H, P, Q, S)."
        )
    return frozenset(obsids)


def pattern_detectors(
    instrument: Instrument | str,
    pattern: str,
    phase: int = 0,
    custom: Iterable[int | str] = (),
) -> frozenset[int]:
    """The imaging detectors a named pattern selects.

    Guiders are never selected (never sent to SFM) and wavefront sensors are never selected (they go to AOS,
    not SFM): every pattern is a subset of the instrument's imaging (E2V, ITL) detectors.

    Parameters
    ----------
    instrument : `Instrument` or `str`
        The camera.
    pattern : `str`
        One of `PATTERNS`:

        - ``all``: every imaging detector (LSSTCam 189).
        - ``ccd_checkerboard``: from the name ``Rab_Scd``, col = 3a + c + 1, row = 3b + d + 1; on iff
          ((col mod 2) + (row mod 2) + phase) mod 2 = 1 (LSSTCam 96 at phase 0, 93 at phase 1).
        - ``raft_checkerboard``: on iff ((a mod 2) + (b mod 2) + phase) mod 2 = 1 (LSSTCam 108 / 81).
        - ``5-on-a-die``: rafts R22, R33, R11, R13, R31 (45).
        - ``minimal``: DIAG | DIAG2 | VERTICAL | HORIZONTAL of rubintv_production (45).
        - ``ultra-minimal``: DIAG | DIAG2 (17).
        - ``e2v`` / ``itl``: imaging detectors of that physical type (117 / 72).
        - ``custom``: the detectors in ``custom``.

        The two phases of each checkerboard are complements of each other within the imaging detectors.
    phase : `int`, optional
        Checkerboard phase, taken mod 2; ignored by the other patterns.
    custom : iterable of `int` or `str`, optional
        Detector ids or names for ``custom``; must be empty for every other pattern.

    Returns
    -------
    detectors : `frozenset` [`int`]
        Never empty.

    Raises
    ------
    ValueError
        Unknown pattern (the message lists the allowed ones); ``custom`` without detectors, or detectors
        with another pattern; a bad custom entry (see `parse_detector_list`); or a pattern that selects no
        detector of this instrument (e.g. ``e2v`` on ComCam, which is all ITL, or ``raft_checkerboard``
        phase 0 on ComCam, whose only raft R22 is off at phase 0).

    Notes
    -----
    Other instruments get the same rules applied to their own detectors: on ComCam (raft R22 only) a pattern
    naming rafts it lacks keeps what is left (``5-on-a-die`` and ``minimal`` give all 9, ``ultra-minimal`` 5,
    ``ccd_checkerboard`` 4 / 5). An instrument with a single imaging detector (LATISS) has nothing to thin
    out, so every named pattern selects that detector; ``custom`` still checks its list.
    """
    inst = _instrument(instrument)
    if not isinstance(pattern, str) or pattern not in PATTERNS:
        raise ValueError(f"Unknown focal-plane pattern {pattern!r}; allowed: {', '.join(PATTERNS)}")
    if isinstance(phase, bool) or not isinstance(phase, int):
        raise ValueError(f"phase must be an integer (0 or 1), not {phase!r}")
    custom = list(custom)
    if pattern == "custom":
        if not custom:
            raise ValueError("Pattern 'custom' needs a list of detectors (ids or Rxy_Sxy names)")
        return _resolve_entries(inst, custom)
    if custom:
        raise ValueError(f"Detectors are only given with pattern 'custom', not with {pattern!r}")

    science = inst.science_detectors
    if len(science) == 1:
        return frozenset({science[0].id})
    phase %= 2
    if pattern == "all":
        chosen = science
    elif pattern == "ccd_checkerboard":
        chosen = tuple(d for d in science if _ccd_checkerboard_on(d, phase))
    elif pattern == "raft_checkerboard":
        chosen = tuple(d for d in science if _raft_checkerboard_on(d, phase))
    elif pattern == "5-on-a-die":
        chosen = tuple(d for d in science if d.raft in _FIVE_ON_A_DIE_RAFTS)
    elif pattern == "minimal":
        chosen = tuple(d for d in science if d.name in _MINIMAL)
    elif pattern == "ultra-minimal":
        chosen = tuple(d for d in science if d.name in _ULTRA_MINIMAL)
    else:  # e2v, itl
        chosen = tuple(d for d in science if d.physical_type == pattern.upper())
    if not chosen:
        rafts = ", ".join(sorted({d.raft for d in science}))
        types = ", ".join(sorted({d.physical_type for d in science}))
        at_phase = f" at phase {phase}" if pattern in _PHASED else ""
        raise ValueError(
            f"Pattern {pattern!r}{at_phase} selects no detector of {inst.name} "
            f"(its imaging detectors: rafts {rafts}; types {types}); choose another pattern"
        )
    return frozenset(d.id for d in chosen)


def spread_order(instrument: Instrument | str, detectors: Iterable[int]) -> list[int]:
    """The detectors in an order whose every beginning is spread over the focal plane.

    A pool of a few workers runs a visit's detectors a few at a time, and a visit it cannot
    finish is gathered on the ones that ran first: in id order those would all be one corner.
    Farthest-point order instead: the detector nearest the boresight first, then each time the
    one farthest from all those already chosen (ties to the lower id), so the first few span
    the field (centre, corners, edges) and a partial gather's PSF gradient and focal-plane map
    have something to say.

    Parameters
    ----------
    instrument : `Instrument` or `str`
        The camera.
    detectors : iterable of `int`
        Detector ids of this camera.

    Returns
    -------
    order : `list` [`int`]
        The same ids, each once.
    """
    instrument = _instrument(instrument)
    ids = sorted(set(detectors))
    if len(ids) <= 2:
        return ids
    xy = np.array([detector_center_mm(instrument, instrument.by_id[i])[:2] for i in ids])
    first = int(np.argmin(np.hypot(xy[:, 0], xy[:, 1])))
    order = [first]
    nearest = np.hypot(*(xy - xy[first]).T)
    for _ in range(len(ids) - 1):
        nearest[order[-1]] = -1.0  # chosen: never again (distances are >= 0)
        pick = int(np.argmax(nearest))  # the first maximum: the lowest id among ties
        order.append(pick)
        nearest = np.minimum(nearest, np.hypot(*(xy - xy[pick]).T))
    return [ids[i] for i in order]


def _n_detectors(n: int) -> str:
    return f"{n} detector" if n == 1 else f"{n} detectors"


def _phase_of_visit(variation: FocalPlaneVariation, visit: int) -> int:
    """Phase of the ``visit``-th dispatched visit (0-based) since the mode was set."""
    if variation == FocalPlaneVariation.ALTERNATING_PHASE:
        return visit % 2
    if variation == FocalPlaneVariation.ALTERNATING_BY_TWOS:
        return (visit // 2) % 2
    return 0


def _enum_value(enum_type: type[enum.IntEnum], value: int, field: str) -> enum.IntEnum:
    allowed = ", ".join(f"{int(e)}={e.name}" for e in enum_type)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be an integer, one of {allowed}; not {value!r}")
    try:
        return enum_type(value)
    except ValueError:
        raise ValueError(f"{field} must be one of {allowed}; not {value}") from None


@dataclasses.dataclass(frozen=True)
class FocalPlaneMode:
    """The commanded focal-plane mode (what ``setFocalPlaneMode`` set; what ``focalPlaneMode`` reports).

    Attributes
    ----------
    pattern : `str`
        The manual pattern, one of `PATTERNS`.
    custom : `frozenset` [`int`]
        Detector ids for ``custom``; empty otherwise.
    variation : `FocalPlaneVariation`
        How the phase varies per visit.
    automatic : `bool`
        Is automatic down-selection on?
    worker_mode : `WorkerMode`
        How the worker pool treats its backlog.
    guaranteed : `frozenset` [`str`]
        Obsids always processed on every imaging detector.
    """

    pattern: str = "all"
    custom: frozenset[int] = frozenset()
    variation: FocalPlaneVariation = FocalPlaneVariation.FIXED
    automatic: bool = False
    worker_mode: WorkerMode = WorkerMode.WAITING
    guaranteed: frozenset[str] = frozenset()

    @property
    def custom_csv(self) -> str:
        """Custom detector ids as a sorted comma list (for the SAL event)."""
        return ",".join(str(i) for i in sorted(self.custom))

    @property
    def guaranteed_csv(self) -> str:
        """Guaranteed obsids as a sorted comma list (for the SAL event)."""
        return ",".join(sorted(self.guaranteed))


@dataclasses.dataclass(frozen=True)
class Selection:
    """What to process for one visit.

    Attributes
    ----------
    detectors : `frozenset` [`int`]
        Detector ids to dispatch; never empty.
    pattern : `str`
        Pattern actually used (the manual one, or the automatic choice; ``all`` for a guaranteed visit).
    phase : `int`
        Phase of this visit under the variation (0 or 1); only the checkerboards depend on it.
    reason : `str`
        Short human-readable explanation of the choice.
    decided_by : `str`
        ``manual``, ``automatic`` or ``guaranteed``.
    """

    detectors: frozenset[int]
    pattern: str
    phase: int
    reason: str
    decided_by: str

    @property
    def detectors_csv(self) -> str:
        """Detector ids as a sorted comma list (for the SAL ``focalPlaneMode`` event)."""
        return ",".join(str(i) for i in sorted(self.detectors))


class ThroughputModel:
    """Measured throughput of the worker pool: cost per detector job and visit cadence.

    Both are medians over a sliding window of the latest samples: robust to an occasional very slow job
    (a cold calibration cache, a crowded field) or a long pause between visits, and fully deterministic.

    Parameters
    ----------
    margin : `float`, optional
        Safety margin in (0, 1]: only this fraction of the pool's time per cadence is planned for, to leave
        room for gather, scheduling and cost variation.
    cost_window : `int`, optional
        Number of most recent detector-job costs the median is taken over.
    cadence_window : `int`, optional
        Number of most recent arrival intervals the cadence median is taken over.
    min_cost_samples : `int`, optional
        Costs needed before the model is `ready`.
    min_cadence_samples : `int`, optional
        Arrival intervals needed before the model is `ready`.
    max_interval : `float`, optional
        Intervals between arrivals longer than this (seconds) are pauses (filter change, weather, daytime),
        not cadence, and are not recorded.
    """

    def __init__(
        self,
        *,
        margin: float = 0.85,
        cost_window: int = 50,
        cadence_window: int = 20,
        min_cost_samples: int = 5,
        min_cadence_samples: int = 3,
        max_interval: float = 300.0,
    ) -> None:
        if not (isinstance(margin, int | float) and 0 < margin <= 1):
            raise ValueError(f"margin must be in (0, 1], not {margin!r}")
        for name, value in (
            ("cost_window", cost_window),
            ("cadence_window", cadence_window),
            ("min_cost_samples", min_cost_samples),
            ("min_cadence_samples", min_cadence_samples),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if min_cost_samples > cost_window or min_cadence_samples > cadence_window:
            raise ValueError("min_cost_samples/min_cadence_samples cannot exceed their window")
        if not (math.isfinite(max_interval) and max_interval > 0):
            raise ValueError(f"max_interval must be a positive number of seconds, not {max_interval!r}")
        self.margin = float(margin)
        self.min_cost_samples = min_cost_samples
        self.min_cadence_samples = min_cadence_samples
        self.max_interval = float(max_interval)
        self._costs: collections.deque[float] = collections.deque(maxlen=cost_window)
        self._intervals: collections.deque[float] = collections.deque(maxlen=cadence_window)
        self._last_arrival: float | None = None

    def record_cost(self, seconds: float) -> None:
        """Record the worker time one detector job took.

        Parameters
        ----------
        seconds : `float`
            Worker seconds; must be finite and > 0.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
            raise ValueError(f"A job cost must be a finite number of seconds, not {seconds!r}")
        if seconds <= 0:
            raise ValueError(f"A job cost must be > 0 s, not {seconds}")
        self._costs.append(float(seconds))

    def record_arrival(self, timestamp: float) -> None:
        """Record when a visit arrived (any monotonic clock, in seconds; the caller reads the clock).

        Parameters
        ----------
        timestamp : `float`
            Arrival time; must not be earlier than the previous one.
        """
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | float) or not math.isfinite(timestamp):
            raise ValueError(f"An arrival time must be a finite number of seconds, not {timestamp!r}")
        if self._last_arrival is not None:
            interval = timestamp - self._last_arrival
            if interval < 0:
                raise ValueError(f"Arrival time {timestamp} is earlier than the previous one ({self._last_arrival})")
            if interval <= self.max_interval:
                self._intervals.append(float(interval))
        self._last_arrival = float(timestamp)

    def reset(self) -> None:
        """Forget every measurement (e.g. the pipeline or the pool changed)."""
        self._costs.clear()
        self._intervals.clear()
        self._last_arrival = None

    @property
    def n_costs(self) -> int:
        """Number of costs in the window."""
        return len(self._costs)

    @property
    def n_intervals(self) -> int:
        """Number of arrival intervals in the window."""
        return len(self._intervals)

    @property
    def cost_per_detector(self) -> float | None:
        """Median worker seconds per detector job, or None before any measurement."""
        return statistics.median(self._costs) if self._costs else None

    @property
    def cadence(self) -> float | None:
        """Median seconds between visit arrivals, or None before any interval."""
        return statistics.median(self._intervals) if self._intervals else None

    @property
    def ready(self) -> bool:
        """Are there enough measurements to decide (and a non-zero cadence)?"""
        return (
            self.n_costs >= self.min_cost_samples
            and self.n_intervals >= self.min_cadence_samples
            and (self.cadence or 0.0) > 0
        )

    def missing(self) -> str:
        """What is lacking before the model is ready (empty if ready)."""
        if self.ready:
            return ""
        if self.n_costs >= self.min_cost_samples and self.n_intervals >= self.min_cadence_samples:
            return "the measured cadence is 0 s"
        return (
            f"{self.n_costs}/{self.min_cost_samples} job costs, "
            f"{self.n_intervals}/{self.min_cadence_samples} visit intervals"
        )

    def affordable_detectors(self, n_workers: int, cadence: float | None = None) -> int:
        """How many detector jobs the pool can finish within one cadence.

        ``floor(n_workers * cadence * margin / cost_per_detector)``.

        Parameters
        ----------
        n_workers : `int`
            Workers in the pool (each runs one job at a time).
        cadence : `float`, optional
            Seconds between visits; default: the measured `cadence`.

        Returns
        -------
        n : `int`
            Affordable detector jobs per visit (>= 0).

        Raises
        ------
        ValueError
            If there is no cost or cadence to use, or an argument is invalid.
        """
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 0:
            raise ValueError(f"n_workers must be an integer >= 0, not {n_workers!r}")
        if cadence is None:
            cadence = self.cadence
            if cadence is None:
                raise ValueError("No visit cadence measured yet")
        if not (math.isfinite(cadence) and cadence >= 0):
            raise ValueError(f"cadence must be a finite number of seconds >= 0, not {cadence!r}")
        cost = self.cost_per_detector
        if cost is None:
            raise ValueError("No job cost measured yet")
        # The tiny epsilon keeps e.g. 1 * 34 * 0.85 / 5.78 = 4.999999999999999 from flooring to 4.
        return max(0, math.floor(n_workers * cadence * self.margin / cost + 1e-9))


class FocalPlaneSelector:
    """Holds the focal-plane mode and decides, per dispatched visit, which detectors to process.

    Parameters
    ----------
    instrument : `Instrument` or `str`
        The camera.
    throughput : `ThroughputModel`, optional
        Shared measurement model (the CSC feeds it); a default one if omitted.
    n_workers : `int`, optional
        Workers in the pool; the CSC keeps it up to date through the `n_workers` attribute.
    step_up_visits : `int`, optional
        Hysteresis: consecutive automatic decisions on which the next larger rung must fit with headroom
        before stepping up to it.
    step_up_headroom : `float`, optional
        Hysteresis: the next larger rung "fits with headroom" if its count <= this fraction of the affordable
        count.

    Notes
    -----
    **Variation.** Every call of `select` is one dispatched visit; the visit counter restarts at 0 when the
    mode is set, so the first visit after ``setFocalPlaneMode`` has phase 0. The phase only changes the
    checkerboards, whose two phases are complements within the imaging detectors (which is what
    rubintv_production's ``invertImagingSelection`` does). Other patterns are not inverted: the complement of
    ``ultra-minimal`` is 172 detectors, which would defeat the point of choosing a small pattern, and the
    complement of ``all`` is empty.

    **Guaranteed visits.** An obsid in the guaranteed list is processed on every imaging detector,
    whatever the pattern or the automatic choice (``decided_by="guaranteed"``). It still counts as a
    dispatched visit for the phase, but does not advance or break the automatic step-up streak.

    **Automatic down-selection.** When ``automatic`` is on and the `ThroughputModel` is ready:

    - the ladder is the manual pattern followed by the rungs of `LADDER` that select something on this
      instrument and are strictly smaller than the rung above (so the manual pattern is the ceiling:
      the automatic choice never has more detectors than it). The count of a checkerboard rung is its
      largest over the phases the variation visits (phase 0 only for FIXED; max(96, 93) otherwise) so
      that every visit, not just the average, fits. LSSTCam with ``all``: 189, 108, 96, 45, 17;
      ComCam: 9, 4 (FIXED) or 5 (alternating); LATISS: 1.
    - step down at once: if the current rung's count exceeds the affordable count, move to the largest
      rung that fits (the smallest rung if none does; never an empty selection). Falling behind grows a
      backlog, so there is no reason to wait.
    - step up slowly: move up one rung only after `step_up_visits` consecutive decisions on which that rung
      fits with headroom (count <= ``step_up_headroom`` x affordable). The gap between "fits" (step-down
      threshold) and "fits with headroom" (step-up threshold) plus the streak keeps it from oscillating.

    Until the model is ready, the manual pattern is used (``decided_by="manual"``; the reason says what
    is missing). Setting the mode restarts the automatic choice from the manual pattern.
    """

    def __init__(
        self,
        instrument: Instrument | str,
        throughput: ThroughputModel | None = None,
        *,
        n_workers: int = 1,
        step_up_visits: int = 3,
        step_up_headroom: float = 0.9,
    ) -> None:
        if isinstance(step_up_visits, bool) or not isinstance(step_up_visits, int) or step_up_visits < 1:
            raise ValueError(f"step_up_visits must be a positive integer, not {step_up_visits!r}")
        if not (isinstance(step_up_headroom, int | float) and 0 < step_up_headroom <= 1):
            raise ValueError(f"step_up_headroom must be in (0, 1], not {step_up_headroom!r}")
        self.instrument = _instrument(instrument)
        self.throughput = throughput if throughput is not None else ThroughputModel()
        self.n_workers = n_workers
        self.step_up_visits = step_up_visits
        self.step_up_headroom = float(step_up_headroom)
        self.set_mode()

    @property
    def n_workers(self) -> int:
        """Workers in the pool (used by the automatic down-selection)."""
        return self._n_workers

    @n_workers.setter
    def n_workers(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"n_workers must be an integer >= 0, not {value!r}")
        self._n_workers = value

    @property
    def mode(self) -> FocalPlaneMode:
        """The mode in force."""
        return self._mode

    @property
    def ladder(self) -> tuple[tuple[str, int], ...]:
        """The automatic ladder as (pattern, count), largest first; its first rung is the manual pattern."""
        return tuple((rung.pattern, rung.count) for rung in self._ladder)

    @property
    def n_dispatched(self) -> int:
        """Visits dispatched (calls of `select`) since the mode was set."""
        return self._n_dispatched

    def set_mode(
        self,
        pattern: str = "all",
        detectors: str | Iterable[int | str] = "",
        variation: int = FocalPlaneVariation.FIXED,
        automatic: bool = False,
        worker_mode: int = WorkerMode.WAITING,
        guaranteed_exposures: str | Iterable[str] = "",
    ) -> FocalPlaneMode:
        """Validate and set the mode (the ``setFocalPlaneMode`` command); all or nothing.

        Parameters
        ----------
        pattern : `str`
            One of `PATTERNS` (surrounding whitespace and case are ignored).
        detectors : `str` or iterable of `int` or `str`
            For ``custom`` only: ids or ``Rxy_Sxy`` names, as a comma string or an iterable.
        variation : `int`
            A `FocalPlaneVariation` value.
        automatic : `bool`
            Enable automatic down-selection.
        worker_mode : `int`
            A `WorkerMode` value.
        guaranteed_exposures : `str` or iterable of `str`
            Obsids of this instrument to always process in full (comma string or iterable).

        Returns
        -------
        mode : `FocalPlaneMode`
            The new mode.

        Raises
        ------
        ValueError
            With a message saying what is wrong and what is allowed; the previous mode stays in force.
        """
        # Validate everything before changing anything, so a bad command leaves the old mode in force.
        if not isinstance(pattern, str):
            raise ValueError(f"pattern must be a string, one of {', '.join(PATTERNS)}; not {pattern!r}")
        name = pattern.strip().lower()
        if name not in PATTERNS:
            raise ValueError(f"Unknown focal-plane pattern {pattern!r}; allowed: {', '.join(PATTERNS)}")
        if isinstance(detectors, str):
            custom = parse_detector_list(self.instrument, detectors)
        else:
            custom = _resolve_entries(self.instrument, detectors)
        if name == "custom" and not custom:
            raise ValueError("Pattern 'custom' needs detectors: a comma-separated list of ids or Rxy_Sxy names")
        if name != "custom" and custom:
            raise ValueError(f"Detectors are only given with pattern 'custom', not with {name!r}")
        var = FocalPlaneVariation(_enum_value(FocalPlaneVariation, variation, "variation"))
        wmode = WorkerMode(_enum_value(WorkerMode, worker_mode, "workerMode"))
        if not isinstance(automatic, bool):
            raise ValueError(f"automatic must be true or false, not {automatic!r}")
        guaranteed = parse_obsid_list(self.instrument, guaranteed_exposures)

        mode = FocalPlaneMode(name, custom, var, automatic, wmode, guaranteed)
        # Raises if the manual pattern selects nothing at a phase this variation will use.
        manual = _Rung.build(self.instrument, name, custom, var)
        ladder = [manual]
        for rung_name in LADDER:
            try:
                rung = _Rung.build(self.instrument, rung_name, frozenset(), var)
            except ValueError:  # selects nothing on this instrument at some phase: not a usable rung
                continue
            if rung.count < ladder[-1].count:
                ladder.append(rung)

        self._mode = mode
        self._ladder: list[_Rung] = ladder
        self._all = frozenset(d.id for d in self.instrument.science_detectors)
        self._n_dispatched = 0
        self._rung_index = 0  # automatic: current rung; starts at the manual pattern
        self._streak = 0  # automatic: consecutive decisions on which the rung above fitted with headroom
        return mode

    def select(self, obsid: str | None = None) -> Selection:
        """Decide the detectors of one dispatched visit (and count it as dispatched).

        Parameters
        ----------
        obsid : `str`, optional
            The visit's obsid, checked against the guaranteed list.

        Returns
        -------
        selection : `Selection`
        """
        visit = self._n_dispatched
        self._n_dispatched += 1
        mode = self._mode
        phase = _phase_of_visit(mode.variation, visit)
        if obsid is not None and obsid in mode.guaranteed:
            return Selection(
                self._all, "all", phase, f"guaranteed: {obsid} is processed on every imaging detector", "guaranteed"
            )
        manual = self._ladder[0]
        if not mode.automatic:
            return Selection(manual.at(phase), manual.pattern, phase, self._describe(manual, phase, "manual"), "manual")
        model = self.throughput
        if not model.ready:
            reason = f"{self._describe(manual, phase, 'manual')}; automatic waiting for {model.missing()}"
            return Selection(manual.at(phase), manual.pattern, phase, reason, "manual")
        return self._automatic(phase)

    def workers_for_manual_pattern(self) -> int | None:
        """Workers that would afford the manual pattern every visit, when automatic mode is measuring.

        The inverse of `ThroughputModel.affordable_detectors` for the manual pattern's count: the
        demand a CSC reports to an autoscaling cluster while down-selection leaves detectors out
        for want of workers. None when automatic mode is off or the model is not ready (the
        measured cost and cadence are what say how many workers would do).
        """
        model = self.throughput
        if not self._mode.automatic or not model.ready:
            return None
        cost, cadence = model.cost_per_detector, model.cadence
        assert cost is not None and cadence is not None  # model.ready guarantees both
        count = self._ladder[0].count
        per_worker = cadence * model.margin / cost  # detectors one worker finishes per cadence
        if per_worker <= 0:
            return count  # no cadence: every detector at once
        workers = math.ceil(count / per_worker - 1e-9)
        while workers > 0 and model.affordable_detectors(workers - 1, cadence) >= count:
            workers -= 1  # the epsilon of affordable_detectors may afford it with one fewer
        return workers

    def preview(self) -> frozenset[int]:
        """The detectors the manual pattern selects for the next visit (nothing is counted)."""
        return self._ladder[0].at(_phase_of_visit(self._mode.variation, self._n_dispatched))

    # Internals

    def _describe(self, rung: _Rung, phase: int, who: str) -> str:
        text = f"{who}: {rung.pattern} ({_n_detectors(len(rung.at(phase)))}"
        if rung.pattern in _PHASED and len(self._all) > 1:
            text += f", phase {phase}"
            if self._mode.variation != FocalPlaneVariation.FIXED:
                text += f", {self._mode.variation.name.lower()}"
        return text + ")"

    def _automatic(self, phase: int) -> Selection:
        model = self.throughput
        cost = model.cost_per_detector
        cadence = model.cadence
        assert cost is not None and cadence is not None  # model.ready guarantees both
        affordable = model.affordable_detectors(self._n_workers, cadence)
        ladder = self._ladder
        before = self._rung_index
        current = ladder[before]
        if current.count > affordable:
            # Step down at once, to the largest rung that fits (or the smallest rung).
            fits = [i for i in range(before, len(ladder)) if ladder[i].count <= affordable]
            self._rung_index = fits[0] if fits else len(ladder) - 1
            self._streak = 0
        elif before > 0 and ladder[before - 1].count <= self.step_up_headroom * affordable:
            self._streak += 1
            if self._streak >= self.step_up_visits:
                self._rung_index = before - 1
                self._streak = 0
        else:
            self._streak = 0
        chosen = ladder[self._rung_index]

        basis = (
            f"{self._n_workers} workers x {cadence:.1f} s cadence x {model.margin:g} / {cost:.3g} s per detector"
            f" = {affordable} affordable"
        )
        if self._rung_index > before:
            change = f"stepped down from {current.pattern} ({current.count})"
        elif self._rung_index < before:
            change = f"stepped up from {current.pattern} ({current.count}) after {self.step_up_visits} visits"
        elif chosen.count > affordable:
            change = "already the smallest pattern"
        elif self._streak:
            above = ladder[self._rung_index - 1]
            change = f"{above.pattern} ({above.count}) fits with headroom, {self._streak}/{self.step_up_visits}"
        elif self._rung_index > 0:
            above = ladder[self._rung_index - 1]
            need = math.ceil(above.count / self.step_up_headroom - 1e-9)  # 189 / 0.9 must be 210, not 211
            change = f"{above.pattern} ({above.count}) needs {need} affordable to step up"
        else:
            change = "the manual pattern fits"
        reason = f"automatic: {basis}; using {chosen.pattern} ({_n_detectors(len(chosen.at(phase)))}"
        if chosen.pattern in _PHASED and len(self._all) > 1:
            reason += f" at phase {phase}"
        reason += f"); {change}"
        if chosen.count > affordable:
            reason += "; even the smallest pattern does not fit, so RA will fall behind"
        return Selection(chosen.at(phase), chosen.pattern, phase, reason, "automatic")


@dataclasses.dataclass(frozen=True)
class _Rung:
    """A pattern resolved on one instrument for the phases a variation visits."""

    pattern: str
    by_phase: tuple[frozenset[int], frozenset[int]]
    count: int  # the largest selection over the phases the variation visits (what must fit per visit)

    @classmethod
    def build(cls, instrument: Instrument, pattern: str, custom: frozenset[int], variation: int) -> _Rung:
        phases: Sequence[int] = (0,) if variation == FocalPlaneVariation.FIXED else (0, 1)
        sets = {p: pattern_detectors(instrument, pattern, p, custom) for p in phases}
        by_phase = (sets[0], sets.get(1, sets[0]))
        return cls(pattern, by_phase, max(len(s) for s in sets.values()))

    def at(self, phase: int) -> frozenset[int]:
        return self.by_phase[phase % 2]
