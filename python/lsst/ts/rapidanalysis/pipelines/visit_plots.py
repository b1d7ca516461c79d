"""Visit plots: the focal-plane map of PSF FWHM with ellipticity whiskers, and the binned mosaic.

Both place detectors by `lsst.ts.rapidanalysis.data.camera_layout` (focal-plane mm, and the
corner rafts' yaw), so they look the same for any selection of detectors. Detector images and
``e1``/``e2`` are in the DM stack's pixel axes (`lsst.ts.rapidanalysis.data.amp_geometry`: amps
C1x on top), which cameraGeom turns onto the focal plane by the detector's yaw alone, as here.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import Any, TypeGuard

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection, PatchCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..data.camera import Instrument
from ..data.camera_layout import PIXEL_SIZE_MM, detector_center_mm

__all__ = ["plot_focal_plane", "plot_mosaic", "mosaic_array"]

# Half the side of a detector drawn on the map (mm): a 4k CCD is ~41 mm.
_HALF_SIDE_MM = 20.5
# A whisker of e = 0.1 is this long (mm).
_WHISKER_MM_PER_E = 150.0


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and math.isfinite(value)


def plot_focal_plane(
    instrument: Instrument, rows: Sequence[dict[str, Any]], path: pathlib.Path, title: str, expected: Sequence[int]
) -> pathlib.Path:
    """PSF FWHM (colour) and ellipticity (whiskers) per detector; expected-but-missing in grey.

    Parameters
    ----------
    instrument : `Instrument`
        Camera.
    rows : sequence of `dict`
        Per-detector metrics with ``detector``, ``psfFwhm``, ``e1``, ``e2``.
    path : `pathlib.Path`
        PNG to write.
    title : `str`
        Plot title.
    expected : sequence of `int`
        Detectors that were selected (drawn even without a result).
    """
    by_id = {int(r["detector"]): r for r in rows}
    fwhm = [r["psfFwhm"] for r in rows if _finite(r.get("psfFwhm"))]
    vmin, vmax = (min(fwhm), max(fwhm)) if fwhm else (0.0, 1.0)
    if vmax - vmin < 0.02:
        vmin, vmax = vmin - 0.01, vmax + 0.01
    cmap = matplotlib.colormaps["viridis"]
    # The object API, not pyplot: no global state, safe in a worker's threads.
    fig = Figure(figsize=(8, 7), dpi=100)
    ax = fig.add_axes((0.09, 0.08, 0.72, 0.86))
    colorbar_axes = fig.add_axes((0.84, 0.08, 0.03, 0.86))
    # One collection for the detectors and one per whisker layer, not an artist each: with 189
    # detectors, 570 artists took most of a gather's time (0.8 s of it) to add and draw.
    centres = []
    squares: list[Rectangle] = []
    faces: list[tuple[float, float, float, float]] = []
    edges: list[str] = []
    styles: list[str] = []
    whiskers: list[list[tuple[float, float]]] = []
    for detector_id in sorted(set(expected) | set(by_id)):
        detector = instrument.by_id.get(detector_id)
        if detector is None:
            continue
        x, y, yaw = detector_center_mm(instrument, detector)
        centres.append((x, y))
        row = by_id.get(detector_id)
        value = row.get("psfFwhm") if row else None
        faces.append(cmap((value - vmin) / (vmax - vmin)) if _finite(value) else (0.85, 0.85, 0.85, 1.0))
        edges.append("k" if row else "0.6")
        styles.append("-" if row else ":")
        squares.append(Rectangle((x - _HALF_SIDE_MM, y - _HALF_SIDE_MM), 2 * _HALF_SIDE_MM, 2 * _HALF_SIDE_MM))
        if row and _finite(row.get("e1")) and _finite(row.get("e2")):
            e = math.hypot(row["e1"], row["e2"])
            # Position angle of the major axis in the detector's pixel frame, turned by its yaw.
            angle = 0.5 * math.atan2(row["e2"], row["e1"]) + math.radians(yaw)
            half = 0.5 * e * _WHISKER_MM_PER_E
            dx, dy = half * math.cos(angle), half * math.sin(angle)
            whiskers.append([(x - dx, y - dy), (x + dx, y + dy)])
    ax.add_collection(
        PatchCollection(squares, facecolors=faces, edgecolors=edges, linewidths=0.5, linestyles=styles, zorder=1)
    )
    for color, width in (("w", 2.5), ("k", 1.2)):
        ax.add_collection(LineCollection(whiskers, colors=color, linewidths=width, capstyle="round", zorder=2))
    if centres:
        xs, ys = zip(*centres, strict=True)
        pad = 2 * _HALF_SIDE_MM
        ax.set_xlim(min(xs) - pad, max(xs) + pad)
        ax.set_ylim(min(ys) - pad, max(ys) + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("focal plane x (mm)")
    ax.set_ylabel("focal plane y (mm)")
    scalar = ScalarMappable(cmap=cmap, norm=Normalize(vmin, vmax))
    fig.colorbar(scalar, cax=colorbar_axes, label="PSF FWHM (arcsec)")
    ax.plot([], [], color="k", label="e = 0.1 is %.0f mm" % (0.1 * _WHISKER_MM_PER_E))
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.savefig(path)
    return path


def mosaic_array(
    instrument: Instrument, images: dict[int, np.ndarray], binning: int, max_size: int = 2000
) -> tuple[np.ndarray, int]:
    """Tile binned detector images at their focal-plane places (NaN between them).

    Each detector has its sky (median) subtracted so that the map shows structure, not
    differences in bias or sky. Images are binned further by an integer factor until the
    mosaic is at most ``max_size`` pixels across. Returns the mosaic and the total binning.
    """
    if not images:
        return np.full((1, 1), np.nan, dtype=np.float32), binning
    placed = []
    for detector_id, image in images.items():
        detector = instrument.by_id.get(detector_id)
        if detector is None:
            continue
        x, y, yaw = detector_center_mm(instrument, detector)
        turns = int(round(yaw / 90.0)) % 4
        placed.append((x, y, np.rot90(image, turns)))
    xs = [x for x, _, _ in placed]
    ys = [y for _, y, _ in placed]
    largest = max(max(im.shape) for _, _, im in placed)
    mm_per_pixel = PIXEL_SIZE_MM * binning
    span = (max(max(xs) - min(xs), max(ys) - min(ys)) / mm_per_pixel) + largest
    factor = max(1, int(math.ceil(span / max_size)))
    mm_per_pixel *= factor
    size_x = int((max(xs) - min(xs)) / mm_per_pixel + largest / factor) + 2
    size_y = int((max(ys) - min(ys)) / mm_per_pixel + largest / factor) + 2
    mosaic = np.full((size_y, size_x), np.nan, dtype=np.float32)
    for x, y, image in placed:
        if factor > 1:
            rows, cols = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
            image = image[:rows, :cols].reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))
        image = image - np.nanmedian(image) if np.isfinite(image).any() else image
        col0 = int(round((x - min(xs)) / mm_per_pixel + (largest / factor - image.shape[1]) / 2))
        row0 = int(round((y - min(ys)) / mm_per_pixel + (largest / factor - image.shape[0]) / 2))
        mosaic[row0 : row0 + image.shape[0], col0 : col0 + image.shape[1]] = image
    return mosaic, binning * factor


def plot_mosaic(
    instrument: Instrument, images: dict[int, np.ndarray], binning: int, path: pathlib.Path, title: str
) -> pathlib.Path:
    """The binned post-ISR mosaic as a PNG (asinh stretch between the 1st and 99.5th percentiles)."""
    mosaic, total = mosaic_array(instrument, images, binning)
    finite = mosaic[np.isfinite(mosaic)]
    low, high = np.percentile(finite, [1.0, 99.5]) if finite.size else (0.0, 1.0)
    scale = max(high - low, 1e-6)
    stretched = np.arcsinh(np.clip((mosaic - low) / scale, 0, None) * 10) / np.arcsinh(10)
    fig = Figure(figsize=(8, 8), dpi=100)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.92))
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="0.25")  # no detector there: dark grey
    ax.imshow(stretched, origin="lower", cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{title} (post-ISR, binned {total}x{total})", fontsize=10)
    fig.savefig(path)
    return path
