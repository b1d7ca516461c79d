"""The Trends page's plots, drawn on the server as SVG: a metric against time, and per detector on the focal plane.

matplotlib's object API (a `Figure` with the SVG canvas), not pyplot: no global state, so plots
may be drawn in several threads of the server at once. Detectors are placed by
`lsst.ts.rapidanalysis.data.camera_layout`, as the visit plots place them.
"""

from __future__ import annotations

import datetime
import io
import math
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.dates
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PatchCollection
from matplotlib.colors import Normalize
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..data.camera import get_instrument
from ..data.camera_layout import detector_center_mm
from ..sal.tai import utc_from_tai

__all__ = ["trend_svg", "focal_plane_svg", "SVG_MEDIA_TYPE"]

SVG_MEDIA_TYPE = "image/svg+xml"
# Half the side of a detector square on the map (mm); a 4k CCD is ~41 mm.
_HALF_SIDE_MM = 20.5


def _svg(fig: Figure) -> bytes:
    FigureCanvasSVG(fig)
    out = io.BytesIO()
    # No embedded date or random ids: the same data give the same bytes (cacheable, testable).
    fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def _message(fig: Figure, text: str) -> None:
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, color="0.4", transform=ax.transAxes)


def trend_svg(points: Sequence[tuple[float, float, str]], metric: str, title: str) -> bytes:
    """A metric against time over a night.

    Parameters
    ----------
    points : sequence of (`float`, `float`, `str`)
        (observation time as TAI unix seconds, value, image name), as `PageQueries.trend` gives.
    metric : `str`
        The metric's name (y axis label).
    title : `str`
        Plot title.

    Returns
    -------
    svg : `bytes`
        The SVG document.
    """
    fig = Figure(figsize=(9, 4), dpi=100, layout="constrained")
    finite = [(t, v) for t, v, _ in points if math.isfinite(t) and math.isfinite(v)]
    if not finite:
        _message(fig, f"no values of {metric} this night")
        return _svg(fig)
    # matplotlib's date numbers (days since 1970), so that the axis shows UTC clock times.
    times = [
        matplotlib.dates.date2num(datetime.datetime.fromtimestamp(utc_from_tai(t), tz=datetime.UTC)) for t, _ in finite
    ]
    values = [v for _, v in finite]
    ax = fig.add_subplot()
    ax.plot(times, values, "o-", markersize=3, linewidth=0.8, color="#1f6fb2")
    ax.xaxis_date(tz=datetime.UTC)
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel(metric)
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M"))
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=10)
    return _svg(fig)


def focal_plane_svg(instrument: str, values: Mapping[int, float], metric: str, title: str) -> bytes:
    """A per-detector metric on the focal plane: each detector a square coloured by its value.

    Parameters
    ----------
    instrument : `str`
        ``LATISS``, ``LSSTComCam`` or ``LSSTCam`` (places the detectors).
    values : `dict` [`int`, `float`]
        Value by detector id; detectors without one are drawn grey.
    metric : `str`
        The metric's name (colour bar label).
    title : `str`
        Plot title.

    Returns
    -------
    svg : `bytes`
        The SVG document.

    Raises
    ------
    ValueError
        If the instrument is unknown.
    """
    camera = get_instrument(instrument)
    fig = Figure(figsize=(7.5, 6.5), dpi=100)
    finite = [v for v in values.values() if math.isfinite(v)]
    if not finite:
        _message(fig, f"no per-detector values of {metric}")
        return _svg(fig)
    vmin, vmax = min(finite), max(finite)
    if vmax - vmin < 1e-9:
        vmin, vmax = vmin - 0.5 * max(abs(vmin), 1e-3) * 0.01, vmax + 0.5 * max(abs(vmax), 1e-3) * 0.01
    cmap = matplotlib.colormaps["viridis"]
    ax = fig.add_axes((0.1, 0.08, 0.7, 0.84))
    colorbar_axes = fig.add_axes((0.84, 0.08, 0.03, 0.84))
    squares, faces, xs, ys = [], [], [], []
    for detector in camera.detectors:
        x, y, _ = detector_center_mm(camera, detector)
        value = values.get(detector.id)
        xs.append(x)
        ys.append(y)
        squares.append(Rectangle((x - _HALF_SIDE_MM, y - _HALF_SIDE_MM), 2 * _HALF_SIDE_MM, 2 * _HALF_SIDE_MM))
        if value is not None and math.isfinite(value):
            faces.append(cmap((value - vmin) / (vmax - vmin)))
        else:
            faces.append((0.88, 0.88, 0.88, 1.0))
    ax.add_collection(PatchCollection(squares, facecolors=faces, edgecolors="0.3", linewidths=0.4))
    pad = 2 * _HALF_SIDE_MM
    ax.set_xlim(min(xs) - pad, max(xs) + pad)
    ax.set_ylim(min(ys) - pad, max(ys) + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("focal plane x (mm)")
    ax.set_ylabel("focal plane y (mm)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(ScalarMappable(cmap=cmap, norm=Normalize(vmin, vmax)), cax=colorbar_axes, label=metric)
    return _svg(fig)
