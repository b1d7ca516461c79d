"""Instrument signature removal for single-frame measurement: a camera raw to an image in electrons.

The order is IsrTaskLSST's (``ra-algorithms.md`` §2) for the steps that apply to our raws:

1. float conversion;
2. **serial overscan**: per row, the median of the serial-overscan columns (skipping
   ``overscan_skip`` leading and trailing columns: the CTI trail and the edge), subtracted from
   the whole row, data and parallel overscan alike;
3. saturation mask: pixels at or above ``SATURATE`` (ADU above bias) after step 2 (real raws have
   no SATURATE card: the camera description's per-amp saturation, else obs_lsst's default);
4. **parallel overscan**: per column, the median of the parallel-overscan rows (skipping
   ``overscan_skip`` at each end; pixels more than ``parallel_max_deviation`` ADU from the
   overscan's median, such as a bleed trail crossing it, are left out);
5. **gain** (ADU to electrons), per amplifier: a configured gain calibration, else the camera
   description (real raws carry no GAIN card), else the amp's ``GAIN`` card, else the physical
   type's nominal gain (`lsst.ts.rapidanalysis.pipelines.gains`); the result says which;
6. **assembly** in the DM stack's orientation: each amp's header ``DETSEC``, upside down
   (`lsst.ts.rapidanalysis.data.amp_geometry`; amps ``C1x`` on top);
7. **bias**, **dark** (scaled by ``DARKTIME``) and **flat**, each only when configured: assembled
   master images of the detector in electrons (the flat normalised to 1), cached in the worker
   so that a night of images reads each master once.

Not applied, because our camera's raws do not need them or the summit's quick look turns them
off: crosstalk, linearity, CTI, brighter-fatter, defects and interpolation. Pixels of a missing
or unreadable amp are NaN and flagged; nothing downstream counts them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.io import fits

from ..data.amp_geometry import (
    DEFAULT_SATURATION,
    Box,
    amp_names,
    detector_rows_of,
    dm_placement,
    geometry_for_raw_shape,
    get_geometry,
    parse_section,
    section_box,
)
from ..data.camera import Instrument
from ..data.camera_description import AmpElectronics, amp_electronics
from .base import ExitCode, PipelineContext, PipelineError
from .fits_input import (
    AmpError,
    amp_extname,
    amp_pixels,
    identify_detector,
    instrument_of,
    is_image,
    open_fits,
    read_data,
    release,
    sensor_make,
)
from .gains import AmpGain, AmpGains, read_calibration_file, read_gain_calibration
from .image_stats import clipped_stats, clipped_std_bias

__all__ = ["IsrSettings", "IsrImage", "run_isr", "read_calibrated_image", "load_image", "SAT", "NO_DATA"]

# A 3σ-clipped standard deviation of Gaussian values is this fraction of the true one.
_CLIP_BIAS_3SIGMA = clipped_std_bias(3.0)
#: Mask bits.
SAT = np.uint8(1)
NO_DATA = np.uint8(2)


@dataclasses.dataclass(frozen=True)
class IsrSettings:
    """What ISR does (the `lsst.ts.rapidanalysis.pipelines.sfm.SfmConfig` fields it needs).

    Attributes
    ----------
    overscan_skip : `int`
        Overscan columns (serial) and rows (parallel) skipped at each end.
    do_parallel_overscan : `bool`
        Subtract the per-column parallel-overscan level.
    parallel_max_deviation : `float`
        Parallel-overscan pixels further than this (ADU) from its median are ignored.
    bias, dark, flat : `str` or None
        Master calibration files (single-HDU assembled images, electrons; dark per second of
        ``DARKTIME``; flat normalised to 1). ``{detector}`` in a path is replaced by the detector
        name (``R22_S11``) and ``{id}`` by its number.
    gains : `str` or None
        A gain calibration (`lsst.ts.rapidanalysis.pipelines.gains`), overriding the camera
        description's gains per amplifier.
    """

    overscan_skip: int = 3
    do_parallel_overscan: bool = True
    parallel_max_deviation: float = 100.0
    bias: str | None = None
    dark: str | None = None
    flat: str | None = None
    gains: str | None = None


@dataclasses.dataclass
class IsrImage:
    """A post-ISR detector image and what is known about it.

    Attributes
    ----------
    image : `numpy.ndarray`
        float32 electrons, ``[row, col]``; NaN where there is no data.
    mask : `numpy.ndarray`
        uint8 bits `SAT`, `NO_DATA`.
    header : `astropy.io.fits.Header`
        Primary header (identity, time, filter, WCS).
    detector : `int`
        Detector id (0 if unknown).
    detector_name : `str`
        ``R22_S11`` (empty if unknown).
    physical_type : `str`
        ``E2V``, ``ITL``, ... (empty if unknown).
    instrument : `Instrument` or None
        From the header.
    read_noise : `float`
        Median over amps of the read noise in electrons measured in the serial overscan.
    gain : `float`
        Median gain (e-/ADU) used.
    gains : `dict` [`str`, `float`]
        Gain used per amp EXTNAME.
    gain_source : `str`
        Where the gains came from (`lsst.ts.rapidanalysis.pipelines.gains`).
    was_raw : `bool`
        False when the input was an already-calibrated image.
    steps : `list` [`str`]
        The ISR steps applied (for the report).
    flags : `list` [`str`]
        What went wrong or was unusual.
    """

    image: np.ndarray
    mask: np.ndarray
    header: fits.Header
    detector: int = 0
    detector_name: str = ""
    physical_type: str = ""
    instrument: Instrument | None = None
    read_noise: float = math.nan
    gain: float = math.nan
    gains: dict[str, float] = dataclasses.field(default_factory=dict)
    gain_source: str = ""
    was_raw: bool = True
    steps: list[str] = dataclasses.field(default_factory=list)
    flags: list[str] = dataclasses.field(default_factory=list)


def load_image(path: pathlib.Path, settings: IsrSettings, context: PipelineContext | None = None) -> IsrImage:
    """ISR a camera raw, or read an already-calibrated single image.

    Raises
    ------
    PipelineError
        (exit code 3) If the file is missing, unreadable, truncated, or holds no usable pixels.
    """
    hdul = open_fits(path)
    try:
        amp_hdus = [hdu for hdu in hdul[1:] if is_image(hdu) and "DATASEC" in hdu.header]
        if amp_hdus:
            return run_isr(path, hdul[0].header, amp_hdus, settings, context)
        return read_calibrated_image(path, hdul)
    finally:
        hdul.close()


def run_isr(
    path: pathlib.Path,
    primary: fits.Header,
    amp_hdus: list[Any],
    settings: IsrSettings,
    context: PipelineContext | None = None,
) -> IsrImage:
    """Serial and parallel overscan, saturation mask, gain, assembly, then any master calibrations.

    Parameters
    ----------
    path : `pathlib.Path`
        The raw (for messages).
    primary : `astropy.io.fits.Header`
        Its primary header.
    amp_hdus : `list`
        Its amp image HDUs (with ``DATASEC`` and ``DETSEC``).
    settings : `IsrSettings`
        What to do.
    context : `PipelineContext`, optional
        For cancellation between amps.
    """
    detector, detector_name, physical_type, flags = identify_detector(primary)
    physical_type = physical_type or sensor_make(primary)
    result = IsrImage(
        image=np.empty((0, 0), np.float32),
        mask=np.empty((0, 0), np.uint8),
        header=primary,
        detector=detector,
        detector_name=detector_name,
        physical_type=physical_type,
        instrument=instrument_of(primary),
        flags=list(flags),
    )
    # Placement of each amp first, so that ISR writes straight into the detector image (each
    # full-frame pass costs ~1 ns/pixel: the fewer, the faster).
    placed, shape = _camera_layout(amp_hdus, physical_type, result.flags)
    if placed is None:
        placed, shape = _header_layout(path, amp_hdus, physical_type, primary, result.flags)
    image = np.empty(shape, dtype=np.float32)
    mask = np.zeros(shape, dtype=np.uint8)
    filled = []
    noises = []
    gains = _amp_gains(result, settings)
    for hdu, name, box, flip_x, flip_y, data_box in placed:
        if context is not None:
            context.check_cancelled()
        flip = (slice(None, None, -1 if flip_y else 1), slice(None, None, -1 if flip_x else 1))
        try:
            if box.y1 > shape[0] or box.x1 > shape[1]:
                raise AmpError(f"DETSEC {hdu.header['DETSEC']} is outside the {shape[1]}x{shape[0]} detector")
            gain = gains.gain_for(name, hdu.header)
            out, out_mask = image[box.slices][flip], mask[box.slices][flip]
            noise = _isr_amp(hdu, primary, settings, gain, data_box, out, out_mask)
        except AmpError as e:
            result.flags.append(f"amp {name}: {e}")
            continue
        finally:
            release(hdu)
        filled.append(box)
        noises.append(noise)
        result.gains[name] = gain.gain
    if not filled:
        raise PipelineError(
            f"{path}: no amplifier could be processed ({'; '.join(result.flags)})", exit_code=ExitCode.NO_INPUT
        )
    _blank_uncovered(image, mask, filled)
    expected = _expected_amps(physical_type)
    if expected and len(filled) < len(expected):
        present = {amp_extname(h.header) for h in amp_hdus}
        missing = [a for a in expected if a not in present]
        if missing:
            result.flags.append(f"amps missing from the file: {', '.join(missing)} (their pixels are NaN)")
    result.image, result.mask = image, mask
    result.read_noise = float(np.median(noises)) if noises else math.nan
    result.gain = float(np.median(list(result.gains.values())))
    result.gain_source = gains.describe()
    result.steps = ["serial overscan (per-row median)", "saturation mask"]
    if settings.do_parallel_overscan:
        result.steps.append("parallel overscan (per-column median)")
    result.steps += [f"gain ({result.gain_source})", "assembly (DM orientation)"]
    _apply_calibrations(result, settings)
    return result


# (hdu, EXTNAME, box in the detector image, flip_x, flip_y, data section in the raw amp or None: DATASEC)
_Placement = tuple[Any, str, Box, bool, bool, Box | None]


def _camera_layout(
    amp_hdus: list[Any], physical_type: str, flags: list[str]
) -> tuple[list[_Placement] | None, tuple[int, int]]:
    """Each amp placed by the camera geometry, as cameraGeom does; (None, ...) if it does not fit the file.

    The header's DATASEC and DETSEC are only checked (a flag names the first that disagrees):
    some real headers' are wrong (LATISS 2022 writes DATASEC [1:509,1:2000] for [4:512,1:2000]).
    """
    try:
        shapes = {tuple(hdu.shape) for hdu in amp_hdus}
        if len(shapes) != 1:
            return None, (0, 0)
        geometry = geometry_for_raw_shape(physical_type, next(iter(shapes)))
        amps = [(hdu, amp_extname(hdu.header)) for hdu in amp_hdus]
        if any(name not in geometry.by_name for _, name in amps):
            return None, (0, 0)
    except (ValueError, KeyError, TypeError):
        return None, (0, 0)
    placed: list[_Placement] = []
    disagree = []
    for hdu, name in amps:
        amp = geometry.amp(name)
        placed.append((hdu, name, amp.detector_box, amp.flip_x, amp.flip_y, amp.data))
        for key, ours in (("DATASEC", amp.datasec), ("DETSEC", amp.detsec)):
            theirs = hdu.header.get(key)
            try:
                same = theirs is not None and parse_section(theirs) == parse_section(ours)
            except ValueError:
                same = False
            if not same:
                disagree.append(f"{name} {key} {theirs}, the camera's {ours}")
    if disagree:
        flags.append(
            f"header sections of {len(disagree)} amp(s) disagree with the camera geometry, which is used "
            f"(e.g. {disagree[0]})"
        )
    return placed, geometry.shape


def _header_layout(
    path: pathlib.Path, amp_hdus: list[Any], physical_type: str, primary: fits.Header, flags: list[str]
) -> tuple[list[_Placement], tuple[int, int]]:
    """Each amp placed by its header DETSEC in the DM orientation (a sensor the camera geometry does not know)."""
    headers = []
    for hdu in amp_hdus:
        name = amp_extname(hdu.header)
        try:
            detsec = parse_section(hdu.header["DETSEC"])
        except (KeyError, ValueError) as e:
            flags.append(f"amp {name}: no usable DETSEC ({e}); amp left out")
            continue
        headers.append((hdu, name, detsec))
    if not headers:
        raise PipelineError(
            f"{path}: no amplifier has a usable DETSEC ({'; '.join(flags)})", exit_code=ExitCode.NO_INPUT
        )
    # DM orientation (data/amp_geometry.py): the header DETSEC image, upside down.
    rows = _detector_rows(
        physical_type, [d for _, _, d in headers], headers[0][0].header.get("DETSIZE") or primary.get("DETSIZE")
    )
    placed: list[_Placement] = []
    for hdu, name, detsec in headers:
        try:
            placed.append((hdu, name, *dm_placement(detsec, rows), None))
        except ValueError as e:
            flags.append(f"amp {name}: {e}; amp left out")
    if not placed:
        raise PipelineError(f"{path}: no amplifier fits its detector ({'; '.join(flags)})", exit_code=ExitCode.NO_INPUT)
    return placed, _detector_shape(physical_type, rows, [p[2] for p in placed])


def _amp_gains(result: IsrImage, settings: IsrSettings) -> AmpGains:
    """Where each amp's gain comes from: a calibration, the camera description, GAIN, or nominal."""
    calibration = None
    if settings.gains:
        calibration = read_gain_calibration(settings.gains, result.detector_name, result.detector)
    description: Mapping[str, AmpElectronics] = {}
    if result.instrument is not None and result.detector_name:
        try:
            description = amp_electronics(result.instrument.name, result.detector_name)
        except ValueError as e:
            result.flags.append(f"no camera description: {e}")
    try:
        nominal = get_geometry(result.physical_type).amps[0].gain
    except (ValueError, KeyError):
        nominal = 1.0
    return AmpGains(calibration, description, nominal)


def _expected_amps(physical_type: str) -> tuple[str, ...]:
    try:
        return tuple(f"Segment{name[1:]}" for name in amp_names(physical_type))
    except (ValueError, KeyError):
        return ()


def _detector_rows(physical_type: str, detsecs: list, detsize: str | None) -> int:
    """Rows of the detector: DETSIZE, else the physical type's when the amps match it, else the DETSECs'.

    Needed before any amp is placed, since the DM orientation counts rows from the other end.
    """
    if detsize:
        return detector_rows_of(detsecs, detsize)
    try:
        geometry = get_geometry(physical_type)
        if detsecs[0].box.shape == geometry.amps[0].data.shape:
            return max(geometry.shape[0], detector_rows_of(detsecs))
    except (ValueError, KeyError):
        pass
    return detector_rows_of(detsecs)


def _detector_shape(physical_type: str, rows: int, boxes: list) -> tuple[int, int]:
    """The full detector shape: from the physical type when the amps match it, else from DETSECs."""
    cols = max(box.x1 for box in boxes)
    try:
        geometry = get_geometry(physical_type)
        if geometry.shape[0] >= rows and geometry.shape[1] >= cols and boxes[0].shape == geometry.amps[0].data.shape:
            return geometry.shape
    except (ValueError, KeyError):
        pass
    return rows, cols


def _blank_uncovered(image: np.ndarray, mask: np.ndarray, boxes: list) -> None:
    """NaN and NO_DATA wherever no processed amp landed (a missing or failed amp)."""
    covered = np.zeros(image.shape, dtype=bool)
    for box in boxes:
        covered[box.slices] = True
    if not covered.all():
        image[~covered] = np.nan
        mask[~covered] |= NO_DATA


def _number(header: fits.Header, key: str) -> float | None:
    value = header.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def _isr_amp(
    hdu: Any,
    primary: fits.Header,
    settings: IsrSettings,
    gain: AmpGain,
    data_box: Box | None,
    out: np.ndarray,
    out_mask: np.ndarray,
) -> float:
    """One amp into ``out`` (its place in the detector image, oriented as read out): electrons.

    ``data_box`` is the data section (None: the header's DATASEC). Also sets `SAT` in ``out_mask``.
    Returns the read noise (e-, from the serial overscan).
    """
    pixels = amp_pixels(hdu)
    header = hdu.header
    if data_box is None:
        try:
            data_box = section_box(header.get("DATASEC", ""), pixels.shape)
        except ValueError as e:
            raise AmpError(str(e)) from None
    if data_box.shape != out.shape:
        raise AmpError(f"DATASEC {header.get('DATASEC')} and DETSEC {header.get('DETSEC')} differ in size")
    is_float = pixels.dtype.kind == "f"
    skip = settings.overscan_skip
    rows, cols = data_box.slices

    # Serial overscan: a level per row, for the data rows and the parallel-overscan rows alike.
    serial = pixels[:, cols.stop + skip : pixels.shape[1] - skip]
    if serial.shape[1] < 2:
        raise AmpError(f"serial overscan right of DATASEC {header['DATASEC']} is too narrow to use")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows are handled below
        row_level = (np.nanmedian(serial, axis=1) if is_float else np.median(serial, axis=1)).astype(np.float32)
    if not np.isfinite(row_level).all():
        good = np.isfinite(row_level)
        if not good.any():
            raise AmpError("serial overscan has no finite pixels")
        row_level = np.where(good, row_level, np.median(row_level[good])).astype(np.float32)
    # Every 4th row is plenty for a noise estimate (~20k pixels). A 3σ-clipped standard deviation
    # (robust to cosmic rays in the overscan, corrected for the clipping) rather than the IQR,
    # which integer pixels of a few ADU rms quantise by up to 10 %; and corrected for the row
    # median having taken a little of each pixel's scatter: var(x - median) = (1 - 0.43/n) var(x).
    residual = (serial[rows][::4] - row_level[rows][::4, None]).astype(np.float32)
    if is_float:
        residual = residual[np.isfinite(residual)]
    noise_adu = (
        clipped_stats(residual, 3.0, 3).std
        / _CLIP_BIAS_3SIGMA
        / math.sqrt(1.0 - (2.0 - math.pi / 2.0) / serial.shape[1])
    )

    # Saturation is in ADU above bias: compare the raw pixels with SATURATE + the row's level.
    saturation = _number(header, "SATURATE") or _number(primary, "SATURATE") or gain.saturation or DEFAULT_SATURATION
    data = pixels[rows, cols]
    levels = row_level[rows] + np.float32(saturation)
    # One cheap max first: most amps have no saturated pixel, and the full comparison costs more.
    if float(np.nanmax(data) if is_float else data.max()) >= float(levels.min()):
        saturated = data >= levels[:, None]
        out_mask[saturated] |= SAT
    np.subtract(data, row_level[rows, None], out=out, casting="unsafe")

    if settings.do_parallel_overscan and pixels.shape[0] - rows.stop - 2 * skip >= 2:
        parallel = (
            pixels[rows.stop + skip : pixels.shape[0] - skip, cols]
            - row_level[rows.stop + skip : pixels.shape[0] - skip, None]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            centre = float(np.nanmedian(parallel[::2, ::4]))
        if math.isfinite(centre):
            # A bleed trail crossing the overscan must not set its columns' level: such pixels
            # count as the overscan's median instead (cheaper than a NaN-aware median). The
            # transpose makes each column contiguous for the median.
            clean = np.where(np.abs(parallel - centre) <= settings.parallel_max_deviation, parallel, centre)
            col_level = np.median(np.ascontiguousarray(clean.T), axis=1).astype(np.float32)
            out -= col_level[None, :]

    out *= np.float32(gain.gain)
    if is_float:
        bad = ~np.isfinite(out)
        if bad.any():
            out_mask[bad] |= NO_DATA
    return noise_adu * gain.gain


# Master calibrations


@functools.lru_cache(maxsize=24)
def _read_master(path: str, mtime_ns: int) -> np.ndarray:
    """A master calibration's pixels (float32), cached by path and modification time."""
    del mtime_ns  # part of the cache key only: a rewritten master is read again
    with fits.open(path, memmap=False) as hdul:
        for hdu in hdul:
            if is_image(hdu) and hdu.data is not None and hdu.data.ndim == 2:
                return np.asarray(hdu.data, dtype=np.float32)
    raise ValueError("no 2-D image HDU")


def _master(template: str, result: IsrImage, kind: str) -> np.ndarray:
    path, data = read_calibration_file(template, result.detector_name, result.detector, f"{kind} master", _read_master)
    if data.shape != result.image.shape:
        raise PipelineError(
            f"{kind} master {path} is {data.shape[1]}x{data.shape[0]}, the image {result.image.shape[1]}x"
            f"{result.image.shape[0]}",
            exit_code=ExitCode.NO_INPUT,
        )
    return data


def _apply_calibrations(result: IsrImage, settings: IsrSettings) -> None:
    image = result.image
    if settings.bias:
        image -= _master(settings.bias, result, "bias")
        result.steps.append("bias")
    if settings.dark:
        dark_time = _number(result.header, "DARKTIME") or _number(result.header, "EXPTIME") or 0.0
        image -= _master(settings.dark, result, "dark") * np.float32(dark_time)
        result.steps.append("dark")
    if settings.flat:
        flat = _master(settings.flat, result, "flat")
        with np.errstate(divide="ignore", invalid="ignore"):
            bad = ~(flat > 0.05)
            np.divide(image, flat, out=image, where=~bad)
        image[bad] = np.nan
        result.mask[bad] |= NO_DATA
        result.steps.append("flat")


# Already-calibrated images


def read_calibrated_image(path: pathlib.Path, hdul: fits.HDUList, gain: float = 1.0) -> IsrImage:
    """The first 2-D image HDU of a post-ISR file, taken to be in electrons (``BUNIT`` adu: x ``gain``).

    The WCS and identity come from that HDU's header merged over the primary's.
    """
    for index, hdu in enumerate(hdul):
        if not is_image(hdu):
            continue
        try:
            pixels = read_data(hdu)
        except Exception as e:
            raise PipelineError(
                f"{path}: cannot read HDU {index} ({type(e).__name__}: {e})", exit_code=ExitCode.NO_INPUT
            ) from None
        if pixels is None:
            continue
        if pixels.ndim != 2:
            raise PipelineError(
                f"{path}: HDU {index} is {pixels.ndim}-D; sfm measures 2-D images", exit_code=ExitCode.NO_INPUT
            )
        break
    else:
        raise PipelineError(
            f"{path}: no image data (no amp HDUs with DATASEC and no 2-D image HDU)", exit_code=ExitCode.NO_INPUT
        )
    header = hdul[0].header.copy()
    if index:
        header.update({k: v for k, v in hdu.header.items() if k not in ("XTENSION", "PCOUNT", "GCOUNT", "EXTNAME")})
    image = np.asarray(pixels, dtype=np.float32).copy()
    flags: list[str] = []
    if str(header.get("BUNIT", "")).strip().lower() == "adu":
        image *= np.float32(gain)
        if gain == 1.0:
            flags.append("image is in ADU and no gain was given: measured as if gain were 1")
    finite = np.isfinite(image)
    if not finite.any():
        raise PipelineError(f"{path}: image has no finite pixels", exit_code=ExitCode.NO_INPUT)
    mask = np.where(finite, np.uint8(0), NO_DATA).astype(np.uint8)
    saturation = _number(header, "SATURATE")
    if saturation is not None:
        mask[image >= saturation] |= SAT
    detector, detector_name, physical_type, id_flags = identify_detector(header)
    return IsrImage(
        image=image,
        mask=mask,
        header=header,
        detector=detector,
        detector_name=detector_name,
        physical_type=physical_type or "",
        instrument=instrument_of(header),
        read_noise=float(header.get("RDNOISE", 0.0) or 0.0) if isinstance(header.get("RDNOISE"), int | float) else 0.0,
        gain=gain,
        was_raw=False,
        steps=["none (already calibrated)"],
        flags=flags + id_flags,
    )
