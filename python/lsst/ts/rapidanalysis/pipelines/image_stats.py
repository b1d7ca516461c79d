"""``image_stats``: ISR statistics of any image (bias, dark, flat or science).

For a camera raw (a primary HDU and one HDU per amplifier with ``DATASEC``), per amp:

* the serial overscan (the columns right of the data section, less ``overscan_skip`` columns at
  each end, in the data-section rows): its per-row median is the bias level of that row, and the
  sigma-clipped standard deviation of the overscan pixels about their row medians is the read
  noise in ADU;
* the data section after subtracting the per-row overscan level: sigma-clipped mean, median,
  clipped standard deviation, minimum, maximum, and the number of saturated pixels (raw value
  at or above ``SATURATE``, default 142857 ADU).

Per detector the amp values are combined by their median (saturated pixels summed); per job the
detectors are combined likewise. A single-HDU (already calibrated) image gets whole-image
clipped statistics. A histogram of the pixel values (log y) is written as a PNG.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import re
import warnings
from typing import Any

import numpy as np
import pydantic
from astropy.io import fits

from .base import Pipeline, PipelineConfig, PipelineContext, PipelineError, PipelineResult, Product, safe_file_name
from .fits_input import (
    AmpError,
    amp_extname,
    amp_pixels,
    identify_detector,
    is_image,
    open_fits,
    read_data,
    release,
    sensor_make,
)

__all__ = [
    "ImageStatsConfig",
    "ImageStatsPipeline",
    "ClippedStats",
    "clipped_stats",
    "clipped_std_bias",
    "parse_section",
    "DEFAULT_SATURATION",
]

#: Saturation level when the header has no ``SATURATE`` (obs_lsst's default).
DEFAULT_SATURATION = 142857.0
#: IQR of a unit Gaussian is 1.349: sigma = 0.7413 IQR.
_IQR_TO_SIGMA = 0.7413
#: Amp EXTNAMEs of a 16-amp CCD (bottom row C10..C17, then top row C07..C00) and of an 8-amp ITL_WF.
_AMPS_16 = tuple(f"Segment1{k}" for k in range(8)) + tuple(f"Segment0{k}" for k in range(7, -1, -1))
_AMPS_8 = _AMPS_16[:8]
_SECTION_RE = re.compile(r"^\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]$")
_AMP_COLUMNS = (
    "overscanLevel",
    "readNoise",
    "meanLevel",
    "medianLevel",
    "clippedStd",
    "minLevel",
    "maxLevel",
    "nSaturated",
)


class ImageStatsConfig(PipelineConfig):
    """Configuration of ``image_stats``."""

    n_sigma_clip: float = pydantic.Field(3.0, gt=0, le=100, description="Clipping threshold in standard deviations.")
    n_clip_iter: int = pydantic.Field(3, ge=0, le=20, description="Clipping iterations after the IQR-based start.")
    histogram_bins: int = pydantic.Field(100, ge=2, le=10_000, description="Bins of the pixel-value histogram.")
    histogram_sigma: float = pydantic.Field(
        8.0, gt=0, le=1000, description="Histogram range: each amp's median ± this many clipped standard deviations."
    )
    make_plot: bool = pydantic.Field(True, description="Write the histogram PNG.")
    overscan_skip: int = pydantic.Field(
        3, ge=0, le=32, description="Serial-overscan columns to skip at each end (CTI trail, edge)."
    )
    saturation: float | None = pydantic.Field(
        None, gt=0, description="Saturation level in ADU; default the header's SATURATE, else 142857."
    )


@dataclasses.dataclass(frozen=True)
class ClippedStats:
    """Sigma-clipped statistics of a set of values.

    Attributes
    ----------
    mean : `float`
        Clipped mean.
    median : `float`
        Median of all (finite) values.
    std : `float`
        Clipped standard deviation.
    n_used : `int`
        Values left after clipping.
    """

    mean: float
    median: float
    std: float
    n_used: int


def clipped_stats(values: np.ndarray, n_sigma: float = 3.0, n_iter: int = 3) -> ClippedStats:
    """Sigma-clipped mean and standard deviation, and the median (as afw's MEANCLIP does).

    Start from the median and the IQR-based sigma, then ``n_iter`` times keep the values within
    ``n_sigma`` standard deviations of the centre and take their mean and standard deviation as
    the new centre and sigma (stopping early when nothing changes).

    Parameters
    ----------
    values : `numpy.ndarray`
        Finite values (any shape; not modified).
    n_sigma : `float`
        Clipping threshold.
    n_iter : `int`
        Clipping iterations.

    Returns
    -------
    stats : `ClippedStats`
        All NaN (and ``n_used`` 0) if there are no values.
    """
    flat = np.asarray(values).reshape(-1)
    n = flat.size
    if n == 0:
        return ClippedStats(math.nan, math.nan, math.nan, 0)
    median = _median(flat)
    # The IQR only starts the clipping: a subsample of about 100k values is plenty.
    sample = flat[:: max(1, n // 100_000)]
    q1, q3 = np.partition(sample, [sample.size // 4, (3 * sample.size) // 4])[
        [sample.size // 4, (3 * sample.size) // 4]
    ]
    sigma = _IQR_TO_SIGMA * float(q3 - q1)
    if not sigma > 0:
        sigma = float(flat.std(dtype=np.float64))
    mean, std, n_used = float(flat.mean(dtype=np.float64)), sigma, n
    if not sigma > 0:  # all equal
        return ClippedStats(mean, median, 0.0, n)
    center = median
    for _ in range(n_iter):
        keep = flat[np.abs(flat - center) <= n_sigma * sigma]  # float32 stays float32 (NEP 50)
        if keep.size == 0:
            break
        converged = keep.size == n_used  # the same values again: nothing more will change
        mean = float(keep.mean(dtype=np.float64))
        std = float(keep.std(dtype=np.float64))
        center, sigma, n_used = mean, std, keep.size
        if converged or not sigma > 0:
            break
    return ClippedStats(mean, median, std, n_used)


def _median(flat: np.ndarray) -> float:
    """Exact median of a 1-D array (one selection, which is much faster than two with many ties)."""
    n = flat.size
    mid = n // 2
    part = np.partition(flat, mid)
    upper = float(part[mid])
    return upper if n % 2 else 0.5 * (float(part[:mid].max()) + upper)


def clipped_std_bias(n_sigma: float) -> float:
    """Ratio of the converged clipped standard deviation to the true one, for Gaussian values.

    Clipping at ``n_sigma`` times the *clipped* standard deviation converges to a fixed point
    k = c(n_sigma k), where c(t)² = 1 - 2tφ(t)/(2Φ(t) - 1) is the variance ratio of a Gaussian
    truncated at ±t; for 3 sigma, k = 0.986.
    """
    k = 1.0
    for _ in range(100):
        t = n_sigma * k
        phi = math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
        inside = math.erf(t / math.sqrt(2))
        new_k = math.sqrt(max(1.0 - 2.0 * t * phi / inside, 1e-12))
        if abs(new_k - k) < 1e-10:
            break
        k = new_k
    return k


def parse_section(text: str, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """Numpy slices (rows, columns) of a FITS section ``[x0:x1,y0:y1]`` (1-based, inclusive).

    Raises
    ------
    ValueError
        If it is malformed or does not fit in an array of ``shape``.
    """
    match = _SECTION_RE.match(str(text).strip())
    if match is None:
        raise ValueError(f"section {text!r} is not of the form [x0:x1,y0:y1]")
    x0, x1, y0, y1 = (int(g) for g in match.groups())
    (x0, x1), (y0, y1) = sorted((x0, x1)), sorted((y0, y1))
    height, width = shape[-2], shape[-1]
    if x0 < 1 or y0 < 1 or x1 > width or y1 > height:
        raise ValueError(f"section {text!r} does not fit in a {width}x{height} image")
    return slice(y0 - 1, y1), slice(x0 - 1, x1)


def _nan_row() -> dict[str, float]:
    return {name: math.nan for name in _AMP_COLUMNS}


@dataclasses.dataclass
class _Histogram:
    """Counts of one detector's pixel values, per amp, over common bin edges."""

    edges: np.ndarray
    counts: np.ndarray  # (n_amps, n_bins)
    labels: list[str]
    n_outside: int


@dataclasses.dataclass
class _DetectorResult:
    """What was measured in one input file."""

    path: pathlib.Path
    kind: str  # "raw" or "image"
    detector: int
    detector_name: str
    image_name: str
    image_type: str
    amp_names: list[str]
    amp_rows: list[dict[str, float]]
    flags: list[str]
    histogram: _Histogram | None = None

    def good_rows(self) -> list[dict[str, float]]:
        return [row for row in self.amp_rows if math.isfinite(row["medianLevel"])]

    def metrics(self) -> dict[str, Any]:
        """The detector_metrics row."""
        good = self.good_rows()

        def med(key: str) -> float:
            values = [r[key] for r in good if math.isfinite(r[key])]
            return float(np.median(values)) if values else math.nan

        saturated = [r["nSaturated"] for r in good if math.isfinite(r["nSaturated"])]
        return {
            "detector": self.detector,
            "overscanLevel": med("overscanLevel"),
            "readNoise": med("readNoise"),
            "meanLevel": med("meanLevel"),
            "medianLevel": med("medianLevel"),
            "clippedStd": med("clippedStd"),
            "minLevel": min((r["minLevel"] for r in good), default=math.nan),
            "maxLevel": max((r["maxLevel"] for r in good), default=math.nan),
            "nSaturated": int(sum(saturated)) if saturated else None,
            "nAmps": len(good),
            "nBadAmps": len(self.amp_rows) - len(good),
        }

    def summary(self) -> dict[str, Any]:
        """JSON-able description with the per-amp table (columns of rounded values)."""
        table: dict[str, list[Any]] = {"amp": list(self.amp_names)}
        for column in _AMP_COLUMNS:
            table[column] = [_json_number(row[column]) for row in self.amp_rows]
        return {
            "file": self.path.name,
            "kind": self.kind,
            "imageName": self.image_name,
            "imageType": self.image_type,
            "detector": self.detector,
            "detectorName": self.detector_name,
            "amps": table,
        }


def _json_number(value: float) -> float | int | None:
    if value is None or not math.isfinite(value):
        return None
    if float(value).is_integer() and abs(value) < 2**53:
        return int(value)
    return float(f"{value:.6g}")


class ImageStatsPipeline(Pipeline[ImageStatsConfig]):
    """ISR statistics: overscan level and read noise per amp, clipped pixel statistics, a histogram."""

    name = "image_stats"
    description = "ISR statistics of raws or calibrated images: bias level, read noise, clipped pixel stats"
    Config = ImageStatsConfig
    # A calibration frame's statistics are per detector: autonomous mode spreads them over the pool.
    detector_parallel = True

    def run(self, inputs: list[pathlib.Path], config: ImageStatsConfig, context: PipelineContext) -> PipelineResult:
        """Measure every input file.

        Parameters
        ----------
        inputs : `list` [`pathlib.Path`]
            Camera raws (one detector each) and/or single-HDU images.
        config : `ImageStatsConfig`
            Configuration.
        context : `PipelineContext`
            Job context (cancellation, product directory).

        Returns
        -------
        result : `PipelineResult`

        Raises
        ------
        PipelineError
            If a file is missing, unreadable, truncated or has nothing to measure.
        JobAborted
            If the job is cancelled.
        """
        if not inputs:
            raise PipelineError("image_stats needs at least one input file")
        results: list[_DetectorResult] = []
        for path in inputs:
            context.check_cancelled()
            results.append(_measure_file(pathlib.Path(path), config, context))

        flags = [f"{r.path.name}: {flag}" for r in results for flag in r.flags]
        seen: dict[int, str] = {}
        for r in results:
            if r.detector in seen:
                flags.append(f"detector {r.detector} appears in both {seen[r.detector]} and {r.path.name}")
            seen.setdefault(r.detector, r.path.name)
        detector_rows = [r.metrics() for r in results]
        images = sorted({r.image_name for r in results if r.image_name})
        image_name = images[0] if len(images) == 1 else ""

        products = []
        if config.make_plot:
            context.check_cancelled()
            label = image_name or context.job_id
            path = context.product_path(f"image_stats_{safe_file_name(label)}.png")
            _plot_histograms(results, path, title=label)
            products.append(
                Product(path=str(path), mime_type="image/png", description=f"pixel-value histogram of {label}")
            )

        metrics = _image_metrics(results, detector_rows, len(flags))
        summary = {
            "images": images,
            "imageTypes": sorted({r.image_type for r in results if r.image_type}),
            "nFiles": len(results),
            "flags": flags,
            "detectors": [r.summary() for r in results],
        }
        return PipelineResult(
            image_name=image_name,
            metrics=metrics,
            detector_metrics=detector_rows,
            products=products,
            summary=summary,
        )


def _image_metrics(
    results: list[_DetectorResult], detector_rows: list[dict[str, Any]], n_flags: int
) -> dict[str, float | int | None]:
    """Per-job metrics: medians over detectors, the mean read noise over all good amps."""

    def med(key: str) -> float:
        values = [row[key] for row in detector_rows if row[key] is not None and math.isfinite(row[key])]
        return float(np.median(values)) if values else math.nan

    noise = [r["readNoise"] for res in results for r in res.good_rows() if math.isfinite(r["readNoise"])]
    saturated = [row["nSaturated"] for row in detector_rows if row["nSaturated"] is not None]
    finite_min = [row["minLevel"] for row in detector_rows if math.isfinite(row["minLevel"])]
    finite_max = [row["maxLevel"] for row in detector_rows if math.isfinite(row["maxLevel"])]
    return {
        "nDetectors": len(results),
        "nAmps": sum(row["nAmps"] for row in detector_rows),
        "nBadAmps": sum(row["nBadAmps"] for row in detector_rows),
        "overscanLevel": med("overscanLevel"),
        "meanReadNoise": float(np.mean(noise)) if noise else math.nan,
        "medianReadNoise": float(np.median(noise)) if noise else math.nan,
        "meanLevel": med("meanLevel"),
        "medianLevel": med("medianLevel"),
        "clippedStd": med("clippedStd"),
        "minLevel": min(finite_min, default=math.nan),
        "maxLevel": max(finite_max, default=math.nan),
        "nSaturated": int(sum(saturated)) if saturated else None,
        "nFlags": n_flags,
    }


# Reading files


def _measure_file(path: pathlib.Path, config: ImageStatsConfig, context: PipelineContext) -> _DetectorResult:
    hdul = open_fits(path)
    try:
        primary = hdul[0].header
        detector, detector_name, physical_type, flags = identify_detector(primary)
        amp_hdus = [hdu for hdu in hdul[1:] if is_image(hdu) and "DATASEC" in hdu.header]
        result = _DetectorResult(
            path=path,
            kind="raw" if amp_hdus else "image",
            detector=detector,
            detector_name=detector_name,
            image_name=str(primary.get("OBSID", "") or ""),
            image_type=str(primary.get("IMGTYPE", "") or ""),
            amp_names=[],
            amp_rows=[],
            flags=flags,
        )
        if amp_hdus:
            _measure_raw(result, primary, amp_hdus, physical_type or sensor_make(primary), config, context)
        else:
            _measure_image(result, hdul, config)
        return result
    finally:
        hdul.close()


def _saturation(config: ImageStatsConfig, *headers: fits.Header) -> float:
    if config.saturation is not None:
        return config.saturation
    for header in headers:
        value = header.get("SATURATE")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return DEFAULT_SATURATION


def _measure_raw(
    result: _DetectorResult,
    primary: fits.Header,
    amp_hdus: list[Any],
    physical_type: str,
    config: ImageStatsConfig,
    context: PipelineContext,
) -> None:
    """Per-amp overscan and data-section statistics of a camera raw."""
    # EXTNAMEs as FITS readers match them: SEGMENT10 is Segment10.
    names = [amp_extname(hdu.header) if "EXTNAME" in hdu.header else f"HDU{i + 1}" for i, hdu in enumerate(amp_hdus)]
    expected: tuple[str, ...] = ()
    if all(name.startswith("Segment") for name in names):
        expected = _AMPS_8 if physical_type == "ITL_WF" else _AMPS_16
    by_name = dict(zip(names, amp_hdus, strict=True))
    order = list(expected) + [n for n in names if n not in expected] if expected else names
    corrected: list[np.ndarray | None] = []
    rows: list[dict[str, float]] = []
    noise_factor = 1.0 / clipped_std_bias(config.n_sigma_clip)
    for amp_name in order:
        context.check_cancelled()
        hdu = by_name.get(amp_name)
        if hdu is None:
            result.flags.append(f"amp {amp_name} missing")
            rows.append(_nan_row())
            corrected.append(None)
            continue
        try:
            row, data = _measure_amp(hdu, primary, config, noise_factor, result.flags, amp_name)
        except AmpError as e:
            result.flags.append(f"amp {amp_name}: {e}")
            row, data = _nan_row(), None
        finally:
            release(hdu)
        rows.append(row)
        corrected.append(data if config.make_plot else None)
    result.amp_names, result.amp_rows = order, rows
    if not result.good_rows():
        raise PipelineError(f"{result.path}: no amplifier could be measured ({'; '.join(result.flags)})")
    if config.make_plot:
        # Integer pixels less a median of an even number of them: values on a 0.5 grid.
        integer = all(hdu.header.get("BITPIX", -32) > 0 and hdu.header.get("BSCALE", 1) == 1 for hdu in amp_hdus)
        amps = list(zip(order, corrected, rows, strict=True))
        result.histogram = _histogram(amps, config, quantum=0.5 if integer else None)


def _measure_amp(
    hdu: Any,
    primary: fits.Header,
    config: ImageStatsConfig,
    noise_factor: float,
    flags: list[str],
    amp_name: str,
) -> tuple[dict[str, float], np.ndarray]:
    """Statistics of one amp; also its overscan-corrected data section (float32)."""
    pixels = amp_pixels(hdu)
    try:
        rows, cols = parse_section(hdu.header["DATASEC"], pixels.shape)
    except ValueError as e:
        raise AmpError(str(e)) from None
    is_int = pixels.dtype.kind in "iu"
    data_raw = pixels[rows, cols]
    overscan = pixels[rows, cols.stop + config.overscan_skip : pixels.shape[1] - config.overscan_skip]
    out = _nan_row()
    if overscan.shape[1] >= 2:
        if is_int:
            row_level = np.median(overscan, axis=1)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: handled below
                row_level = np.nanmedian(overscan, axis=1)
            good_rows = np.isfinite(row_level)
            if not good_rows.any():
                raise AmpError("serial overscan has no finite pixels")
            if not good_rows.all():
                flags.append(f"amp {amp_name}: {np.count_nonzero(~good_rows)} overscan rows with no finite pixels")
                row_level = np.where(good_rows, row_level, np.median(row_level[good_rows]))
        residual = (overscan - row_level[:, None]).astype(np.float32)
        if not is_int:
            residual = residual[np.isfinite(residual)]
        noise = clipped_stats(residual, config.n_sigma_clip, config.n_clip_iter)
        n_cols = overscan.shape[1]
        # The row median takes away a little of each pixel's scatter: var(x - median) = (1 - 0.43/n) var(x).
        median_factor = 1.0 / math.sqrt(1.0 - (2.0 - math.pi / 2.0) / n_cols)
        out["overscanLevel"] = float(np.median(row_level))
        out["readNoise"] = noise.std * noise_factor * median_factor
    else:
        flags.append(f"amp {amp_name}: no serial overscan right of DATASEC; not bias-subtracted")
        row_level = np.zeros(data_raw.shape[0])
    data = data_raw.astype(np.float32)
    data -= row_level.astype(np.float32)[:, None]
    finite = data if is_int else data[np.isfinite(data)]
    if finite.size == 0:
        raise AmpError("data section has no finite pixels")
    stats = clipped_stats(finite, config.n_sigma_clip, config.n_clip_iter)
    saturation = _saturation(config, hdu.header, primary)
    out.update(
        meanLevel=stats.mean,
        medianLevel=stats.median,
        clippedStd=stats.std,
        minLevel=float(finite.min()),
        maxLevel=float(finite.max()),
        nSaturated=float(np.count_nonzero(data_raw >= saturation)),
    )
    return out, finite


def _measure_image(result: _DetectorResult, hdul: fits.HDUList, config: ImageStatsConfig) -> None:
    """Whole-image clipped statistics of the first 2-D image HDU."""
    for index, hdu in enumerate(hdul):
        if not is_image(hdu):
            continue
        try:
            pixels = read_data(hdu)
        except Exception as e:
            raise PipelineError(f"{result.path}: cannot read HDU {index} ({type(e).__name__}: {e})") from None
        if pixels is None:
            continue
        if pixels.ndim != 2:
            raise PipelineError(f"{result.path}: HDU {index} is {pixels.ndim}-D; image_stats measures 2-D images")
        break
    else:
        raise PipelineError(f"{result.path}: no image data (no amp HDUs with DATASEC and no 2-D image HDU)")
    others = [i for i, h in enumerate(hdul) if i > index and is_image(h) and h.header.get("NAXIS", 0) > 0]
    if others:
        result.flags.append(f"measured HDU {index} only; image HDU(s) {', '.join(map(str, others))} ignored")
    values = pixels.astype(np.float32, copy=False).reshape(-1)
    if pixels.dtype.kind == "f":
        values = values[np.isfinite(values)]
    if values.size == 0:
        raise PipelineError(f"{result.path}: image has no finite pixels (all NaN or infinite)")
    stats = clipped_stats(values, config.n_sigma_clip, config.n_clip_iter)
    has_saturation = config.saturation is not None or "SATURATE" in hdu.header or "SATURATE" in hdul[0].header
    n_saturated = (
        float(np.count_nonzero(values >= _saturation(config, hdu.header, hdul[0].header)))
        if has_saturation
        else math.nan
    )
    row = _nan_row()
    row.update(
        meanLevel=stats.mean,
        medianLevel=stats.median,
        clippedStd=stats.std,
        minLevel=float(values.min()),
        maxLevel=float(values.max()),
        nSaturated=n_saturated,
    )
    label = str(hdu.header.get("EXTNAME", "PRIMARY" if index == 0 else f"HDU{index}"))
    result.amp_names, result.amp_rows = [label], [row]
    if config.make_plot:
        result.histogram = _histogram(
            [(label, values, row)], config, quantum=1.0 if pixels.dtype.kind in "iu" else None
        )


# Histogram and plot


def _histogram(
    amps: list[tuple[str, np.ndarray | None, dict[str, float]]],
    config: ImageStatsConfig,
    quantum: float | None = None,
) -> _Histogram:
    """Per-amp counts over common edges spanning each amp's median ± histogram_sigma clipped std.

    ``quantum`` is the spacing of the possible values (0.5 for integer raws less a row median,
    1 for integer images): the bin width is then a multiple of it, and the edges fall between
    possible values, so that no bin gets more of them than another (no aliasing comb).
    """
    good = [(name, data, row) for name, data, row in amps if data is not None and math.isfinite(row["medianLevel"])]
    lows = [row["medianLevel"] - config.histogram_sigma * max(row["clippedStd"], 0.5) for _, _, row in good]
    highs = [row["medianLevel"] + config.histogram_sigma * max(row["clippedStd"], 0.5) for _, _, row in good]
    lo = max(min(lows), min(row["minLevel"] for _, _, row in good))
    hi = min(max(highs), max(row["maxLevel"] for _, _, row in good))
    if not hi > lo:
        lo, hi = lo - 0.5, lo + 0.5
    bins = config.histogram_bins
    if quantum:
        width = quantum * max(1, math.ceil((hi - lo) / bins / quantum))
        lo = math.floor(lo / quantum) * quantum - quantum / 2
        bins = max(1, math.ceil((hi - lo) / width))
        hi = lo + bins * width
    edges = np.linspace(lo, hi, bins + 1)
    counts = np.zeros((len(good), bins), dtype=np.int64)
    n_outside = 0
    scale = bins / (hi - lo)
    for i, (_, data, _) in enumerate(good):
        assert data is not None
        position = (data.reshape(-1) - lo) * scale
        inside = (position >= 0) & (position <= bins)
        index = np.minimum(position[inside].astype(np.int64), bins - 1)
        counts[i] = np.bincount(index, minlength=bins)
        n_outside += int(position.size - index.size)
    return _Histogram(edges=edges, counts=counts, labels=[name for name, _, _ in good], n_outside=n_outside)


def _plot_histograms(results: list[_DetectorResult], path: pathlib.Path, title: str) -> None:
    """One line per amp (one detector) or per detector (several), log y; written with Agg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.1, top=0.93)  # fixed: tight_layout costs 0.3 s
    ax = fig.add_subplot(1, 1, 1)
    with_hist = [r for r in results if r.histogram is not None and r.histogram.counts.size]
    n_outside = sum(r.histogram.n_outside for r in with_hist if r.histogram is not None)
    if len(with_hist) == 1:
        hist = with_hist[0].histogram
        assert hist is not None
        colors = _colors(len(hist.labels))
        for counts, label, color in zip(hist.counts, hist.labels, colors, strict=True):
            ax.stairs(np.maximum(counts, 0.5), hist.edges, label=label, color=color, linewidth=1)
        what = with_hist[0].detector_name or with_hist[0].path.name
        legend_title = f"{what} amps"
    else:
        colors = _colors(len(with_hist))
        for r, color in zip(with_hist, colors, strict=True):
            assert r.histogram is not None
            label = r.detector_name or r.path.name
            ax.stairs(np.maximum(r.histogram.counts.sum(axis=0), 0.5), r.histogram.edges, label=label, color=color)
        legend_title = "detectors"
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.8)
    kinds = {r.kind for r in results}
    ax.set_xlabel("pixel value after overscan subtraction (ADU)" if kinds == {"raw"} else "pixel value")
    ax.set_ylabel("pixels")
    types = ", ".join(sorted({r.image_type for r in results if r.image_type}))
    ax.set_title(f"image_stats: {title}" + (f" ({types})" if types else ""))
    if n_outside:
        note = f"{n_outside} pixels outside the range"
        ax.text(0.99, 0.98, note, ha="right", va="top", transform=ax.transAxes, fontsize=8)
    n_lines = len(ax.lines) + len(ax.patches)
    if 0 < n_lines <= 24:
        ax.legend(title=legend_title, fontsize=7, title_fontsize=8, ncol=2 if n_lines > 8 else 1, loc="upper left")
    fig.savefig(path)


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(n)]
