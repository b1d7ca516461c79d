"""``mount_torque``: mount tracking errors during an exposure and their impact on the image.

Inputs: a raw FITS file of the exposure (any detector; only its primary header is read) and a
telemetry file (``lsst.ts.rapidanalysis.data.mount_telemetry``: ECSV, or Parquet with pyarrow,
EFD topic and column names, ``time`` in TAI unix seconds) covering the exposure. The CSC writes
that file from its telemetry buffer; the pipeline only reads files.

The telescope is chosen from the header (``INSTRUME``, else ``TELESCOP``); both go through the
same steps (``ra-algorithms.md`` §4):

1. **Skip** bias, dark and flat frames (the mount is not tracking; an AuxTel dark whose
   ``OBJECT`` is ``slew_icrs`` is measured, as on the summit) and exposures shorter than
   ``min_exp_time`` (the polynomial fits need a few seconds): a result with ``skipped`` set.
2. **Window**: shutter open to close from the header (``MJD-BEG``/``MJD-END``, else
   ``DATE-BEG``/``DATE-END``, ``TIMESYS`` TAI, else UTC converted).
3. **Tracking error per axis**, in arcsec:

   * AuxTel (ATMCS ``mount_AzEl_Encoders``, ``mount_Nasmyth_Encoders``): the residual of a
     polynomial fit in time (centred on the middle sample) of order ``az_el_fit_order`` (4) for
     azimuth and elevation and ``rot_fit_order`` (2) for Nasmyth 2;
   * Simonyi (MTMount ``azimuth``/``elevation``): ``actualPosition`` minus ``demandPosition``
     interpolated at ``actualPositionTimestamp`` after shifting the demand timestamps by the ΔT
     (within ±``max_time_shift``) that makes the median error zero; MTRotator ``rotation``:
     ``actualPosition - demandPosition`` of the same sample.

   ``azRms``, ``elRms``, ``rotRms`` are the root mean square of those errors over the samples
   in the window (no interpolation over missing samples).
4. **Image impact**, in arcsec on the sky: ``imageAzRms = azRms cos(el)`` (el: mean measured
   elevation in the window), ``imageElRms = elRms``, ``imageRotRms = rotRms * R * pi / (180 *
   3600)`` with R the distance from the rotation centre to the field edge (280″ AuxTel, 8500″
   LSSTCam, 1800″ LSSTComCam), and for Simonyi, when ``lsst.sal.MTHexapod.application`` is in
   the file, ``camHexRms`` / ``m2HexRms``: 0.02″/µm × √Σ mean((c·error)²) over X, Y (µm) and U,
   V (arcsec) with c = 1.00, 4.92 (camera) and 1.13, 37.26 (M2). Then

   * ``imageImpactRms`` = √(imageAz² + imageEl² + imageRot² + camHex² + m2Hex²), the full
     impact (RubinTV's Simonyi value);
   * ``imageAzElRms`` = √(imageAz² + imageEl²), the az/el part (RubinTV's AuxTel "mount motion
     image degradation" and ConsDB's ``mount_motion_image_degradation`` for both);
   * ``jitterRms`` = √(azRms² + elRms²).

   The two summit analyses grade different quantities; so does this one by default
   (``auxtel_graded_quantity`` = ``imageAzElRms`` against 0.25″/0.40″, ``simonyi_graded_quantity``
   = ``imageImpactRms`` against 0.05″/0.10″), and both values are always published.
5. **Gaps**: for each topic used, the largest interval between consecutive samples in the
   window, counting shutter open → first sample and last sample → shutter close, is
   ``maxTelemetryGap`` (the largest over topics); an interval over ``gap_factor`` times the
   topic's nominal period (its median sample spacing) is a gap, reported in ``status`` and in
   the summary. Nothing is interpolated over it. No telemetry in the window is a
   `PipelineError` with exit code 3.
6. **Sidereal-model check** (Simonyi, a diagnostic): as in SU, the measured az/el are compared
   with a sidereal track of the header's RA/DEC offset to the data's median, and the rotator
   with the field-rotation rate; an RMS over 10″ (az/el) or 15″ (rotator) is noted in the
   status. SU then *replaces* that axis's error by the model residual. That happens exactly when
   the mount was not tracking the header's target sidereally (a non-sidereal target, an offset,
   a wrong header), when actual - demand is still the tracking error, so here it is off by
   default (``replace_with_model``).

Outputs: one ``mountMetrics`` telemetry sample (the fields of the RapidAnalysis interface), the
same numbers (and a few more) as ``metrics``, a summary, and a 3×3-panel PNG (positions, errors,
torques of azimuth, elevation, rotator).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import pathlib
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pydantic
from astropy.io import fits

from ..data.camera import instrument_of_instrume
from ..data.mount_telemetry import ParquetUnavailableError, TelemetryColumns, read_telemetry_file
from .base import (
    ExitCode,
    Pipeline,
    PipelineConfig,
    PipelineContext,
    PipelineError,
    PipelineResult,
    Product,
    TelemetrySample,
    safe_file_name,
)
from .fits_input import read_primary_header

__all__ = [
    "MountTorqueConfig",
    "MountTorquePipeline",
    "ExposureWindow",
    "AxisErrors",
    "TopicCoverage",
    "read_exposure_window",
    "telescope_of",
    "fit_residuals",
    "demand_errors",
    "filter_bad_values",
    "hexapod_image_rms",
    "topic_coverage",
    "MOUNT_METRICS_FIELDS",
    "FIELD_RADIUS_ARCSEC",
    "HEXAPOD_COEFFICIENTS",
]

AUXTEL = "AuxTel"
SIMONYI = "Simonyi"
#: The fields of RapidAnalysis ``mountMetrics``, in interface order.
MOUNT_METRICS_FIELDS: tuple[str, ...] = (
    "imageName",
    "telescope",
    "azRms",
    "elRms",
    "rotRms",
    "camHexRms",
    "m2HexRms",
    "imageAzRms",
    "imageElRms",
    "imageRotRms",
    "imageImpactRms",
    "imageAzElRms",
    "jitterRms",
    "nReplacedAz",
    "nReplacedEl",
    "maxTelemetryGap",
    "expTime",
    "status",
)
#: Rotation centre to field edge, arcsec (RTP: 280″ for LATISS; SU: 8500″ LSSTCam, 1800″ ComCam).
FIELD_RADIUS_ARCSEC: dict[str, float] = {"LATISS": 280.0, "LSSTCam": 8500.0, "LSSTComCam": 1800.0}
#: Image motion per hexapod error (SU): (µm per µm for X and Y, µm per arcsec for U and V).
HEXAPOD_COEFFICIENTS: dict[int, tuple[float, float]] = {1: (1.00, 4.92), 2: (1.13, 37.26)}
#: Image arcsec per image µm: 0.2″ pixels of 10 µm.
_ARCSEC_PER_IMAGE_UM = 0.2 / 10.0
#: Earth rotation rate used by the Simonyi rotator model, deg/h (SU).
_EARTH_ROTATION_DEG_PER_HOUR = 15.04106858
_MJD_UNIX_EPOCH = 40587.0
_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fz")
_TELEMETRY_SUFFIXES = (".ecsv", ".parquet")
#: Topics (EFD names).
_ATMCS_ENCODERS = "lsst.sal.ATMCS.mount_AzEl_Encoders"
_ATMCS_NASMYTH = "lsst.sal.ATMCS.mount_Nasmyth_Encoders"
_ATMCS_TORQUE = "lsst.sal.ATMCS.measuredTorque"
_MTMOUNT_AZ = "lsst.sal.MTMount.azimuth"
_MTMOUNT_EL = "lsst.sal.MTMount.elevation"
_MTROTATOR = "lsst.sal.MTRotator.rotation"
_MTROTATOR_MOTORS = "lsst.sal.MTRotator.motors"
_MTHEXAPOD = "lsst.sal.MTHexapod.application"
_AXES = ("azimuth", "elevation", "rotator")
_STATUS_MAX = 1000

GradedQuantity = Literal["imageImpactRms", "imageAzElRms"]


class MountTorqueConfig(PipelineConfig):
    """Configuration of ``mount_torque`` (defaults: what the summit's analyses use)."""

    min_exp_time: float = pydantic.Field(
        1.99, ge=0, description="Shorter exposures are skipped, s (RTP's 1.99 s: the fits need a few seconds)."
    )
    skip_image_types: tuple[str, ...] = pydantic.Field(
        ("BIAS", "DARK", "FLAT"), description="IMGTYPE values not measured: the mount is not tracking."
    )
    dark_targets_measured: tuple[str, ...] = pydantic.Field(
        ("slew_icrs",), description="A DARK whose OBJECT is one of these is measured anyway (RTP)."
    )
    az_el_fit_order: int = pydantic.Field(4, ge=0, le=10, description="AuxTel az/el polynomial order.")
    rot_fit_order: int = pydantic.Field(2, ge=0, le=10, description="AuxTel Nasmyth-2 polynomial order.")
    auxtel_warning_arcsec: float = pydantic.Field(0.25, gt=0, description="AuxTel warning level, arcsec.")
    auxtel_bad_arcsec: float = pydantic.Field(0.40, gt=0, description="AuxTel bad level, arcsec.")
    simonyi_warning_arcsec: float = pydantic.Field(0.05, gt=0, description="Simonyi warning level, arcsec.")
    simonyi_bad_arcsec: float = pydantic.Field(0.10, gt=0, description="Simonyi bad level, arcsec.")
    auxtel_graded_quantity: GradedQuantity = pydantic.Field(
        "imageAzElRms", description="What the AuxTel levels apply to (RTP: az/el only)."
    )
    simonyi_graded_quantity: GradedQuantity = pydantic.Field(
        "imageImpactRms", description="What the Simonyi levels apply to (RubinTV: with rotator and hexapods)."
    )
    field_radius_arcsec: dict[str, float] = pydantic.Field(
        default_factory=lambda: dict(FIELD_RADIUS_ARCSEC),
        description="Rotator lever arm per INSTRUME, arcsec: rotation centre to field edge.",
    )
    max_time_shift: float = pydantic.Field(
        1e-3, ge=0, le=1.0, description="Simonyi: bound on the demand time shift ΔT, s (SU: 1 ms)."
    )
    gap_factor: float = pydantic.Field(
        3.0, gt=1, description="A sample interval over this many nominal periods is a telemetry gap."
    )
    min_samples: int = pydantic.Field(
        10, ge=2, description="Fewest samples per axis in the window to measure it (else exit code 3)."
    )
    window_margin: float = pydantic.Field(
        1.0, ge=0, le=60, description="Telemetry read either side of the window, s (demand interpolation)."
    )
    filter_bad_values: bool = pydantic.Field(
        False, description="Replace az/el error jumps (SU filterBadValues; off by default, as in SU)."
    )
    bad_value_max_delta_arcsec: float = pydantic.Field(
        0.1, gt=0, description="A jump of at least this much from the previous two values is replaced, arcsec."
    )
    max_consecutive_replaced: int = pydantic.Field(3, ge=1, description="Most consecutive values replaced.")
    model_check: bool = pydantic.Field(
        True, description="Simonyi: compare the motion with a sidereal track of the header RA/DEC (diagnostic)."
    )
    model_limit_az_el_arcsec: float = pydantic.Field(10.0, gt=0, description="Model-check RMS limit, az/el.")
    model_limit_rot_arcsec: float = pydantic.Field(15.0, gt=0, description="Model-check RMS limit, rotator.")
    replace_with_model: bool = pydantic.Field(
        False,
        description="Above the limit, use actual - model as the error, as SU does (off: see module note 6).",
    )
    include_hexapods: bool = pydantic.Field(True, description="Simonyi: add hexapod terms when in the file.")
    hexapod_uv_error_unit: Literal["deg", "arcsec"] = pydantic.Field(
        "deg", description="Unit of MTHexapod error3/error4 (U, V) in the telemetry file."
    )
    make_plot: bool = pydantic.Field(True, description="Write the 3x3-panel PNG.")

    @pydantic.model_validator(mode="after")
    def _check_levels(self) -> MountTorqueConfig:
        if self.auxtel_bad_arcsec <= self.auxtel_warning_arcsec:
            raise ValueError("auxtel_bad_arcsec must be above auxtel_warning_arcsec")
        if self.simonyi_bad_arcsec <= self.simonyi_warning_arcsec:
            raise ValueError("simonyi_bad_arcsec must be above simonyi_warning_arcsec")
        return self


# The exposure


@dataclasses.dataclass(frozen=True)
class ExposureWindow:
    """What the raw's primary header says about the exposure.

    Attributes
    ----------
    image_name : `str`
        ``OBSID``.
    instrument : `str`
        ``INSTRUME``.
    telescope : `str` or None
        ``AuxTel`` or ``Simonyi`` (None if the header names neither).
    img_type : `str`
        ``IMGTYPE`` (upper case).
    target : `str`
        ``OBJECT``.
    exp_time : `float`
        ``EXPTIME``, s (NaN if absent).
    begin, end : `float`
        Shutter open and close, TAI unix seconds (NaN if the header has no window).
    ra, dec : `float`
        Boresight, deg (NaN if absent).
    latitude, longitude : `float`
        Site, deg (NaN if absent).
    """

    image_name: str
    instrument: str
    telescope: str | None
    img_type: str
    target: str
    exp_time: float
    begin: float
    end: float
    ra: float
    dec: float
    latitude: float
    longitude: float

    def iso(self, tai: float) -> str:
        """ISO-8601 of a TAI unix time (TAI, ms)."""
        if not math.isfinite(tai):
            return ""
        stamp = datetime.datetime.fromtimestamp(tai, tz=datetime.UTC).replace(tzinfo=None)
        return stamp.isoformat(timespec="milliseconds")


def telescope_of(header: Mapping[str, Any]) -> str | None:
    """``AuxTel`` or ``Simonyi`` from ``INSTRUME`` (LATISS; LSSTCam, LSSTComCam, any spelling), else ``TELESCOP``."""
    instrument = instrument_of_instrume(header.get("INSTRUME"))
    if instrument is not None:
        return AUXTEL if instrument.name == "LATISS" else SIMONYI
    telescope = str(header.get("TELESCOP", "") or "").lower()
    if "aux" in telescope:
        return AUXTEL
    if "simonyi" in telescope:
        return SIMONYI
    return None


def _number(header: Mapping[str, Any], key: str) -> float:
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _iso_seconds(text: Any) -> float:
    """Unix seconds (in the header's own time scale) of an ISO date, NaN if it is not one."""
    if not isinstance(text, str) or not text.strip():
        return math.nan
    try:
        stamp = datetime.datetime.fromisoformat(text.strip().rstrip("Z"))
    except ValueError:
        return math.nan
    return stamp.replace(tzinfo=datetime.UTC).timestamp()


def _window_from_header(header: Mapping[str, Any], path: pathlib.Path) -> tuple[float, float]:
    """(begin, end), TAI unix seconds; NaN when the header has no window."""
    begin, end = _number(header, "MJD-BEG"), _number(header, "MJD-END")
    if math.isfinite(begin) and math.isfinite(end):
        begin, end = (begin - _MJD_UNIX_EPOCH) * 86400.0, (end - _MJD_UNIX_EPOCH) * 86400.0
    else:
        begin, end = _iso_seconds(header.get("DATE-BEG")), _iso_seconds(header.get("DATE-END"))
    if not (math.isfinite(begin) and math.isfinite(end)):
        # older headers: the start and the exposure time
        start = _number(header, "MJD-OBS")
        start = (start - _MJD_UNIX_EPOCH) * 86400.0 if math.isfinite(start) else _iso_seconds(header.get("DATE-OBS"))
        begin, end = start, start + _number(header, "EXPTIME")
    if not (math.isfinite(begin) and math.isfinite(end)):
        return math.nan, math.nan
    timesys = str(header.get("TIMESYS", "TAI") or "TAI").strip().upper()
    if timesys == "UTC":
        from ..sal.tai import tai_from_utc

        begin, end = tai_from_utc(begin), tai_from_utc(end)
    elif timesys != "TAI":
        raise PipelineError(f"{path}: TIMESYS {timesys!r} is not supported (TAI or UTC)", exit_code=ExitCode.NO_INPUT)
    return begin, end


def read_exposure_window(path: pathlib.Path) -> ExposureWindow:
    """Read the exposure's identity and window from a raw's primary header (only that is read).

    Raises
    ------
    PipelineError
        Exit code 3 if the file is missing, not FITS, truncated or has a header that cannot be
        parsed.
    """
    if not path.exists():
        raise PipelineError(f"raw file {path} does not exist", exit_code=ExitCode.NO_INPUT)
    if not path.is_file():
        raise PipelineError(f"raw input {path} is not a file", exit_code=ExitCode.NO_INPUT)
    header = read_primary_header(path)
    if not isinstance(header, fits.Header) or "SIMPLE" not in header:
        raise PipelineError(f"{path}: not a FITS primary header", exit_code=ExitCode.NO_INPUT)
    begin, end = _window_from_header(header, path)
    return ExposureWindow(
        image_name=str(header.get("OBSID", "") or "").strip(),
        instrument=str(header.get("INSTRUME", "") or "").strip(),
        telescope=telescope_of(header),
        img_type=str(header.get("IMGTYPE", "") or "").strip().upper(),
        target=str(header.get("OBJECT", "") or "").strip(),
        exp_time=_number(header, "EXPTIME"),
        begin=begin,
        end=end,
        ra=_number(header, "RA"),
        dec=_number(header, "DEC"),
        latitude=_number(header, "OBS-LAT"),
        longitude=_number(header, "OBS-LONG"),
    )


# Coverage and gaps


@dataclasses.dataclass
class TopicCoverage:
    """How well one topic's samples cover the exposure window.

    Attributes
    ----------
    topic : `str`
        EFD topic name.
    n_samples : `int`
        Samples in the window.
    period : `float`
        Nominal sample period: the median spacing of the samples in the window, s.
    max_gap : `float`
        Largest of: intervals between consecutive samples, open → first sample, last sample →
        close, s (the window length if there is no sample).
    gaps : `list` [`tuple` [`float`, `float`]]
        (start relative to shutter open, length) of every interval over ``gap_factor`` periods.
    """

    topic: str
    n_samples: int
    period: float
    max_gap: float
    gaps: list[tuple[float, float]]

    def notes(self) -> list[str]:
        """Human-readable descriptions of the gaps."""
        out = []
        for start, length in self.gaps:
            out.append(f"telemetry gap of {length:.2f} s in {self.topic} at +{start:.2f} s")
        return out


def topic_coverage(topic: str, times: np.ndarray, begin: float, end: float, gap_factor: float) -> TopicCoverage:
    """Gaps of a topic's sample times within [begin, end] (see `TopicCoverage`)."""
    t = np.sort(np.asarray(times, dtype=float))
    t = t[(t >= begin) & (t <= end)]
    if t.size == 0:
        return TopicCoverage(topic, 0, math.nan, end - begin, [(0.0, end - begin)])
    steps = np.diff(t)
    period = float(np.median(steps)) if steps.size else math.nan
    edges = np.concatenate(([begin], t, [end]))
    intervals = np.diff(edges)
    max_gap = float(intervals.max())
    gaps: list[tuple[float, float]] = []
    if math.isfinite(period) and period > 0:
        limit = gap_factor * period
        for k in np.flatnonzero(intervals > limit):
            gaps.append((float(edges[k] - begin), float(intervals[k])))
    elif end - begin > 0:
        # a single sample: say so rather than pretend the window is covered
        gaps.append((0.0, float(end - begin)))
    return TopicCoverage(topic, int(t.size), period, max_gap, gaps)


# Errors per axis


@dataclasses.dataclass
class AxisErrors:
    """The tracking error of one axis over the window.

    Attributes
    ----------
    axis : `str`
        ``azimuth``, ``elevation`` or ``rotator``.
    times : `numpy.ndarray`
        Sample times, TAI unix seconds.
    position : `numpy.ndarray`
        Measured position, deg.
    reference : `numpy.ndarray`
        What the error is measured against at those times (fit or demand), deg.
    error : `numpy.ndarray`
        Tracking error, arcsec.
    rms : `float`
        √mean(error²), arcsec.
    method : `str`
        ``fit`` (order n), ``demand`` or ``model``.
    time_shift : `float`
        Demand time shift ΔT, s (NaN when not used).
    n_replaced : `int`
        Values replaced by the bad-value filter.
    model_rms : `float`
        RMS of actual - sidereal model, arcsec (NaN when not computed).
    """

    axis: str
    times: np.ndarray
    position: np.ndarray
    reference: np.ndarray
    error: np.ndarray
    rms: float
    method: str
    time_shift: float = math.nan
    n_replaced: int = 0
    model_rms: float = math.nan


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if len(values) else math.nan


def fit_residuals(times: np.ndarray, values: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Polynomial fit of ``values`` (deg) in time, centred on the middle sample.

    Returns
    -------
    fit, residual : `numpy.ndarray`
        The fit (deg) and ``(values - fit) * 3600`` (arcsec).
    """
    t = np.asarray(times, dtype=float)
    y = np.asarray(values, dtype=float)
    # Centre on the middle sample (as RTP) and scale to about ±1: TAI unix seconds to the 4th power
    # would lose all precision.
    centre = t[len(t) // 2]
    scale = max(float(np.max(np.abs(t - centre))), 1e-9)
    x = (t - centre) / scale
    order = min(order, len(t) - 1)
    coefficients = np.polynomial.polynomial.polyfit(x, y, order)
    fit = np.polynomial.polynomial.polyval(x, coefficients)
    return fit, (y - fit) * 3600.0


def demand_errors(
    actual_times: np.ndarray,
    actual: np.ndarray,
    demand_times: np.ndarray,
    demand: np.ndarray,
    max_shift: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """``actual - demand`` (arcsec), the demand interpolated at the actual times after a time shift.

    The shift ΔT in [-max_shift, max_shift] minimises |median error| (SU's ``calcDeltaT``): it
    takes up a constant latency between the two timestamps, which is not a tracking error.

    Returns
    -------
    reference, error, shift
        The shifted demand at ``actual_times`` (deg), the error (arcsec), ΔT (s).
    """
    from scipy.optimize import minimize_scalar

    ta = np.asarray(actual_times, dtype=float)
    td = np.asarray(demand_times, dtype=float)
    origin = ta[0]
    ta, td = ta - origin, td - origin  # keep ms shifts well above the rounding of TAI seconds
    a = np.asarray(actual, dtype=float)
    d = np.asarray(demand, dtype=float)

    def median_error(shift: float) -> float:
        return abs(float(np.median(a - np.interp(ta, td + shift, d)))) * 3600.0

    shift = 0.0
    if max_shift > 0 and len(td) > 1:
        result = minimize_scalar(median_error, bounds=(-max_shift, max_shift), method="bounded")
        if result.success and median_error(float(result.x)) < median_error(0.0):
            shift = float(result.x)
    reference = np.interp(ta, td + shift, d)
    return reference, (a - reference) * 3600.0, shift


def filter_bad_values(error: np.ndarray, max_delta: float, max_consecutive: int) -> tuple[np.ndarray, int]:
    """Replace isolated jumps of an error series (arcsec) by the mean of the two good values before.

    A value differing by at least ``max_delta`` from the mean of the previous two good values is
    replaced by that mean, at most ``max_consecutive`` in a row. A value still off after that is a
    real step: it is kept and becomes the new reference (else every later value would be "bad").

    Returns
    -------
    filtered, n_replaced
    """
    out = np.array(error, dtype=float)
    if len(out) < 3:
        return out, 0
    good = [out[0], out[1]]
    n_replaced = 0
    run = 0
    for i in range(2, len(out)):
        reference = 0.5 * (good[-1] + good[-2])
        if abs(out[i] - reference) < max_delta:
            good.append(out[i])
            run = 0
        elif run < max_consecutive:
            out[i] = reference
            n_replaced += 1
            run += 1
        else:
            good.extend((out[i], out[i]))
            run = 0
    return out, n_replaced


def hexapod_image_rms(errors: Mapping[str, np.ndarray], sal_index: int, uv_unit: str = "deg") -> float:
    """Image impact (arcsec) of one hexapod's position errors (SU).

    Parameters
    ----------
    errors : mapping
        ``error0`` .. ``error4`` (X, Y, Z in µm; U, V, W in ``uv_unit``) per sample.
    sal_index : `int`
        1 = camera hexapod, 2 = M2 hexapod.
    uv_unit : `str`
        ``deg`` or ``arcsec``.

    Returns
    -------
    rms : `float`
        0.02″/µm × √(mean((c_xy eX)²) + mean((c_xy eY)²) + mean((c_uv eU)²) + mean((c_uv eV)²));
        Z and W do not move the image to first order.
    """
    c_xy, c_uv = HEXAPOD_COEFFICIENTS[sal_index]
    to_arcsec = 3600.0 if uv_unit == "deg" else 1.0
    total = 0.0
    for name, coefficient, factor in (
        ("error0", c_xy, 1.0),
        ("error1", c_xy, 1.0),
        ("error3", c_uv, to_arcsec),
        ("error4", c_uv, to_arcsec),
    ):
        values = np.asarray(errors[name], dtype=float) * factor
        total += float(np.mean(np.square(coefficient * values)))
    return _ARCSEC_PER_IMAGE_UM * math.sqrt(total)


# Sidereal model (Simonyi diagnostic)


def _sidereal_azel(window: ExposureWindow, times: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Az/el (deg) of the header RA/DEC at ``times``: closed form, no refraction or precession.

    Only the shape over the exposure matters (the model is offset to the data's median), which
    those effects change by far less than the 10″ limit.
    """
    import erfa

    from ..sal.tai import utc_from_tai

    if not all(math.isfinite(v) for v in (window.ra, window.dec, window.latitude, window.longitude)):
        return None
    t = np.asarray(times, dtype=float)
    # GMST at the first sample (UT1 taken as UTC), then the sidereal rate: exact enough over minutes
    mjd_utc = utc_from_tai(float(t[0])) / 86400.0 + _MJD_UNIX_EPOCH
    mjd_tt = (float(t[0]) + 32.184) / 86400.0 + _MJD_UNIX_EPOCH
    gmst0 = float(erfa.gmst06(2400000.5, mjd_utc, 2400000.5, mjd_tt))
    sidereal_rate = 2 * math.pi * 1.00273781191135448 / 86400.0  # rad per SI second
    ha = gmst0 + math.radians(window.longitude) + sidereal_rate * (t - t[0]) - math.radians(window.ra)
    az, el = erfa.hd2ae(ha, math.radians(window.dec), math.radians(window.latitude))
    return np.degrees(az), np.degrees(el)


def _unwrap_deg(values: np.ndarray, reference: float) -> np.ndarray:
    """Angles (deg) moved by whole turns to lie within 180° of ``reference``."""
    return reference + (np.asarray(values) - reference + 180.0) % 360.0 - 180.0


# The pipeline


@dataclasses.dataclass
class _Measurement:
    """Everything measured for one exposure (what the outputs and the plot are made of)."""

    window: ExposureWindow
    axes: dict[str, AxisErrors]
    coverage: list[TopicCoverage]
    torques: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
    elevation: float
    field_radius: float
    hexapods: dict[str, float]
    notes: list[str]


class MountTorquePipeline(Pipeline[MountTorqueConfig]):
    """Mount tracking errors (AuxTel or Simonyi) during an exposure and their image impact."""

    name = "mount_torque"
    description = "Mount tracking errors and image impact during an exposure, from the raw header and telemetry"
    Config = MountTorqueConfig
    needs_mount_telemetry = True

    def run(self, inputs: list[pathlib.Path], config: MountTorqueConfig, context: PipelineContext) -> PipelineResult:
        """Measure one exposure.

        Parameters
        ----------
        inputs : `list` [`pathlib.Path`]
            A raw FITS file of the exposure and a telemetry file (``.ecsv``/``.parquet``, or a
            directory of per-topic files), in that order or recognisable by their names.
        config : `MountTorqueConfig`
            Configuration.
        context : `PipelineContext`
            Job context (cancellation, product directory).

        Returns
        -------
        result : `PipelineResult`
            ``skipped`` set (and nothing else measured) for bias/dark/flat frames and short
            exposures.

        Raises
        ------
        PipelineError
            Exit code 3: a missing or unreadable input, no exposure window in the header, no (or
            too little) telemetry in the window. Exit code 2: a header naming no known
            telescope, or a measurement that cannot be made.
        JobAborted
            If the job is cancelled.
        """
        raw_path, telemetry_path = _classify_inputs([pathlib.Path(p) for p in inputs])
        window = read_exposure_window(raw_path)
        summary: dict[str, Any] = {
            "imageName": window.image_name,
            "instrument": window.instrument,
            "telescope": window.telescope,
            "imageType": window.img_type,
            "expTime": _json(window.exp_time),
            "raw": raw_path.name,
        }
        reason = _skip_reason(window, config)
        if reason:
            summary["status"] = f"skipped: {reason}"
            return PipelineResult(image_name=window.image_name, summary=summary, skipped=reason)
        if window.telescope is None:
            raise PipelineError(
                f"{raw_path}: cannot tell the telescope: INSTRUME={window.instrument!r}, "
                "TELESCOP names neither AuxTel nor Simonyi"
            )
        if not (math.isfinite(window.begin) and math.isfinite(window.end)) or window.end <= window.begin:
            raise PipelineError(
                f"{raw_path}: no exposure window in the header (MJD-BEG/MJD-END or DATE-BEG/DATE-END)",
                exit_code=ExitCode.NO_INPUT,
            )
        if telemetry_path is None:
            raise PipelineError("mount_torque needs a telemetry file as its second input", exit_code=ExitCode.NO_INPUT)
        context.check_cancelled()
        telemetry = _read_telemetry(telemetry_path, window, config)
        context.check_cancelled()
        if window.telescope == AUXTEL:
            measurement = _measure_auxtel(window, telemetry, config, telemetry_path)
        else:
            measurement = _measure_simonyi(window, telemetry, config, telemetry_path)
        context.check_cancelled()
        fields, extra = _quantities(measurement, config)
        metrics = {
            **{k: _metric(v) for k, v in fields.items() if k not in ("imageName", "telescope", "status")},
            **{k: _metric(v) for k, v in extra.items() if k not in ("level", "gradedQuantity")},
            "grade": {"ok": 0, "warning": 1, "bad": 2}[extra["level"]],
        }
        summary.update(
            telescope=window.telescope,
            status=fields["status"],
            level=extra["level"],
            gradedQuantity=extra["gradedQuantity"],
            warningLevel=extra["warningLevel"],
            badLevel=extra["badLevel"],
            windowBegin=window.iso(window.begin),
            windowEnd=window.iso(window.end),
            windowBeginTai=window.begin,
            windowEndTai=window.end,
            elevation=_json(measurement.elevation),
            fieldRadiusArcsec=measurement.field_radius,
            mountMetrics={k: _json(v) for k, v in fields.items()},
            axes={
                axis: {
                    "nSamples": int(len(errors.error)),
                    "rms": _json(errors.rms),
                    "method": errors.method,
                    "timeShift": _json(errors.time_shift),
                    "nReplaced": errors.n_replaced,
                    "modelRms": _json(errors.model_rms),
                }
                for axis, errors in measurement.axes.items()
            },
            coverage=[
                {
                    "topic": c.topic,
                    "nSamples": c.n_samples,
                    "period": _json(c.period),
                    "maxGap": _json(c.max_gap),
                    "gaps": [{"start": round(s, 4), "length": round(g, 4)} for s, g in c.gaps],
                }
                for c in measurement.coverage
            ],
            notes=list(measurement.notes),
            telemetry=telemetry_path.name,
        )
        products = []
        if config.make_plot:
            context.check_cancelled()
            label = window.image_name or context.job_id
            path = context.product_path(f"mount_torque_{safe_file_name(label)}.png")
            _plot(measurement, fields, extra, path)
            products.append(
                Product(path=str(path), mime_type="image/png", description=f"mount tracking errors during {label}")
            )
        return PipelineResult(
            image_name=window.image_name,
            metrics=metrics,
            telemetry=[TelemetrySample(topic="mountMetrics", fields=fields)],
            products=products,
            summary=summary,
        )


def _classify_inputs(paths: list[pathlib.Path]) -> tuple[pathlib.Path, pathlib.Path | None]:
    """(raw, telemetry) from the inputs: by name, else by position (raw first, then telemetry).

    Several raws of the exposure (other detectors) are accepted: only the first one's header is
    read, since they all carry the same exposure window.
    """
    if not paths:
        raise PipelineError("mount_torque needs a raw FITS file and a telemetry file", exit_code=ExitCode.NO_INPUT)

    def kind(path: pathlib.Path) -> str | None:
        name = path.name.lower()
        if name.endswith(_FITS_SUFFIXES):
            return "raw"
        if name.endswith(_TELEMETRY_SUFFIXES) or path.is_dir():
            return "telemetry"
        return None

    kinds = [kind(p) for p in paths]
    raws = [p for p, k in zip(paths, kinds, strict=True) if k == "raw"]
    telemetry = [p for p, k in zip(paths, kinds, strict=True) if k == "telemetry"]
    unknown = [p for p, k in zip(paths, kinds, strict=True) if k is None]
    # names that say nothing: the documented order, raw then telemetry
    if not raws and unknown:
        raws.append(unknown.pop(0))
    if not telemetry and unknown:
        telemetry.append(unknown.pop(0))
    if len(telemetry) > 1 or unknown:
        raise PipelineError(
            f"mount_torque takes raw FITS files of one exposure and one telemetry file, got {[p.name for p in paths]}",
            exit_code=ExitCode.NO_INPUT,
        )
    if not raws:
        raise PipelineError(f"no raw FITS file among the inputs {[p.name for p in paths]}", exit_code=ExitCode.NO_INPUT)
    return raws[0], telemetry[0] if telemetry else None


def _skip_reason(window: ExposureWindow, config: MountTorqueConfig) -> str:
    """Why this exposure is not measured ("" if it is)."""
    skip_types = {t.upper() for t in config.skip_image_types}
    if window.img_type in skip_types:
        measured_dark = window.img_type == "DARK" and window.target in config.dark_targets_measured
        if not measured_dark:
            return f"{window.img_type} frame: the mount is not tracking during {', '.join(sorted(skip_types))} frames"
    if math.isfinite(window.exp_time) and window.exp_time < config.min_exp_time:
        return (
            f"exposure time {window.exp_time:g} s is below min_exp_time={config.min_exp_time:g} s: "
            "too short to separate tracking errors from the track"
        )
    duration = window.end - window.begin
    if not math.isfinite(window.exp_time) and math.isfinite(duration) and duration < config.min_exp_time:
        return f"exposure window {duration:g} s is below min_exp_time={config.min_exp_time:g} s"
    return ""


def _read_telemetry(path: pathlib.Path, window: ExposureWindow, config: MountTorqueConfig) -> TelemetryColumns:
    try:
        return read_telemetry_file(path, window.begin - config.window_margin, window.end + config.window_margin)
    except (FileNotFoundError, ParquetUnavailableError) as e:
        raise PipelineError(str(e), exit_code=ExitCode.NO_INPUT) from None
    except Exception as e:
        raise PipelineError(
            f"{path}: not a readable telemetry file ({type(e).__name__}: {e})", exit_code=ExitCode.NO_INPUT
        ) from None


def _no_telemetry(window: ExposureWindow, telemetry: TelemetryColumns, path: pathlib.Path, wanted: list[str]) -> str:
    have = ", ".join(f"{t} ({len(c.get('time', []))} samples)" for t, c in telemetry.items()) or "none"
    return (
        f"no {window.telescope} mount telemetry ({', '.join(wanted)}) in the exposure window "
        f"{window.iso(window.begin)} - {window.iso(window.end)} TAI of {window.image_name or 'the image'} "
        f"in {path.name}; topics there within ±window_margin: {have}"
    )


def _in_window(times: np.ndarray, window: ExposureWindow) -> np.ndarray:
    return (times >= window.begin) & (times <= window.end)


def _column(columns: Mapping[str, np.ndarray], name: str, topic: str, path: pathlib.Path) -> np.ndarray:
    if name not in columns:
        raise PipelineError(f"{path.name}: {topic} has no column {name}", exit_code=ExitCode.NO_INPUT)
    return np.asarray(columns[name], dtype=float)


def _check_samples(axis: str, topic: str, n: int, config: MountTorqueConfig, window: ExposureWindow) -> None:
    if n < config.min_samples:
        raise PipelineError(
            f"too little {axis} telemetry ({topic}): {n} samples in the exposure window of "
            f"{window.image_name or 'the image'}, at least min_samples={config.min_samples} are needed",
            exit_code=ExitCode.NO_INPUT,
        )


def _require(
    telemetry: TelemetryColumns, topics: list[str], window: ExposureWindow, path: pathlib.Path
) -> dict[str, dict[str, np.ndarray]]:
    """The required topics; exit code 3 if none has a sample in the window, naming what is missing."""
    present = {
        topic: telemetry[topic]
        for topic in topics
        if topic in telemetry and np.any(_in_window(np.asarray(telemetry[topic]["time"], dtype=float), window))
    }
    if not present:
        raise PipelineError(_no_telemetry(window, telemetry, path, topics), exit_code=ExitCode.NO_INPUT)
    missing = [t for t in topics if t not in present]
    if missing:
        raise PipelineError(
            f"no {', '.join(missing)} telemetry in the exposure window of {window.image_name or 'the image'} "
            f"in {path.name} (present: {', '.join(present)})",
            exit_code=ExitCode.NO_INPUT,
        )
    return present


def _finite(*arrays: np.ndarray) -> np.ndarray:
    keep = np.ones(len(arrays[0]), dtype=bool)
    for array in arrays:
        keep &= np.isfinite(array)
    return keep


def _torques(
    telemetry: TelemetryColumns, topic: str, names: dict[str, tuple[str, ...]], window: ExposureWindow
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per axis: label → (times, values) of the torque/current columns present."""
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {axis: {} for axis in _AXES}
    columns = telemetry.get(topic)
    if not columns or "time" not in columns:
        return out
    t = np.asarray(columns["time"], dtype=float)
    keep = _in_window(t, window)
    for axis, column_names in names.items():
        for name in column_names:
            if name in columns:
                out[axis][name] = (t[keep], np.asarray(columns[name], dtype=float)[keep])
    return out


def _measure_auxtel(
    window: ExposureWindow, telemetry: TelemetryColumns, config: MountTorqueConfig, path: pathlib.Path
) -> _Measurement:
    required = _require(telemetry, [_ATMCS_ENCODERS, _ATMCS_NASMYTH], window, path)
    encoders, nasmyth = required[_ATMCS_ENCODERS], required[_ATMCS_NASMYTH]
    axes: dict[str, AxisErrors] = {}
    sources = (
        ("azimuth", _ATMCS_ENCODERS, encoders, "azimuthCalculatedAngle", config.az_el_fit_order),
        ("elevation", _ATMCS_ENCODERS, encoders, "elevationCalculatedAngle", config.az_el_fit_order),
        ("rotator", _ATMCS_NASMYTH, nasmyth, "nasmyth2CalculatedAngle", config.rot_fit_order),
    )
    notes: list[str] = []
    for axis, topic, columns, name, order in sources:
        t = _column(columns, "time", topic, path)
        y = _column(columns, name, topic, path)
        keep = _in_window(t, window) & _finite(t, y)
        t, y = t[keep], y[keep]
        _check_samples(axis, topic, len(t), config, window)
        if axis == "azimuth":
            y = _unwrap_deg(y, float(y[0]))  # a track through 0/360 deg
        fit, error = fit_residuals(t, y, order)
        n_replaced = 0
        if config.filter_bad_values and axis != "rotator":
            error, n_replaced = filter_bad_values(
                error, config.bad_value_max_delta_arcsec, config.max_consecutive_replaced
            )
        axes[axis] = AxisErrors(axis, t, y, fit, error, _rms(error), f"fit (order {order})", n_replaced=n_replaced)
    coverage = [
        topic_coverage(
            topic, np.asarray(required[topic]["time"], dtype=float), window.begin, window.end, config.gap_factor
        )
        for topic in (_ATMCS_ENCODERS, _ATMCS_NASMYTH)
    ]
    torques = _torques(
        telemetry,
        _ATMCS_TORQUE,
        {
            "azimuth": ("azimuthMotor1Torque", "azimuthMotor2Torque"),
            "elevation": ("elevationMotorTorque",),
            "rotator": ("nasmyth2MotorTorque",),
        },
        window,
    )
    elevation = float(np.mean(axes["elevation"].position))
    radius = config.field_radius_arcsec.get(window.instrument, FIELD_RADIUS_ARCSEC["LATISS"])
    return _Measurement(window, axes, coverage, torques, elevation, radius, {"camHexRms": 0.0, "m2HexRms": 0.0}, notes)


def _measure_simonyi(
    window: ExposureWindow, telemetry: TelemetryColumns, config: MountTorqueConfig, path: pathlib.Path
) -> _Measurement:
    required = _require(telemetry, [_MTMOUNT_AZ, _MTMOUNT_EL, _MTROTATOR], window, path)
    axes: dict[str, AxisErrors] = {}
    notes: list[str] = []
    coverage: list[TopicCoverage] = []
    for axis, topic in (("azimuth", _MTMOUNT_AZ), ("elevation", _MTMOUNT_EL)):
        columns = required[topic]
        fallback = _column(columns, "time", topic, path)
        ta = np.asarray(columns.get("actualPositionTimestamp", fallback), dtype=float)
        td = np.asarray(columns.get("demandPositionTimestamp", fallback), dtype=float)
        actual = _column(columns, "actualPosition", topic, path)
        demand = _column(columns, "demandPosition", topic, path)
        good_demand = _finite(td, demand)
        td, demand = td[good_demand], demand[good_demand]
        order = np.argsort(td, kind="stable")
        td, demand = td[order], demand[order]
        keep = _in_window(ta, window) & _finite(ta, actual)
        ta, actual = ta[keep], actual[keep]
        _check_samples(axis, topic, len(ta), config, window)
        _check_samples(f"{axis} demand", topic, len(td), config, window)
        if axis == "azimuth":
            actual = _unwrap_deg(actual, float(actual[0]))
            demand = _unwrap_deg(demand, float(actual[0]))
        reference, error, shift = demand_errors(ta, actual, td, demand, config.max_time_shift)
        # ΔT often ends at its bound when the track is slow (a tiny median needs a large shift):
        # harmless, and reported as timeShiftAz/El rather than as a warning.
        axes[axis] = AxisErrors(axis, ta, actual, reference, error, _rms(error), "demand", time_shift=shift)
        coverage.append(topic_coverage(topic, ta, window.begin, window.end, config.gap_factor))
    rotation = required[_MTROTATOR]
    t = _column(rotation, "time", _MTROTATOR, path)
    actual = _column(rotation, "actualPosition", _MTROTATOR, path)
    demand = _column(rotation, "demandPosition", _MTROTATOR, path)
    keep = _in_window(t, window) & _finite(t, actual, demand)
    t, actual, demand = t[keep], actual[keep], demand[keep]
    _check_samples("rotator", _MTROTATOR, len(t), config, window)
    error = (actual - demand) * 3600.0
    axes["rotator"] = AxisErrors("rotator", t, actual, demand, error, _rms(error), "demand")
    coverage.append(topic_coverage(_MTROTATOR, t, window.begin, window.end, config.gap_factor))

    if config.filter_bad_values:
        for axis in ("azimuth", "elevation"):
            errors = axes[axis]
            filtered, n = filter_bad_values(
                errors.error, config.bad_value_max_delta_arcsec, config.max_consecutive_replaced
            )
            errors.error, errors.rms, errors.n_replaced = filtered, _rms(filtered), n
    elevation = float(np.mean(axes["elevation"].position))
    if config.model_check:
        notes += _model_check(window, axes, config)

    hexapods = {"camHexRms": math.nan, "m2HexRms": math.nan}
    if config.include_hexapods:
        hexapods, hex_notes, hex_coverage = _hexapods(telemetry, window, config)
        notes += hex_notes
        coverage += hex_coverage
    torques = _torques(telemetry, _MTMOUNT_AZ, {"azimuth": ("actualTorque",)}, window)
    torques["elevation"] = _torques(telemetry, _MTMOUNT_EL, {"elevation": ("actualTorque",)}, window)["elevation"]
    torques["rotator"] = _torques(telemetry, _MTROTATOR_MOTORS, {"rotator": ("torque0", "torque1")}, window)["rotator"]
    radius = config.field_radius_arcsec.get(window.instrument, FIELD_RADIUS_ARCSEC["LSSTCam"])
    return _Measurement(window, axes, coverage, torques, elevation, radius, hexapods, notes)


def _model_check(window: ExposureWindow, axes: dict[str, AxisErrors], config: MountTorqueConfig) -> list[str]:
    """Compare the motion with a sidereal track of the header's RA/DEC (SU's "linear model").

    Sets each axis's ``model_rms``; with ``replace_with_model`` an axis over its limit gets
    ``actual - model`` as its error, as SU does. Returns notes for the status.
    """
    notes: list[str] = []
    for axis in ("azimuth", "elevation"):
        errors = axes[axis]
        model = _sidereal_azel(window, errors.times)
        if model is None:
            return ["no sidereal-model check: the header lacks RA/DEC/OBS-LAT/OBS-LONG"]
        values = model[0] if axis == "azimuth" else model[1]
        if axis == "azimuth":
            values = _unwrap_deg(values, float(np.median(errors.position)))
        values = values - (np.median(values) - np.median(errors.position))
        residual = (errors.position - values) * 3600.0
        errors.model_rms = _rms(residual)
        if errors.model_rms > config.model_limit_az_el_arcsec:
            notes.append(
                f"{axis} is not a sidereal track of RA/DEC (model RMS {errors.model_rms:.1f}″ > "
                f"{config.model_limit_az_el_arcsec:g}″)"
            )
            if config.replace_with_model:
                errors.error, errors.rms, errors.method = residual, _rms(residual), "model"
    rot = axes["rotator"]
    az = math.radians(float(np.mean(axes["azimuth"].position)))
    el = math.radians(float(np.mean(axes["elevation"].position)))
    if math.isfinite(window.latitude) and abs(math.cos(el)) > 1e-6:
        rate = (
            -_EARTH_ROTATION_DEG_PER_HOUR
            / 3600.0
            * math.cos(math.radians(window.latitude))
            * math.cos(az)
            / math.cos(el)
        )
        model = np.median(rot.position) + rate * (rot.times - np.median(rot.times))
        residual = (rot.position - model) * 3600.0
        rot.model_rms = _rms(residual)
        if rot.model_rms > config.model_limit_rot_arcsec:
            notes.append(
                f"rotator does not follow the sidereal field rotation (model RMS {rot.model_rms:.1f}″ > "
                f"{config.model_limit_rot_arcsec:g}″)"
            )
            if config.replace_with_model:
                rot.error, rot.rms, rot.method = residual, _rms(residual), "model"
    return notes


def _hexapods(
    telemetry: TelemetryColumns, window: ExposureWindow, config: MountTorqueConfig
) -> tuple[dict[str, float], list[str], list[TopicCoverage]]:
    """camHexRms and m2HexRms (NaN for a hexapod with no telemetry in the window)."""
    out = {"camHexRms": math.nan, "m2HexRms": math.nan}
    columns = telemetry.get(_MTHEXAPOD)
    if not columns or "time" not in columns:
        return out, ["no hexapod telemetry: imageImpactRms leaves the hexapods out"], []
    names = ("error0", "error1", "error3", "error4")
    if "salIndex" not in columns or any(n not in columns for n in names):
        return out, [f"{_MTHEXAPOD} lacks salIndex or error0..error4: hexapods left out"], []
    t = np.asarray(columns["time"], dtype=float)
    index = np.asarray(columns["salIndex"])
    notes: list[str] = []
    coverage: list[TopicCoverage] = []
    for sal_index, key, label in ((1, "camHexRms", "camera"), (2, "m2HexRms", "M2")):
        keep = _in_window(t, window) & (index == sal_index)
        errors = {n: np.asarray(columns[n], dtype=float)[keep] for n in names}
        good = _finite(*errors.values())
        if not np.any(good):
            notes.append(f"no {label} hexapod telemetry in the window: left out of imageImpactRms")
            continue
        out[key] = hexapod_image_rms({n: v[good] for n, v in errors.items()}, sal_index, config.hexapod_uv_error_unit)
        coverage.append(
            topic_coverage(f"{_MTHEXAPOD}[{sal_index}]", t[keep], window.begin, window.end, config.gap_factor)
        )
    return out, notes, coverage


def _quantities(measurement: _Measurement, config: MountTorqueConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The mountMetrics fields and the extra metrics (level, time shifts, ...)."""
    window = measurement.window
    axes = measurement.axes
    az, el, rot = axes["azimuth"].rms, axes["elevation"].rms, axes["rotator"].rms
    image_az = az * math.cos(math.radians(measurement.elevation))
    image_el = el
    image_rot = rot * measurement.field_radius * math.pi / (180.0 * 3600.0)
    cam_hex, m2_hex = measurement.hexapods["camHexRms"], measurement.hexapods["m2HexRms"]
    hex_terms = [h**2 for h in (cam_hex, m2_hex) if math.isfinite(h)]
    image_impact = math.sqrt(image_az**2 + image_el**2 + image_rot**2 + sum(hex_terms))
    image_az_el = math.hypot(image_az, image_el)
    max_gap = max(c.max_gap for c in measurement.coverage)

    if window.telescope == AUXTEL:
        graded, warning, bad = config.auxtel_graded_quantity, config.auxtel_warning_arcsec, config.auxtel_bad_arcsec
    else:
        graded, warning, bad = config.simonyi_graded_quantity, config.simonyi_warning_arcsec, config.simonyi_bad_arcsec
    value = image_impact if graded == "imageImpactRms" else image_az_el
    level = "bad" if value > bad else "warning" if value > warning else "ok"
    notes = [note for c in measurement.coverage for note in c.notes()] + measurement.notes
    for axis, errors in axes.items():
        if errors.n_replaced:
            notes.append(f"{errors.n_replaced} {axis} error values replaced by the bad-value filter")
    status = f"{level}: {graded} {value:.3f}″" + (
        f" > {bad:g}″" if level == "bad" else f" > {warning:g}″" if level == "warning" else ""
    )
    if notes:
        status += "; " + "; ".join(notes)
    if len(status) > _STATUS_MAX:
        status = status[: _STATUS_MAX - 3] + "..."
    fields: dict[str, Any] = {
        "imageName": window.image_name,
        "telescope": window.telescope,
        "azRms": az,
        "elRms": el,
        "rotRms": rot,
        "camHexRms": cam_hex,
        "m2HexRms": m2_hex,
        "imageAzRms": image_az,
        "imageElRms": image_el,
        "imageRotRms": image_rot,
        "imageImpactRms": image_impact,
        "imageAzElRms": image_az_el,
        "jitterRms": math.hypot(az, el),
        "nReplacedAz": int(axes["azimuth"].n_replaced),
        "nReplacedEl": int(axes["elevation"].n_replaced),
        "maxTelemetryGap": max_gap,
        "expTime": window.exp_time if math.isfinite(window.exp_time) else window.end - window.begin,
        "status": status,
    }
    extra: dict[str, Any] = {
        "level": level,
        "gradedQuantity": graded,
        "warningLevel": warning,
        "badLevel": bad,
        "elevation": measurement.elevation,
        "timeShiftAz": axes["azimuth"].time_shift,
        "timeShiftEl": axes["elevation"].time_shift,
        "modelRmsAz": axes["azimuth"].model_rms,
        "modelRmsEl": axes["elevation"].model_rms,
        "modelRmsRot": axes["rotator"].model_rms,
        "nSamplesAz": len(axes["azimuth"].error),
        "nSamplesEl": len(axes["elevation"].error),
        "nSamplesRot": len(axes["rotator"].error),
        "nGaps": sum(len(c.gaps) for c in measurement.coverage),
    }
    return fields, extra


def _metric(value: Any) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool | int | np.integer):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def _json(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


# Plot


def _plot(measurement: _Measurement, fields: dict[str, Any], extra: dict[str, Any], path: pathlib.Path) -> None:
    """3×3 panels: rows positions, errors, torques; columns azimuth, elevation, rotator (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    window = measurement.window
    fig = Figure(figsize=(14, 9), dpi=90)
    FigureCanvasAgg(fig)
    # fixed margins: tight_layout would cost a few tenths of a second per image
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.07, top=0.88, wspace=0.3, hspace=0.12)
    axs = fig.subplots(3, 3, sharex=True)
    titles = {"azimuth": "Azimuth", "elevation": "Elevation", "rotator": "Rotator"}
    if window.telescope == AUXTEL:
        titles["rotator"] = "Nasmyth 2"
    torque_units = "current (A)" if window.telescope == AUXTEL else "torque (N m)"
    gap_spans = [(s, s + g) for c in measurement.coverage for s, g in c.gaps]
    for col, axis in enumerate(_AXES):
        errors = measurement.axes[axis]
        rel = errors.times - window.begin
        top, middle, bottom = axs[0][col], axs[1][col], axs[2][col]
        top.plot(rel, errors.position, lw=0.8, label="measured")
        top.plot(rel, errors.reference, lw=0.8, ls="--", label=errors.method)
        top.set_title(titles[axis])
        top.legend(fontsize=7, loc="upper right")
        middle.plot(rel, errors.error, lw=0.6, color="C2")
        for sign in (-1, 1):
            middle.axhline(sign * errors.rms, color="k", lw=0.6, ls=":")
        middle.text(0.02, 0.92, f"RMS {errors.rms:.3f}″", transform=middle.transAxes, fontsize=8, va="top")
        for start, stop in gap_spans:
            for ax in (top, middle, bottom):
                ax.axvspan(start, stop, color="red", alpha=0.15, lw=0)
        for k, (label, (t, values)) in enumerate(measurement.torques.get(axis, {}).items()):
            bottom.plot(t - window.begin, values, lw=0.6, color=f"C{3 + k}", label=label)
        if measurement.torques.get(axis):
            bottom.legend(fontsize=7, loc="upper right")
        else:
            bottom.text(0.5, 0.5, "no torque telemetry", ha="center", va="center", transform=bottom.transAxes)
        bottom.set_xlabel("time since shutter open (s)")
        if col == 0:
            top.set_ylabel("position (deg)")
            middle.set_ylabel("tracking error (arcsec)")
            bottom.set_ylabel(torque_units)
    hex_text = ""
    if window.telescope == SIMONYI:
        hex_text = (
            "  hexapods: camera "
            + (f"{fields['camHexRms']:.3f}″" if math.isfinite(fields["camHexRms"]) else "n/a")
            + ", M2 "
            + (f"{fields['m2HexRms']:.3f}″" if math.isfinite(fields["m2HexRms"]) else "n/a")
        )
    fig.suptitle(
        f"{window.image_name or 'image'}  {window.telescope} ({window.instrument})  "
        f"exposure {fields['expTime']:.1f} s  el {extra['elevation']:.1f}°\n"
        f"image impact {fields['imageImpactRms']:.3f}″ (az/el part {fields['imageAzElRms']:.3f}″), "
        f"jitter {fields['jitterRms']:.3f}″, max telemetry gap {fields['maxTelemetryGap']:.2f} s{hex_text}\n"
        f"{fields['status'][:160]}",
        fontsize=9,
        color={"ok": "black", "warning": "darkorange", "bad": "red"}[extra["level"]],
    )
    fig.savefig(path)
