"""``sfm``: single-frame measurement of one detector, ISR through the summary metrics.

Per input file (a camera raw, or an already-calibrated single image):

1. ISR (`lsst.ts.rapidanalysis.pipelines.isr`): overscans, gain, assembly, any master calibrations;
2. background (`background`): mesh levels → ``skyBg`` (electrons per pixel), ``skyNoise``;
3. detection and measurement (`sources`): adaptive moments, aperture photometry;
4. PSF stars and model (`psf`): ``psfSigma``, ``psfArea``, ``e1``, ``e2``, ``nPsfStar``;
5. calibration (`photocal`): match to the reference catalog through the header WCS →
   ``zeroPoint``; then ``magLim`` and ``effTime`` (`summary_stats`);
6. an 8 x 8-binned copy of the post-ISR image for the visit mosaic.

The image stays in electrons (as ``calibrateImage`` with ``do_calibrate_pixels=False``): sky,
noise and variance metrics are in electrons. ``psfFwhm`` = psfSigma × 2.3548 × the WCS pixel
scale at the detector centre (arcsec); ``postIsrPixelMedian`` is the post-ISR image's median.

Nothing in the sky is not an error: no stars, all stars saturated, a bright sky give NaN metrics
and a flag naming why. An unreadable, truncated or pixel-less file is a `PipelineError`
(exit code 3); a bias, dark or flat is skipped (``image_stats`` is for those).
"""

from __future__ import annotations

import dataclasses
import io
import math
import pathlib
import time
import warnings
from typing import Any

import numpy as np
import pydantic
from astropy.io import fits

from ..atomic_file import write_atomic
from .background import Background, estimate_background
from .base import (
    ExitCode,
    Pipeline,
    PipelineConfig,
    PipelineContext,
    PipelineError,
    PipelineResult,
    TelemetrySample,
    safe_file_name,
)
from .fits_input import read_primary_header
from .isr import IsrImage, IsrSettings, load_image
from .photocal import PhotoCalResult, calibrate, read_reference_catalog
from .psf import PsfModel, PsfSelection, fit_psf_model, measure_psf_areas, select_psf_stars
from .raw_wcs import checked_wcs
from .sfm_fields import TELEMETRY_FIELDS
from .sources import SourceCatalog, bin2x2, detect_sources, measure_sources
from .summary_stats import band_of, eff_time, mag_lim

__all__ = ["SfmConfig", "SfmPipeline", "SfmMeasurement", "measure_detector", "FWHM_PER_SIGMA", "SKIPPED_TYPES"]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: Image types sfm does not measure.
SKIPPED_TYPES = frozenset({"BIAS", "DARK", "FLAT", "SFLAT", "DFLAT", "SPOT", "CWFS"})
# Pixel scale (arcsec) when the image has no WCS, by instrument.


class SfmConfig(PipelineConfig):
    """Configuration of ``sfm``."""

    overscan_skip: int = pydantic.Field(3, ge=0, le=32, description="Overscan columns/rows skipped at each end.")
    do_parallel_overscan: bool = pydantic.Field(True, description="Subtract the per-column parallel overscan.")
    parallel_max_deviation: float = pydantic.Field(
        100.0, gt=0, description="Parallel-overscan pixels further than this (ADU) from its median are ignored."
    )
    bias: str | None = pydantic.Field(
        None, description="Master bias file ({detector} → R22_S11, {id} → 94), assembled, electrons."
    )
    dark: str | None = pydantic.Field(None, description="Master dark (electrons per second of DARKTIME).")
    flat: str | None = pydantic.Field(None, description="Master flat (normalised to 1).")
    background_mesh: int = pydantic.Field(128, ge=16, le=2048, description="Background cell size (pixels).")
    detection_threshold: float = pydantic.Field(
        5.0, gt=0, le=1000, description="Detection threshold (σ of the smoothed 2x2-binned image)."
    )
    max_sources: int = pydantic.Field(50_000, ge=1, description="Measure at most this many sources.")
    aperture_radius_fwhm: float = pydantic.Field(
        3.0, gt=0.5, le=20, description="Photometry aperture radius in units of the PSF FWHM."
    )
    psf_min_snr: float = pydantic.Field(50.0, gt=0, description="PSF stars: minimum aperture S/N.")
    psf_max_snr: float = pydantic.Field(1000.0, gt=0, description="PSF stars: maximum aperture S/N.")
    refcat: str = pydantic.Field(
        "{raw}.refcat.ecsv",
        description="Reference catalog (ECSV/FITS; {raw} → input path, {dir}, {obsid}, {detector}); '' for none.",
    )
    match_search_radius: float = pydantic.Field(
        10.0, gt=0, le=600, description="How far the header WCS may be off (arcsec)."
    )
    match_radius: float = pydantic.Field(1.0, gt=0, le=60, description="Match radius after the shift (arcsec).")
    calib_min_snr: float = pydantic.Field(20.0, gt=0, description="Zero-point stars: minimum S/N.")
    pixel_scale: float | None = pydantic.Field(
        None, gt=0, description="arcsec/pixel when the image has no WCS (default: the instrument's)."
    )
    wcs_max_scale_error: float = pydantic.Field(
        0.05,
        gt=0,
        le=1,
        description="Fraction: a header WCS whose pixel scale is off the camera's by more is replaced.",
    )
    wcs_max_boresight_offset: float = pydantic.Field(
        120.0, gt=0, description="A header WCS whose boresight is further (arcsec) from RA/DEC is replaced."
    )
    gains: str | None = pydantic.Field(
        None,
        description="Gain calibration (YAML/JSON of amp gains; {detector}, {id}) overriding the camera description.",
    )
    gain: float = pydantic.Field(1.0, gt=0, description="e-/ADU for already-calibrated images with BUNIT adu.")
    binning: int = pydantic.Field(8, ge=1, le=64, description="Binning of the post-ISR copy for the visit mosaic.")
    write_binned: bool = pydantic.Field(True, description="Write the binned post-ISR image for the mosaic.")

    def isr_settings(self) -> IsrSettings:
        """The ISR part."""
        return IsrSettings(
            overscan_skip=self.overscan_skip,
            do_parallel_overscan=self.do_parallel_overscan,
            parallel_max_deviation=self.parallel_max_deviation,
            bias=self.bias,
            dark=self.dark,
            flat=self.flat,
            gains=self.gains,
        )

    def psf_selection(self) -> PsfSelection:
        """The PSF-star part."""
        return PsfSelection(min_snr=self.psf_min_snr, max_snr=self.psf_max_snr)


@dataclasses.dataclass
class SfmMeasurement:
    """Everything measured on one detector (the pipeline keeps the metrics; benchmarks use all)."""

    path: pathlib.Path
    isr: IsrImage
    background: Background
    catalog: SourceCatalog
    psf_stars: np.ndarray
    psf: PsfModel
    photocal: PhotoCalResult
    pixel_scale: float
    metrics: dict[str, Any]
    flags: list[str]
    timings: dict[str, float]
    binned_path: pathlib.Path | None = None


def _header_number(header: fits.Header, *keys: str) -> float | None:
    for key in keys:
        value = header.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def _pixel_scale(isr: IsrImage, config: SfmConfig, flags: list[str]) -> tuple[float, Any, str]:
    """arcsec/pixel, the WCS to use (None if none) and where it came from (`raw_wcs`)."""
    detector = None
    if isr.instrument is not None and isr.detector_name:
        detector = isr.instrument.by_name.get(isr.detector_name)
    checked = checked_wcs(
        isr.header,
        isr.instrument,
        detector,
        isr.image.shape,
        max_scale_error=config.wcs_max_scale_error,
        max_boresight_offset=config.wcs_max_boresight_offset,
        fallback_scale=config.pixel_scale,
    )
    flags.extend(checked.flags)
    scale = checked.pixel_scale
    if checked.wcs is None and config.pixel_scale is not None:
        scale = config.pixel_scale
    return scale, checked.wcs, checked.source


def _reference(path: pathlib.Path, isr: IsrImage, config: SfmConfig, band: str | None, flags: list[str]):
    if not config.refcat:
        flags.append("no reference catalog configured: no zero point")
        return None
    name = config.refcat.format(
        raw=str(path), dir=str(path.parent), obsid=str(isr.header.get("OBSID", "")), detector=isr.detector_name
    )
    ref_path = pathlib.Path(name)
    if not ref_path.exists():
        flags.append(f"reference catalog {ref_path.name} not found: no zero point")
        return None
    try:
        return read_reference_catalog(ref_path, band or "r")
    except ValueError as e:
        flags.append(f"{e}: no zero point")
        return None


def _binned(image: np.ndarray, binning: int) -> np.ndarray:
    rows, cols = image.shape[0] // binning, image.shape[1] // binning
    blocks = image[: rows * binning, : cols * binning].reshape(rows, binning, cols, binning)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks of a missing amp stay NaN
        return np.nanmean(blocks, axis=(1, 3)).astype(np.float32)


def _write_binned(measurement: SfmMeasurement, config: SfmConfig, context: PipelineContext) -> pathlib.Path:
    isr = measurement.isr
    binned = _binned(isr.image, config.binning)
    header = fits.Header()
    for key in ("OBSID", "INSTRUME", "DAYOBS", "SEQNUM", "FILTBAND", "EXPTIME"):
        if key in isr.header:
            header[key] = isr.header[key]
    header["DETECTOR"] = (isr.detector, "detector id")
    header["DETNAME"] = (isr.detector_name, "raft_sensor")
    header["BINNING"] = (config.binning, "pixels per binned pixel, each axis")
    header["BUNIT"] = "electron"
    # Named per exposure and detector, as every product is ({pipeline}_{what}_{image}): two exposures
    # of one detector in one job must not overwrite each other's.
    image = str(isr.header.get("OBSID", "") or "") or measurement.path.stem
    path = context.product_path(f"sfm_postisr_binned_{safe_file_name(image)}_{isr.detector:03d}.fits")
    stream = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(binned, header)]).writeto(stream)
    write_atomic(path, stream.getvalue())
    return path


def measure_detector(path: pathlib.Path, config: SfmConfig, context: PipelineContext | None = None) -> SfmMeasurement:
    """ISR and measure one file; see the module docstring.

    Raises
    ------
    PipelineError
        (exit code 3) for a missing, unreadable or pixel-less file.
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    isr = load_image(path, config.isr_settings(), context)
    timings["isr"] = time.perf_counter() - start
    flags = list(isr.flags)
    check = context.check_cancelled if context is not None else (lambda: None)
    check()

    tick = time.perf_counter()
    try:
        background = estimate_background(isr.image, config.background_mesh)
    except ValueError as e:
        raise PipelineError(f"{path}: {e}", exit_code=ExitCode.NO_INPUT) from None
    binned = bin2x2(isr.image)
    binned -= background.image(2)
    m = isr.mask
    rows, cols = binned.shape[0] * 2, binned.shape[1] * 2
    if m.any():
        binned_mask = m[0:rows:2, 0:cols:2] | m[1:rows:2, 0:cols:2] | m[0:rows:2, 1:cols:2] | m[1:rows:2, 1:cols:2]
    else:  # nothing saturated or missing (most images): skip four strided passes
        binned_mask = np.zeros(binned.shape, dtype=np.uint8)
    timings["background"] = time.perf_counter() - tick
    check()

    tick = time.perf_counter()
    detections = detect_sources(binned, binned_mask, config.detection_threshold, config.max_sources)
    timings["detection"] = time.perf_counter() - tick
    sky_noise = background.noise
    tick = time.perf_counter()
    # A first look at the brightest unsaturated sources sets the aperture and the moments' stamp.
    sigma0 = _first_psf_sigma(isr, detections, sky_noise)
    aperture = max(4.0, config.aperture_radius_fwhm * FWHM_PER_SIGMA * sigma0)
    moments_radius = int(np.clip(math.ceil(4.5 * sigma0), 6, 48))
    catalog = measure_sources(
        isr.image,
        isr.mask,
        detections,
        aperture_radius=aperture,
        moments_radius=moments_radius,
        sky_noise=sky_noise,
        sigma0=sigma0,
    )
    timings["measurement"] = time.perf_counter() - tick
    check()

    tick = time.perf_counter()
    settings = config.psf_selection()
    stars = select_psf_stars(catalog, settings)
    centre = ((isr.image.shape[1] - 1) / 2, (isr.image.shape[0] - 1) / 2)
    areas = measure_psf_areas(isr.image, isr.mask, catalog, stars, sky_noise)
    psf = fit_psf_model(catalog, stars, centre, settings, areas)
    _psf_flags(catalog, stars, flags, config)
    timings["psf"] = time.perf_counter() - tick

    tick = time.perf_counter()
    pixel_scale, wcs, wcs_source = _pixel_scale(isr, config, flags)
    band = band_of(isr.header.get("FILTBAND"), isr.header.get("FILTER"))
    reference = _reference(path, isr, config, band, flags) if wcs is not None else None
    if wcs is None:
        flags.append("no usable WCS: no zero point")
        photocal = PhotoCalResult()
    else:
        photocal = calibrate(
            catalog,
            wcs,
            reference,
            isr.image.shape,
            pixel_scale,
            search_radius=config.match_search_radius,
            match_radius=config.match_radius,
            min_snr=config.calib_min_snr,
        )
        if reference is not None:
            flags.extend(photocal.flags)
    timings["calibration"] = time.perf_counter() - tick

    tick = time.perf_counter()
    sample = isr.image[::8, ::8]  # 256k pixels of a 4k x 4k detector: plenty for these statistics
    sample = sample[np.isfinite(sample)]
    metrics = _metrics(isr, background, catalog, psf, photocal, pixel_scale, band, sample, flags)
    metrics["wcsSource"] = wcs_source
    metrics["gain"] = isr.gain
    metrics["gainSource"] = isr.gain_source
    timings["metrics"] = time.perf_counter() - tick
    timings["total"] = time.perf_counter() - start
    return SfmMeasurement(path, isr, background, catalog, stars, psf, photocal, pixel_scale, metrics, flags, timings)


def _first_psf_sigma(isr: IsrImage, detections: Any, sky_noise: float, n: int = 60) -> float:
    """Median determinant radius of up to ``n`` of the most significant unsaturated detections (2 if none)."""
    unsaturated = np.flatnonzero(~detections.saturated)
    if unsaturated.size == 0:
        return 2.0
    top = unsaturated[np.argsort(-detections.significance[unsaturated])[:n]]
    subset = type(detections)(
        detections.x[top], detections.y[top], detections.significance[top], detections.saturated[top], detections.noise
    )
    first = measure_sources(isr.image, isr.mask, subset, aperture_radius=6.0, moments_radius=10, sky_noise=sky_noise)
    good = (first.flags == 0) & np.isfinite(first.ixx)
    radius = first.determinant_radius[good]
    # Cosmic rays are among the most significant peaks; the median of the rest is the PSF's.
    radius = radius[radius > 0.7]
    return float(np.clip(np.median(radius), 0.8, 12.0)) if radius.size else 2.0


def _psf_flags(catalog: SourceCatalog, stars: np.ndarray, flags: list[str], config: SfmConfig) -> None:
    if stars.size:
        return
    if len(catalog) == 0:
        flags.append("no sources detected: PSF metrics are NaN")
        return
    saturated = np.count_nonzero(catalog.flags & SourceCatalog.SATURATED)
    bright = np.count_nonzero(catalog.snr >= config.psf_min_snr) + saturated
    if bright and saturated == bright:
        flags.append(f"all {saturated} bright sources are saturated: PSF metrics are NaN")
    else:
        flags.append(
            f"no PSF stars ({len(catalog)} sources, none isolated, unsaturated and with S/N "
            f"{config.psf_min_snr:g}-{config.psf_max_snr:g}): PSF metrics are NaN"
        )


def _clipped(values: np.ndarray, n_sigma: float = 3.0, n_iter: int = 2) -> tuple[float, float]:
    """3σ-clipped mean and standard deviation (2 iterations), as skyNoise and meanVar are defined."""
    if values.size == 0:
        return math.nan, math.nan
    centre = float(np.median(values))
    p16 = float(np.percentile(values, 15.87))
    sigma = centre - p16 if centre > p16 else float(values.std())
    mean = centre
    for _ in range(n_iter):
        keep = values[np.abs(values - mean) <= n_sigma * sigma]
        if keep.size == 0:
            break
        mean, sigma = float(keep.mean()), float(keep.std())
    return mean, sigma


def _metrics(
    isr: IsrImage,
    background: Background,
    catalog: SourceCatalog,
    psf: PsfModel,
    photocal: PhotoCalResult,
    pixel_scale: float,
    band: str | None,
    sample: np.ndarray,
    flags: list[str],
) -> dict[str, Any]:
    exp_time = _header_number(isr.header, "EXPTIME") or 0.0
    sky_bg = background.level
    residual = sample - sky_bg
    _, sky_noise = _clipped(residual)
    mean_var, _ = _clipped(np.maximum(sample, 0.0) + (isr.read_noise if math.isfinite(isr.read_noise) else 0.0) ** 2)
    read_noise = isr.read_noise if math.isfinite(isr.read_noise) else 0.0
    effective = eff_time(psf.sigma, sky_bg, photocal.zero_point, exp_time, band)
    if band is None:
        flags.append("band unknown (FILTBAND/FILTER): no effTime")
    airmass = [a for a in (_header_number(isr.header, "AMSTART"), _header_number(isr.header, "AMEND")) if a]
    return {
        "detector": isr.detector,
        "detectorName": isr.detector_name,
        "psfSigma": psf.sigma,
        "psfFwhm": psf.sigma * FWHM_PER_SIGMA * pixel_scale,
        "psfArea": psf.area,
        "psfIxx": psf.ixx,
        "psfIyy": psf.iyy,
        "psfIxy": psf.ixy,
        "psfTraceRadius": psf.trace_radius,
        "e1": psf.e1,
        "e2": psf.e2,
        "nPsfStar": psf.n_stars,
        "psfModelOrder": psf.order,
        "psfStarDeltaSizeMedian": psf.delta_size_median,
        "psfStarDeltaSizeScatter": psf.delta_size_scatter,
        "psfStarDeltaE1Median": psf.delta_e1_median,
        "psfStarDeltaE1Scatter": psf.delta_e1_scatter,
        "psfStarDeltaE2Median": psf.delta_e2_median,
        "psfStarDeltaE2Scatter": psf.delta_e2_scatter,
        "nSource": len(catalog),
        "nSaturatedSource": int(np.count_nonzero(catalog.flags & SourceCatalog.SATURATED)),
        "skyBg": sky_bg,
        "skyNoise": sky_noise,
        "meanVar": mean_var,
        "readNoise": read_noise,
        "zeroPoint": photocal.zero_point,
        "zeroPointScatter": photocal.zero_point_scatter,
        "nCalibStar": photocal.n_calib,
        "nMatched": photocal.n_matched,
        "astromOffsetMean": photocal.offset_mean,
        "astromOffsetStd": photocal.offset_std,
        "wcsShiftX": photocal.shift_x,
        "wcsShiftY": photocal.shift_y,
        "magLim": mag_lim(photocal.zero_point, sky_bg, psf.area, read_noise),
        "effTime": effective.value,
        "effTimePsfSigmaScale": effective.psf_sigma_scale,
        "effTimeSkyBgScale": effective.sky_bg_scale,
        "effTimeZeroPointScale": effective.zero_point_scale,
        "postIsrPixelMedian": float(np.median(sample)) if sample.size else math.nan,
        "pixelScale": pixel_scale,
        "expTime": exp_time,
        "airmass": float(np.mean(airmass)) if airmass else math.nan,
        "band": band or "",
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


class SfmPipeline(Pipeline[SfmConfig]):
    """Single-frame measurement of each input detector: ISR, PSF, photometric calibration, metrics."""

    name = "sfm"
    description = "Single-frame measurement per detector: ISR, background, PSF (FWHM, e1, e2), zero point, effTime"
    Config = SfmConfig
    per_detector = True
    gather_pipeline = "sfm_gather"

    def run(self, inputs: list[pathlib.Path], config: SfmConfig, context: PipelineContext) -> PipelineResult:
        """Measure every input file (normally one detector); see the module docstring.

        Raises
        ------
        PipelineError
            If no input can be measured (the reasons of each).
        """
        if not inputs:
            raise PipelineError("sfm needs at least one input file", exit_code=ExitCode.NO_INPUT)
        rows, telemetry, summaries, errors, skipped = [], [], [], [], []
        image_names = set()
        for path in inputs:
            path = pathlib.Path(path)
            context.check_cancelled()
            image_type = _image_type(path)
            if image_type in SKIPPED_TYPES:
                skipped.append(f"{path.name} is a {image_type} image: sfm measures focused sky images")
                continue
            try:
                measurement = measure_detector(path, config, context)
            except PipelineError as e:
                if len(inputs) == 1:
                    raise
                errors.append(str(e))
                continue
            if config.write_binned:
                measurement.binned_path = _write_binned(measurement, config, context)
            image_name = str(measurement.isr.header.get("OBSID", "") or "")
            image_names.add(image_name)
            metrics = {k: _json_value(v) for k, v in measurement.metrics.items()}
            rows.append(metrics)
            fields = {k: metrics[k] for k in TELEMETRY_FIELDS}
            fields.update(imageName=image_name, flags="; ".join(measurement.flags)[:1000])
            telemetry.append(TelemetrySample(topic="sfmDetectorMetrics", fields=fields))
            summaries.append(
                {
                    "file": path.name,
                    "detector": measurement.isr.detector,
                    "flags": measurement.flags,
                    "isrSteps": measurement.isr.steps,
                    "timings": {k: round(v, 4) for k, v in measurement.timings.items()},
                    "binnedImage": str(measurement.binned_path) if measurement.binned_path else "",
                    "metrics": metrics,
                }
            )
        if not rows and skipped and not errors:
            return PipelineResult(image_name=_obsid_of(inputs[0]), skipped="; ".join(skipped))
        if not rows:
            raise PipelineError("; ".join(errors + skipped) or "nothing measured", exit_code=ExitCode.NO_INPUT)
        image_name = sorted(image_names)[0] if len(image_names) == 1 else ""
        # One detector: its metrics are the job's too (the detector id is the row's key, not a metric).
        job_metrics = (
            {k: v for k, v in rows[0].items() if k != "detector" and (isinstance(v, int | float) or v is None)}
            if len(rows) == 1
            else {}
        )
        return PipelineResult(
            image_name=image_name,
            metrics=job_metrics,
            detector_metrics=[{k: v for k, v in r.items() if k not in ("detectorName", "band")} for r in rows],
            telemetry=telemetry,
            summary={"detectors": summaries, "errors": errors, "skipped": skipped},
        )


def _image_type(path: pathlib.Path) -> str:
    try:
        header = read_primary_header(path)
    except PipelineError:
        return ""  # measure_detector reports why the file is unusable
    return str(header.get("IMGTYPE", "") or "").strip().upper()


def _obsid_of(path: pathlib.Path) -> str:
    try:
        return str(read_primary_header(path).get("OBSID", "") or "")
    except PipelineError:
        return ""
