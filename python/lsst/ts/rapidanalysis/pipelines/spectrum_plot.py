"""The ``spectrum_examiner`` figure: a 10 x 10 inch, 4 x 4-grid PNG (as the summit's ``specexam`` plot).

Panels: the spectrum (box transposed, dispersion to the right, 1-99 % stretch) with the ridge and
the good section; the ridge line; the ridge-pixel values with the continuum peak; the row sums
with the continuum; the FWHM along the spectrum; the zeroth order; the pixel histogram (log, with
under- and overflow counts); a text box with star, image, rate and observation values.
"""

from __future__ import annotations

import math
import pathlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from astropy.io import fits

    from .spectrum_examiner import SpectrumTrace, ZerothOrder

__all__ = ["plot_spectrum_examination"]

#: At most this many columns in the spectrum image (block means along the dispersion).
_MAX_IMAGE_COLUMNS = 1200


def plot_spectrum_examination(
    path: pathlib.Path,
    *,
    image: np.ndarray,
    gain: float,
    star: ZerothOrder,
    trace: SpectrumTrace,
    metrics: dict[str, Any],
    header: fits.Header,
    title: str,
) -> None:
    """Write the figure with the Agg backend (no display, safe in worker processes).

    Parameters
    ----------
    path : `pathlib.Path`
        PNG to write.
    image : `numpy.ndarray`
        Assembled image (e-).
    gain : `float`
        e- per ADU of the plotted values.
    star : `ZerothOrder`
        The zeroth order.
    trace : `SpectrumTrace`
        The spectrum measurement (may be empty).
    metrics : `dict`
        The telemetry fields and metrics (for the text box and the reference lines).
    header : `astropy.io.fits.Header`
        Primary header (observation info).
    title : `str`
        Figure title (the image name).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 10), dpi=100)
    FigureCanvasAgg(fig)
    # Fixed margins and title positions (``y=1.0`` in set_title): automatic layout costs a few
    # tenths of a second.
    grid = fig.add_gridspec(4, 4, left=0.08, right=0.98, bottom=0.05, top=0.93, hspace=0.45, wspace=0.35)
    fig.suptitle(f"spectrum_examiner: {title}", fontsize=11, y=0.985)
    rows = trace.rows
    exp_time = metrics.get("expTime", math.nan)
    per_second = 1.0 / exp_time if exp_time and exp_time > 0 else math.nan
    good_first, good_last = trace.good_rows

    _spectrum_image(fig.add_subplot(grid[0, :]), trace, gain, good_first, good_last)

    ax = fig.add_subplot(grid[1, 0:2])
    if rows.size:
        ax.plot(rows, trace.ridge, ",", color="0.6", label="all rows")
        ax.plot(rows[trace.good], trace.ridge[trace.good], ".", ms=1.5, color="C0", label="good rows")
        ax.legend(fontsize=7, loc="best", markerscale=4)
    ax.set_xlabel("row")
    ax.set_ylabel("ridge x (px)")
    ax.set_title("ridge line (per-row centroid)", fontsize=9, y=1.0)

    ax = fig.add_subplot(grid[1, 2:4])
    if rows.size:
        ax.plot(rows, trace.ridge_peak / gain, lw=0.5, color="C1")
        peak = metrics.get("continuumPeakRate", math.nan)
        if math.isfinite(peak) and math.isfinite(exp_time):
            ax.axhline(peak * exp_time, color="k", ls="--", lw=0.8, label=f"continuum peak {peak * exp_time:.4g} ADU")
            ax.legend(fontsize=7, loc="best")
        _good_span(ax, good_first, good_last)
    ax.set_xlabel("row")
    ax.set_ylabel("ridge pixel (ADU)")
    ax.set_title("ridge-pixel value (background subtracted)", fontsize=9, y=1.0)

    ax = fig.add_subplot(grid[2, 0:2])
    if rows.size:
        ax.plot(rows, trace.row_flux / gain, lw=0.5, color="C2")
        if trace.plateau is not None and trace.plateau.any():
            plateau = trace.plateau
            ax.plot(rows[plateau], trace.row_flux[plateau] / gain, ",", color="k", label="plateau rows")
        continuum = metrics.get("continuumAdu", math.nan)
        if math.isfinite(continuum):
            ax.axhline(continuum, color="k", ls="--", lw=0.8, label=f"continuum {continuum:.4g} ADU")
            ax.legend(fontsize=7, loc="best")
        _good_span(ax, good_first, good_last)
    ax.set_xlabel("row")
    ax.set_ylabel("row sum (ADU)")
    ax.set_title("row sums across the box (continuum: mean of the plateau rows)", fontsize=9, y=1.0)

    ax = fig.add_subplot(grid[2, 2:4])
    finite = np.isfinite(trace.fwhm) if rows.size else np.zeros(0, dtype=bool)
    if finite.any():
        ax.plot(rows[finite], trace.fwhm[finite], ".", ms=1.5, color="C3")
        for key, style in (("fwhmMedian", "--"), ("fwhmBest", ":")):
            value = metrics.get(key, math.nan)
            if math.isfinite(value):
                ax.axhline(value, color="k", ls=style, lw=0.8, label=f"{key} {value:.2f} px")
        ax.legend(fontsize=7, loc="best")
        low, high = np.percentile(trace.fwhm[finite], [1, 99])
        ax.set_ylim(low - 0.2 * (high - low) - 0.1, high + 0.2 * (high - low) + 0.1)
    else:
        ax.text(0.5, 0.5, "no FWHM measured", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("row")
    ax.set_ylabel("FWHM (px)")
    ax.set_title("FWHM along the spectrum", fontsize=9, y=1.0)

    _zeroth_order(fig.add_subplot(grid[3, 0]), image, star)
    _histogram(fig.add_subplot(grid[3, 1]), image, gain)

    ax = fig.add_subplot(grid[3, 2:4])
    ax.axis("off")
    ax.text(0, 1, _text(metrics, header, star, gain, per_second), va="top", ha="left", family="monospace", fontsize=7)
    for axes in fig.axes:
        # Few ticks: laying out tick labels is most of the drawing time.
        axes.xaxis.set_major_locator(MaxNLocator(5))
        if axes.get_yscale() == "linear":
            axes.yaxis.set_major_locator(MaxNLocator(4))
        axes.tick_params(labelsize=7)
    fig.savefig(path)


def _good_span(ax: Any, first: int, last: int) -> None:
    if first >= 0:
        ax.axvspan(first, last, color="C0", alpha=0.08, lw=0)


def _spectrum_image(ax: Any, trace: SpectrumTrace, gain: float, first: int, last: int) -> None:
    if trace.cutout.size == 0:
        ax.text(0.5, 0.5, "extraction box off the detector", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    y0, y1, x0, x1 = trace.box
    cutout = trace.cutout / gain
    factor = max(1, math.ceil(cutout.shape[0] / _MAX_IMAGE_COLUMNS))
    n = cutout.shape[0] // factor * factor
    binned = cutout[:n].reshape(-1, factor, cutout.shape[1]).mean(axis=1) if factor > 1 else cutout
    low, high = np.percentile(binned, [1, 99])
    ax.imshow(
        binned.T,
        origin="lower",
        aspect="auto",
        cmap="gray",
        vmin=low,
        vmax=high if high > low else low + 1,
        extent=(y0 - 0.5, y0 + n - 0.5, x0 - 0.5, x1 - 0.5),
        interpolation="nearest",
    )
    for row in (first, last):
        if row >= 0:
            ax.axvline(row, color="C0", lw=0.8)
    ax.set_xlabel("row (dispersion)")
    ax.set_ylabel("column")
    ax.set_title("spectrum (background subtracted, 1-99 % stretch; blue: good section)", fontsize=9, y=1.0)


def _zeroth_order(ax: Any, image: np.ndarray, star: ZerothOrder) -> None:
    half = int(max(15, 4 * star.fwhm))
    ix, iy = int(round(star.x)), int(round(star.y))
    ya, yb = max(0, iy - half), min(image.shape[0], iy + half + 1)
    xa, xb = max(0, ix - half), min(image.shape[1], ix + half + 1)
    cut = image[ya:yb, xa:xb] - star.background_e
    scaled = np.arcsinh(np.maximum(cut, 0) / max(star.peak_e, 1.0) * 100)
    ax.imshow(scaled, origin="lower", cmap="magma", extent=(xa - 0.5, xb - 0.5, ya - 0.5, yb - 0.5))
    ax.plot([star.x], [star.y], "+", color="cyan", ms=8)
    ax.set_title("zeroth order (asinh)", fontsize=9, y=1.0)
    ax.tick_params(labelsize=6)


def _histogram(ax: Any, image: np.ndarray, gain: float) -> None:
    from matplotlib.ticker import NullLocator

    values = image[::5, ::5].reshape(-1) / gain
    low, high = np.percentile(values, [0.1, 99.99])
    if not high > low:
        high = low + 1
    counts, edges = np.histogram(values, bins=100, range=(low, high))
    ax.stairs(np.maximum(counts, 0.5), edges, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(NullLocator())  # hundreds of minor ticks cost a fifth of a second
    ax.set_ylim(bottom=0.8)
    under, over = int((values < low).sum()), int((values > high).sum())
    ax.text(0.98, 0.97, f"under {under}\nover {over}", ha="right", va="top", fontsize=6, transform=ax.transAxes)
    ax.set_xlabel("pixel (ADU, 1 in 25 pixels)", fontsize=7)
    ax.set_title("pixel histogram", fontsize=9, y=1.0)
    ax.tick_params(labelsize=6)


def _fmt(value: Any, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "nan"
    return format(value, spec)


def _text(metrics: dict[str, Any], header: fits.Header, star: ZerothOrder, gain: float, per_second: float) -> str:
    def head(key: str) -> str:
        value = header.get(key)
        return "-" if value is None else str(value)

    lines = [
        "Star",
        f"  centroid     ({_fmt(metrics['starCentroidX'], '.2f')}, {_fmt(metrics['starCentroidY'], '.2f')}) px",
        f"  peak pixel   {_fmt(metrics['starPeakAdu'])} ADU  {_fmt(metrics['starPeakRate'])} ADU/s",
        f"  Ap25 flux    {_fmt(star.ap25_e / gain)} ADU  FWHM {_fmt(star.fwhm, '.2f')} px",
        "Image",
        f"  median       {_fmt(metrics['backgroundLevel'])} ADU   exptime {_fmt(metrics['expTime'])} s",
        "Spectrum",
        f"  continuum    {_fmt(metrics['continuumAdu'])} ADU/row  {_fmt(metrics['continuumRate'])} ADU/s",
        f"  cont. peak   {_fmt(metrics.get('continuumPeakRate'))} ADU/s/pixel",
        f"  FWHM         median {_fmt(metrics['fwhmMedian'], '.2f')}  best {_fmt(metrics['fwhmBest'], '.2f')} px",
        f"  good rows    {metrics['nGoodRows']} in {metrics['goodStart']}..{metrics['goodEnd']}",
        "Observation",
        f"  object {head('OBJECT')}  filter {head('FILTER')}  grating {head('GRATING')}",
        f"  rotpa {head('ROTPA')}  az {head('AZSTART')}  el {head('ELSTART')}  airmass {head('AMSTART')}",
        f"  (ADU: e- / mean gain {gain:.4f})",
    ]
    return "\n".join(lines)
