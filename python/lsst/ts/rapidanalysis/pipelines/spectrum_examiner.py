"""``spectrum_examiner``: quick look at a LATISS dispersed image (zeroth order and first-order spectrum).

What the summit's ``SpectrumExaminer`` does (``ra-algorithms.md`` §3), with its flaws fixed: the
zeroth order is the brightest *round* source (not the brightest pixel), the extraction box comes
from a per-grating configuration, the spectrum is background-subtracted, and too few good rows
give NaN metrics and a flag instead of an exception.

Stages
------
1. *ISR-lite* (`isr_lite`): the shared ISR (`lsst.ts.rapidanalysis.pipelines.isr`) with the serial
   overscan only: per amplifier, subtract the per-row median of the serial overscan (the columns
   right of ``DATASEC``, less ``overscan_skip`` columns at each end, in the data rows), multiply
   by the amp's gain (e-/ADU, from where the shared ISR takes it: the camera description for a
   real raw), and assemble in the DM stack's orientation. The image is in electrons. Every one of
   the 16 amplifier HDUs must be there; EXTNAMEs are matched as FITS readers match them
   (case-insensitive, surrounding blanks ignored: ``SEGMENT10`` is ``Segment10``).
2. *Zeroth order* (`find_zeroth_order`): bin ``detection_bin`` x ``detection_bin``, median of 3
   along columns then rows (removes cosmic rays), Gaussian smoothing of 1 binned pixel, threshold at the clipped median
   plus ``detection_sigma`` clipped standard deviations; each connected blob gets a flux and the
   second moments of its light; blobs whose moment ellipse has an axis ratio (larger over smaller
   eigenvalue) above ``max_elongation`` are rejected (that is the spectrum, or a bleed trail).
   The remaining blobs, brightest first (at most ``max_star_candidates``), are measured at full
   resolution (adaptive second moments with a round Gaussian weight, corrected for the weight,
   less the pixel's 1/12 px², above the median of an outer ring): the first that is a star is the
   zeroth order. A star is at least ``min_star_fwhm`` (3 px = 0.29 arcsec, sharper than any seeing)
   across the *narrower* axis of those moments, is no more elongated than ``max_elongation`` there
   either, and has a Gaussian-weighted signal-to-noise of at least ``min_star_snr`` (5). A cosmic
   ray that survives the median filters (a track or cluster several binned pixels long) is under a
   pixel across its track (0-1.2 px on simulated tracks, whose major axes are 6-25 px), while a
   zeroth order is the seeing's width (8.4 px at 0.8 arcsec) even at the detection limit. If
   no candidate is a star the image has no zeroth order: exit code 2, and the message gives the
   brightest candidate's position, both FWHMs and signal-to-noise, and why each was rejected. The
   star's centroid is then refined at full resolution with a Gaussian-weighted centroid above the
   local background (the median of an annulus).
3. *Extraction box* (`ExtractionBox`, chosen by the ``GRATING`` header): rows ``round(cy + offset)``
   to ``+ length`` (dispersion along +y, as on the summit), columns ``round(cx) - half_width`` to
   ``round(cx) + half_width - 1``, clipped to the detector.
4. *Background*: per row, the 3-sigma-clipped mean of ``background_width`` columns either side of
   the box (outside it, ``background_gap`` columns away), smoothed along the dispersion by a
   running mean of ``background_smoothing`` rows; subtracted from every pixel of the row.
5. *Ridge line*: a robust polynomial through the per-row maxima of the box smoothed over 9 rows
   gives a first guess; the ridge is then, per row, the Gaussian-weighted centroid (sigma from the
   zeroth order's size) across the dispersion.
6. *Good rows*: signal-to-noise of the flux within 1.5 FWHM of the ridge at least ``min_row_snr``
   and the ridge within ``max_ridge_deviation`` px of a smooth (robust quadratic) fit to the good
   ridge. The *good section* is the run of good rows with the most of them, allowing gaps of up to
   ``max_gap`` rows. Fewer than ``min_good_rows`` good rows: the continuum and FWHM are NaN and a
   flag says why.
7. *Row Gaussian fits* over the good rows (batched Levenberg-Marquardt, amplitude, centre, sigma and
   a constant, within 2.5 FWHM of the ridge).

Measured quantities (``ADU`` below means electrons divided by the *mean* gain of the 16 amps,
which is how the simulator's truth converts its rates: ``truth["spectrum"]["gain"]``)
---------------------------------------------------------------------------------------------
``starCentroidX``, ``starCentroidY``
    Zeroth-order centroid, 0-based pixel of the assembled image (the centre of ``image[0, 0]`` is
    0, 0; x is the column). Truth: ``spectrum.zeroth_order.x / y``.
``starPeakAdu``, ``starPeakRate``
    The value of the pixel at the rounded centroid less the local background (ADU; / EXPTIME for
    ADU/s). An estimate, with that one pixel's noise, of truth ``spectrum.zeroth_order.
    peak_rate_adu`` (the brightest pixel of the noise-free, pixel-integrated star above the sky).
``continuumAdu``, ``continuumRate``
    Flux per row of the first order above the background on the plateau of its continuum (ADU; /
    EXPTIME for ADU/s): the background-subtracted sum across the whole box width of each row of
    the good section, averaged over the *plateau rows*. These are selected on a smooth profile of
    the row sums (a running median of 5 rows, then a running mean of ``continuum_smoothing`` = 21),
    never on the noisy rows themselves: rows whose smooth value is within ``continuum_band`` (2 %)
    of the profile's ``continuum_top_percentile`` (95th), or within 5 sigma of the smooth
    profile's noise if that is wider. The average is a mean clipped symmetrically at
    ``continuum_clip_sigma`` (3) times the row noise (from successive differences), which leaves
    out cosmic rays and absorption-line cores without a bias. On a flat continuum this is the
    plateau, truth ``spectrum.continuum_rate_adu``: on full frames (``bench/examiners.py``) the
    mean bias is under 0.1 % (scatter 0.1 %) at a per-row signal-to-noise of 10 and 0.2-0.5 % at
    5-6, where a high percentile of the rows (the summit's 98th) rises with the noise: +0.3 % at
    190, +1.4 % at 38, +5.5 % at 10. On a sloping continuum it is the mean of its brightest 2 %.
    (The summit's number is a *peak pixel*, without background subtraction: see
    ``continuumPeakRate``.)
``continuumPeakRate`` (metrics only)
    The same clipped mean over the same plateau rows of the background-subtracted value of the
    pixel nearest the ridge, ADU/s: the peak pixel of the continuum, truth
    ``spectrum.continuum_peak_rate_adu`` for a ridge centred on a pixel.
``fwhmMedian``, ``fwhmBest``
    Per good row, the FWHM of the fitted Gaussian with the pixel's 1/12 px² removed
    (``2.3548 sqrt(sigma² - 1/12)``: the FWHM of the light before pixelisation, truth
    ``spectrum.rows.fwhm_px``); the median of the rows left after 3-sigma clipping, and the 2nd
    percentile of the same rows (as on the summit, biased low by the row-to-row scatter).
``goodStart``, ``goodEnd``, ``nGoodRows``
    First and last detector row (0-based) of the good section, -1 if there is none; good rows in it.
``backgroundLevel``
    Median of the whole image after ISR-lite (ADU).
``expTime``
    ``EXPTIME`` (s).

Inputs that are not LATISS dispersed science images (``GRATING`` missing, empty or ``empty*``/
``none``; another instrument; ``IMGTYPE`` bias, dark or flat) are skipped with a reason. A missing,
truncated or corrupt file, or one without all 16 amplifier HDUs, is a `PipelineError` with exit
code 3; no zeroth order found is exit code 2.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any

import numpy as np
import pydantic
from astropy.io import fits
from scipy import ndimage

from ..data.amp_geometry import amp_names
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
from .fits_input import amp_extname, instrument_of, is_image, open_fits
from .image_stats import clipped_stats
from .isr import SAT, IsrSettings, run_isr

__all__ = [
    "DEFAULT_GRATING_BOXES",
    "ExtractionBox",
    "IsrImage",
    "SpectrumExaminerConfig",
    "SpectrumExaminerPipeline",
    "SpectrumTrace",
    "ZerothOrder",
    "find_zeroth_order",
    "fit_gaussian_rows",
    "isr_lite",
    "measure_spectrum",
]

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: The amps of a LATISS (ITL) raw, as EXTNAMEs in HDU order.
_LATISS_AMPS = tuple(f"Segment{name[1:]}" for name in amp_names("ITL"))
#: LATISS dispersers (``ra-algorithms.md`` §3).
_GRATINGS = ("ronchi90lpmm", "ronchi170lpmm", "holo4_003", "holo4_001", "blue300lpmm_qn1")
_NOT_SCIENCE = ("BIAS", "DARK", "FLAT")
#: Telemetry fields of ``spectrumMetrics`` (RapidAnalysis_Telemetry.xml), in order.
TELEMETRY_FIELDS = (
    "imageName",
    "filter",
    "grating",
    "starCentroidX",
    "starCentroidY",
    "starPeakAdu",
    "starPeakRate",
    "continuumAdu",
    "continuumRate",
    "fwhmMedian",
    "fwhmBest",
    "goodStart",
    "goodEnd",
    "nGoodRows",
    "backgroundLevel",
    "expTime",
)


class ExtractionBox(pydantic.BaseModel):
    """Where the first order is, relative to the zeroth order (dispersion along +y).

    The defaults are the summit's (atmospec ``calcSpectrumBBox`` with the offset overridden to 400):
    a 200-px wide box from 400 px to 5400 px above the zeroth order.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    offset: float = pydantic.Field(
        400.0, ge=0, description="Rows from the zeroth-order centroid to the first row of the box (along +y)."
    )
    length: int = pydantic.Field(5000, ge=10, description="Rows of the box (clipped to the detector).")
    half_width: int = pydantic.Field(
        100, ge=5, le=1000, description="Columns either side of the zeroth-order column (the box is twice as wide)."
    )
    background_width: int = pydantic.Field(
        30, ge=2, le=500, description="Columns either side of the box whose clipped mean per row is the background."
    )
    background_gap: int = pydantic.Field(0, ge=0, le=500, description="Columns between the box and each strip.")


#: The extraction box per LATISS grating. All are the summit's values for now (it uses one box for
#: every disperser); tune them per grating here or in the site configuration.
DEFAULT_GRATING_BOXES: dict[str, ExtractionBox] = {grating: ExtractionBox() for grating in _GRATINGS}


class SpectrumExaminerConfig(PipelineConfig):
    """Configuration of ``spectrum_examiner``."""

    gratings: dict[str, ExtractionBox] = pydantic.Field(
        default_factory=lambda: dict(DEFAULT_GRATING_BOXES), description="Extraction box per GRATING value."
    )
    default_box: ExtractionBox = pydantic.Field(
        default_factory=ExtractionBox, description="Extraction box of a grating not in ``gratings``."
    )
    box: ExtractionBox | None = pydantic.Field(
        None, description="If set, the extraction box whatever the grating (a one-off override)."
    )
    overscan_skip: int = pydantic.Field(
        3, ge=0, le=32, description="Serial-overscan columns to skip at each end (CTI trail, edge)."
    )
    detection_bin: int = pydantic.Field(4, ge=1, le=16, description="Binning of the image searched for sources.")
    detection_sigma: float = pydantic.Field(
        10.0, gt=0, le=1000, description="Detection threshold in clipped standard deviations of the smoothed image."
    )
    min_blob_pixels: int = pydantic.Field(3, ge=1, description="Smallest source, in binned pixels above threshold.")
    max_elongation: float = pydantic.Field(
        5.0, gt=1, description="Largest axis ratio (of second-moment eigenvalues) of the zeroth order."
    )
    min_star_fwhm: float = pydantic.Field(
        3.0,
        gt=0,
        description=(
            "Smallest zeroth order: FWHM (px) of the narrower axis of its full-resolution adaptive second "
            "moments. LATISS pixels are 0.096 arcsec, so 3 px is 0.29 arcsec, sharper than any seeing; a "
            "cosmic ray is under 1 px across its track."
        ),
    )
    min_star_snr: float = pydantic.Field(
        5.0, gt=0, description="Smallest signal-to-noise of the zeroth order (Gaussian-weighted, full resolution)."
    )
    max_star_candidates: int = pydantic.Field(
        20, ge=1, le=1000, description="Round sources, brightest first, examined for the zeroth order."
    )
    background_smoothing: int = pydantic.Field(
        51, ge=1, le=10_001, description="Rows of the running mean of the per-row background."
    )
    min_row_snr: float = pydantic.Field(10.0, gt=0, description="Signal-to-noise of a good row.")
    max_ridge_deviation: float = pydantic.Field(
        3.0, gt=0, description="Largest distance (px) of a good row's ridge from the smooth fit."
    )
    max_gap: int = pydantic.Field(10, ge=0, description="Longest run of bad rows inside the good section.")
    min_good_rows: int = pydantic.Field(50, ge=3, description="Fewer good rows: no continuum or FWHM (NaN).")
    continuum_smoothing: int = pydantic.Field(
        21,
        ge=1,
        le=1001,
        description="Rows of the running mean (after a running median of 5) that gives the smooth row-flux profile.",
    )
    continuum_top_percentile: float = pydantic.Field(
        95.0, ge=50, le=100, description="Percentile of the smooth profile taken as the top of the continuum."
    )
    continuum_band: float = pydantic.Field(
        0.02,
        ge=0,
        le=0.5,
        description="Plateau rows: smooth profile within this fraction (or 5 of its sigmas, if more) of the top.",
    )
    continuum_clip_sigma: float = pydantic.Field(
        3.0, gt=0, description="Clipping (row-noise sigmas) of the mean over the plateau rows."
    )
    fwhm_clip_sigma: float = pydantic.Field(3.0, gt=0, description="Clipping of the per-row FWHMs.")
    fwhm_best_percentile: float = pydantic.Field(2.0, ge=0, le=100, description="Percentile giving fwhmBest.")
    make_plot: bool = pydantic.Field(True, description="Write the 4 x 4-panel PNG.")

    def box_for(self, grating: str) -> ExtractionBox:
        """The extraction box of a grating."""
        if self.box is not None:
            return self.box
        return self.gratings.get(grating, self.default_box)


# ISR-lite


@dataclasses.dataclass
class IsrImage:
    """An assembled, overscan-subtracted, gain-corrected detector image.

    Attributes
    ----------
    image : `numpy.ndarray`
        Electrons, float32, (rows, cols) of the assembled detector.
    gains : `dict` [`str`, `float`]
        Gain (e-/ADU) used per amp EXTNAME.
    saturated : `tuple` [`numpy.ndarray`, `numpy.ndarray`]
        (rows, cols) in the assembled image of pixels at or above their amp's ``SATURATE``
        (ADU above the bias).
    flags : `list` [`str`]
        What was not as expected.
    """

    image: np.ndarray
    gains: dict[str, float]
    saturated: tuple[np.ndarray, np.ndarray]
    flags: list[str]

    @property
    def mean_gain(self) -> float:
        """Mean of the amps' gains: electrons / mean_gain is this pipeline's ADU."""
        return float(np.mean(list(self.gains.values())))


def isr_lite(
    hdul: fits.HDUList,
    path: pathlib.Path,
    *,
    overscan_skip: int = 3,
    expected_amps: tuple[str, ...] = _LATISS_AMPS,
    context: PipelineContext | None = None,
) -> IsrImage:
    """The shared ISR (`lsst.ts.rapidanalysis.pipelines.isr.run_isr`) with serial overscan only.

    Every amp must be there and usable: the spectrum crosses amp boundaries, and a hole in it
    would be read as an absorption feature.

    Raises
    ------
    PipelineError
        Exit code 3 if an amp HDU is missing, unreadable or malformed.
    """
    amp_hdus = [hdu for hdu in hdul[1:] if is_image(hdu) and "DATASEC" in hdu.header]
    # As FITS readers match EXTNAMEs (astropy's ``hdul["segment10"]`` finds ``Segment10``):
    # case-insensitive, surrounding blanks ignored.
    present = {_extname_key(amp_extname(hdu.header)) for hdu in amp_hdus}
    missing = [name for name in expected_amps if _extname_key(name) not in present]
    if missing:
        raise PipelineError(
            f"{path}: amplifier HDU(s) {', '.join(missing)} missing ({len(expected_amps) - len(missing)} of "
            f"{len(expected_amps)} present): the file is incomplete or truncated",
            exit_code=ExitCode.NO_INPUT,
        )
    settings = IsrSettings(overscan_skip=overscan_skip, do_parallel_overscan=False)
    isr = run_isr(path, hdul[0].header, amp_hdus, settings, context)
    unusable = [flag for flag in isr.flags if flag.startswith("amp ")]
    if unusable or not np.isfinite(isr.image).all():
        raise PipelineError(
            f"{path}: {'; '.join(unusable) or 'amps do not cover the detector'}", exit_code=ExitCode.NO_INPUT
        )
    saturated = _bit_pixels(isr.mask, SAT)
    return IsrImage(image=isr.image, gains=isr.gains, saturated=saturated, flags=list(isr.flags))


def _bit_pixels(mask: np.ndarray, bit: np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pixels with ``bit`` set, as ``np.nonzero(mask & bit)``.

    Looks only in the rows with any bit set: a full-frame ``nonzero`` costs ~60 ms, this ~1 ms
    when few rows are masked (as usual).
    """
    hit_rows = np.flatnonzero(mask.max(axis=1))
    rows, cols = np.nonzero(mask[hit_rows] & bit)
    return hit_rows[rows], cols


def _extname_key(name: str) -> str:
    """An EXTNAME as FITS readers compare them: case-insensitive, leading and trailing blanks ignored."""
    return name.strip().upper()


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


# Zeroth order


@dataclasses.dataclass
class ZerothOrder:
    """The zeroth-order star.

    Attributes
    ----------
    x, y : `float`
        Centroid (0-based pixels of the assembled image).
    peak_e : `float`
        Value of the pixel at the rounded centroid less ``background_e`` (e-).
    background_e : `float`
        Local background per pixel (median of an annulus, e-).
    sigma : `float`
        Gaussian sigma (px) from the second moments of the core (a size, not a fit).
    elongation : `float`
        Axis ratio of the detected blob (larger over smaller second-moment eigenvalue).
    ap25_e : `float`
        Flux within 25 px of the centroid above the local background (e-).
    n_sources : `int`
        Blobs detected.
    n_elongated : `int`
        Of them, rejected as elongated.
    n_not_stars : `int`
        Round blobs brighter than this one that are not stars at full resolution (too small, such
        as cosmic rays; elongated; too faint).
    minor_fwhm : `float`
        FWHM (px) of the narrower axis of the full-resolution adaptive moments.
    snr : `float`
        Gaussian-weighted signal-to-noise at full resolution.
    """

    x: float
    y: float
    peak_e: float
    background_e: float
    sigma: float
    elongation: float
    ap25_e: float
    n_sources: int
    n_elongated: int
    n_not_stars: int = 0
    minor_fwhm: float = math.nan
    snr: float = math.nan

    @property
    def fwhm(self) -> float:
        """Gaussian-equivalent FWHM (px)."""
        return _FWHM_PER_SIGMA * self.sigma


def find_zeroth_order(
    image: np.ndarray,
    *,
    detection_bin: int = 4,
    detection_sigma: float = 10.0,
    min_blob_pixels: int = 3,
    max_elongation: float = 5.0,
    min_star_fwhm: float = 3.0,
    min_star_snr: float = 5.0,
    max_star_candidates: int = 20,
) -> tuple[ZerothOrder | None, str]:
    """Find the brightest round source of a dispersed image that is a star, not a cosmic ray.

    Parameters
    ----------
    image : `numpy.ndarray`
        Background-level image (electrons: the signal-to-noise assumes it).
    detection_bin, detection_sigma, min_blob_pixels, max_elongation, min_star_fwhm, min_star_snr, \
max_star_candidates
        See `SpectrumExaminerConfig`.

    Returns
    -------
    star : `ZerothOrder` or `None`
        None if there is no round source that is a star.
    reason : `str`
        Why there is none, with the numbers (empty otherwise).
    """
    b = detection_bin
    rows, cols = image.shape
    nr, nc = rows // b, cols // b
    if nr < 8 or nc < 8:
        return None, f"image {cols} x {rows} is too small to search at binning {b}"
    binned = _bin_mean(image, b)
    # A median of 3 along the columns, then along the rows, removes cosmic rays (lines one binned
    # pixel wide) but keeps a PSF core; ten times faster than a 3 x 3 median filter.
    smooth = ndimage.gaussian_filter(_median3(_median3(binned, axis=0), axis=1), 1.0)
    stats = clipped_stats(smooth[::2, ::2].astype(np.float32))
    if not stats.std > 0:
        return None, "the image is flat (no noise, no sources)"
    above = smooth - stats.median
    mask = above > detection_sigma * stats.std
    labels, n_blobs = ndimage.label(mask)
    if n_blobs == 0:
        return None, f"no source above {detection_sigma:g} sigma"
    idx = labels[mask]
    yy, xx = np.nonzero(mask)
    w = above[mask]
    n_pix = np.bincount(idx, minlength=n_blobs + 1)
    flux = np.bincount(idx, w, minlength=n_blobs + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.bincount(idx, w * xx, minlength=n_blobs + 1) / flux
        my = np.bincount(idx, w * yy, minlength=n_blobs + 1) / flux
        mxx = np.bincount(idx, w * xx * xx, minlength=n_blobs + 1) / flux - mx**2
        myy = np.bincount(idx, w * yy * yy, minlength=n_blobs + 1) / flux - my**2
        mxy = np.bincount(idx, w * xx * yy, minlength=n_blobs + 1) / flux - mx * my
        half_trace, det_root = (mxx + myy) / 2, np.sqrt(((mxx - myy) / 2) ** 2 + mxy**2)
        elongation = (half_trace + det_root) / np.maximum(half_trace - det_root, 1e-3)
    candidates = np.arange(1, n_blobs + 1)
    big = candidates[n_pix[1:] >= min_blob_pixels]
    round_ = big[elongation[big] <= max_elongation]
    n_elongated = int(big.size - round_.size)
    if round_.size == 0:
        return None, (
            f"{n_blobs} source(s) above {detection_sigma:g} sigma, {big.size} of at least {min_blob_pixels} binned "
            f"pixels, none round (axis ratio <= {max_elongation:g}; {n_elongated} elongated)"
        )
    # The binned, median-filtered image hides how sharp a source is: a cosmic ray that survives
    # the medians (a track several binned pixels long, or a cluster) looks like a faint star
    # there. At full resolution its light is under a pixel across the track, a star's is the
    # seeing's width; so each candidate, brightest first, is measured there.
    rejected: list[_Candidate] = []
    for blob in round_[np.argsort(flux[round_])[::-1]][:max_star_candidates]:
        # Binned pixel i covers full pixels i*b .. i*b + b-1: its centre is i*b + (b-1)/2.
        x0 = mx[blob] * b + (b - 1) / 2
        y0 = my[blob] * b + (b - 1) / 2
        # Size: blob moments less the smoothing (1 binned px²) and the binning (1/12), in full pixels.
        var = max((half_trace[blob] - 1.0 - 1.0 / 12.0) * b * b, 1.0)
        sigma = float(np.clip(math.sqrt(var), 1.0, 30.0))
        candidate = _measure_candidate(image, x0, y0, sigma)
        if candidate.verdict(min_star_fwhm, max_elongation, min_star_snr):
            rejected.append(candidate)
            continue
        star = _refine_star(image, x0, y0, sigma)
        star.elongation = float(elongation[blob])
        star.n_sources, star.n_elongated, star.n_not_stars = int(n_blobs), n_elongated, len(rejected)
        star.minor_fwhm, star.snr = candidate.minor_fwhm, candidate.snr
        return star, ""
    return None, _no_star_reason(
        rejected, n_blobs, n_elongated, round_.size, detection_sigma, min_star_fwhm, max_elongation, min_star_snr
    )


@dataclasses.dataclass
class _Candidate:
    """A round source measured at full resolution (see `_measure_candidate`)."""

    x: float
    y: float
    minor_fwhm: float
    major_fwhm: float
    snr: float

    def verdict(self, min_fwhm: float, max_elongation: float, min_snr: float) -> str:
        """Why this is not a star ("" if it is one): "unmeasured", "small", "elongated" or "faint"."""
        if not (math.isfinite(self.minor_fwhm) and math.isfinite(self.snr)):
            return "unmeasured"
        if self.minor_fwhm < min_fwhm:
            return "small"
        if (self.major_fwhm / self.minor_fwhm) ** 2 > max_elongation:
            return "elongated"
        if self.snr < min_snr:
            return "faint"
        return ""


def _measure_candidate(image: np.ndarray, x: float, y: float, sigma: float) -> _Candidate:
    """Adaptive second moments and Gaussian-weighted signal-to-noise of a source at full resolution.

    The weight is a round Gaussian whose variance is iterated to the mean of the source's
    (weight-corrected) second-moment eigenvalues: for a Gaussian source of covariance C and a
    weight of variance w², the weighted covariance is M = (C⁻¹ + I/w²)⁻¹, so each eigenvalue of
    C is m w² / (w² - m). The pixel's 1/12 px² is removed before the FWHMs.
    """
    rows, cols = image.shape
    half = int(np.clip(math.ceil(5 * sigma), 12, 80))
    ix, iy = int(round(x)), int(round(y))
    ya, yb = max(0, iy - half), min(rows, iy + half + 1)
    xa, xb = max(0, ix - half), min(cols, ix + half + 1)
    cut = image[ya:yb, xa:xb].astype(np.float64)
    gy, gx = np.mgrid[ya:yb, xa:xb]
    # Background and noise from the cutout's outer ring (beyond 4 sigma of the binned size).
    ring = cut[np.hypot(gx - x, gy - y) >= max(4 * sigma, half - 4)]
    ring = ring if ring.size >= 20 else cut.ravel()
    background = float(np.median(ring))
    noise = float(np.median(np.abs(ring - background))) * 1.4826
    sub = cut - background
    nan = _Candidate(x, y, math.nan, math.nan, math.nan)
    w2 = max(sigma, 1.0) ** 2
    c_minor = c_major = math.nan
    weight = np.ones_like(sub)
    for _ in range(40):
        weight = np.exp(-0.5 * ((gx - x) ** 2 + (gy - y) ** 2) / w2)
        ws = weight * sub
        total = ws.sum()
        if not total > 0:
            return nan
        x_new, y_new = float((ws * gx).sum() / total), float((ws * gy).sum() / total)
        if math.hypot(x_new - x, y_new - y) > 3 * math.sqrt(w2) + 2:
            return nan
        x, y = x_new, y_new
        dx, dy = gx - x, gy - y
        mxx, myy, mxy = (ws * dx * dx).sum() / total, (ws * dy * dy).sum() / total, (ws * dx * dy).sum() / total
        centre, spread = (mxx + myy) / 2, math.hypot((mxx - myy) / 2, mxy)
        m_major, m_minor = centre + spread, max(centre - spread, 0.0)
        if m_major >= 0.95 * w2:  # the weight is narrower than the source: widen it
            if w2 >= 60.0**2:
                return nan
            w2 *= 2.0
            continue
        c_major, c_minor = m_major * w2 / (w2 - m_major), m_minor * w2 / (w2 - m_minor)
        new_w2 = float(np.clip((c_major + c_minor) / 2, 0.25, 60.0**2))
        if abs(new_w2 - w2) <= 1e-4 * w2:
            break
        w2 = new_w2
    if not (math.isfinite(c_minor) and noise > 0):
        return nan
    snr = float((weight * sub).sum() / (noise * math.sqrt((weight * weight).sum())))
    minor = _FWHM_PER_SIGMA * math.sqrt(max(c_minor - 1.0 / 12.0, 0.0))
    major = _FWHM_PER_SIGMA * math.sqrt(max(c_major - 1.0 / 12.0, 0.0))
    return _Candidate(x, y, minor, major, snr)


def _no_star_reason(
    rejected: list[_Candidate],
    n_blobs: int,
    n_elongated: int,
    n_round: int,
    detection_sigma: float,
    min_star_fwhm: float,
    max_elongation: float,
    min_star_snr: float,
) -> str:
    """Why no candidate is the zeroth order, with the brightest one's numbers."""
    text = f"{n_blobs} source(s) above {detection_sigma:g} sigma, {n_round} round ({n_elongated} elongated)"
    if not rejected:
        return text
    verdicts = [c.verdict(min_star_fwhm, max_elongation, min_star_snr) for c in rejected]
    first = rejected[0]
    size = (
        f"{first.minor_fwhm:.2f} x {first.major_fwhm:.2f} px (FWHMs of its full-resolution second moments), "
        f"signal-to-noise {first.snr:.0f}"
    )
    what = {
        "unmeasured": "has no measurable size (its second moments do not converge)",
        "small": (
            f"is {size}: narrower than a star (min_star_fwhm {min_star_fwhm:g} px; a cosmic ray is sharp, "
            "under a pixel across its track)"
        ),
        "elongated": f"is {size}: elongated at full resolution (axis ratio above {max_elongation:g}), a track",
        "faint": f"is {size}: too faint (min_star_snr {min_star_snr:g})",
    }[verdicts[0]]
    counts = ", ".join(
        f"{verdicts.count(v)} {v}" for v in ("small", "elongated", "faint", "unmeasured") if v in verdicts
    )
    return (
        f"{text}; none is a star: the brightest round one, at ({first.x:.0f}, {first.y:.0f}), {what}; "
        f"of the {len(rejected)} examined: {counts}"
    )


def _bin_mean(image: np.ndarray, b: int) -> np.ndarray:
    """Mean of ``b`` x ``b`` blocks (trailing rows and columns dropped), float32.

    Sums of strided slices: six times faster than ``reshape(...).mean(axis=(1, 3))``, whose
    reduction over non-adjacent axes walks the image with a poor memory pattern.
    """
    nr, nc = image.shape[0] // b, image.shape[1] // b
    view = image[: nr * b, : nc * b]
    rows = view[0::b].astype(np.float32)
    for k in range(1, b):
        rows += view[k::b]
    out = rows[:, 0::b].copy()
    for k in range(1, b):
        out += rows[:, k::b]
    out *= np.float32(1.0 / (b * b))
    return out


def _median3(a: np.ndarray, axis: int) -> np.ndarray:
    """Running median of 3 along ``axis`` (edges repeated), with in-place min/max on views."""
    a = np.moveaxis(a, axis, 0)
    out = np.empty_like(a)
    lo, mid, hi = a[:-2], a[1:-1], a[2:]
    low = np.minimum(lo, mid)
    high = np.maximum(lo, mid)
    np.minimum(high, hi, out=high)
    np.maximum(low, high, out=out[1:-1])
    # median(a0, a0, a1) is a0: the repeated edge.
    out[0], out[-1] = a[0], a[-1]
    return np.moveaxis(out, 0, axis)


def _refine_star(image: np.ndarray, x: float, y: float, sigma: float) -> ZerothOrder:
    """Gaussian-weighted centroid, local background, peak pixel and 25-px aperture flux at full resolution."""
    rows, cols = image.shape
    r_in = max(30.0, 5 * _FWHM_PER_SIGMA * sigma)
    r_out = r_in + 15
    half = int(math.ceil(r_out))
    ya, yb = max(0, int(round(y)) - half), min(rows, int(round(y)) + half + 1)
    xa, xb = max(0, int(round(x)) - half), min(cols, int(round(x)) + half + 1)
    cut = image[ya:yb, xa:xb]
    gy, gx = np.mgrid[ya:yb, xa:xb]
    radius = np.hypot(gx - x, gy - y)
    annulus = cut[(radius >= r_in) & (radius < r_out)]
    background = float(np.median(annulus)) if annulus.size else float(np.median(cut))
    sub = cut - background
    # Gaussian-weighted centroid: the fixed point is the centre of a symmetric profile, and the
    # weight keeps the noise of the outer pixels out.
    for _ in range(20):
        weight = np.exp(-0.5 * ((gx - x) ** 2 + (gy - y) ** 2) / sigma**2) * sub
        total = weight.sum()
        if not total > 0:
            break
        new_x, new_y = float((weight * gx).sum() / total), float((weight * gy).sum() / total)
        if not (math.isfinite(new_x) and math.isfinite(new_y)) or math.hypot(new_x - x, new_y - y) > 2 * sigma:
            break
        done = math.hypot(new_x - x, new_y - y) < 1e-4
        x, y = new_x, new_y
        if done:
            break
    # The size from the weighted second moments (for a Gaussian of sigma s and a weight of sigma w:
    # moment = s² w² / (s² + w²)), which only sets widths of windows downstream.
    weight = np.exp(-0.5 * ((gx - x) ** 2 + (gy - y) ** 2) / sigma**2) * sub
    total = weight.sum()
    if total > 0:
        m2 = float((weight * ((gx - x) ** 2 + (gy - y) ** 2)).sum() / total) / 2
        if 0 < m2 < sigma**2:
            sigma = float(np.clip(math.sqrt(m2 * sigma**2 / (sigma**2 - m2)), 1.0, 30.0))
    iy, ix = int(round(y)), int(round(x))
    peak = float(image[iy, ix] - background) if 0 <= iy < rows and 0 <= ix < cols else math.nan
    ap25 = float(sub[np.hypot(gx - x, gy - y) <= 25].sum())
    return ZerothOrder(x, y, peak, background, sigma, math.nan, ap25, 0, 0)


# Spectrum


@dataclasses.dataclass
class SpectrumTrace:
    """The first order in the extraction box.

    Row arrays are over the box rows (``rows``: detector rows). Fluxes are in electrons.

    Attributes
    ----------
    box : `tuple` [`int`, `int`, `int`, `int`]
        (y0, y1, x0, x1): rows y0..y1-1 and columns x0..x1-1 of the detector.
    rows : `numpy.ndarray`
        Detector row of each box row.
    cutout : `numpy.ndarray`
        Background-subtracted box (e-).
    background : `numpy.ndarray`
        Per-row background subtracted (e- per pixel).
    ridge : `numpy.ndarray`
        Ridge x (detector column) per row; NaN where not measured.
    row_flux, ridge_peak, snr : `numpy.ndarray`
        Box-sum flux, value of the pixel nearest the ridge, signal-to-noise near the ridge.
    good : `numpy.ndarray`
        Good rows (bool).
    fwhm : `numpy.ndarray`
        Fitted FWHM per row (px, pixel removed); NaN outside the fitted rows.
    plateau : `numpy.ndarray` or None
        Rows averaged for the continuum (bool); None if it was not measured.
    good_start, good_end : `int`
        Index into the row arrays of the first and last row of the good section (-1: none).
    n_good : `int`
        Good rows in the good section.
    continuum_e, continuum_peak_e : `float`
        Continuum flux per row and continuum peak pixel (e-), NaN if not measured.
    fwhm_median, fwhm_best : `float`
        As in the module docstring.
    pixel_noise : `float`
        Standard deviation of a background pixel (e-).
    flags : `list` [`str`]
        Why something is NaN, saturation, box clipping.
    """

    box: tuple[int, int, int, int]
    rows: np.ndarray
    cutout: np.ndarray
    background: np.ndarray
    ridge: np.ndarray
    row_flux: np.ndarray
    ridge_peak: np.ndarray
    snr: np.ndarray
    good: np.ndarray
    fwhm: np.ndarray
    plateau: np.ndarray | None = None
    good_start: int = -1
    good_end: int = -1
    n_good: int = 0
    continuum_e: float = math.nan
    continuum_peak_e: float = math.nan
    fwhm_median: float = math.nan
    fwhm_best: float = math.nan
    pixel_noise: float = math.nan
    flags: list[str] = dataclasses.field(default_factory=list)

    @property
    def good_rows(self) -> tuple[int, int]:
        """Detector rows (first, last) of the good section, -1 if none."""
        if self.good_start < 0:
            return -1, -1
        return int(self.rows[self.good_start]), int(self.rows[self.good_end])


def _empty_trace(box: tuple[int, int, int, int], flags: list[str]) -> SpectrumTrace:
    nothing = np.empty(0)
    return SpectrumTrace(
        box=box,
        rows=np.empty(0, dtype=np.int64),
        cutout=np.zeros((0, 0)),
        background=nothing,
        ridge=nothing,
        row_flux=nothing,
        ridge_peak=nothing,
        snr=nothing,
        good=np.zeros(0, dtype=bool),
        fwhm=nothing,
        flags=flags,
    )


def measure_spectrum(
    image: np.ndarray,
    star: ZerothOrder,
    box_config: ExtractionBox,
    config: SpectrumExaminerConfig,
    saturated: tuple[np.ndarray, np.ndarray] | None = None,
) -> SpectrumTrace:
    """Background, ridge line, good section, row fits and continuum of the first order.

    Parameters
    ----------
    image : `numpy.ndarray`
        Assembled image (electrons: the noise model assumes Poisson statistics in these units).
    star : `ZerothOrder`
        The zeroth order (the box is placed from it).
    box_config : `ExtractionBox`
        Where the box is.
    config : `SpectrumExaminerConfig`
        Thresholds.
    saturated : `tuple` [`numpy.ndarray`, `numpy.ndarray`], optional
        (rows, cols) of saturated pixels, to flag a saturated spectrum.

    Returns
    -------
    trace : `SpectrumTrace`
        Never raises for a faint or missing spectrum: the continuum and FWHM are then NaN and
        ``flags`` says why.
    """
    n_rows, n_cols = image.shape
    icx = int(round(star.x))
    y0 = int(round(star.y + box_config.offset))
    y1 = min(n_rows, y0 + box_config.length)
    x0, x1 = max(0, icx - box_config.half_width), min(n_cols, icx + box_config.half_width)
    box = (y0, y1, x0, x1)
    flags: list[str] = []
    if y1 - y0 < 10 or x1 - x0 < 10:
        return _empty_trace(box, [f"extraction box rows {y0}-{y1 - 1}, columns {x0}-{x1 - 1} is off the detector"])
    # The box running off the top of the detector is normal (the summit's is 5000 rows long).
    if x1 - x0 < 2 * box_config.half_width:
        flags.append(f"extraction box clipped at the detector edge ({x1 - x0} of {2 * box_config.half_width} columns)")

    # Background strips either side of the box, per row.
    gap, width = box_config.background_gap, box_config.background_width
    strips = [image[y0:y1, max(0, x0 - gap - width) : max(0, x0 - gap)]]
    strips.append(image[y0:y1, min(n_cols, x1 + gap) : min(n_cols, x1 + gap + width)])
    strip = np.hstack(strips)
    if strip.shape[1] < 4:
        # The box touches both detector edges: its outermost columns are the best we have.
        flags.append("no room for background strips beside the box; its outer columns used")
        edge = max(2, width // 2)
        strip = np.hstack([image[y0:y1, x0 : x0 + edge], image[y0:y1, x1 - edge : x1]])
    row_background, pixel_noise = _row_background(strip, config.background_smoothing)
    cutout = image[y0:y1, x0:x1] - row_background[:, None]
    rows = np.arange(y0, y1)
    n = rows.size
    nan_rows = np.full(n, np.nan)
    trace = SpectrumTrace(
        box=box,
        rows=rows,
        cutout=cutout,
        background=row_background,
        ridge=nan_rows.copy(),
        row_flux=cutout.sum(axis=1),
        ridge_peak=nan_rows.copy(),
        snr=nan_rows.copy(),
        good=np.zeros(n, dtype=bool),
        fwhm=nan_rows.copy(),
        pixel_noise=pixel_noise,
        flags=flags,
    )
    if saturated is not None and saturated[0].size:
        in_box = (saturated[0] >= y0) & (saturated[0] < y1) & (saturated[1] >= x0) & (saturated[1] < x1)
        if in_box.any():
            flags.append(f"{int(in_box.sum())} saturated pixels in the extraction box: the continuum is a lower limit")
    if not pixel_noise > 0:
        flags.append("background strips have no noise: cannot judge the signal-to-noise of rows")
        return trace

    # First guess of the ridge: a robust polynomial through the maxima of the box smoothed over 9 rows.
    smoothed = ndimage.uniform_filter1d(cutout, size=9, axis=0, mode="nearest")
    arg = smoothed.argmax(axis=1)
    strong = smoothed[np.arange(n), arg] > 5 * pixel_noise / 3  # the 9-row mean has a third of the noise
    if np.count_nonzero(strong) < 10:
        flags.append(
            f"no spectrum trace in the extraction box ({int(np.count_nonzero(strong))} rows with a 5-sigma peak): "
            "continuum and FWHM not measured"
        )
        return trace
    guess = _robust_poly(rows[strong], arg[strong].astype(float), clip=3.0)
    if guess is None:
        flags.append("the trace's row maxima do not follow a line: continuum and FWHM not measured")
        return trace
    x_guess = np.polyval(guess, rows)

    fwhm0 = max(star.fwhm, 2.0)
    sigma_w = fwhm0 / _FWHM_PER_SIGMA
    ridge_box = _row_centroids(cutout, x_guess, half=max(3, int(math.ceil(1.5 * fwhm0))), sigma=sigma_w)
    near = np.rint(np.where(np.isfinite(ridge_box), ridge_box, x_guess)).astype(np.int64)
    half_flux = max(3, int(math.ceil(1.5 * fwhm0)))
    window_flux, n_window = _window_sums(cutout, near, half_flux)
    noise = np.sqrt(n_window * pixel_noise**2 + np.maximum(window_flux, 0.0))
    snr = window_flux / noise
    inside = (near >= 0) & (near < x1 - x0)
    peak = np.where(inside, cutout[np.arange(n), np.clip(near, 0, x1 - x0 - 1)], np.nan)
    trace.ridge = ridge_box + x0
    trace.snr = snr
    trace.ridge_peak = peak

    bright = (snr >= config.min_row_snr) & np.isfinite(ridge_box)
    smooth_fit = (
        _robust_poly(rows[bright], ridge_box[bright], clip=config.max_ridge_deviation) if bright.any() else None
    )
    if smooth_fit is not None:
        deviation = np.abs(ridge_box - np.polyval(smooth_fit, rows))
        good = bright & (deviation <= config.max_ridge_deviation)
    else:
        good = bright
    trace.good = good
    start, end, n_good = _good_section(good, config.max_gap)
    trace.good_start, trace.good_end, trace.n_good = start, end, n_good
    if n_good < config.min_good_rows:
        flags.append(
            f"only {n_good} good rows (signal-to-noise >= {config.min_row_snr:g}, fewer than "
            f"{config.min_good_rows}): continuum and FWHM not measured"
        )
        return trace

    section = slice(start, end + 1)
    flux = trace.row_flux[section]
    plateau, row_noise = _plateau_rows(flux, config)
    trace.plateau = np.zeros(n, dtype=bool)
    trace.plateau[section] = plateau
    trace.continuum_e = _clipped_mean(flux[plateau], row_noise, config.continuum_clip_sigma)
    peaks = trace.ridge_peak[section][plateau]
    peaks = peaks[np.isfinite(peaks)]
    peak_noise = _diff_noise(peaks)
    trace.continuum_peak_e = _clipped_mean(peaks, peak_noise, config.continuum_clip_sigma)

    # Gaussian fits of the good rows in the good section.
    fit_rows = np.nonzero(good & (np.arange(n) >= start) & (np.arange(n) <= end))[0]
    half_fit = max(5, int(math.ceil(2.5 * fwhm0)))
    offsets = np.arange(-half_fit, half_fit + 1)
    centre = np.rint(ridge_box[fit_rows]).astype(np.int64)
    cols = centre[:, None] + offsets[None, :]
    in_box = (cols[:, 0] >= 0) & (cols[:, -1] < x1 - x0)
    fit_rows, cols, centre = fit_rows[in_box], cols[in_box], centre[in_box]
    if fit_rows.size:
        values = cutout[fit_rows[:, None], cols]
        p0 = np.column_stack(
            [
                np.maximum(values.max(axis=1), 1e-3),
                ridge_box[fit_rows],
                np.full(fit_rows.size, sigma_w),
                np.zeros(fit_rows.size),
            ]
        )
        params, ok = fit_gaussian_rows(cols.astype(float), values, p0, max_sigma=half_fit)
        ok &= np.abs(params[:, 1] - ridge_box[fit_rows]) <= config.max_ridge_deviation
        sigma2 = params[:, 2] ** 2 - 1.0 / 12.0
        ok &= sigma2 > 0
        trace.fwhm[fit_rows[ok]] = _FWHM_PER_SIGMA * np.sqrt(sigma2[ok])
    fwhms = trace.fwhm[np.isfinite(trace.fwhm)]
    if fwhms.size >= 3:
        stats = clipped_stats(fwhms, config.fwhm_clip_sigma)
        kept = fwhms[np.abs(fwhms - stats.mean) <= config.fwhm_clip_sigma * stats.std] if stats.std > 0 else fwhms
        kept = kept if kept.size else fwhms
        trace.fwhm_median = float(np.median(kept))
        trace.fwhm_best = float(np.percentile(kept, config.fwhm_best_percentile))
    else:
        flags.append(f"only {fwhms.size} rows with a valid Gaussian fit: FWHM not measured")
    return trace


def _diff_noise(values: np.ndarray) -> float:
    """Robust noise of a sequence from its successive differences (insensitive to slow variations)."""
    if values.size < 3:
        return math.nan
    return float(np.median(np.abs(np.diff(values)))) * 1.4826 / math.sqrt(2.0)


def _plateau_rows(flux: np.ndarray, config: SpectrumExaminerConfig) -> tuple[np.ndarray, float]:
    """The rows of the top of the continuum (bool per row of ``flux``) and the noise of one row.

    Selected on a smooth profile, not on the rows themselves, so that the noise does not choose
    the rows above the plateau (a percentile of a noisy profile rises with the noise): a running
    median of 5 rows (cosmic rays) then a running mean of ``continuum_smoothing`` rows; its
    ``continuum_top_percentile`` is the top; plateau rows are those whose smooth value is within
    ``continuum_band`` of the top, or within 5 sigma of the smooth profile's noise if that is
    wider (a faint spectrum). A row's noise enters the smooth value with a weight of about
    1 / ``continuum_smoothing``, so the selection hardly depends on it.
    """
    noise = _diff_noise(flux)
    size = min(config.continuum_smoothing, flux.size)
    smooth = ndimage.uniform_filter1d(ndimage.median_filter(flux, size=min(5, flux.size), mode="nearest"), size)
    top = float(np.percentile(smooth, config.continuum_top_percentile))
    # The running median of 5 has ~1.2x the noise of a mean of 5 (Gaussian noise).
    smooth_noise = 1.2 * noise / math.sqrt(size) if math.isfinite(noise) else 0.0
    band = max(config.continuum_band * abs(top), 5.0 * smooth_noise)
    return smooth >= top - band, noise


def _clipped_mean(values: np.ndarray, noise: float, clip: float, n_iter: int = 5) -> float:
    """Mean of ``values`` without those further than ``clip`` x ``noise`` from it (symmetric: unbiased)."""
    if values.size == 0:
        return math.nan
    mean = float(np.median(values))
    if not (math.isfinite(noise) and noise > 0):
        return float(np.mean(values))
    for _ in range(n_iter):
        kept = values[np.abs(values - mean) <= clip * noise]
        if kept.size == 0:
            break
        new = float(kept.mean())
        if new == mean:
            break
        mean = new
    return mean


def _row_background(strip: np.ndarray, smoothing: int) -> tuple[np.ndarray, float]:
    """Per-row 3-sigma-clipped mean of the strip pixels, smoothed along the rows; and the pixel noise."""
    median = np.median(strip, axis=1)
    residual = strip - median[:, None]
    stats = clipped_stats(residual.astype(np.float32))
    noise = stats.std
    if not noise > 0:
        return median, 0.0
    # A clipped mean, not the median: the median of a skewed (Poisson) sky is biased low, and
    # that bias times the box width would be a sizeable error on a faint continuum.
    keep = np.abs(residual) <= 3 * noise
    counts = keep.sum(axis=1)
    level = np.where(counts > 0, (strip * keep).sum(axis=1) / np.maximum(counts, 1), median)
    if smoothing > 1 and level.size > 1:
        level = ndimage.uniform_filter1d(level, size=min(smoothing, level.size), mode="nearest")
    return level, float(noise)


def _robust_poly(x: np.ndarray, y: np.ndarray, clip: float, n_iter: int = 5) -> np.ndarray | None:
    """Polynomial (degree 2, or 1 with few points) through (x, y), dropping points further than ``clip``."""
    keep = np.isfinite(y)
    coeffs = None
    for _ in range(n_iter):
        if np.count_nonzero(keep) < 3:
            return coeffs
        deg = 2 if np.count_nonzero(keep) >= 30 else 1
        xs = x[keep].astype(float)
        coeffs = np.polyfit(xs, y[keep], deg)
        residual = np.abs(y - np.polyval(coeffs, x))
        # The first pass may be dragged by outliers (cosmic rays): clip at 3 robust sigma then.
        mad = float(np.median(residual[keep])) * 1.4826
        new_keep = np.isfinite(y) & (residual <= max(clip, 3 * mad))
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return coeffs


def _row_centroids(cutout: np.ndarray, x_guess: np.ndarray, *, half: int, sigma: float) -> np.ndarray:
    """Per-row Gaussian-weighted centroid (box columns) near ``x_guess``; NaN where it does not converge."""
    n, width = cutout.shape
    offsets = np.arange(-half, half + 1)
    row_index = np.arange(n)[:, None]
    x = x_guess.astype(float).copy()
    valid = np.ones(n, dtype=bool)
    for _ in range(6):
        base = np.rint(x).astype(np.int64)
        cols = base[:, None] + offsets[None, :]
        valid &= (cols[:, 0] >= 0) & (cols[:, -1] < width)
        cols = np.clip(cols, 0, width - 1)
        values = cutout[row_index, cols]
        weighted = np.exp(-0.5 * ((cols - x[:, None]) / sigma) ** 2) * values
        total = weighted.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            new = (weighted * cols).sum(axis=1) / total
        ok = (total > 0) & np.isfinite(new) & (np.abs(new - x_guess) <= half)
        valid &= ok
        x = np.where(ok, new, x)
    return np.where(valid, x, np.nan)


def _window_sums(cutout: np.ndarray, centre: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the sum of ``cutout`` within ``half`` columns of ``centre``, and how many columns that was."""
    n, width = cutout.shape
    cumulative = np.concatenate([np.zeros((n, 1)), np.cumsum(cutout, axis=1)], axis=1)
    lo = np.clip(centre - half, 0, width)
    hi = np.clip(centre + half + 1, 0, width)
    rows = np.arange(n)
    return cumulative[rows, hi] - cumulative[rows, lo], (hi - lo).astype(float)


def _good_section(good: np.ndarray, max_gap: int) -> tuple[int, int, int]:
    """(first, last, number of good rows) of the run of good rows with the most of them, gaps <= max_gap."""
    index = np.nonzero(good)[0]
    if index.size == 0:
        return -1, -1, 0
    breaks = np.nonzero(np.diff(index) > max_gap + 1)[0]
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [index.size - 1]])
    counts = ends - starts + 1
    best = int(np.argmax(counts))
    return int(index[starts[best]]), int(index[ends[best]]), int(counts[best])


def fit_gaussian_rows(
    x: np.ndarray,
    y: np.ndarray,
    p0: np.ndarray,
    *,
    max_sigma: float,
    n_iter: int = 30,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``a exp(-(x - x0)² / 2 s²) + c`` to every row at once (Levenberg-Marquardt).

    A batched fit of a few thousand rows takes milliseconds, where one ``curve_fit`` per row (the
    summit's way) takes seconds.

    Parameters
    ----------
    x, y : `numpy.ndarray`
        (n rows, m samples): positions and values.
    p0 : `numpy.ndarray`
        (n, 4) start values (a, x0, s, c).
    max_sigma : `float`
        Upper bound of s (lower bound 0.3).
    n_iter : `int`
        Most iterations (it stops once no row improves).

    Returns
    -------
    params : `numpy.ndarray`
        (n, 4) fitted (a, x0, s, c).
    ok : `numpy.ndarray`
        (n,) bool: finite, a > 0 and s strictly within its bounds.
    """
    p = p0.astype(float).copy()
    lam = np.full(p.shape[0], 1e-2)
    m = float(x.shape[1])

    def shape(params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, x0, s, c = (params[:, i, None] for i in range(4))
        u = (x - x0) / s
        e = np.exp(-0.5 * u * u)
        return u, e, y - (a * e + c)

    def normal_equations(params: np.ndarray, u: np.ndarray, e: np.ndarray, r: np.ndarray) -> tuple:
        # The Jacobian's columns are e, k e u, k e u² and 1 (k = a / s): JᵀJ and Jᵀr from row sums
        # of a few products, rather than from an (n, m, 4) Jacobian and batched matrix products.
        k = params[:, 0] / params[:, 2]
        eu = e * u
        euu = eu * u
        e2, e2u, e2uu = e * e, e * eu, eu * eu
        s_e2, s_e2u, s_e2uu = e2.sum(axis=1), e2u.sum(axis=1), e2uu.sum(axis=1)
        s_e2uuu, s_e2uuuu = (e2uu * u).sum(axis=1), (e2uu * u * u).sum(axis=1)
        s_e, s_eu, s_euu = e.sum(axis=1), eu.sum(axis=1), euu.sum(axis=1)
        jtj = np.empty((params.shape[0], 4, 4))
        jtj[:, 0, 0] = s_e2
        jtj[:, 0, 1] = jtj[:, 1, 0] = k * s_e2u
        jtj[:, 0, 2] = jtj[:, 2, 0] = k * s_e2uu
        jtj[:, 0, 3] = jtj[:, 3, 0] = s_e
        jtj[:, 1, 1] = k * k * s_e2uu
        jtj[:, 1, 2] = jtj[:, 2, 1] = k * k * s_e2uuu
        jtj[:, 1, 3] = jtj[:, 3, 1] = k * s_eu
        jtj[:, 2, 2] = k * k * s_e2uuuu
        jtj[:, 2, 3] = jtj[:, 3, 2] = k * s_euu
        jtj[:, 3, 3] = m
        grad = np.column_stack(
            [(e * r).sum(axis=1), k * (eu * r).sum(axis=1), k * (euu * r).sum(axis=1), r.sum(axis=1)]
        )
        return jtj, grad

    u, e, r = shape(p)
    chi2 = (r * r).sum(axis=1)
    jtj, grad = normal_equations(p, u, e, r)
    n_settled = 0
    for _ in range(n_iter):
        diag = np.diagonal(jtj, axis1=1, axis2=2)
        damped = jtj.copy()
        index = np.arange(4)
        damped[:, index, index] += lam[:, None] * diag + 1e-9 * (diag.max(axis=1, keepdims=True) + 1.0)
        step = np.linalg.solve(damped, grad[..., None])[..., 0]
        trial = p + step
        trial[:, 2] = np.clip(trial[:, 2], 0.3, max_sigma)
        trial_u, trial_e, trial_r = shape(trial)
        trial_chi2 = (trial_r * trial_r).sum(axis=1)
        better = np.isfinite(trial_chi2) & (trial_chi2 < chi2)
        # Converged: no row improves by more than a part in 1e7 (twice in a row, as a rejected
        # step with a large damping may precede a good one).
        settled = ~better | (chi2 - trial_chi2 <= 1e-7 * chi2)
        n_settled = n_settled + 1 if settled.all() else 0
        lam = np.where(better, lam * 0.3, np.minimum(lam * 10.0, 1e10))
        if better.all():
            p, chi2 = trial, trial_chi2
            jtj, grad = normal_equations(p, trial_u, trial_e, trial_r)
        elif better.any():
            # Only the rows that moved need new normal equations.
            p[better], chi2[better] = trial[better], trial_chi2[better]
            jtj[better], grad[better] = normal_equations(
                trial[better], trial_u[better], trial_e[better], trial_r[better]
            )
        if n_settled >= 2:
            break
    ok = np.isfinite(p).all(axis=1) & (p[:, 0] > 0) & (p[:, 2] > 0.3) & (p[:, 2] < max_sigma)
    return p, ok


# The pipeline


def _skip_reason(primary: fits.Header) -> str:
    """Why this is not a LATISS dispersed science image ("" if it is one)."""
    instrument = instrument_of(primary)
    if instrument is None or instrument.name != "LATISS":
        found = primary.get("INSTRUME") or primary.get("CAMCODE") or "unknown"
        return f"not a LATISS image (instrument {found}): spectrum_examiner measures LATISS dispersed images"
    img_type = str(primary.get("IMGTYPE", "") or "").strip().upper()
    if img_type.startswith(_NOT_SCIENCE):
        return f"IMGTYPE {img_type}: not an on-sky image"
    grating = primary.get("GRATING")
    text = str(grating).strip() if grating is not None else ""
    if not text or text.lower() in ("none", "empty") or text.lower().startswith("empty"):
        return f"GRATING is {text or 'not set'!r}: not a dispersed image"
    return ""


def _header_number(header: fits.Header, key: str) -> float:
    value = header.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def _json_number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(f"{value:.6g}")


class SpectrumExaminerPipeline(Pipeline[SpectrumExaminerConfig]):
    """LATISS spectrum examiner: zeroth-order star, first-order continuum and width, a 4 x 4-panel plot."""

    name = "spectrum_examiner"
    description = "LATISS dispersed image: zeroth-order peak, spectrum continuum rate and FWHM along the trace"
    Config = SpectrumExaminerConfig

    def run(
        self, inputs: list[pathlib.Path], config: SpectrumExaminerConfig, context: PipelineContext
    ) -> PipelineResult:
        """Examine one LATISS dispersed raw.

        Parameters
        ----------
        inputs : `list` [`pathlib.Path`]
            Exactly one LATISS raw.
        config : `SpectrumExaminerConfig`
            Configuration.
        context : `PipelineContext`
            Job context (cancellation, product directory).

        Returns
        -------
        result : `PipelineResult`
            ``skipped`` set if the image is not a dispersed science image; else one
            ``spectrumMetrics`` sample, the metrics, the PNG.

        Raises
        ------
        PipelineError
            Exit code 3: no input, a missing, truncated or corrupt file, a missing amp. Exit code 2:
            more than one input, no zeroth order found.
        JobAborted
            If the job is cancelled.
        """
        if not inputs:
            raise PipelineError("spectrum_examiner needs one LATISS raw; none was given", exit_code=ExitCode.NO_INPUT)
        if len(inputs) > 1:
            names = ", ".join(pathlib.Path(p).name for p in inputs)
            raise PipelineError(f"spectrum_examiner measures one LATISS raw at a time; got {len(inputs)}: {names}")
        path = pathlib.Path(inputs[0])
        try:
            hdul = open_fits(path)
        except PipelineError as e:
            raise PipelineError(str(e), exit_code=ExitCode.NO_INPUT) from None
        try:
            primary = hdul[0].header
            image_name = str(primary.get("OBSID", "") or "")
            reason = _skip_reason(primary)
            if reason:
                return PipelineResult(image_name=image_name, skipped=reason, summary={"file": path.name})
            context.check_cancelled()
            isr = isr_lite(hdul, path, overscan_skip=config.overscan_skip, context=context)
        finally:
            hdul.close()
        return self._measure(path, primary, image_name, isr, config, context)

    def _measure(
        self,
        path: pathlib.Path,
        primary: fits.Header,
        image_name: str,
        isr: IsrImage,
        config: SpectrumExaminerConfig,
        context: PipelineContext,
    ) -> PipelineResult:
        flags = list(isr.flags)
        gain = isr.mean_gain
        exp_time = _header_number(primary, "EXPTIME")
        if not exp_time > 0:
            flags.append(f"EXPTIME is {primary.get('EXPTIME')!r}: rates not computed")
        per_second = 1.0 / exp_time if exp_time > 0 else math.nan
        grating = str(primary.get("GRATING", "")).strip()
        filter_name = str(primary.get("FILTER", "") or "").strip()
        image = isr.image
        background_level = float(np.median(image[::7, ::7])) / gain

        context.check_cancelled()
        star, why = find_zeroth_order(
            image,
            detection_bin=config.detection_bin,
            detection_sigma=config.detection_sigma,
            min_blob_pixels=config.min_blob_pixels,
            max_elongation=config.max_elongation,
            min_star_fwhm=config.min_star_fwhm,
            min_star_snr=config.min_star_snr,
            max_star_candidates=config.max_star_candidates,
        )
        if star is None:
            raise PipelineError(f"{path.name}: no zeroth-order star found ({why})", exit_code=ExitCode.PIPELINE_FAILED)
        rows, cols = isr.saturated
        if rows.size and np.any(np.hypot(cols - star.x, rows - star.y) <= 3 * star.fwhm):
            flags.append("the zeroth order is saturated: starPeak is a lower limit")

        context.check_cancelled()
        box_config = config.box_for(grating)
        trace = measure_spectrum(image, star, box_config, config, isr.saturated)
        flags += trace.flags
        good_start, good_end = trace.good_rows

        star_peak_adu = star.peak_e / gain
        continuum_adu = trace.continuum_e / gain
        telemetry_fields: dict[str, Any] = {
            "imageName": image_name,
            "filter": filter_name,
            "grating": grating,
            "starCentroidX": star.x,
            "starCentroidY": star.y,
            "starPeakAdu": star_peak_adu,
            "starPeakRate": star_peak_adu * per_second,
            "continuumAdu": continuum_adu,
            "continuumRate": continuum_adu * per_second,
            "fwhmMedian": trace.fwhm_median,
            "fwhmBest": trace.fwhm_best,
            "goodStart": good_start,
            "goodEnd": good_end,
            "nGoodRows": trace.n_good,
            "backgroundLevel": background_level,
            "expTime": exp_time,
        }
        metrics: dict[str, float | int | None] = {
            k: v for k, v in telemetry_fields.items() if k not in ("imageName", "filter", "grating")
        }
        metrics.update(
            continuumPeakRate=trace.continuum_peak_e / gain * per_second,
            starAp25Rate=star.ap25_e / gain * per_second,
            starFwhm=star.fwhm,
            starElongation=star.elongation,
            meanGain=gain,
            nFlags=len(flags),
        )
        products: list[Product] = []
        if config.make_plot:
            context.check_cancelled()
            from .spectrum_plot import plot_spectrum_examination

            label = image_name or path.stem
            png = context.product_path(f"spectrum_examiner_{safe_file_name(label)}.png")
            plot_spectrum_examination(
                png,
                image=image,
                gain=gain,
                star=star,
                trace=trace,
                metrics=telemetry_fields | metrics,
                header=primary,
                title=label,
            )
            products.append(Product(path=str(png), mime_type="image/png", description=f"spectrum examiner of {label}"))
        y0, y1, x0, x1 = trace.box
        summary = {
            "file": path.name,
            "grating": grating,
            "filter": filter_name,
            "box": {"y0": y0, "y1": y1, "x0": x0, "x1": x1},
            "nSources": star.n_sources,
            "nElongatedSources": star.n_elongated,
            "nRejectedSources": star.n_not_stars,
            "starMinorFwhm": _json_number(star.minor_fwhm),
            "starSnr": _json_number(star.snr),
            "flags": flags,
            "metrics": {k: _json_number(v) if isinstance(v, float) else v for k, v in metrics.items()},
        }
        return PipelineResult(
            image_name=image_name,
            metrics=metrics,
            telemetry=[TelemetrySample(topic="spectrumMetrics", fields=telemetry_fields)],
            products=products,
            summary=summary,
        )
