"""Finding and measuring sources on a background-subtracted image, all sources at once.

Detection
---------
The image is binned 2 x 2 and smoothed by [1, 2, 1] in each direction: together about a
Gaussian of σ 1.6 pixels, close to a matched filter for Rubin's good seeing (PSF σ 1.5-2.5
pixels), on 4 times fewer pixels. Every local maximum (3 x 3) above ``threshold`` times the smoothed image's
noise is a source: close pairs stay two sources (as a deblender would make them), and a
saturated star with its bleed trail (one footprint with saturated pixels) is one source.

Measurement
-----------
Postage stamps of all sources are cut out together (an ``(n, size, size)`` array) and measured
with vectorised numpy:

* **adaptive moments** (SdssShape/HSM): an elliptical Gaussian weight matched iteratively to the
  source's own second moments; the weighted centroid is the position. For a Gaussian source the
  fixed point is the source's moments exactly; for other profiles it is the quantity
  ``psfSigma`` is defined on (``ra-algorithms.md`` §2);
* **aperture flux** in a circle of ``aperture_radius`` pixels (edge pixels weighted by the
  fraction of the pixel inside, to first order), less the local background: the median of the
  stamp outside ``aperture_radius + 1`` (robust to neighbours, and free of the global model's
  small bias under crowding); its error from the sky, read and source noise;
* flags: saturated pixels in the aperture, stamp off the image edge, moments not converged.

Why not ``sep`` or SExtractor's library: they give background and extraction but not adaptive
moments, which the metrics are defined on; and ``sep`` alone takes about as long on a 4k x 4k
frame as our whole ISR-to-metrics path is allowed to (DESIGN.md).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import numpy as np
import scipy.ndimage

from .isr import NO_DATA, SAT

__all__ = [
    "Detections",
    "SourceCatalog",
    "adaptive_moments",
    "bin2x2",
    "cutouts",
    "detect_sources",
    "measure_sources",
]

_FLAG_NAMES = ("saturated", "edge", "not_converged", "no_data", "bad_flux", "drifted")


@dataclasses.dataclass
class Detections:
    """Peaks found by `detect_sources`.

    Attributes
    ----------
    x, y : `numpy.ndarray`
        Peak positions (0-based pixel centres of the full-resolution image).
    significance : `numpy.ndarray`
        Peak height of the smoothed image in units of its noise.
    saturated : `numpy.ndarray`
        The peak's footprint holds saturated pixels.
    noise : `float`
        Noise (σ) of the smoothed binned image.
    """

    x: np.ndarray
    y: np.ndarray
    significance: np.ndarray
    saturated: np.ndarray
    noise: float

    def __len__(self) -> int:
        return int(self.x.size)


def bin2x2(image: np.ndarray) -> np.ndarray:
    """Mean of 2 x 2 blocks (a trailing odd row or column is dropped); NaN stays NaN."""
    rows, cols = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    even = image[:rows, :cols]
    binned = even[0::2, 0::2] + even[1::2, 0::2]
    binned += even[0::2, 1::2]
    binned += even[1::2, 1::2]
    binned *= np.float32(0.25)
    return binned


def _smooth121(image: np.ndarray, block: int = 128) -> np.ndarray:
    """Separable [1, 2, 1] smoothing (unnormalised: thresholds are in units of its own noise).

    In-place adds of shifted slices, ``block`` rows at a time so that both passes work in cache:
    scipy.ndimage's filters take 3-4 times longer on a 2k x 2k image. The edge rows and columns
    take their own value four times (no peak is looked for there).
    """
    n_rows = image.shape[0]
    out = np.empty_like(image)
    rows = np.empty((block + 2, image.shape[1]), dtype=image.dtype)
    for r0 in range(0, n_rows, block):
        r1 = min(r0 + block, n_rows)
        lo, hi = max(r0 - 1, 0), min(r1 + 1, n_rows)
        piece = image[lo:hi]
        m = r1 - r0
        top = r0 - lo  # 1 unless this is the first block
        vertical = rows[:m]
        # Vertical pass for rows r0..r1-1 (piece index top..top+m-1).
        inner_lo, inner_hi = max(r0, 1), min(r1, n_rows - 1)
        if inner_hi > inner_lo:
            i0, i1 = inner_lo - r0, inner_hi - r0
            p0 = inner_lo - lo
            np.add(piece[p0 - 1 : p0 - 1 + (i1 - i0)], piece[p0 + 1 : p0 + 1 + (i1 - i0)], out=vertical[i0:i1])
            vertical[i0:i1] += piece[p0 : p0 + (i1 - i0)]
            vertical[i0:i1] += piece[p0 : p0 + (i1 - i0)]
        if r0 == 0:
            vertical[0] = piece[0] * 4
        if r1 == n_rows:
            vertical[m - 1] = piece[top + m - 1] * 4
        target = out[r0:r1]
        np.add(vertical[:, :-2], vertical[:, 2:], out=target[:, 1:-1])
        target[:, 1:-1] += vertical[:, 1:-1]
        target[:, 1:-1] += vertical[:, 1:-1]
        target[:, 0] = vertical[:, 0] * 4
        target[:, -1] = vertical[:, -1] * 4
    return out


def _local_maxima(smooth: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of pixels above ``level`` that no 8-neighbour exceeds (ties: the first).

    The outermost rows and columns are not searched: the smoothing there sees only one side, so
    its noise is larger and false peaks gather on the edge (a star centred within a pixel of the
    edge is lost, which is rare and half off the detector anyway).
    """
    rows, cols = np.nonzero(smooth > level)
    inner = (rows > 0) & (rows < smooth.shape[0] - 1) & (cols > 0) & (cols < smooth.shape[1] - 1)
    rows, cols = rows[inner], cols[inner]
    values = smooth[rows, cols]
    keep = np.ones(rows.size, dtype=bool)
    for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
        keep &= values >= smooth[rows + dy, cols + dx]
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        keep &= values > smooth[rows + dy, cols + dx]
    return rows[keep], cols[keep]


def detect_sources(
    binned: np.ndarray, binned_mask: np.ndarray, threshold: float = 5.0, max_sources: int = 50_000
) -> Detections:
    """Find the local maxima of the smoothed, 2 x 2-binned, background-subtracted image.

    Parameters
    ----------
    binned : `numpy.ndarray`
        2 x 2-binned background-subtracted image (`bin2x2`); NaN where there is no data.
    binned_mask : `numpy.ndarray`
        Its mask bits (the OR of each block's).
    threshold : `float`
        Detection threshold in units of the smoothed image's noise.
    max_sources : `int`
        Keep at most this many (the most significant).
    """
    binned = np.where(np.isnan(binned), np.float32(0), binned) if np.isnan(binned[::7, ::7]).any() else binned
    smooth = _smooth121(binned)
    sample = smooth[::4, ::4].ravel()
    p16, p50 = np.percentile(sample, [15.87, 50.0])
    noise = float(p50 - p16)
    if not noise > 0:
        return Detections(np.empty(0), np.empty(0), np.empty(0), np.empty(0, bool), noise)
    level = threshold * noise
    by, bx = _local_maxima(smooth, level)
    significance = smooth[by, bx] / noise
    saturated = np.zeros(by.size, dtype=bool)
    saturated_binned = (binned_mask & SAT).astype(bool)
    if saturated_binned.any():
        # A saturated star and its bleed trail are one source: its footprint's highest peak.
        above = smooth > level
        labels, _ = scipy.ndimage.label(above, structure=np.ones((3, 3)))
        sat_labels = np.unique(labels[saturated_binned & above])
        sat_labels = sat_labels[sat_labels > 0]
        peak_labels = labels[by, bx]
        keep = ~np.isin(peak_labels, sat_labels)
        for label in sat_labels:
            members = np.flatnonzero(peak_labels == label)
            if members.size:
                best = members[np.argmax(significance[members])]
                keep[best] = True
                saturated[best] = True
        by, bx, significance, saturated = by[keep], bx[keep], significance[keep], saturated[keep]
    if by.size > max_sources:
        order = np.argsort(-significance)[:max_sources]
        by, bx, significance, saturated = by[order], bx[order], significance[order], saturated[order]
    # The binned pixel (i, j) covers full pixels 2i..2i+1: its centre is 2i + 0.5.
    return Detections(2.0 * bx + 0.5, 2.0 * by + 0.5, significance, saturated, noise)


@dataclasses.dataclass
class SourceCatalog:
    """Measurements of detected sources (arrays of equal length).

    Attributes
    ----------
    x, y : `numpy.ndarray`
        Adaptive-moment centroid (0-based pixel centres).
    ixx, iyy, ixy : `numpy.ndarray`
        Adaptive second moments (pixels²).
    flux, flux_err : `numpy.ndarray`
        Aperture flux and its error (electrons), local background subtracted.
    local_background : `numpy.ndarray`
        Per-pixel background left after the global model (electrons).
    peak : `numpy.ndarray`
        Highest background-subtracted pixel near the centre.
    significance : `numpy.ndarray`
        Detection significance.
    flags : `numpy.ndarray`
        Bit set: saturated 1, edge 2, not_converged 4, no_data 8, bad_flux 16, drifted 32 (the
        adaptive centroid wandered off the peak, to a neighbour or into noise: the position is
        the peak's, refined by a parabola, and the moments are NaN).
    aperture_radius : `float`
        Radius used for ``flux`` (pixels).
    """

    x: np.ndarray
    y: np.ndarray
    ixx: np.ndarray
    iyy: np.ndarray
    ixy: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    local_background: np.ndarray
    peak: np.ndarray
    significance: np.ndarray
    flags: np.ndarray
    aperture_radius: float

    SATURATED = 1
    EDGE = 2
    NOT_CONVERGED = 4
    NO_DATA = 8
    BAD_FLUX = 16
    DRIFTED = 32

    def __len__(self) -> int:
        return int(self.x.size)

    @property
    def snr(self) -> np.ndarray:
        """Aperture flux signal-to-noise ratio."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.flux_err > 0, self.flux / self.flux_err, np.nan)

    @property
    def trace_radius(self) -> np.ndarray:
        """√((Ixx + Iyy)/2)."""
        return np.sqrt(np.maximum((self.ixx + self.iyy) / 2, 0.0))

    @property
    def determinant_radius(self) -> np.ndarray:
        """(Ixx Iyy − Ixy²)^¼."""
        return np.maximum(self.ixx * self.iyy - self.ixy**2, 0.0) ** 0.25

    def flag_names(self, index: int) -> list[str]:
        """Names of the flags set on one source."""
        return [name for bit, name in enumerate(_FLAG_NAMES) if self.flags[index] & (1 << bit)]

    def subset(self, keep: np.ndarray) -> SourceCatalog:
        """The sources selected by a boolean or index array."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return SourceCatalog(
            **{k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in fields.items()},
        )


def cutouts(
    image: np.ndarray, mask: np.ndarray, cy: np.ndarray, cx: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stamps (n, 2r+1, 2r+1) centred on integer pixels, their mask bits and an off-image flag."""
    offsets = np.arange(-radius, radius + 1)
    yy = cy[:, None] + offsets
    xx = cx[:, None] + offsets
    inside_y = (yy >= 0) & (yy < image.shape[0])
    inside_x = (xx >= 0) & (xx < image.shape[1])
    yy_c = np.clip(yy, 0, image.shape[0] - 1)
    xx_c = np.clip(xx, 0, image.shape[1] - 1)
    stamps = image[yy_c[:, :, None], xx_c[:, None, :]]
    bits = mask[yy_c[:, :, None], xx_c[:, None, :]]
    outside = ~(inside_y[:, :, None] & inside_x[:, None, :])
    if outside.any():
        stamps[outside] = np.nan
        bits[outside] |= NO_DATA
    return stamps, bits, ~(inside_y.all(axis=1) & inside_x.all(axis=1))


def adaptive_moments(
    stamps: np.ndarray, x0: np.ndarray, y0: np.ndarray, sigma0: float = 2.0, max_iter: int = 30, tol: float = 1e-3
) -> tuple[np.ndarray, ...]:
    """Adaptive (Gaussian-weighted, iterated) centroids and second moments of many stamps.

    Parameters
    ----------
    stamps : `numpy.ndarray`
        (n, s, s) background-subtracted pixels; NaN pixels get no weight.
    x0, y0 : `numpy.ndarray`
        Starting centroids in stamp coordinates.
    sigma0 : `float`
        Starting weight σ (pixels).
    max_iter : `int`
        Iterations at most.
    tol : `float`
        Converged when the moments change by less than this fraction and the centroid by less
        than this many pixels.

    Returns
    -------
    x, y, ixx, iyy, ixy : `numpy.ndarray`
        NaN where the weighted flux is not positive.
    converged : `numpy.ndarray`
        bool.
    """
    n, size, _ = stamps.shape
    pixels = stamps.astype(np.float32)
    pixels[np.isnan(pixels)] = 0.0
    coords = np.arange(size, dtype=np.float64)
    cx, cy = x0.astype(np.float64).copy(), y0.astype(np.float64).copy()
    mxx = np.full(n, sigma0**2)
    myy = np.full(n, sigma0**2)
    mxy = np.zeros(n)
    converged = np.zeros(n, dtype=bool)
    valid = np.ones(n, dtype=bool)
    active = np.arange(n)
    for _ in range(max_iter):
        if active.size == 0:
            break
        p = pixels[active]
        dx = coords[None, :] - cx[active, None]  # (m, size): along columns
        dy = coords[None, :] - cy[active, None]  # (m, size): along rows
        det = mxx[active] * myy[active] - mxy[active] ** 2
        a, b, c = myy[active] / det, -mxy[active] / det, mxx[active] / det
        # The weight's exponent is separable but for the cross term: only the exp, one product
        # and the sums below touch every pixel; the moments then come from 1-D marginals.
        qx = (-0.5 * a[:, None] * dx * dx).astype(np.float32)
        qy = (-0.5 * c[:, None] * dy * dy).astype(np.float32)
        w = (-b[:, None] * dy).astype(np.float32)[:, :, None] * dx.astype(np.float32)[:, None, :]
        w += qx[:, None, :]
        w += qy[:, :, None]
        np.exp(w, out=w)
        w *= p
        col_sums = w.sum(axis=1, dtype=np.float64)  # (m, size) over rows: a function of x
        row_sums = w.sum(axis=2, dtype=np.float64)  # (m, size) over columns: a function of y
        cross = np.einsum("mx,myx->my", dx.astype(np.float32), w, dtype=np.float64)  # Σ_x w dx, per row
        sw = col_sums.sum(axis=1)
        ok = sw > 0
        sw_safe = np.where(ok, sw, 1.0)
        mean_x = (col_sums * dx).sum(axis=1) / sw_safe
        mean_y = (row_sums * dy).sum(axis=1) / sw_safe
        nxx = 2 * ((col_sums * dx * dx).sum(axis=1) / sw_safe - mean_x**2)
        nyy = 2 * ((row_sums * dy * dy).sum(axis=1) / sw_safe - mean_y**2)
        nxy = 2 * ((cross * dy).sum(axis=1) / sw_safe - mean_x * mean_y)
        ok &= (nxx > 0.01) & (nyy > 0.01) & (nxx * nyy - nxy**2 > 1e-4)
        ok &= (nxx < size**2) & (nyy < size**2) & (np.abs(mean_x) < size / 2) & (np.abs(mean_y) < size / 2)
        done = (
            (np.abs(nxx - mxx[active]) < tol * mxx[active])
            & (np.abs(nyy - myy[active]) < tol * myy[active])
            & (np.abs(nxy - mxy[active]) < tol * np.sqrt(mxx[active] * myy[active]))
            & (np.abs(mean_x) < tol)
            & (np.abs(mean_y) < tol)
        )
        good = active[ok]
        cx[good] += mean_x[ok]
        cy[good] += mean_y[ok]
        mxx[good], myy[good], mxy[good] = nxx[ok], nyy[ok], nxy[ok]
        valid[active[~ok]] = False
        converged[active[ok & done]] = True
        active = active[ok & ~done]
    for array in (cx, cy, mxx, myy, mxy):
        array[~valid] = np.nan
    return cx, cy, mxx, myy, mxy, converged & valid


# Sub-pixel step of the precomputed aperture masks (pixels), over offsets -1.5..+1.5.
_APERTURE_STEP = 0.1


@functools.lru_cache(maxsize=8)
def _aperture_masks(radius: int, aperture_radius: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Aperture weights for a (2r+1)² stamp, per sub-pixel offset of the centre: (ny, nx, s, s) float32,
    with their sums ("area") and sums of squares ("sum_squares") per offset."""
    offsets = np.arange(-1.5, 1.5 + _APERTURE_STEP / 2, _APERTURE_STEP)
    grid = np.arange(-radius, radius + 1, dtype=np.float64)
    dx = grid[None, None, None, :] - offsets[None, :, None, None]
    dy = grid[None, None, :, None] - offsets[:, None, None, None]
    weight = np.clip(aperture_radius + 0.5 - np.sqrt(dx**2 + dy**2), 0.0, 1.0)
    sums = {"area": weight.sum(axis=(2, 3)), "sum_squares": (weight**2).sum(axis=(2, 3))}
    return weight.astype(np.float32), sums


def _refined_peaks(stamps: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (x, y) from the stamp centre of each stamp's peak: the brightest of the central
    3 x 3 pixels, refined by a parabola through it and its neighbours in each direction."""
    n = stamps.shape[0]
    core = np.nan_to_num(stamps[:, radius - 2 : radius + 3, radius - 2 : radius + 3], nan=-np.inf)
    centre = core[:, 1:4, 1:4].reshape(n, 9)
    best = np.argmax(centre, axis=1)
    by, bx = best // 3 + 1, best % 3 + 1
    index = np.arange(n)
    f0 = core[index, by, bx]

    def vertex(minus: np.ndarray, plus: np.ndarray) -> np.ndarray:
        curvature = minus + plus - 2 * f0
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(curvature < 0, 0.5 * (minus - plus) / curvature, 0.0)
        return np.clip(np.nan_to_num(step), -0.5, 0.5)

    dx = vertex(core[index, by, bx - 1], core[index, by, bx + 1])
    dy = vertex(core[index, by - 1, bx], core[index, by + 1, bx])
    return bx - 2 + dx, by - 2 + dy


def measure_sources(
    image: np.ndarray,
    mask: np.ndarray,
    detections: Detections,
    *,
    aperture_radius: float,
    moments_radius: int,
    sky_noise: float,
    sigma0: float = 2.0,
) -> SourceCatalog:
    """Adaptive moments, aperture photometry and flags of every detection.

    Parameters
    ----------
    image : `numpy.ndarray`
        Post-ISR image (electrons); each stamp's local background is subtracted, so the global
        background model need not be.
    mask : `numpy.ndarray`
        Mask bits.
    detections : `Detections`
        Where to measure.
    aperture_radius : `float`
        Photometry aperture (pixels).
    moments_radius : `int`
        Half-size of the stamp used for moments (about 5 PSF σ).
    sky_noise : `float`
        Per-pixel noise of the sky (electrons, read noise included), for flux errors.
    sigma0 : `float`
        Starting σ of the adaptive weight (the PSF's, if known: fewer iterations).
    """
    n = len(detections)
    radius = int(math.ceil(aperture_radius)) + 4
    radius = max(radius, moments_radius)
    empty = np.empty(0)
    if n == 0:
        return SourceCatalog(*(empty,) * 10, np.empty(0, dtype=np.int32), aperture_radius)
    cx = np.rint(detections.x).astype(np.int64)
    cy = np.rint(detections.y).astype(np.int64)
    stamps, bits, off_edge = cutouts(image, mask, cy, cx, radius)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    r2 = offsets[None, :] ** 2 + offsets[:, None] ** 2

    # Local background: the median of the stamp beyond the aperture (robust to neighbours).
    ring = r2 > (aperture_radius + 1.0) ** 2
    ring[1::2] = False  # every other row of it: half the work, plenty of pixels for a median
    ring_pixels = stamps[:, ring]
    has_nan = np.isnan(ring_pixels).any(axis=1)
    local = np.median(ring_pixels, axis=1)
    # nanmedian only where needed: on a 2-D array it runs a Python loop over the rows.
    for i in np.flatnonzero(has_nan):
        finite = ring_pixels[i][np.isfinite(ring_pixels[i])]
        local[i] = np.median(finite) if finite.size else 0.0
    stamps -= local[:, None, None].astype(stamps.dtype)

    # Moments on the central part of the stamp.
    inner = slice(radius - moments_radius, radius + moments_radius + 1)
    core = stamps[:, inner, inner]
    start = np.full(n, float(moments_radius))
    mx, my, ixx, iyy, ixy, converged = adaptive_moments(core, start, start, sigma0=sigma0)
    # In a crowded field or at low S/N the adaptive weight can walk off to a neighbour: a
    # centroid further than the PSF's σ (at least 1.5 px) from the peak is not this source's.
    peak_x, peak_y = _refined_peaks(stamps, radius)
    drifted = ~(np.hypot(mx - moments_radius - peak_x, my - moments_radius - peak_y) <= max(1.5, sigma0))
    mx = np.where(drifted, peak_x + moments_radius, mx)
    my = np.where(drifted, peak_y + moments_radius, my)
    for array in (ixx, iyy, ixy):
        array[drifted] = np.nan
    x = cx + (mx - moments_radius)
    y = cy + (my - moments_radius)

    # Aperture about the measured centroid (the peak where moments failed), with edge pixels
    # weighted by their fraction inside to first order. The weights depend only on the sub-pixel
    # offset, so they come from masks precomputed on a 0.1-pixel grid (an aperture 0.05 px off
    # changes a star's flux by well under 0.1 %): one gather per stamp instead of computing
    # distances, and the masks' sums are the areas.
    fx = np.clip(np.where(np.isfinite(mx), mx - moments_radius, 0.0), -1.5, 1.5)
    fy = np.clip(np.where(np.isfinite(my), my - moments_radius, 0.0), -1.5, 1.5)
    masks, steps = _aperture_masks(radius, aperture_radius)
    qx = np.rint((fx + 1.5) / _APERTURE_STEP).astype(np.int64)
    qy = np.rint((fy + 1.5) / _APERTURE_STEP).astype(np.int64)
    weight = masks[qy, qx]
    finite = None if not np.isnan(stamps).any() else np.isfinite(stamps)
    values = stamps if finite is None else np.where(finite, stamps, np.float32(0))
    flux = np.einsum("nij,nij->n", weight, values, dtype=np.float64)
    n_missing = np.zeros(n) if finite is None else np.einsum("nij,nij->n", weight, (~finite).astype(np.float32))
    area = steps["area"][qy, qx]
    variance = steps["sum_squares"][qy, qx] * sky_noise**2 + np.maximum(flux, 0.0)
    # The local background's own error adds area² σ²/n_ring (median: x π/2).
    variance += area**2 * sky_noise**2 * (math.pi / 2) / max(int(ring.sum()), 1)
    flux_err = np.sqrt(variance)
    near = slice(radius - 2, radius + 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a stamp centre of NaN only
        peak = np.nanmax(stamps[:, near, near], axis=(1, 2))

    flags = np.zeros(n, dtype=np.int32)
    saturated = detections.saturated.copy()
    if (bits & SAT).any():
        saturated |= (((bits & SAT) > 0) & (weight > 0)).any(axis=(1, 2))
    flags[saturated] |= SourceCatalog.SATURATED
    flags[off_edge] |= SourceCatalog.EDGE
    flags[~converged & ~drifted] |= SourceCatalog.NOT_CONVERGED
    flags[drifted] |= SourceCatalog.DRIFTED
    flags[n_missing > 0] |= SourceCatalog.NO_DATA
    flags[~(np.isfinite(flux) & (flux > 0))] |= SourceCatalog.BAD_FLUX
    return SourceCatalog(
        x=x,
        y=y,
        ixx=ixx,
        iyy=iyy,
        ixy=ixy,
        flux=flux,
        flux_err=flux_err,
        local_background=local,
        peak=peak,
        significance=detections.significance,
        flags=flags,
        aperture_radius=aperture_radius,
    )
