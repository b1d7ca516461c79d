"""Mount telemetry simulators: the AuxTel ATMCS and the Simonyi MTMount + MTRotator, on DDS.

Each simulator owns write-only `Controller` s of the real components (they publish
``summaryState`` ENABLED and a heartbeat, then telemetry only) and one task that publishes
telemetry on a fixed grid of simulated times for as long as it runs:

* `AuxTelMountSimulator` — ATMCS ``mount_AzEl_Encoders``, ``mount_Nasmyth_Encoders`` and
  ``measuredTorque``: 100 samples at 100 Hz packed into one message per second, with
  ``cRIO_timestamp`` = time of the first sample (TAI unix seconds), published when the second
  is complete (``ra-algorithms.md`` §4). ``nasmyth1CalculatedAngle`` is NaN (LATISS is on
  Nasmyth 2).
* `SimonyiMountSimulator` — MTMount ``azimuth`` and ``elevation`` (one sample per message, each
  position with its timestamp) and MTRotator ``rotation`` and ``motors``, all at 20 Hz by
  default (the interface files give no rate; 20 Hz is what the TMA and rotator publish their
  axis telemetry at in practice, and what the brief asked for; both rates are arguments).

The pointing model. While *tracking*, the demand follows a **sidereal track** of a fixed RA/Dec
at the Rubin site, computed in closed form (hour angle from the ERFA Greenwich mean sidereal time
at the tracking start plus the sidereal rate; az/el and parallactic angle by ERFA ``hd2ae`` /
``hd2pa``). There is no refraction, precession, nutation or aberration: the analysis only needs a
smooth, realistic track, and the closed form is exact, cheap at 100 Hz and independent of IERS
tables (astropy ``AltAz`` would need them for UT1 and costs milliseconds per call). Azimuth is
kept continuous (no wrap at 0/360) within a track. The rotator demand is the parallactic angle
change since the start (Simonyi camera rotator keeping the sky fixed) or parallactic angle minus
elevation (AuxTel Nasmyth 2), offset to start at 0.

The jitter. ``actual = demand + jitter`` per axis, where the jitter is a sum of a few sinusoids
(random frequencies in ``freq_range``, default 1–8 Hz, random phases) plus white noise, with
amplitudes set so that the *expected* RMS equals the requested arcsec RMS (a fraction
``sine_fraction`` of the variance in the sinusoids). The exact injected series is recorded in
`MountTruth` (also for samples dropped by a gap), so a test can compare what an analysis
recovers with both the requested and the realised RMS. When not tracking, the mount holds its
last demand position with no jitter. Torques are illustrative only: friction against the
direction of motion, gravity for elevation, and a term proportional to the jitter's
acceleration, plus noise.

Gaps: `add_gap` drops every message with a sample in a time window (AuxTel: whole 1 s rows,
which is what a "Mount timebase error" looks like), so "gaps are reported" can be tested.

Time: the simulators run on a `SimClock` (see ``camera_sim``): ``time_scale`` is wall seconds per
simulated second and every timestamp is simulated TAI; share the camera simulator's clock to keep
exposure windows and telemetry on the same time line.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import erfa
import numpy as np

from ..sal.controller import Controller
from ..sal.enums import State
from ..sal.tai import utc_from_tai
from .camera_sim import SimClock

__all__ = [
    "AXES",
    "Site",
    "SIMONYI_SITE",
    "AUXTEL_SITE",
    "AxisJitter",
    "SiderealTrack",
    "TrackTruth",
    "MountTruth",
    "TelemetryRecorder",
    "BaseMountSimulator",
    "AuxTelMountSimulator",
    "SimonyiMountSimulator",
    "make_mount_simulator",
    "SIDEREAL_RATE",
]

#: The axes, by their generic names (the AuxTel "rotator" is Nasmyth 2).
AXES: tuple[str, ...] = ("azimuth", "elevation", "rotator")
#: Earth rotation relative to the stars, rad per SI second.
SIDEREAL_RATE = 2 * math.pi * 1.00273781191135448 / 86400.0
_TT_MINUS_TAI = 32.184
_MJD_UNIX_EPOCH = 40587.0
#: Most messages published per stream before yielding to the event loop (readers keep 100).
_MAX_BATCH = 25


@dataclasses.dataclass(frozen=True)
class Site:
    """An observatory site: longitude and latitude in degrees (east, north), height in m."""

    name: str
    longitude: float
    latitude: float
    height: float


#: Rubin:Simonyi (obs_lsst raw headers OBS-LONG/OBS-LAT/OBS-ELEV).
SIMONYI_SITE = Site("Rubin:Simonyi", -70.749417, -30.244639, 2663.0)
#: Rubin:AuxTel (``ra-algorithms.md`` §6).
AUXTEL_SITE = Site("Rubin:AuxTel", -70.747698, -30.244728, 2663.0)


@dataclasses.dataclass(frozen=True)
class AxisJitter:
    """The jitter injected on one axis: sinusoids plus white noise, all in arcsec.

    Attributes
    ----------
    rms_arcsec : `float`
        Requested RMS (the expected RMS of the series).
    frequencies : `tuple` [`float`]
        Sinusoid frequencies, Hz.
    amplitudes : `tuple` [`float`]
        Sinusoid amplitudes (peak), arcsec.
    phases : `tuple` [`float`]
        Sinusoid phases at the tracking start, rad.
    noise_arcsec : `float`
        Standard deviation of the white noise, arcsec.
    """

    rms_arcsec: float
    frequencies: tuple[float, ...] = ()
    amplitudes: tuple[float, ...] = ()
    phases: tuple[float, ...] = ()
    noise_arcsec: float = 0.0

    @classmethod
    def make(
        cls,
        rms_arcsec: float,
        rng: np.random.Generator,
        *,
        n_sines: int = 3,
        freq_range: tuple[float, float] = (1.0, 8.0),
        sine_fraction: float = 0.7,
    ) -> AxisJitter:
        """Random jitter whose expected RMS is ``rms_arcsec``.

        A fraction ``sine_fraction`` of the variance goes to ``n_sines`` sinusoids (split at
        random; one frequency drawn in the middle half of each of ``n_sines`` log-spaced bands
        of ``freq_range``), the rest to white noise.
        """
        if not (math.isfinite(rms_arcsec) and rms_arcsec >= 0):
            raise ValueError(f"jitter RMS {rms_arcsec!r} must be a finite number >= 0 (arcsec)")
        if not 0 <= sine_fraction <= 1:
            raise ValueError(f"sine_fraction={sine_fraction} must be in [0, 1]")
        if n_sines < 0 or (n_sines == 0 and sine_fraction > 0):
            raise ValueError(f"n_sines={n_sines} must be > 0 when sine_fraction > 0")
        low, high = freq_range
        if not 0 < low <= high:
            raise ValueError(f"freq_range={freq_range} must be 0 < low <= high (Hz)")
        weights = rng.dirichlet(np.ones(n_sines)) if n_sines else np.zeros(0)
        # One frequency in the middle half of each of n_sines log-spaced bands: well separated, so
        # that the realised RMS over a few seconds is close to the expected one (no slow beats).
        edges = np.geomspace(low, high, n_sines + 1) if high > low else np.full(n_sines + 1, low)
        frequencies = rng.uniform(0.75 * edges[:-1] + 0.25 * edges[1:], 0.25 * edges[:-1] + 0.75 * edges[1:])
        phases = rng.uniform(0, 2 * np.pi, n_sines)
        # RMS of A sin(.) is A / sqrt(2): A_k = sqrt(2 w_k f) rms.
        amplitudes = np.sqrt(2 * weights * sine_fraction) * rms_arcsec
        return cls(
            rms_arcsec=float(rms_arcsec),
            frequencies=tuple(float(f) for f in frequencies),
            amplitudes=tuple(float(a) for a in amplitudes),
            phases=tuple(float(p) for p in phases),
            noise_arcsec=float(math.sqrt(1 - sine_fraction) * rms_arcsec),
        )

    def sines(self, t_rel: np.ndarray, derivative: int = 0) -> np.ndarray:
        """The sinusoidal part (or its ``derivative``-th time derivative), arcsec (per s^n)."""
        total = np.zeros_like(t_rel, dtype=float)
        for f, a, p in zip(self.frequencies, self.amplitudes, self.phases, strict=True):
            omega = 2 * np.pi * f
            # d^n/dt^n sin(x) = sin(x + n pi/2)
            total += a * omega**derivative * np.sin(omega * t_rel + p + derivative * np.pi / 2)
        return total


class SiderealTrack:
    """The az/el/parallactic angle of a fixed RA/Dec, seen from a site (closed form, see the module notes).

    Parameters
    ----------
    ra, dec : `float`
        Apparent right ascension and declination, deg.
    site : `Site`
        Where from.
    t_ref : `float`
        Reference TAI (unix s): the local sidereal time is computed there and propagated at
        the sidereal rate.
    """

    def __init__(self, ra: float, dec: float, site: Site, t_ref: float) -> None:
        self.ra = float(ra) % 360.0
        self.dec = float(dec)
        if not -90 <= self.dec <= 90:
            raise ValueError(f"dec={dec} must be in [-90, 90] deg")
        self.site = site
        self.t_ref = float(t_ref)
        self.lst_ref = local_sidereal_time(self.t_ref, site)
        self._az_ref: float | None = None
        self._az_ref = float(self.azel(np.array([self.t_ref]))[0][0])

    @classmethod
    def from_azel(cls, az: float, el: float, site: Site, t_ref: float) -> SiderealTrack:
        """The track of the star that is at (az, el) at ``t_ref``."""
        if not 0 < el < 90:
            raise ValueError(f"el={el} must be in (0, 90) deg to track")
        ha, dec = erfa.ae2hd(math.radians(az), math.radians(el), math.radians(site.latitude))
        lst = local_sidereal_time(t_ref, site)
        ra = math.degrees(lst - float(ha)) % 360.0
        track = cls(ra, math.degrees(float(dec)), site, t_ref)
        # keep the azimuth the caller used (e.g. 360 rather than 0)
        track._az_ref = float(az)
        return track

    def hour_angle(self, t: np.ndarray) -> np.ndarray:
        """Hour angle, rad."""
        return self.lst_ref + SIDEREAL_RATE * (np.asarray(t, dtype=float) - self.t_ref) - math.radians(self.ra)

    def azel(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(az, el, parallactic angle) in deg at TAI times ``t``; az continuous near the reference."""
        ha = self.hour_angle(t)
        dec = math.radians(self.dec)
        phi = math.radians(self.site.latitude)
        az, el = erfa.hd2ae(ha, dec, phi)
        pa = erfa.hd2pa(ha, dec, phi)
        az = np.degrees(az)
        if self._az_ref is not None:
            az = self._az_ref + (az - self._az_ref + 180.0) % 360.0 - 180.0
        return az, np.degrees(el), np.degrees(pa)


def local_sidereal_time(tai: float, site: Site) -> float:
    """Local mean sidereal time (rad) at a TAI unix time (UT1 taken as UTC)."""
    mjd_utc = utc_from_tai(tai) / 86400.0 + _MJD_UNIX_EPOCH
    mjd_tt = (tai + _TT_MINUS_TAI) / 86400.0 + _MJD_UNIX_EPOCH
    return float(erfa.gmst06(2400000.5, mjd_utc, 2400000.5, mjd_tt)) + math.radians(site.longitude)


@dataclasses.dataclass
class TrackTruth:
    """What one tracking interval injected.

    Attributes
    ----------
    start_tai, end_tai : `float`
        Tracking interval (``end_tai`` is inf while tracking).
    ra, dec : `float`
        Target, deg.
    az, el : `float`
        Demand at the start, deg.
    jitter : `dict` [`str`, `AxisJitter`]
        Per axis.
    """

    start_tai: float
    end_tai: float
    ra: float
    dec: float
    az: float
    el: float
    jitter: dict[str, AxisJitter]

    @property
    def rms_arcsec(self) -> dict[str, float]:
        """Requested jitter RMS per axis, arcsec."""
        return {axis: j.rms_arcsec for axis, j in self.jitter.items()}


class _ChunkedSeries:
    """Append-only columns in chunks, trimmed by time."""

    def __init__(self, history_seconds: float) -> None:
        self.history_seconds = history_seconds
        self._chunks: collections.deque[tuple[float, dict[str, np.ndarray]]] = collections.deque()

    def add(self, columns: dict[str, np.ndarray], time_key: str = "time") -> None:
        times = columns[time_key]
        if len(times) == 0:
            return
        self._chunks.append((float(np.max(times)), columns))
        newest = self._chunks[-1][0]
        while self._chunks and self._chunks[0][0] < newest - self.history_seconds:
            self._chunks.popleft()

    def get(self, start: float | None, end: float | None, time_key: str = "time") -> dict[str, np.ndarray]:
        chunks = [c for t_max, c in self._chunks if start is None or t_max >= start]
        if not chunks:
            return {}
        out = {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
        times = out[time_key]
        keep = np.ones(len(times), dtype=bool)
        if start is not None:
            keep &= times >= start
        if end is not None:
            keep &= times < end
        return {name: values[keep] for name, values in out.items()}


class MountTruth:
    """The exact injected series per axis (every sample produced, published or dropped), and the tracks.

    Attributes
    ----------
    tracks : `list` [`TrackTruth`]
        Tracking intervals, oldest first.
    gaps : `list` [(`float`, `float`)]
        Windows (TAI) in which messages are dropped.
    """

    def __init__(self, history_seconds: float) -> None:
        self.tracks: list[TrackTruth] = []
        self.gaps: list[tuple[float, float]] = []
        self._series = {axis: _ChunkedSeries(history_seconds) for axis in AXES}

    def _add(self, axis: str, **columns: np.ndarray) -> None:
        self._series[axis].add(columns)

    def series(
        self, axis: str, start: float | None = None, end: float | None = None, published_only: bool = False
    ) -> dict[str, np.ndarray]:
        """Samples of one axis in [start, end): ``time`` (TAI), ``demand``, ``jitter``, ``actual``
        (deg) and ``published`` (False for samples dropped by a gap)."""
        if axis not in self._series:
            raise ValueError(f"axis {axis!r} is not one of {AXES}")
        columns = self._series[axis].get(start, end)
        if not columns:
            empty = np.zeros(0)
            return {"time": empty, "demand": empty, "jitter": empty, "actual": empty, "published": empty.astype(bool)}
        if published_only:
            keep = columns["published"]
            columns = {k: v[keep] for k, v in columns.items()}
        columns["actual"] = columns["demand"] + columns["jitter"]
        return columns

    def jitter_rms_arcsec(self, axis: str, start: float | None = None, end: float | None = None) -> float:
        """The realised RMS of the injected jitter of ``axis`` in [start, end), arcsec."""
        jitter = self.series(axis, start, end)["jitter"]
        return float(np.sqrt(np.mean(jitter**2)) * 3600.0) if len(jitter) else math.nan

    def track_at(self, tai: float) -> TrackTruth | None:
        """The tracking interval containing ``tai``, if any."""
        for track in reversed(self.tracks):
            if track.start_tai <= tai < track.end_tai:
                return track
        return None


class TelemetryRecorder:
    """What a simulator published, per EFD topic (``lsst.sal.<Component>.<topic>``), in columns.

    Each topic's columns hold one row per message: scalars as 1-d arrays, array fields as 2-d
    arrays (messages × elements). ``telemetry_file`` turns them into tables.
    """

    def __init__(self, history_seconds: float) -> None:
        self.history_seconds = history_seconds
        self._topics: dict[str, _ChunkedSeries] = {}
        self._time_keys: dict[str, str] = {}

    @property
    def topics(self) -> list[str]:
        """Topics recorded so far."""
        return list(self._topics)

    def add(self, topic: str, time_key: str, columns: dict[str, np.ndarray]) -> None:
        """Record messages; ``time_key`` names the column that holds each message's time."""
        if topic not in self._topics:
            self._topics[topic] = _ChunkedSeries(self.history_seconds)
            self._time_keys[topic] = time_key
        self._topics[topic].add(columns, time_key)

    def time_key(self, topic: str) -> str:
        """The column holding the message time of ``topic``."""
        return self._time_keys[topic]

    def columns(self, topic: str, start: float | None = None, end: float | None = None) -> dict[str, np.ndarray]:
        """Messages of ``topic`` whose time is in [start, end)."""
        if topic not in self._topics:
            raise KeyError(f"no telemetry recorded for {topic!r}; recorded: {', '.join(self._topics) or 'none'}")
        return self._topics[topic].get(start, end, self._time_keys[topic])


class _Segment:
    """How the demand behaves from ``start`` on: held still, or tracking."""

    def __init__(self, start: float) -> None:
        self.start = start

    def demand(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Demand position of every axis, deg (no jitter; draws no noise)."""
        raise NotImplementedError()

    def evaluate(self, t: np.ndarray, axes: tuple[str, ...], stream: str) -> dict[str, dict[str, np.ndarray]]:
        """Demand and jitter (with derivatives) of ``axes``; ``stream`` selects the noise generators,
        so that each stream's white noise is a reproducible sequence of its own."""
        raise NotImplementedError()


class _Hold(_Segment):
    def __init__(self, start: float, position: Mapping[str, float]) -> None:
        super().__init__(start)
        self.position = dict(position)

    def demand(self, t: np.ndarray) -> dict[str, np.ndarray]:
        return {axis: np.full(len(t), self.position[axis]) for axis in AXES}

    def evaluate(self, t: np.ndarray, axes: tuple[str, ...], stream: str) -> dict[str, dict[str, np.ndarray]]:
        zeros = np.zeros(len(t))
        return {
            axis: {
                "demand": np.full(len(t), self.position[axis]),
                "demand_velocity": zeros,
                "demand_acceleration": zeros,
                "jitter": zeros,
                "jitter_velocity": zeros,
                "jitter_acceleration": zeros,
                "jitter_jerk": zeros,
            }
            for axis in axes
        }


class _Track(_Segment):
    _H = 0.05  # s, step of the numerical track derivatives

    def __init__(
        self,
        start: float,
        track: SiderealTrack,
        jitter: dict[str, AxisJitter],
        seed: int,
        rotator: Callable[[np.ndarray, np.ndarray], np.ndarray],
    ) -> None:
        super().__init__(start)
        self.track = track
        self.jitter = jitter
        self.rotator = rotator
        self.seed = seed
        self._rngs: dict[tuple[str, str], np.random.Generator] = {}
        _, el0, pa0 = track.azel(np.array([start]))
        self._rot0 = float(rotator(pa0, el0)[0])

    def demand(self, t: np.ndarray) -> dict[str, np.ndarray]:
        az, el, pa = self.track.azel(t)
        # relative to the start, kept continuous (parallactic angles wrap at +-180)
        rot = (self.rotator(pa, el) - self._rot0 + 180.0) % 360.0 - 180.0
        return {"azimuth": az, "elevation": el, "rotator": rot}

    def _rng(self, stream: str, axis: str) -> np.random.Generator:
        key = (stream, axis)
        if key not in self._rngs:
            self._rngs[key] = np.random.default_rng([self.seed, AXES.index(axis), sum(map(ord, stream))])
        return self._rngs[key]

    def evaluate(self, t: np.ndarray, axes: tuple[str, ...], stream: str) -> dict[str, dict[str, np.ndarray]]:
        h = self._H
        now, before, after = self.demand(t), self.demand(t - h), self.demand(t + h)
        t_rel = t - self.start
        out = {}
        for axis in axes:
            spec = self.jitter[axis]
            noise = self._rng(stream, axis).normal(0.0, spec.noise_arcsec, len(t)) if spec.noise_arcsec > 0 else 0.0
            out[axis] = {
                "demand": now[axis],
                "demand_velocity": (after[axis] - before[axis]) / (2 * h),
                "demand_acceleration": (after[axis] - 2 * now[axis] + before[axis]) / h**2,
                "jitter": (spec.sines(t_rel) + noise) / 3600.0,
                "jitter_velocity": spec.sines(t_rel, 1) / 3600.0,
                "jitter_acceleration": spec.sines(t_rel, 2) / 3600.0,
                "jitter_jerk": spec.sines(t_rel, 3) / 3600.0,
            }
        return out


@dataclasses.dataclass
class _Stream:
    """Messages on a fixed grid: message j holds samples t0 + (j * per_message + i) / rate."""

    name: str
    rate: float
    per_message: int
    axes: tuple[str, ...]
    publish: Callable[[np.ndarray, dict[str, dict[str, np.ndarray]], np.ndarray], None]
    t0: float = math.nan
    next_message: int = 0

    def message_start(self, j: int) -> float:
        return self.t0 + j * self.per_message / self.rate

    def due_time(self, j: int) -> float:
        """When message j is complete and is published: after its last sample (packed) or at its sample."""
        if self.per_message == 1:
            return self.message_start(j)
        return self.message_start(j + 1)


class BaseMountSimulator:
    """Common machinery of the mount simulators (see the module notes).

    Parameters
    ----------
    time_scale : `float`
        Wall seconds per simulated second; ignored if ``clock`` is given.
    clock : `SimClock`, optional
        Shared simulated clock.
    seed : `int`
        Seed of the jitter (each track uses ``seed`` plus the track's number).
    jitter_arcsec : `float` or mapping
        Default jitter RMS for `start_tracking`: one value for every axis, or per axis
        (``azimuth``, ``elevation``, ``rotator``).
    park : mapping
        Position held before the first track: ``azimuth``, ``elevation``, ``rotator`` (deg).
    history_seconds : `float`
        How much simulated time of truth and published telemetry to keep.
    n_sines, freq_range, sine_fraction
        Default jitter shape (see `AxisJitter.make`).
    track_on_start : mapping, optional
        Arguments of `start_tracking` to call once started (e.g. ``{"az": 180, "el": 60}``).
    """

    site: Site = SIMONYI_SITE
    default_jitter_arcsec: dict[str, float] = {"azimuth": 0.1, "elevation": 0.1, "rotator": 0.3}

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        clock: SimClock | None = None,
        seed: int = 0,
        jitter_arcsec: float | Mapping[str, float] | None = None,
        park: Mapping[str, float] | None = None,
        history_seconds: float = 900.0,
        n_sines: int = 3,
        freq_range: tuple[float, float] = (1.0, 8.0),
        sine_fraction: float = 0.7,
        track_on_start: Mapping[str, Any] | None = None,
    ) -> None:
        self.track_on_start = dict(track_on_start) if track_on_start is not None else None
        self.clock = clock if clock is not None else SimClock(time_scale)
        self.seed = int(seed)
        self.jitter_arcsec = self._jitter_dict(jitter_arcsec, dict(self.default_jitter_arcsec))
        self.n_sines, self.freq_range, self.sine_fraction = n_sines, freq_range, sine_fraction
        self.truth = MountTruth(history_seconds)
        self.recorder = TelemetryRecorder(history_seconds)
        park_position = {"azimuth": 0.0, "elevation": 80.0, "rotator": 0.0, **(park or {})}
        self._segments: list[_Segment] = [_Hold(-math.inf, park_position)]
        self._streams: list[_Stream] = []
        self.controllers: list[Controller] = []
        self._telemetry_task: asyncio.Task | None = None
        self._heartbeat_task: asyncio.Task | None = None
        self.closing = False
        self._make_controllers()
        self.done_task: asyncio.Future = asyncio.get_running_loop().create_future()
        self.start_task = asyncio.create_task(self.start())

    # -- to be provided by subclasses --

    def _make_controllers(self) -> None:
        raise NotImplementedError()

    @staticmethod
    def _rotator_angle(pa: np.ndarray, el: np.ndarray) -> np.ndarray:
        """Rotator demand (before the start offset) from parallactic angle and elevation, deg."""
        return pa

    # -- life cycle --

    @property
    def time_scale(self) -> float:
        """Wall seconds per simulated second."""
        return self.clock.time_scale

    async def start(self) -> None:
        """Start the Controllers, report ENABLED, and start publishing telemetry."""
        await asyncio.gather(*(c.start_task for c in self.controllers))
        for controller in self.controllers:
            controller.evt_summaryState.set_write(summaryState=int(State.ENABLED))
        now = self.clock.now()
        for stream in self._streams:
            # start on a whole multiple of the message period, the next one to come
            period = stream.per_message / stream.rate
            stream.t0 = math.ceil(now / period) * period
        if self.track_on_start is not None:
            self.start_tracking(**self.track_on_start)
        self._telemetry_task = asyncio.create_task(self._telemetry_loop())
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop())

    async def close(self) -> None:
        """Stop publishing and close the Controllers."""
        if self.closing:
            await asyncio.shield(self.done_task)
            return
        self.closing = True
        try:
            if not self.start_task.done():
                self.start_task.cancel()
            for task in (self._telemetry_task, self._heartbeat_task):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(c.close() for c in self.controllers), return_exceptions=True)
        finally:
            if not self.done_task.done():
                self.done_task.set_result(None)

    async def __aenter__(self) -> BaseMountSimulator:
        await self.start_task
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.close()

    async def _heartbeat_loop(self) -> None:
        while True:
            for controller in self.controllers:
                controller.evt_heartbeat.write()
            await asyncio.sleep(1.0)

    # -- tracking --

    @staticmethod
    def _jitter_dict(value: float | Mapping[str, float] | None, default: dict[str, float]) -> dict[str, float]:
        if value is None:
            return default
        if isinstance(value, Mapping):
            unknown = set(value) - set(AXES)
            if unknown:
                raise ValueError(f"unknown axes {sorted(unknown)} in jitter; axes are {AXES}")
            return {**default, **{k: float(v) for k, v in value.items()}}
        return {axis: float(value) for axis in AXES}

    @property
    def tracking(self) -> bool:
        """Whether the mount is tracking now."""
        return isinstance(self._segments[-1], _Track)

    def start_tracking(
        self,
        *,
        az: float | None = None,
        el: float | None = None,
        ra: float | None = None,
        dec: float | None = None,
        jitter_arcsec: float | Mapping[str, float] | None = None,
        start_tai: float | None = None,
        gaps: Iterable[tuple[float, float]] = (),
    ) -> TrackTruth:
        """Start a sidereal track (replacing any current one).

        Give either ``az`` and ``el`` (the star that is there at the start) or ``ra`` and ``dec``.

        Parameters
        ----------
        az, el : `float`, optional
            Position at the start, deg.
        ra, dec : `float`, optional
            Target, deg.
        jitter_arcsec : `float` or mapping, optional
            Jitter RMS (arcsec) for every axis, or per axis; default the simulator's.
        start_tai : `float`, optional
            When to start (simulated TAI); default now. It must not be before the messages
            already published.
        gaps : iterable of (`float`, `float`)
            Gaps relative to the start (s): messages with samples in them are dropped.

        Returns
        -------
        truth : `TrackTruth`
            What is injected (also appended to ``truth.tracks``).
        """
        start = self.clock.now() if start_tai is None else float(start_tai)
        if start <= self._published_until():
            raise ValueError(f"start_tai={start} is before telemetry already published ({self._published_until()})")
        if (az is None) != (el is None) or (ra is None) != (dec is None) or (az is None) == (ra is None):
            raise ValueError("give either az and el, or ra and dec")
        if az is not None:
            track = SiderealTrack.from_azel(float(az), float(el), self.site, start)  # type: ignore[arg-type]
        else:
            track = SiderealTrack(float(ra), float(dec), self.site, start)  # type: ignore[arg-type]
        rms = self._jitter_dict(jitter_arcsec, dict(self.jitter_arcsec))
        rng = np.random.default_rng([self.seed, len(self.truth.tracks)])
        jitter = {
            axis: AxisJitter.make(
                rms[axis], rng, n_sines=self.n_sines, freq_range=self.freq_range, sine_fraction=self.sine_fraction
            )
            for axis in AXES
        }
        self._end_current(start)
        segment = _Track(
            start, track, jitter, seed=self.seed * 1000 + len(self.truth.tracks), rotator=self._rotator_angle
        )
        self._segments.append(segment)
        az0, el0, _ = track.azel(np.array([start]))
        truth = TrackTruth(start, math.inf, track.ra, track.dec, float(az0[0]), float(el0[0]), jitter)
        self.truth.tracks.append(truth)
        for gap_start, gap_end in gaps:
            self.add_gap(start + gap_start, start + gap_end)
        return truth

    def stop_tracking(self, stop_tai: float | None = None) -> None:
        """Stop tracking (at ``stop_tai``, default now) and hold the demand position of that moment."""
        if not self.tracking:
            return
        stop = self.clock.now() if stop_tai is None else float(stop_tai)
        stop = max(stop, self._published_until() + 1e-6, self._segments[-1].start)
        self._end_current(stop)
        position = {axis: float(v[0]) for axis, v in self._segments[-1].demand(np.array([stop])).items()}
        self._segments.append(_Hold(stop, position))

    def _end_current(self, when: float) -> None:
        if self.truth.tracks and self.truth.tracks[-1].end_tai == math.inf and self.tracking:
            self.truth.tracks[-1].end_tai = when
        # Drop segments that would never apply (started at or after ``when``).
        while len(self._segments) > 1 and self._segments[-1].start >= when:
            self._segments.pop()

    def add_gap(self, start_tai: float, end_tai: float) -> None:
        """Drop the messages with a sample in [start_tai, end_tai) (simulated TAI)."""
        if not end_tai > start_tai:
            raise ValueError(f"gap end {end_tai} must be after its start {start_tai}")
        self.truth.gaps.append((float(start_tai), float(end_tai)))

    def pointing_at(self, tai: float) -> dict[str, Any]:
        """Where the mount points at ``tai`` (the demand): ``az``, ``el``, ``rot`` (rotator, deg),
        ``ra``/``dec`` (deg, of the tracked target, or of the sky at (az, el) when not tracking),
        ``rot_pa`` (0: the sky position angle is not modelled) and ``tracking``.

        The dict is what ``StreamWriter.write_exposure(pointing=...)`` takes, so a mount
        simulator's ``pointing_at`` can be a camera simulator's ``pointing``.
        """
        t = float(tai)
        segment = self._segments[int(np.searchsorted([s.start for s in self._segments], t, side="right")) - 1]
        values = segment.demand(np.array([t]))
        az, el = float(values["azimuth"][0]), float(values["elevation"][0])
        track = self.truth.track_at(t)
        if track is not None:
            ra, dec = track.ra, track.dec
        else:
            ha, dec_rad = erfa.ae2hd(math.radians(az), math.radians(el), math.radians(self.site.latitude))
            ra = math.degrees(local_sidereal_time(t, self.site) - float(ha)) % 360.0
            dec = math.degrees(float(dec_rad))
        return {
            "az": az,
            "el": el,
            "rot": float(values["rotator"][0]),
            "ra": ra,
            "dec": dec,
            "rot_pa": 0.0,
            "tracking": track is not None,
        }

    # -- sample production --

    def _published_until(self) -> float:
        """The time of the last sample already produced (simulated TAI; -inf if none)."""
        ends = [
            s.message_start(s.next_message) - 1 / s.rate
            for s in self._streams
            if not math.isnan(s.t0) and s.next_message > 0
        ]
        return max(ends, default=-math.inf)

    def _evaluate(self, t: np.ndarray, axes: tuple[str, ...], stream: str) -> dict[str, dict[str, np.ndarray]]:
        """Demand and jitter of ``axes`` at times ``t`` (sorted), as one stream sees them."""
        starts = np.array([s.start for s in self._segments])
        which = np.searchsorted(starts, t, side="right") - 1
        out: dict[str, dict[str, np.ndarray]] = {
            axis: collections.defaultdict(lambda: np.zeros(len(t))) for axis in axes
        }
        for k in np.unique(which):
            mask = which == k
            values = self._segments[int(k)].evaluate(t[mask], axes, stream)
            for axis in axes:
                for name, array in values[axis].items():
                    column = out[axis][name]
                    column[mask] = array
        return {axis: dict(columns) for axis, columns in out.items()}

    def _in_gap(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Whether each [start, end] interval touches a gap."""
        dropped = np.zeros(len(start), dtype=bool)
        for g0, g1 in self.truth.gaps:
            dropped |= (end >= g0) & (start < g1)
        return dropped

    def _produce(self, stream: _Stream, first: int, count: int) -> None:
        per = stream.per_message
        index = np.arange(first * per, (first + count) * per)
        t = stream.t0 + index / stream.rate
        values = self._evaluate(t, stream.axes, stream.name)
        starts, ends = t[::per], t[per - 1 :: per]
        published = ~self._in_gap(starts, ends)
        sample_published = np.repeat(published, per)
        for axis in stream.axes:  # each axis is published by exactly one stream
            self.truth._add(
                axis,
                time=t,
                demand=values[axis]["demand"],
                jitter=values[axis]["jitter"],
                published=sample_published,
            )
        stream.publish(t, values, published)

    async def _telemetry_loop(self) -> None:
        while True:
            now = self.clock.now()
            for stream in self._streams:
                due = 0
                while due < _MAX_BATCH and stream.due_time(stream.next_message + due) <= now:
                    due += 1
                if due:
                    try:
                        self._produce(stream, stream.next_message, due)
                    except Exception:
                        self.controllers[0].log.exception("Could not publish %s telemetry", stream.name)
                    stream.next_message += due
            next_due = min(s.due_time(s.next_message) for s in self._streams)
            if next_due <= self.clock.now():
                await asyncio.sleep(0)  # behind: catch up, but let readers run
            else:
                await self.clock.sleep_until(next_due)


def _torque(
    velocity: np.ndarray, acceleration_arcsec: np.ndarray, friction: float, inertia: float, noise: float, rng: Any
) -> np.ndarray:
    """Illustrative drive torque/current: friction opposing motion, inertia times jitter acceleration, noise."""
    return friction * np.sign(velocity) + inertia * acceleration_arcsec + rng.normal(0.0, noise, len(velocity))


class AuxTelMountSimulator(BaseMountSimulator):
    """ATMCS telemetry: ``mount_AzEl_Encoders``, ``mount_Nasmyth_Encoders``, ``measuredTorque``.

    100 samples at 100 Hz per message, one message per topic per simulated second, with
    ``cRIO_timestamp`` the TAI of the first sample. See `BaseMountSimulator` for the parameters.
    """

    site = AUXTEL_SITE
    default_jitter_arcsec = {"azimuth": 0.2, "elevation": 0.2, "rotator": 0.5}
    #: Samples per second and per message.
    sample_rate = 100.0
    samples_per_message = 100

    def _make_controllers(self) -> None:
        self.atmcs = Controller("ATMCS", write_only=True)
        self.controllers = [self.atmcs]
        self._torque_rng = np.random.default_rng([self.seed, 99])
        self._streams = [_Stream("ATMCS", self.sample_rate, self.samples_per_message, AXES, self._publish)]

    @staticmethod
    def _rotator_angle(pa: np.ndarray, el: np.ndarray) -> np.ndarray:
        # A Nasmyth rotator compensates the parallactic angle and the elevation.
        return pa - el

    def _publish(self, t: np.ndarray, values: dict[str, dict[str, np.ndarray]], published: np.ndarray) -> None:
        per = self.samples_per_message
        n = len(published)
        shaped = {axis: {k: v.reshape(n, per) for k, v in cols.items()} for axis, cols in values.items()}
        rows = t.reshape(n, per)
        az, el, rot = shaped["azimuth"], shaped["elevation"], shaped["rotator"]
        rng = self._torque_rng
        size = n * per

        def torque(axis: dict[str, np.ndarray], friction: float, extra: np.ndarray | float = 0.0) -> np.ndarray:
            velocity = (axis["demand_velocity"] + axis["jitter_velocity"]).ravel()
            accel = (axis["jitter_acceleration"] * 3600.0).ravel()
            return (_torque(velocity, accel, friction, 5e-4, 0.01, rng) + np.ravel(extra)).reshape(n, per)

        gravity = 1.5 * np.cos(np.radians(el["demand"] + el["jitter"]))
        encoders = {
            "cRIO_timestamp": rows[:, 0],
            "azimuthCalculatedAngle": az["demand"] + az["jitter"],
            "elevationCalculatedAngle": el["demand"] + el["jitter"],
        }
        nasmyth = {
            "cRIO_timestamp": rows[:, 0],
            "nasmyth1CalculatedAngle": np.full((n, per), np.nan),
            "nasmyth2CalculatedAngle": rot["demand"] + rot["jitter"],
        }
        azimuth_torque = torque(az, 0.6)
        torques = {
            "cRIO_timestamp": rows[:, 0],
            "elevationMotorTorque": torque(el, 0.2, gravity),
            "azimuthMotor1Torque": azimuth_torque,
            "azimuthMotor2Torque": azimuth_torque + rng.normal(0.0, 0.01, size).reshape(n, per),
            "nasmyth1MotorTorque": np.zeros((n, per)),
            "nasmyth2MotorTorque": torque(rot, 0.3),
            "m3Torque": np.zeros((n, per)),
        }
        for topic, columns in (
            ("mount_AzEl_Encoders", encoders),
            ("mount_Nasmyth_Encoders", nasmyth),
            ("measuredTorque", torques),
        ):
            keep = {name: column[published] for name, column in columns.items()}
            writer = getattr(self.atmcs, f"tel_{topic}")
            for j in range(int(published.sum())):
                writer.set_write(**{name: column[j] for name, column in keep.items()})
            self.recorder.add(f"lsst.sal.ATMCS.{topic}", "cRIO_timestamp", keep)


class SimonyiMountSimulator(BaseMountSimulator):
    """MTMount ``azimuth``/``elevation`` and MTRotator ``rotation``/``motors`` telemetry.

    Parameters
    ----------
    mount_rate : `float`
        MTMount azimuth and elevation messages per simulated second (default 20).
    rotator_rate : `float`
        MTRotator rotation and motors messages per simulated second (default 20).
    **kwargs
        As `BaseMountSimulator`.
    """

    site = SIMONYI_SITE
    default_jitter_arcsec = {"azimuth": 0.03, "elevation": 0.03, "rotator": 0.3}

    def __init__(self, *, mount_rate: float = 20.0, rotator_rate: float = 20.0, **kwargs: Any) -> None:
        for name, rate in (("mount_rate", mount_rate), ("rotator_rate", rotator_rate)):
            if not (math.isfinite(rate) and rate > 0):
                raise ValueError(f"{name}={rate!r} must be > 0 (Hz)")
        self.mount_rate = float(mount_rate)
        self.rotator_rate = float(rotator_rate)
        self._odometer = 0.0
        self._last_rotator: float | None = None
        super().__init__(**kwargs)

    def _make_controllers(self) -> None:
        self.mtmount = Controller("MTMount", write_only=True)
        self.mtrotator = Controller("MTRotator", write_only=True)
        self.controllers = [self.mtmount, self.mtrotator]
        self._torque_rng = np.random.default_rng([self.seed, 98])
        self._streams = [
            _Stream("MTMount", self.mount_rate, 1, ("azimuth", "elevation"), self._publish_mount),
            _Stream("MTRotator", self.rotator_rate, 1, ("rotator",), self._publish_rotator),
        ]

    def _publish_mount(self, t: np.ndarray, values: dict[str, dict[str, np.ndarray]], published: np.ndarray) -> None:
        rng = self._torque_rng
        for axis, friction, inertia in (("azimuth", 3.0e4, 60.0), ("elevation", 1.5e4, 40.0)):
            v = values[axis]
            actual = v["demand"] + v["jitter"]
            velocity = v["demand_velocity"] + v["jitter_velocity"]
            torque = _torque(velocity, v["jitter_acceleration"] * 3600.0, friction, inertia, 200.0, rng)
            if axis == "elevation":
                torque = torque + 2.0e4 * np.cos(np.radians(actual))
            columns = {
                "actualAcceleration": v["demand_acceleration"] + v["jitter_acceleration"],
                "actualJerk": v["jitter_jerk"],
                "actualPosition": actual,
                "actualTorque": torque,
                "actualVelocity": velocity,
                "demandPosition": v["demand"],
                "demandVelocity": v["demand_velocity"],
            }
            if axis == "elevation":
                columns["elevationInclinometer"] = actual + 0.002  # a small fixed inclinometer offset
            for name in list(columns):
                columns[f"{name}Timestamp"] = t
            columns["timestamp"] = t
            keep = {name: column[published] for name, column in columns.items()}
            writer = getattr(self.mtmount, f"tel_{axis}")
            for j in range(int(published.sum())):
                writer.set_write(**{name: float(column[j]) for name, column in keep.items()})
            self.recorder.add(f"lsst.sal.MTMount.{axis}", "timestamp", keep)

    def _publish_rotator(self, t: np.ndarray, values: dict[str, dict[str, np.ndarray]], published: np.ndarray) -> None:
        v = values["rotator"]
        actual = v["demand"] + v["jitter"]
        steps = np.abs(np.diff(actual, prepend=actual[0] if self._last_rotator is None else self._last_rotator))
        odometer = self._odometer + np.cumsum(steps)
        self._odometer, self._last_rotator = float(odometer[-1]), float(actual[-1])
        velocity = v["demand_velocity"] + v["jitter_velocity"]
        rng = self._torque_rng
        torque = _torque(velocity, v["jitter_acceleration"] * 3600.0, 20.0, 0.05, 0.5, rng)
        n = len(t)
        rotation = {
            "demandPosition": v["demand"],
            "demandVelocity": v["demand_velocity"],
            "demandAcceleration": v["demand_acceleration"],
            "actualPosition": actual,
            "actualVelocity": velocity,
            "debugActualVelocityA": velocity + rng.normal(0.0, 1e-5, n),
            "debugActualVelocityB": velocity + rng.normal(0.0, 1e-5, n),
            "odometer": odometer,
            "timestamp": t,
        }
        motors = {
            "raw": np.stack([actual * 1e4, actual * 1e4 + 3.0], axis=1),
            "torque": np.stack([torque / 2, torque / 2 + rng.normal(0.0, 0.2, n)], axis=1),
            "current": np.stack([torque / 4, torque / 4], axis=1),
            "busVoltage": np.full(n, 300.0),
            "timestamp": t,  # not a field of the topic: the recorder's time column
        }
        rotation = {name: column[published] for name, column in rotation.items()}
        motors = {name: column[published] for name, column in motors.items()}
        for j in range(int(published.sum())):
            self.mtrotator.tel_rotation.set_write(**{name: float(column[j]) for name, column in rotation.items()})
            self.mtrotator.tel_motors.set_write(
                **{name: column[j] for name, column in motors.items() if name != "timestamp"}
            )
        self.recorder.add("lsst.sal.MTRotator.rotation", "timestamp", rotation)
        self.recorder.add("lsst.sal.MTRotator.motors", "timestamp", motors)


def make_mount_simulator(
    instrument: str,
    *,
    track: bool = True,
    az: float = 180.0,
    el: float = 60.0,
    **kwargs: Any,
) -> BaseMountSimulator:
    """The mount simulator of an instrument's telescope (LATISS → AuxTel, otherwise Simonyi).

    Parameters
    ----------
    instrument : `str`
        ``LATISS``, ``LSSTComCam`` or ``LSSTCam``.
    track : `bool`
        Start tracking (the star at ``az``, ``el``) as soon as the simulator has started.
    az, el : `float`
        Where the track starts, deg.
    **kwargs
        Constructor arguments of the simulator (``clock``, ``time_scale``, ``jitter_arcsec``, ...).
    """
    cls = AuxTelMountSimulator if instrument == "LATISS" else SimonyiMountSimulator
    if track:
        kwargs.setdefault("track_on_start", {"az": az, "el": el})
    return cls(**kwargs)
