"""Match measured sources to a reference catalog through the header WCS; the zero point.

The raw's header WCS comes from the telescope pointing, so it can be off by arcseconds. The
match therefore first finds the common shift: every pair of (bright source, reference star)
closer than ``search_radius`` votes for its offset in a 2-D histogram of 1-pixel bins; the
peak, refined by the mean offset of the pairs around it, is the shift. Then each source takes
its nearest shifted reference star within ``match_radius``, one-to-one.

``zeroPoint`` = the 3σ-clipped median of ``m_ref + 2.5 log10(flux)`` over matched unsaturated
sources with S/N ≥ ``min_snr``; with the flux in electrons over the whole exposure, it includes
the exposure time (as ``ExposureSummaryStats`` does). ``astromOffsetMean``/``Std`` are the mean
and standard deviation of the matched pairs' separations after the shift (arcsec), and
``wcsShift`` the shift itself: how far the header WCS is from the stars.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import warnings

import numpy as np
import scipy.spatial
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from .psf import MAD_TO_SIGMA
from .sources import SourceCatalog

__all__ = ["PhotoCalResult", "header_wcs", "read_reference_catalog", "calibrate"]


@dataclasses.dataclass
class PhotoCalResult:
    """What the match and calibration found (NaN/0 when they could not be done).

    Attributes
    ----------
    zero_point : `float`
        Magnitude of 1 electron over the exposure.
    zero_point_scatter : `float`
        Normal-scaled MAD of the per-star zero points.
    n_matched : `int`
        Sources matched to reference stars.
    n_calib : `int`
        Those used for the zero point.
    shift_x, shift_y : `float`
        Measured − header-WCS position of the reference stars (pixels).
    offset_mean, offset_std : `float`
        Mean and standard deviation of the matched separations after the shift (arcsec).
    flags : `list` [`str`]
        Why something is missing.
    matched_source, matched_ref : `numpy.ndarray`
        Indices of matched pairs (catalog, reference).
    """

    zero_point: float = math.nan
    zero_point_scatter: float = math.nan
    n_matched: int = 0
    n_calib: int = 0
    shift_x: float = math.nan
    shift_y: float = math.nan
    offset_mean: float = math.nan
    offset_std: float = math.nan
    flags: list[str] = dataclasses.field(default_factory=list)
    matched_source: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.int64))
    matched_ref: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.int64))


def header_wcs(header: fits.Header) -> WCS | None:
    """The celestial WCS of a header, or None if it has none (or a broken one)."""
    if "CTYPE1" not in header or "CTYPE2" not in header:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, naxis=2)
    except Exception:
        return None
    return wcs if wcs.has_celestial else None


def _read_ecsv_columns(path: pathlib.Path, wanted: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """The numeric columns ``wanted`` of a plain ECSV file with numpy alone, or None if it is not plain.

    astropy's ECSV reader parses every value in Python (a third of a second for 20 000 stars); a
    reference catalog is a few numeric columns, which ``numpy.loadtxt`` reads ten times faster.
    Anything unusual (quoting, a different delimiter, missing values) falls back to astropy.
    """
    with open(path) as f:
        lines = [line for line in f if not line.startswith("#")]
    if not lines:
        return None
    names = lines[0].split()
    if "%ECSV" in lines[0] or any(name not in names for name in wanted) or any('"' in line for line in lines[1:4]):
        return None
    if len(lines) == 1:  # a header and no stars
        return {name: np.empty(0) for name in wanted}
    try:
        data = np.loadtxt(lines[1:], usecols=[names.index(w) for w in wanted], ndmin=2, dtype=float)
    except ValueError:
        return None
    return {name: data[:, i] for i, name in enumerate(wanted)}


def read_reference_catalog(path: pathlib.Path, band: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ra, dec, mag) of a reference catalog file (ECSV or FITS table; ``{band}_mag`` or ``mag``).

    Raises
    ------
    ValueError
        If it cannot be read or has no magnitude column for the band.
    """
    candidates = (f"{band}_mag", f"{band}mag", "mag")
    if path.suffix == ".ecsv":
        for column in candidates:
            try:
                fast = _read_ecsv_columns(path, ("ra", "dec", column))
            except OSError as e:
                raise ValueError(f"cannot read reference catalog {path} ({type(e).__name__}: {e})") from None
            if fast is not None:
                return fast["ra"], fast["dec"], fast[column]
    try:
        table = Table.read(path)
    except Exception as e:
        raise ValueError(f"cannot read reference catalog {path} ({type(e).__name__}: {e})") from None
    for column in candidates:
        if column in table.colnames:
            break
    else:
        raise ValueError(f"reference catalog {path} has no {band}_mag column (columns: {', '.join(table.colnames)})")
    return (
        np.asarray(table["ra"], dtype=float),
        np.asarray(table["dec"], dtype=float),
        np.asarray(table[column], dtype=float),
    )


def _find_shift(sources: np.ndarray, refs: np.ndarray, search: float) -> tuple[float, float, int]:
    """The (dx, dy) most pairs agree on, and how many agree (within 1 pixel)."""
    tree = scipy.spatial.cKDTree(refs)
    pairs = tree.query_ball_point(sources, search)
    dx = np.concatenate([sources[i, 0] - refs[p, 0] for i, p in enumerate(pairs) if p] or [np.empty(0)])
    dy = np.concatenate([sources[i, 1] - refs[p, 1] for i, p in enumerate(pairs) if p] or [np.empty(0)])
    if dx.size == 0:
        return math.nan, math.nan, 0
    bins = np.arange(-search, search + 1.0, 1.0)
    counts, x_edges, y_edges = np.histogram2d(dx, dy, bins=[bins, bins])
    # 2 x 2 sums so that a shift on a bin edge is not split in two.
    summed = counts[:-1, :-1] + counts[1:, :-1] + counts[:-1, 1:] + counts[1:, 1:]
    i, j = np.unravel_index(np.argmax(summed), summed.shape)
    near = (np.abs(dx - x_edges[i + 1]) <= 1.5) & (np.abs(dy - y_edges[j + 1]) <= 1.5)
    return float(np.mean(dx[near])), float(np.mean(dy[near])), int(near.sum())


def calibrate(
    catalog: SourceCatalog,
    wcs: WCS | None,
    reference: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    shape: tuple[int, int],
    pixel_scale: float,
    *,
    search_radius: float = 10.0,
    match_radius: float = 1.0,
    min_snr: float = 20.0,
    n_bright: int = 300,
) -> PhotoCalResult:
    """Match ``catalog`` to ``reference`` via ``wcs`` and measure the zero point.

    Parameters
    ----------
    catalog : `SourceCatalog`
        Measured sources.
    wcs : `astropy.wcs.WCS` or None
        Header WCS of the image (0-based pixels are used).
    reference : `tuple` or None
        (ra, dec, mag) of the reference stars.
    shape : `tuple`
        Image (rows, cols).
    pixel_scale : `float`
        arcsec per pixel.
    search_radius, match_radius : `float`
        arcsec: how far the header WCS may be off; how close a match must be after the shift.
    min_snr : `float`
        Minimum S/N of a calibration star.
    n_bright : `int`
        Brightest sources and reference stars used to find the shift.
    """
    result = PhotoCalResult()
    if wcs is None:
        result.flags.append("no WCS in the header: no zero point")
        return result
    if reference is None:
        result.flags.append("no reference catalog: no zero point")
        return result
    ra, dec, mag = reference
    try:
        rx, ry = wcs.wcs_world2pix(ra, dec, 0)
    except Exception as e:
        result.flags.append(f"WCS transformation failed ({type(e).__name__}: {e}): no zero point")
        return result
    margin = search_radius / pixel_scale
    inside = (rx > -margin) & (rx < shape[1] + margin) & (ry > -margin) & (ry < shape[0] + margin) & np.isfinite(mag)
    ref_index = np.flatnonzero(inside)
    usable = np.isfinite(catalog.x) & np.isfinite(catalog.flux) & (catalog.flux > 0)
    usable &= (catalog.flags & (SourceCatalog.EDGE | SourceCatalog.NO_DATA)) == 0
    source_index = np.flatnonzero(usable)
    if ref_index.size == 0 or source_index.size == 0:
        result.flags.append(f"{ref_index.size} reference stars and {source_index.size} sources on the detector")
        return result
    refs = np.c_[rx[ref_index], ry[ref_index]]
    sources = np.c_[catalog.x[source_index], catalog.y[source_index]]
    bright_sources = np.argsort(-catalog.flux[source_index])[:n_bright]
    bright_refs = np.argsort(mag[ref_index])[: max(n_bright, 2 * bright_sources.size)]
    shift_x, shift_y, votes = _find_shift(sources[bright_sources], refs[bright_refs], margin)
    if votes < 3:
        result.flags.append(f"no consistent shift between sources and reference stars ({votes} pairs agree)")
        return result
    result.shift_x, result.shift_y = shift_x, shift_y
    tree = scipy.spatial.cKDTree(refs + [shift_x, shift_y])
    distance, nearest = tree.query(sources, distance_upper_bound=match_radius / pixel_scale)
    found = np.isfinite(distance)
    # One-to-one: a reference star claimed twice goes to the closer source.
    order = np.argsort(distance[found])
    matched_sources = np.flatnonzero(found)[order]
    matched_refs = nearest[found][order]
    _, first = np.unique(matched_refs, return_index=True)
    matched_sources, matched_refs = matched_sources[first], matched_refs[first]
    result.n_matched = int(matched_sources.size)
    if result.n_matched == 0:
        result.flags.append("no source matched a reference star")
        return result
    src = source_index[matched_sources]
    ref = ref_index[matched_refs]
    result.matched_source, result.matched_ref = src, ref
    separation = distance[matched_sources] * pixel_scale
    result.offset_mean = float(np.mean(separation))
    result.offset_std = float(np.std(separation))
    calib = ((catalog.flags[src] & SourceCatalog.SATURATED) == 0) & (catalog.snr[src] >= min_snr)
    if not calib.any():
        result.flags.append(f"no matched unsaturated source with S/N >= {min_snr:g}: no zero point")
        return result
    per_star = mag[ref[calib]] + 2.5 * np.log10(catalog.flux[src[calib]])
    keep = np.ones(per_star.size, dtype=bool)
    for _ in range(3):
        centre = np.median(per_star[keep])
        scatter = MAD_TO_SIGMA * np.median(np.abs(per_star[keep] - centre))
        new_keep = np.abs(per_star - centre) <= max(3 * scatter, 1e-3)
        if (new_keep == keep).all():
            break
        keep = new_keep
    result.zero_point = float(np.median(per_star[keep]))
    result.zero_point_scatter = float(MAD_TO_SIGMA * np.median(np.abs(per_star[keep] - result.zero_point)))
    result.n_calib = int(keep.sum())
    return result
