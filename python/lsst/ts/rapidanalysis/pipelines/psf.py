"""PSF stars and the PSF's moments over a detector.

Selection (as objectSizeStarSelector does, on our catalogue):

1. candidates: adaptive moments converged, no flag (saturated, edge, no data), aperture S/N
   between ``min_snr`` and ``max_snr``, and no other source brighter than ``isolation_fraction``
   of this one within ``isolation_radius``;
2. the stellar locus in size: trace radii within ``n_mad`` normalised MADs of their median
   (at least ±``min_width`` of it), which rejects cosmic rays (small) and blends (large);
   repeated once about the new median.

Model: the PSF stars' Ixx, Iyy, Ixy as first-order polynomials in the detector position
(a robust least-squares fit, 3σ-clipped), or their median with fewer than ``min_stars_for_fit``
stars; evaluated at the detector centre this gives ``psfSigma`` (determinant radius), ``e1``,
``e2`` (from the trace: (Ixx − Iyy)/(Ixx + Iyy), 2Ixy/(Ixx + Iyy)) and, with the PSF stars'
``Σp/Σp²``, ``psfArea``. Residual statistics (``ra-algorithms.md`` §2): star − model size and
ellipticity, their medians and normal-scaled MAD scatter.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import scipy.spatial

from .sources import SourceCatalog, cutouts

__all__ = ["PsfSelection", "PsfModel", "select_psf_stars", "fit_psf_model", "measure_psf_areas", "MAD_TO_SIGMA"]

#: MAD x 1.4826 estimates σ for normal data.
MAD_TO_SIGMA = 1.4826


@dataclasses.dataclass(frozen=True)
class PsfSelection:
    """Settings of PSF-star selection (see the module docstring)."""

    min_snr: float = 50.0
    max_snr: float = 1000.0
    isolation_radius: float = 10.0
    isolation_fraction: float = 0.05
    n_mad: float = 3.0
    min_width: float = 0.03
    min_stars_for_fit: int = 10


@dataclasses.dataclass
class PsfModel:
    """The PSF's moments at the detector centre and how well its stars agree.

    Attributes
    ----------
    ixx, iyy, ixy : `float`
        Model moments at the centre (pixels²).
    n_stars : `int`
        PSF stars used.
    order : `int`
        0 (median) or 1 (linear in x, y).
    delta_size_median, delta_size_scatter, delta_e1_median, delta_e1_scatter, delta_e2_median,
    delta_e2_scatter : `float`
        Star − model residuals of trace radius (pixels) and e1, e2.
    area : `float`
        Σp/Σp² of the PSF (pixels²): median over PSF stars.
    """

    ixx: float = math.nan
    iyy: float = math.nan
    ixy: float = math.nan
    n_stars: int = 0
    order: int = 0
    delta_size_median: float = math.nan
    delta_size_scatter: float = math.nan
    delta_e1_median: float = math.nan
    delta_e1_scatter: float = math.nan
    delta_e2_median: float = math.nan
    delta_e2_scatter: float = math.nan
    area: float = math.nan

    @property
    def sigma(self) -> float:
        """Determinant radius (Ixx Iyy − Ixy²)^¼ (pixels)."""
        det = self.ixx * self.iyy - self.ixy**2
        return det**0.25 if det > 0 else math.nan

    @property
    def trace_radius(self) -> float:
        """√((Ixx + Iyy)/2) (pixels)."""
        return math.sqrt((self.ixx + self.iyy) / 2) if self.ixx + self.iyy > 0 else math.nan

    @property
    def e1(self) -> float:
        """(Ixx − Iyy)/(Ixx + Iyy)."""
        return (self.ixx - self.iyy) / (self.ixx + self.iyy) if self.ixx + self.iyy > 0 else math.nan

    @property
    def e2(self) -> float:
        """2 Ixy/(Ixx + Iyy)."""
        return 2 * self.ixy / (self.ixx + self.iyy) if self.ixx + self.iyy > 0 else math.nan


def select_psf_stars(catalog: SourceCatalog, settings: PsfSelection) -> np.ndarray:
    """Indices of the PSF stars in ``catalog``."""
    if len(catalog) == 0:
        return np.empty(0, dtype=np.int64)
    snr = catalog.snr
    candidate = (catalog.flags == 0) & np.isfinite(catalog.ixx) & (snr >= settings.min_snr) & (snr <= settings.max_snr)
    index = np.flatnonzero(candidate)
    if index.size == 0:
        return index
    # Isolation: no source brighter than a fraction of this one within the radius (flux of a
    # failed measurement counts as its peak's significance would: use the detection order).
    finite = np.isfinite(catalog.x) & np.isfinite(catalog.y)
    positions = np.c_[catalog.x[finite], catalog.y[finite]]
    flux_all = np.where(np.isfinite(catalog.flux), catalog.flux, np.inf)[finite]
    tree = scipy.spatial.cKDTree(positions)
    neighbours = tree.query_ball_point(np.c_[catalog.x[index], catalog.y[index]], settings.isolation_radius)
    isolated = np.ones(index.size, dtype=bool)
    for k, (i, near) in enumerate(zip(index, neighbours, strict=True)):
        if len(near) > 1:
            others = flux_all[near]
            # The source itself is among them; any *other* above the fraction spoils it.
            if np.count_nonzero(others > settings.isolation_fraction * catalog.flux[i]) > 1:
                isolated[k] = False
    index = index[isolated]
    radius = catalog.trace_radius[index]
    for _ in range(2):
        if index.size == 0:
            break
        centre = float(np.median(radius))
        width = max(
            settings.n_mad * MAD_TO_SIGMA * float(np.median(np.abs(radius - centre))), settings.min_width * centre
        )
        keep = np.abs(radius - centre) <= width
        index, radius = index[keep], radius[keep]
    return index


def _robust_linear_fit(x: np.ndarray, y: np.ndarray, values: np.ndarray, x0: float, y0: float) -> float:
    """A + B (x − x0) + C (y − y0) fitted with two rounds of 3σ clipping; returns A."""
    keep = np.ones(values.size, dtype=bool)
    design = np.c_[np.ones_like(x), x - x0, y - y0]
    coeffs = np.array([np.median(values), 0.0, 0.0])
    for _ in range(3):
        coeffs, *_ = np.linalg.lstsq(design[keep], values[keep], rcond=None)
        residual = values - design @ coeffs
        scatter = MAD_TO_SIGMA * np.median(np.abs(residual[keep] - np.median(residual[keep])))
        if not scatter > 0:
            break
        new_keep = np.abs(residual) <= 3 * scatter
        if new_keep.sum() < 4 or (new_keep == keep).all():
            break
        keep = new_keep
    return float(coeffs[0])


def _median_and_scatter(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    median = float(np.median(values))
    return median, float(MAD_TO_SIGMA * np.median(np.abs(values - median)))


def fit_psf_model(
    catalog: SourceCatalog,
    stars: np.ndarray,
    centre: tuple[float, float],
    settings: PsfSelection,
    areas: np.ndarray | None = None,
) -> PsfModel:
    """The PSF moments at ``centre`` (x, y) from the PSF stars ``stars`` (indices into ``catalog``).

    ``areas`` are the PSF stars' Σp/Σp², if measured.
    """
    if stars.size == 0:
        return PsfModel()
    x, y = catalog.x[stars], catalog.y[stars]
    moments = {name: getattr(catalog, name)[stars] for name in ("ixx", "iyy", "ixy")}
    if stars.size >= settings.min_stars_for_fit:
        fitted = {name: _robust_linear_fit(x, y, values, *centre) for name, values in moments.items()}
        order = 1
    else:
        fitted = {name: float(np.median(values)) for name, values in moments.items()}
        order = 0
    model = PsfModel(**fitted, n_stars=int(stars.size), order=order)
    # Residuals against the model at each star (for order 0 the model is the same everywhere).
    trace = np.sqrt((moments["ixx"] + moments["iyy"]) / 2)
    denominator = moments["ixx"] + moments["iyy"]
    model.delta_size_median, model.delta_size_scatter = _median_and_scatter(trace - model.trace_radius)
    model.delta_e1_median, model.delta_e1_scatter = _median_and_scatter(
        (moments["ixx"] - moments["iyy"]) / denominator - model.e1
    )
    model.delta_e2_median, model.delta_e2_scatter = _median_and_scatter(2 * moments["ixy"] / denominator - model.e2)
    if areas is not None and areas.size:
        finite = areas[np.isfinite(areas)]
        model.area = float(np.median(finite)) if finite.size else math.nan
    return model


def measure_psf_areas(
    image: np.ndarray, mask: np.ndarray, catalog: SourceCatalog, stars: np.ndarray, sky_noise: float
) -> np.ndarray:
    """Σp/Σp² of each PSF star within its aperture, the pixel noise taken out of Σp².

    (ΣI)² / (ΣI² − Σ var), with var = σ_sky² + I per pixel: for a star of S/N ≥ 50 the noise
    term is a few per cent of ΣI², so leaving it in would bias the area low by as much.
    """
    if stars.size == 0:
        return np.empty(0)
    radius = int(math.ceil(catalog.aperture_radius))
    cx = np.rint(catalog.x[stars]).astype(np.int64)
    cy = np.rint(catalog.y[stars]).astype(np.int64)
    stamps, _, _ = cutouts(image, mask, cy, cx, radius)
    stamps = stamps.astype(np.float64) - catalog.local_background[stars, None, None]
    offsets = np.arange(-radius, radius + 1)
    inside = (offsets[None, :] ** 2 + offsets[:, None] ** 2) <= catalog.aperture_radius**2
    values = np.where(inside[None] & np.isfinite(stamps), stamps, 0.0)
    total = values.sum(axis=(1, 2))
    squares = (values**2).sum(axis=(1, 2)) - (inside.sum() * sky_noise**2 + np.maximum(values, 0).sum(axis=(1, 2)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(squares > 0, total**2 / squares, np.nan)
