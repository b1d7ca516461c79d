"""The ``spectrum_examiner`` figure: a 10 x 10 inch, 4 x 4-grid PNG (as the summit's ``specexam`` plot).

Panels: the spectrum (box transposed, dispersion to the right, 1-99 % stretch) with the ridge and
the good section; the ridge line; the ridge-pixel values with the continuum peak; the row sums
with the continuum and the plateau rows; the FWHM along the spectrum; the zeroth order; the pixel
histogram (log, with under- and overflow counts); a text box with star, image, rate and
observation values.

Speed: the PNG is on by default, so its CPU counts against the examiner's 0.5 s per image
(``bench/examiners.py``). Matplotlib spends it on axes and text rather than on data: creating
axes and ticks, and laying out and rasterising text glyph by glyph (~0.1-0.2 ms a glyph, ~1 ms a
tick label, with matplotlib 3.11's Agg). Hence (0.6 s to 0.16 s per image on a quiet machine):

* One figure per thread (`_ExaminerFigure`), built on its first image: the axes, titles, labels,
  scales, tick locators and formatters are made once; per image the data artists, legends and
  limits are added and then removed again (`_ExaminerFigure.clear`, which leaves the figure as
  new: a reused figure draws the same PNG, pixel for pixel, as a new one). Ticks and text metrics
  are reused from image to image. A failure discards the figure.
* The titles and axis labels (fixed places: fixed margins, ``y=1.0`` titles, fixed label
  offsets) are rasterised once into a background that each image starts from.
* Pillow, some 20 times faster than Agg at text, rasterises the tick labels (where matplotlib
  would put them: `_ExaminerFigure._tick_labels`; matplotlib draws the ticks) and the text box (a
  block of monospace text at a fixed place): 3 ms, against 0.07 s and 0.08 s through Agg.
* Legends at fixed places (``loc="best"`` searches every data point); no minor ticks on the log
  axis and its decades as plain ``1e3`` (mathtext parsing costs as much as a panel); tick labels
  of 10 000 and more as ``45k``, never with an offset; the spectrum binned to about the panel's
  width in pixels.
* The PNG written with zlib level 1 and unfiltered rows (`_write_png`), 4x faster than Pillow's
  default for about the same size (~180 kB).
"""

from __future__ import annotations

import math
import pathlib
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from astropy.io import fits
    from matplotlib.font_manager import FontProperties

    from .spectrum_examiner import SpectrumTrace, ZerothOrder

__all__ = ["plot_spectrum_examination"]

#: At most this many columns in the spectrum image (block means along the dispersion): about the
#: panel's width in pixels (9 inches at 100 dpi), beyond which Agg would only resample them away.
_MAX_IMAGE_COLUMNS = 900
#: zlib level of the PNG: several times faster than the default 6, for about the same size on a plot.
_PNG_COMPRESS_LEVEL = 1

#: One figure per thread (a Dask worker may run several threads; each gets its own figure).
_cache = threading.local()


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
    """Write the figure with the Agg backend (no pyplot, no display: safe in worker processes).

    The figure is built on the first call in a thread and reused by the next ones in that thread:
    each call removes what it drew once the PNG is written, and a call that fails discards the
    figure (the next one builds a new one).

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
    figure = getattr(_cache, "figure", None)
    if figure is None:
        figure = _cache.figure = _ExaminerFigure()
    reusable = False
    try:
        text = figure.draw_image(
            image=image, gain=gain, star=star, trace=trace, metrics=metrics, header=header, title=title
        )
        figure.save(path, text)
        reusable = True
    finally:
        try:
            figure.clear()
        except Exception:
            reusable = False
        if not reusable:
            _cache.figure = None


class _ExaminerFigure:
    """The figure, its axes and everything on them that does not depend on the image."""

    def __init__(self) -> None:
        from matplotlib import rcParams
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.font_manager import FontProperties
        from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator
        from matplotlib.transforms import ScaledTranslation

        fig = Figure(figsize=(10, 10), dpi=100)
        self.canvas = FigureCanvasAgg(fig)
        self.fig = fig
        # Fixed margins and title positions (``y=1.0`` in set_title): automatic layout costs a few
        # tenths of a second.
        grid = fig.add_gridspec(4, 4, left=0.08, right=0.98, bottom=0.05, top=0.93, hspace=0.45, wspace=0.35)
        self.suptitle = fig.suptitle("spectrum_examiner", fontsize=11, y=0.985)
        #: Texts that do not change: drawn once into `_background`, then hidden.
        self._static: list[Any] = []
        self._background: Any = None

        def axes(where: Any, title: str, xlabel: str, ylabel: str) -> Any:
            ax = fig.add_subplot(where)
            self._static.append(ax.set_title(title, fontsize=9, y=1.0))
            # Axis labels at fixed offsets from the axes (not placed beyond the tick labels at each
            # draw), so that they can be drawn once.
            ax.set_xlabel(xlabel)
            ax.xaxis.set_label_coords(0.5, 0, ax.transAxes + ScaledTranslation(0, -0.26, fig.dpi_scale_trans))
            ax.set_ylabel(ylabel)
            ax.yaxis.set_label_coords(0, 0.5, ax.transAxes + ScaledTranslation(-0.42, 0, fig.dpi_scale_trans))
            self._static += [ax.xaxis.label, ax.yaxis.label]
            return ax

        self.spectrum = axes(
            grid[0, :],
            "spectrum (background subtracted, 1-99 % stretch; blue: good section)",
            "row (dispersion)",
            "column",
        )
        self.ridge = axes(
            grid[1, 0:2], "ridge line (per-row centroid; blue: good rows, grey: the others)", "row", "ridge x (px)"
        )
        self.peak = axes(grid[1, 2:4], "ridge-pixel value (background subtracted)", "row", "ridge pixel (ADU)")
        self.row_sums = axes(
            grid[2, 0:2], "row sums across the box (continuum: mean of the plateau rows)", "row", "row sum (ADU)"
        )
        self.fwhm = axes(grid[2, 2:4], "FWHM along the spectrum", "row", "FWHM (px)")
        self.zeroth = axes(grid[3, 0], "zeroth order (asinh)", "", "")
        # A square box whatever the cutout (clipped at the detector's edges, the limits adapt), so
        # that the title stays where the background has it.
        self.zeroth.set_box_aspect(1)
        self.zeroth.set_aspect("equal", adjustable="datalim")
        self.histogram = axes(grid[3, 1], "pixel histogram", "pixel (ADU, 1 in 25 pixels)", "")
        self.histogram.xaxis.label.set_fontsize(7)
        self.histogram.set_yscale("log")
        # Hundreds of minor ticks cost a fifth of a second; decade labels as plain text ("1e3"),
        # not mathtext, whose parsing costs as much as drawing a panel.
        self.histogram.yaxis.set_minor_locator(NullLocator())
        self.histogram.yaxis.set_major_formatter(FuncFormatter(_decade))
        self.axes = (self.spectrum, self.ridge, self.peak, self.row_sums, self.fwhm, self.zeroth, self.histogram)
        for ax in self.axes:
            # Few ticks: laying out tick labels is most of the drawing time.
            ax.xaxis.set_major_locator(MaxNLocator(5 if ax is self.spectrum else 4))
            ax.xaxis.set_major_formatter(_compact_formatter())
            if ax is not self.histogram:
                ax.yaxis.set_major_locator(MaxNLocator(4))
                # 45k, not 45000: short labels fit left of the axis label's fixed place.
                ax.yaxis.set_major_formatter(_compact_formatter())
            # Matplotlib draws the ticks, Pillow their labels (`_tick_labels`). The label size
            # still matters: the log axis's locator spaces its ticks by it.
            ax.tick_params(labelsize=self._label_size(ax), labelbottom=False, labelleft=False)
        points = fig.dpi / 72  # pixels per point
        # Tick labels: this far from the axes (the tick's length and the label's pad), in pixels.
        self._tick_pad = {
            "x": (rcParams["xtick.major.size"] + rcParams["xtick.major.pad"]) * points,
            "y": (rcParams["ytick.major.size"] + rcParams["ytick.major.pad"]) * points,
        }
        self._tick_fonts = {size: _font(FontProperties(), size * points) for size in (6, 7)}
        # The text box, top left of the bottom right quarter (pixels from the top left corner).
        box = grid[3, 2:4].get_position(fig)
        width, height = self.canvas.get_width_height()
        self._text_xy = (round(box.x0 * width), round((1 - box.y1) * height))
        self._text_font = _font(FontProperties(family=["monospace"]), 7 * points)

    def _label_size(self, ax: Any) -> int:
        """Tick label size (points) of a panel."""
        return 6 if ax in (self.zeroth, self.histogram) else 7

    def draw_image(
        self,
        *,
        image: np.ndarray,
        gain: float,
        star: ZerothOrder,
        trace: SpectrumTrace,
        metrics: dict[str, Any],
        header: fits.Header,
        title: str,
    ) -> str:
        """Add this image's data and legends (`clear` removes them); return the text box's text."""
        self.suptitle.set_text(f"spectrum_examiner: {title}")
        rows = trace.rows
        exp_time = metrics.get("expTime", math.nan)
        per_second = 1.0 / exp_time if exp_time and exp_time > 0 else math.nan
        good_first, good_last = trace.good_rows

        _spectrum_image(self.spectrum, trace, gain, good_first, good_last)

        ax = self.ridge
        if rows.size:
            ax.plot(rows, trace.ridge, ",", color="0.6")
            ax.plot(rows[trace.good], trace.ridge[trace.good], ".", ms=1.5, color="C0")

        ax = self.peak
        if rows.size:
            ax.plot(rows, trace.ridge_peak / gain, lw=0.5, color="C1")
            peak = metrics.get("continuumPeakRate", math.nan)
            if math.isfinite(peak) and math.isfinite(exp_time):
                label = f"continuum peak {peak * exp_time:.4g} ADU"
                ax.axhline(peak * exp_time, color="k", ls="--", lw=0.8, label=label)
                ax.legend(fontsize=7, loc="lower center")
            _good_span(ax, good_first, good_last)

        ax = self.row_sums
        if rows.size:
            ax.plot(rows, trace.row_flux / gain, lw=0.5, color="C2")
            if trace.plateau is not None and trace.plateau.any():
                plateau = trace.plateau
                ax.plot(rows[plateau], trace.row_flux[plateau] / gain, ",", color="k", label="plateau rows")
            continuum = metrics.get("continuumAdu", math.nan)
            if math.isfinite(continuum):
                ax.axhline(continuum, color="k", ls="--", lw=0.8, label=f"continuum {continuum:.4g} ADU")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="lower center", markerscale=4)
            _good_span(ax, good_first, good_last)

        ax = self.fwhm
        finite = np.isfinite(trace.fwhm) if rows.size else np.zeros(0, dtype=bool)
        if finite.any():
            ax.plot(rows[finite], trace.fwhm[finite], ".", ms=1.5, color="C3")
            for key, style in (("fwhmMedian", "--"), ("fwhmBest", ":")):
                value = metrics.get(key, math.nan)
                if math.isfinite(value):
                    ax.axhline(value, color="k", ls=style, lw=0.8, label=f"{key} {value:.2f} px")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="lower center")
            low, high = np.percentile(trace.fwhm[finite], [1, 99])
            ax.set_ylim(low - 0.2 * (high - low) - 0.1, high + 0.2 * (high - low) + 0.1)
        else:
            ax.text(0.5, 0.5, "no FWHM measured", ha="center", va="center", transform=ax.transAxes)

        _zeroth_order(self.zeroth, image, star)
        _histogram(self.histogram, image, gain)
        return _text(metrics, header, star, gain, per_second)

    def save(self, path: pathlib.Path, text: str) -> None:
        """Draw and write the PNG, ``text`` in the text box."""
        renderer = self.canvas.get_renderer()
        if self._background is None:
            # The white page with the titles and axis labels, once.
            for ax in self.axes:
                ax.apply_aspect()  # the zeroth order's square box, under its title
            renderer.clear()
            self.fig.patch.draw(renderer)
            for artist in self._static:
                artist.draw(renderer)
            self._background = self.canvas.copy_from_bbox(self.fig.bbox)
            for artist in self._static:
                artist.set_visible(False)
            self.fig.patch.set_visible(False)
        self.canvas.restore_region(self._background)
        self.fig.draw(renderer)
        # The text box and the tick labels with Pillow, which rasterises text some 20 times faster
        # than Agg (here 3 ms against 0.07 s for the tick labels, 0.08 s for the text box).
        from PIL import Image, ImageDraw

        png = Image.fromarray(np.asarray(renderer.buffer_rgba()))  # opaque: the page is white
        draw = ImageDraw.Draw(png)
        black = (0, 0, 0, 255)
        font = self._text_font
        draw.multiline_text(self._text_xy, text, fill=black, font=font, spacing=round(0.2 * font.size))
        for xy, label, anchor, font in self._tick_labels():
            draw.text(xy, label, fill=black, font=font, anchor=anchor)
        _write_png(path, np.asarray(png), self.fig.dpi)

    def _tick_labels(self) -> Iterator[tuple[tuple[float, float], str, str, Any]]:
        """Where each major tick label in view goes, as matplotlib places it (once drawn).

        Yields
        ------
        xy : `tuple` [`float`, `float`]
            Anchor point, pixels from the top left corner.
        label : `str`
            The formatter's text (as matplotlib's labels, which are hidden).
        anchor : `str`
            Pillow's text anchor: ``mt`` (middle top, below the x axis) or ``rm`` (right middle,
            left of the y axis).
        font : `PIL.ImageFont.FreeTypeFont`
            The panel's tick label font.
        """
        height = self.fig.bbox.height
        for ax in self.axes:
            font = self._tick_fonts[self._label_size(ax)]
            box = ax.bbox
            for axis in (ax.xaxis, ax.yaxis):
                locs = axis.get_majorticklocs()
                for loc, label in zip(locs, axis.major.formatter.format_ticks(locs), strict=True):
                    if not label:
                        continue
                    if axis is ax.xaxis:
                        x = ax.get_xaxis_transform().transform((loc, 0))[0]
                        if box.x0 - 0.5 <= x <= box.x1 + 0.5:
                            yield (x, height - box.y0 + self._tick_pad["x"]), label, "mt", font
                    else:
                        y = ax.get_yaxis_transform().transform((0, loc))[1]
                        if box.y0 - 0.5 <= y <= box.y1 + 0.5:
                            yield (box.x0 - self._tick_pad["y"], height - y), label, "rm", font

    def clear(self) -> None:
        """Remove what `draw_image` added, and let every panel's limits autoscale again."""
        for ax in self.axes:
            for artist in (*ax.lines, *ax.images, *ax.patches, *ax.collections, *ax.texts):
                artist.remove()
            if ax.legend_ is not None:
                ax.legend_.remove()
            ax.relim()
            # A new axes' limits, which a panel without data keeps (the histogram has data always).
            ax.set_xlim(0, 1)
            if ax is not self.histogram:
                ax.set_ylim(0, 1)
            ax.set_autoscale_on(True)
        self.suptitle.set_text("spectrum_examiner")


def _write_png(path: pathlib.Path, rgba: np.ndarray, dpi: float) -> None:
    """Write ``rgba`` (height, width, 4 uint8) as a PNG: rows unfiltered, zlib level 1.

    Pillow would try every PNG filter on every row, which costs more than compressing (25 ms,
    against 11 ms for about the same size here: a plot is mostly flat colour). RGBA rather than
    RGB: dropping the alpha channel costs more than compressing it.
    """
    height, width, _ = rgba.shape
    rows = np.zeros((height, 1 + 4 * width), dtype=np.uint8)  # each row: filter type 0, then RGBA
    rows[:, 1:] = rgba.reshape(height, 4 * width)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    per_metre = round(dpi / 0.0254)
    png = b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)),  # 8-bit RGBA
            chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)),
            chunk(b"IDAT", zlib.compress(rows.data, _PNG_COMPRESS_LEVEL)),
            chunk(b"IEND", b""),
        ]
    )
    pathlib.Path(path).write_bytes(png)


def _font(properties: FontProperties, size: float) -> Any:
    """Matplotlib's font for ``properties`` (DejaVu Sans, or Sans Mono) for Pillow, ``size`` pixels."""
    from matplotlib.font_manager import findfont
    from PIL import ImageFont

    path = findfont(properties)
    try:
        return ImageFont.truetype(path, size=size)
    except TypeError:  # Pillow before 10.1 takes whole pixels only
        return ImageFont.truetype(path, size=round(size))


def _compact_formatter() -> Any:
    """Tick labels of 10 000 and more in thousands or millions (``45k``, ``1.5M``), others as usual.

    Never an offset or a power of ten apart (the tick labels are drawn without matplotlib's offset
    text, see `_ExaminerFigure._tick_labels`): every label is its tick's value.
    """
    from matplotlib.ticker import ScalarFormatter

    class CompactFormatter(ScalarFormatter):
        #: 1e3, 1e6 or 1e9 for these ticks' labels; None: ScalarFormatter's labels.
        _scale: float | None = None

        def __init__(self) -> None:
            super().__init__(useOffset=False)
            self.set_scientific(False)

        def set_locs(self, locs: Any) -> None:
            self._scale = None
            biggest = max((abs(v) for v in locs), default=0.0)
            if biggest >= 1e4:
                scale = 1e3 if biggest < 1e6 else 1e6 if biggest < 1e9 else 1e9
                # Only if the labels stay distinct (else the usual labels with an offset).
                if len({f"{v / scale:.4g}" for v in locs}) == len(locs):
                    self._scale = scale
                    return
            super().set_locs(locs)

        def __call__(self, x: float, pos: int | None = None) -> str:
            if self._scale is None:
                return super().__call__(x, pos)
            suffix = {1e3: "k", 1e6: "M", 1e9: "G"}[self._scale]
            return "0" if abs(x) < 1e-9 * self._scale else self.fix_minus(f"{x / self._scale:.4g}{suffix}")

        def get_offset(self) -> str:
            return "" if self._scale is not None else super().get_offset()

    return CompactFormatter()


def _decade(value: float, _: Any) -> str:
    return f"1e{math.log10(value):.0f}" if value > 0 else ""


def _good_span(ax: Any, first: int, last: int) -> None:
    if first >= 0:
        ax.axvspan(first, last, color="C0", alpha=0.08, lw=0)


def _spectrum_image(ax: Any, trace: SpectrumTrace, gain: float, first: int, last: int) -> None:
    if trace.cutout.size == 0:
        # An empty frame, as the other panels without data (its title and labels are drawn anyway).
        ax.text(0.5, 0.5, "extraction box off the detector", ha="center", va="center", transform=ax.transAxes)
        return
    y0, y1, x0, x1 = trace.box
    cutout = trace.cutout
    factor = max(1, math.ceil(cutout.shape[0] / _MAX_IMAGE_COLUMNS))
    n = cutout.shape[0] // factor * factor
    binned = cutout[:n].reshape(-1, factor, cutout.shape[1]).mean(axis=1) if factor > 1 else cutout
    binned = binned.T / gain
    low, high = np.percentile(binned, [1, 99])
    ax.imshow(
        binned,
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


def _zeroth_order(ax: Any, image: np.ndarray, star: ZerothOrder) -> None:
    half = int(max(15, 4 * star.fwhm))
    ix, iy = int(round(star.x)), int(round(star.y))
    ya, yb = max(0, iy - half), min(image.shape[0], iy + half + 1)
    xa, xb = max(0, ix - half), min(image.shape[1], ix + half + 1)
    cut = image[ya:yb, xa:xb] - star.background_e
    scaled = np.arcsinh(np.maximum(cut, 0) / max(star.peak_e, 1.0) * 100)
    ax.imshow(scaled, origin="lower", cmap="magma", extent=(xa - 0.5, xb - 0.5, ya - 0.5, yb - 0.5))
    ax.plot([star.x], [star.y], "+", color="cyan", ms=8)


def _histogram(ax: Any, image: np.ndarray, gain: float) -> None:
    values = image[::5, ::5].reshape(-1) / gain
    low, high = np.percentile(values[::4], [0.1, 99.99])  # the range: 1 in 100 pixels are enough
    if not high > low:
        high = low + 1
    counts, edges = np.histogram(values, bins=100, range=(low, high))
    ax.stairs(np.maximum(counts, 0.5), edges, color="k", lw=0.8)
    ax.set_ylim(bottom=0.8)
    under, over = int((values < low).sum()), int((values > high).sum())
    ax.text(0.98, 0.97, f"under {under}\nover {over}", ha="right", va="top", fontsize=6, transform=ax.transAxes)


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
