"""Time per image and accuracy of the Rapid Analysis examiners, on simulated inputs with truth.

Sections (each a function that simulates its inputs, runs the pipeline, and returns table rows):

* ``spectrum``: ``spectrum_examiner`` on LATISS dispersed raws from `lsst.ts.rapidanalysis.sim.spectrum`
  at several brightnesses, exposure times and positions. Per image, each the median of
  ``--repeat`` runs: the wall and CPU time (``time.process_time``: all threads of this process)
  of the examiner without its PNG (ISR included), of its ISR alone (open + `isr_lite`), and with
  its PNG (``make_plot`` is on by default: this is the examiner as it runs in production, the
  figure the 0.5 s CPU target is about); and of the reference, measured in the same run on the
  same file: reading every HDU's pixels with astropy (the floor of any examiner's time). Ratios
  are per image (examiner CPU over reference CPU, without and with the PNG), their median in the
  summary. The PNG's figure is built once per thread, on its first image: that first run (not in
  the medians) is reported apart. Then the errors against the truth sidecar of the continuum rate,
  the continuum peak-pixel rate, the star's peak-pixel rate and the median FWHM (%).
* ``continuum``: the bias of ``continuumRate`` and ``continuumPeakRate`` against truth as the
  spectrum gets fainter: per continuum rate, ``--realisations`` noise realisations; the per-row
  signal-to-noise is truth's row flux over the measured rows' scatter about it on the plateau.
  Mean bias and scatter (standard deviation over realisations, %) of the examiner's estimator,
  and of the summit's (98th percentile of a 21-row running median of the rows) on the same rows.
* ``mount``: ``mount_torque`` (``bench/mount_torque_bench.py``, also runnable alone) on simulated
  AuxTel and Simonyi telemetry over jitter amplitudes x elevations: errors of the measured RMS
  against the injected jitter (%), and the time per image beside the time to read the same raw
  header and telemetry file.

Files are warm (the page cache holds them: this is CPU time, not disk time). numpy's BLAS runs
one thread, as in a Dask worker. The machine may be shared: hence medians, and ratios to a
reference measured in the same run.

Usage: ``python bench/examiners.py [--sections spectrum continuum mount] [--scale 1.0] [--repeat 3]
[--images 6] [--realisations 4] [--compress]``
"""

from __future__ import annotations

import os

# ruff: noqa: E402 (the imports below must follow the thread settings)
# One thread for numpy's BLAS, as in a Dask worker (distributed sets these for its workers), so
# that the CPU time is that of a single-threaded task. Set before numpy loads.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse
import dataclasses
import functools
import json
import pathlib
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from astropy.io import fits
from scipy import ndimage

from lsst.ts.rapidanalysis.pipelines.base import PipelineContext
from lsst.ts.rapidanalysis.pipelines.fits_input import open_fits
from lsst.ts.rapidanalysis.pipelines.spectrum_examiner import (
    SpectrumExaminerConfig,
    SpectrumExaminerPipeline,
    find_zeroth_order,
    isr_lite,
    measure_spectrum,
)
from lsst.ts.rapidanalysis.sim.spectrum import SpectrumConfig, simulate_dispersed
from mount_torque_bench import MOUNT_BENCH_COLUMNS, run_mount_bench


@dataclasses.dataclass(frozen=True)
class Column:
    """A table column: header, width, format of its values."""

    key: str
    header: str
    width: int
    fmt: str


@dataclasses.dataclass(frozen=True)
class Timing:
    """Median wall and CPU time (s) of repeated calls, and the CPU time of the warm-up call."""

    wall: float
    cpu: float
    first_cpu: float


def timed(function: Callable[[], Any], repeat: int) -> tuple[Timing, Any]:
    """(median wall and CPU time of ``repeat`` calls after one warm-up call, the last call's value)."""
    c0 = time.process_time()
    value = function()
    first_cpu = time.process_time() - c0
    walls, cpus = [], []
    for _ in range(max(1, repeat)):
        w0, c0 = time.perf_counter(), time.process_time()
        value = function()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return Timing(statistics.median(walls), statistics.median(cpus), first_cpu), value


def isr_only(path: pathlib.Path) -> float:
    """Open the raw and run the examiner's ISR (its share of the examiner's time)."""
    with open_fits(path) as hdul:
        return isr_lite(hdul, path).mean_gain


def read_with_astropy(path: pathlib.Path) -> int:
    """Read every HDU's data, as any examiner has to (the floor of its time)."""
    total = 0
    with fits.open(path, memmap=False) as hdul:
        for hdu in hdul:
            if hdu.data is not None:
                total += hdu.data.nbytes
    return total


def percent_error(measured: float, truth: float) -> float:
    return 100.0 * (measured - truth) / truth if truth else float("nan")


# Spectrum examiner

#: (zeroth-order rate ADU/s, continuum rate ADU/s, exposure time s, x offset px, y offset px): bright to faint,
#: on and off the pixel centre.
_SPECTRUM_CASES = (
    (2.0e5, 2.0e4, 20.0, 0.0, 0.0),
    (2.0e5, 2.0e4, 5.0, 0.3, 0.4),
    (6.0e4, 6.0e3, 20.0, 0.0, 0.0),
    (2.0e4, 1.5e3, 30.0, -0.5, 0.2),
    (5.0e3, 5.0e2, 30.0, 0.0, 0.0),
    (2.0e6, 2.0e4, 20.0, 0.0, 0.0),
)

SPECTRUM_COLUMNS = (
    Column("case", "image", 5, "d"),
    Column("zeroth", "0th ADU/s", 9, ".3g"),
    Column("continuum", "cont ADU/s", 10, ".3g"),
    Column("exp_time", "exp s", 5, ".0f"),
    Column("read_cpu", "read cpu", 8, ".3f"),
    Column("isr_cpu", "isr cpu", 7, ".3f"),
    Column("no_plot_wall", "exam wall", 9, ".3f"),
    Column("no_plot_cpu", "exam cpu", 8, ".3f"),
    Column("plot_cpu", "+png cpu", 8, ".3f"),
    Column("ratio_cpu", "exam/read", 9, ".1f"),
    Column("plot_ratio_cpu", "+png/read", 9, ".1f"),
    Column("cont_err", "cont %", 7, "+.2f"),
    Column("cpeak_err", "cpeak %", 7, "+.2f"),
    Column("peak_err", "peak %", 7, "+.2f"),
    Column("fwhm_err", "fwhm %", 7, "+.2f"),
    Column("n_good", "good rows", 9, "d"),
    Column("flags", "flags", 5, "d"),
)


def _small_frame(scale: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Placement of the star and spectrum, and the extraction box, for a frame of ``scale`` < 1."""
    if scale >= 1:
        return {}, {}
    rows = round(4000 * scale)
    place = {"zeroth_order_x": 2036 * scale, "zeroth_order_y": 0.1 * rows, "offset": 0.1 * rows}
    place.update(length=0.8 * rows, ramp_start=0.04 * rows, ramp_end=0.06 * rows, lines=((0.3 * rows, 0.6, 6.0),))
    box = {"offset": 0.1 * rows, "length": rows, "half_width": 60, "background_width": 20}
    return place, {"box": box}


def spectrum_section(
    workdir: pathlib.Path, *, scale: float, repeat: int, n_images: int, compress: bool = False, **_: Any
) -> list[dict[str, Any]]:
    """Simulate LATISS dispersed raws, examine and time them, compare with truth.

    Parameters
    ----------
    workdir : `pathlib.Path`
        Where to write the raws and products.
    scale : `float`
        Data-section scale of the simulated raws (1 = full size). Below 1 the star and spectrum are
        placed and the extraction box is shortened to fit.
    repeat : `int`
        Timing repeats (the median is kept).
    n_images : `int`
        How many of the cases to run.
    compress : `bool`
        Write RICE-compressed raws (as the summit's are; astropy decompresses them slowly).
    """
    pipeline = SpectrumExaminerPipeline()
    place, overrides = _small_frame(scale)
    with_plot = pipeline.make_config(overrides)
    without_plot = pipeline.make_config(overrides | {"make_plot": False})
    out = []
    for index, (zeroth, continuum, exp_time, dx, dy) in enumerate(_SPECTRUM_CASES[:n_images]):
        base = SpectrumConfig(**place)
        spectrum = base.model_copy(
            update={
                "zeroth_order_rate": zeroth,
                "continuum_rate": continuum,
                "zeroth_order_x": base.zeroth_order_x + dx,
                "zeroth_order_y": base.zeroth_order_y + dy,
            }
        )
        raw = simulate_dispersed(
            workdir,
            f"AT_O_20251115_{index + 1:06d}",
            exp_time=exp_time,
            seed=index,
            scale=scale,
            spectrum=spectrum,
            compress=compress,
        )
        context = PipelineContext(job_id=f"bench-{index}", output_dir=workdir / "products")
        # Back to back on the same file, so that reference and examiner see the same load.
        read, _ = timed(functools.partial(read_with_astropy, raw.path), repeat)
        isr, _ = timed(functools.partial(isr_only, raw.path), repeat)
        no_plot, result = timed(functools.partial(pipeline.run, [raw.path], without_plot, context), repeat)
        plot, _ = timed(functools.partial(pipeline.run, [raw.path], with_plot, context), repeat)
        truth = raw.truth["spectrum"]
        m = result.metrics
        centred = dx == round(dx)  # truth's continuum peak is that of a ridge centred on a pixel
        out.append(
            {
                "case": index + 1,
                "zeroth": zeroth,
                "continuum": continuum,
                "exp_time": exp_time,
                "read_wall": read.wall,
                "read_cpu": read.cpu,
                "isr_cpu": isr.cpu,
                "no_plot_wall": no_plot.wall,
                "no_plot_cpu": no_plot.cpu,
                "plot_wall": plot.wall,
                "plot_cpu": plot.cpu,
                "plot_first_cpu": plot.first_cpu,
                "ratio_cpu": no_plot.cpu / read.cpu,
                "plot_ratio_cpu": plot.cpu / read.cpu,
                "ratio_wall": no_plot.wall / read.wall,
                "cont_err": percent_error(m["continuumRate"], truth["continuum_rate_adu"]),
                "cpeak_err": percent_error(m["continuumPeakRate"], truth["continuum_peak_rate_adu"])
                if centred
                else float("nan"),
                "peak_err": percent_error(m["starPeakRate"], truth["zeroth_order"]["peak_rate_adu"]),
                "fwhm_err": percent_error(m["fwhmMedian"], float(np.median(truth["rows"]["fwhm_px"]))),
                "n_good": m["nGoodRows"],
                "flags": m["nFlags"],
                "flag_text": result.summary["flags"],
            }
        )
    return out


# Continuum bias

#: Continuum rates (ADU/s per row, 30 s exposures): per-row S/N ~170 down to ~6 on a full frame.
_CONTINUUM_RATES = (2500.0, 1000.0, 400.0, 200.0, 110.0, 60.0)
_CONTINUUM_EXP_TIME = 30.0

CONTINUUM_COLUMNS = (
    Column("continuum", "cont ADU/s", 10, ".4g"),
    Column("snr", "row S/N", 7, ".1f"),
    Column("n", "n", 2, "d"),
    Column("cont_bias", "cont bias %", 11, "+.2f"),
    Column("cont_scatter", "scatter %", 9, ".2f"),
    Column("peak_bias", "peak bias %", 11, "+.2f"),
    Column("peak_scatter", "scatter %", 9, ".2f"),
    Column("old_cont_bias", "summit cont %", 13, "+.2f"),
    Column("old_cont_scatter", "scatter %", 9, ".2f"),
    Column("old_peak_bias", "summit peak %", 13, "+.2f"),
)


def _summit_continuum(trace: Any, smoothing: int = 21, percentile: float = 98.0) -> tuple[float, float]:
    """The summit's continuum and peak (e-): a high percentile of a running median of the good section."""
    section = slice(trace.good_start, trace.good_end + 1)
    size = min(smoothing, trace.good_end - trace.good_start + 1)
    flux = ndimage.median_filter(trace.row_flux[section], size=size, mode="nearest")
    peaks = np.nan_to_num(trace.ridge_peak[section])
    peaks = ndimage.median_filter(peaks, size=size, mode="nearest")
    return float(np.percentile(flux, percentile)), float(np.percentile(peaks, percentile))


def continuum_section(
    workdir: pathlib.Path, *, scale: float, realisations: int = 4, compress: bool = False, **_: Any
) -> list[dict[str, Any]]:
    """Bias of the continuum and its peak pixel against truth, per continuum rate, over noise realisations.

    Parameters
    ----------
    workdir : `pathlib.Path`
        Where to write the raws.
    scale : `float`
        Data-section scale of the simulated raws (the per-row S/N is measured, whatever it is).
    realisations : `int`
        Noise realisations (seeds) per continuum rate.
    compress : `bool`
        Write RICE-compressed raws.
    """
    place, overrides = _small_frame(scale)
    config = SpectrumExaminerConfig(**overrides)
    box = config.box_for("holo4_003")
    out = []
    for index, continuum in enumerate(_CONTINUUM_RATES):
        samples = []
        for seed in range(realisations):
            spectrum = SpectrumConfig(**place).model_copy(
                update={"zeroth_order_rate": 2.0e5, "continuum_rate": continuum}
            )
            raw = simulate_dispersed(
                workdir,
                f"AT_O_20251115_{100 + index:06d}",
                exp_time=_CONTINUUM_EXP_TIME,
                seed=1000 + seed,
                scale=scale,
                spectrum=spectrum,
                compress=compress,
            )
            truth = raw.truth["spectrum"]
            with open_fits(raw.path) as hdul:
                isr = isr_lite(hdul, raw.path)
            star, _ = find_zeroth_order(isr.image)
            trace = measure_spectrum(isr.image, star, box, config, isr.saturated)
            to_rate = isr.mean_gain * _CONTINUUM_EXP_TIME
            y, profile = np.array(truth["rows"]["y"]), np.array(truth["rows"]["profile"])
            row_e = truth["continuum_rate_adu"] * to_rate
            plateau = np.isin(trace.rows, y[profile > 0.999])
            old_continuum, old_peak = _summit_continuum(trace)
            samples.append(
                (
                    row_e / float(np.std(trace.row_flux[plateau] - row_e)),
                    percent_error(trace.continuum_e / to_rate, truth["continuum_rate_adu"]),
                    percent_error(trace.continuum_peak_e / to_rate, truth["continuum_peak_rate_adu"]),
                    percent_error(old_continuum / to_rate, truth["continuum_rate_adu"]),
                    percent_error(old_peak / to_rate, truth["continuum_peak_rate_adu"]),
                )
            )
            raw.path.unlink()
        snr, cont, peak, old_cont, old_peak = np.array(samples).T
        out.append(
            {
                "continuum": continuum,
                "snr": float(snr.mean()),
                "n": len(samples),
                "cont_bias": float(cont.mean()),
                "cont_scatter": float(cont.std()),
                "peak_bias": float(peak.mean()),
                "peak_scatter": float(peak.std()),
                "old_cont_bias": float(old_cont.mean()),
                "old_cont_scatter": float(old_cont.std()),
                "old_peak_bias": float(old_peak.mean()),
            }
        )
    return out


def mount_section(
    workdir: pathlib.Path, *, scale: float, repeat: int, n_images: int, compress: bool, **_: Any
) -> list[dict[str, Any]]:
    """``mount_torque`` over amplitudes x elevations x both telescopes (only raw headers are read,
    so the raws are tiny whatever ``scale``; ``compress`` does not apply)."""
    del scale, compress
    return run_mount_bench(workdir, repeat=repeat, n_images=n_images)


MOUNT_COLUMNS = tuple(Column(*column) for column in MOUNT_BENCH_COLUMNS)


#: CPU seconds per full-size image, ISR and PNG included (as in production), that spectrum_examiner
#: should stay under.
SPECTRUM_CPU_TARGET = 0.5


def spectrum_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    cpu = statistics.median(r["plot_cpu"] for r in rows)
    return {
        "images": len(rows),
        "median_examine_wall_s": statistics.median(r["no_plot_wall"] for r in rows),
        "median_examine_cpu_s": statistics.median(r["no_plot_cpu"] for r in rows),
        "median_isr_cpu_s": statistics.median(r["isr_cpu"] for r in rows),
        "median_examine_with_png_wall_s": statistics.median(r["plot_wall"] for r in rows),
        "median_examine_with_png_cpu_s": cpu,
        "first_examine_with_png_cpu_s": rows[0]["plot_first_cpu"],
        "median_read_wall_s": statistics.median(r["read_wall"] for r in rows),
        "median_read_cpu_s": statistics.median(r["read_cpu"] for r in rows),
        "median_ratio_cpu": statistics.median(r["ratio_cpu"] for r in rows),
        "median_png_ratio_cpu": statistics.median(r["plot_ratio_cpu"] for r in rows),
        "median_ratio_wall": statistics.median(r["ratio_wall"] for r in rows),
        "cpu_target_s": SPECTRUM_CPU_TARGET,
        "cpu_target_met": cpu <= SPECTRUM_CPU_TARGET,
        "max_abs_cont_err_pct": max(abs(r["cont_err"]) for r in rows),
        # A saturated star's peak is flagged as a lower limit: not an error of the method.
        "max_abs_peak_err_pct_unflagged": max((abs(r["peak_err"]) for r in rows if not r["flags"]), default=None),
    }


#: Largest |mean bias| (%) of the continuum allowed at a per-row S/N of 10 or more.
CONTINUUM_BIAS_TARGET = 2.0


def continuum_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    usable = [r for r in rows if r["snr"] >= 10]
    worst = max((abs(r["cont_bias"]) for r in usable), default=None)
    return {
        "max_abs_cont_bias_pct_snr_ge_10": worst,
        "max_abs_peak_bias_pct_snr_ge_10": max((abs(r["peak_bias"]) for r in usable), default=None),
        "max_abs_summit_cont_bias_pct_snr_ge_10": max((abs(r["old_cont_bias"]) for r in usable), default=None),
        "bias_target_pct": CONTINUUM_BIAS_TARGET,
        "bias_target_met": worst is not None and worst <= CONTINUUM_BIAS_TARGET,
    }


def mount_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "max_abs_axis_err_pct": max(abs(r[k]) for r in rows for k in ("az_err", "el_err", "rot_err")),
        "max_abs_impact_err_pct": max(abs(r["impact_err"]) for r in rows),
        "median_examine_s": statistics.median(r["examine"] for r in rows),
        "median_examine_no_plot_s": statistics.median(r["examine_no_plot"] for r in rows),
        "median_read_s": statistics.median(r["read"] for r in rows),
    }


#: Sections by name: (function, columns, summary).
SECTIONS: dict[str, tuple[Callable[..., list[dict[str, Any]]], tuple[Column, ...], Callable[..., dict]]] = {
    "spectrum": (spectrum_section, SPECTRUM_COLUMNS, spectrum_summary),
    "continuum": (continuum_section, CONTINUUM_COLUMNS, continuum_summary),
    "mount": (mount_section, MOUNT_COLUMNS, mount_summary),
}


def print_table(title: str, rows: list[dict[str, Any]], columns: tuple[Column, ...]) -> None:
    print(f"\n{title}")
    print(" ".join(f"{c.header:>{c.width}s}" for c in columns))
    for row in rows:
        cells = []
        for c in columns:
            value = row[c.key]
            text = "nan" if isinstance(value, float) and value != value else format(value, c.fmt)
            cells.append(f"{text:>{c.width}s}")
        print(" ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS), help="what to run")
    parser.add_argument("--scale", type=float, default=1.0, help="data-section scale of the simulated raws")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats per image (median kept)")
    parser.add_argument("--images", type=int, default=len(_SPECTRUM_CASES), help="images per section")
    parser.add_argument("--realisations", type=int, default=4, help="noise realisations per continuum rate")
    parser.add_argument("--compress", action="store_true", help="RICE-compressed raws (as at the summit)")
    args = parser.parse_args()
    # The mount simulators are DDS components: keep this run's traffic to itself.
    os.environ.setdefault("LSST_SITE", "bench")
    os.environ.setdefault("LSST_DDS_PARTITION_PREFIX", f"bench-examiners-{os.getpid()}")
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sections:
            function, columns, summarize = SECTIONS[name]
            rows = function(
                pathlib.Path(tmp) / name,
                scale=args.scale,
                repeat=args.repeat,
                n_images=args.images,
                realisations=args.realisations,
                compress=args.compress,
            )
            kind = "RICE-compressed" if args.compress else "uncompressed"
            title = f"{name} ({kind}, scale {args.scale:g}; errors vs truth in %):"
            if name == "spectrum":
                title = (
                    f"spectrum_examiner per image ({kind}, scale {args.scale:g}; seconds are medians of {args.repeat} "
                    "runs; exam = no PNG, ISR included; +png = with its PNG, as in production; read = astropy "
                    "reading every HDU, the reference; errors vs truth in %):"
                )
            elif name == "continuum":
                title = (
                    f"continuum bias vs truth ({kind}, scale {args.scale:g}, {args.realisations} realisations per "
                    f"rate, {_CONTINUUM_EXP_TIME:g} s; bias = mean, scatter = std over realisations, %; summit = "
                    "98th percentile of a 21-row running median, on the same rows):"
                )
            print_table(title, rows, columns)
            for row in rows:
                if row.get("flag_text"):
                    print(f"  image {row['case']}: {'; '.join(row['flag_text'])}")
            summary[name] = summarize(rows)
            if name == "spectrum":
                t = summary[name]
                print(
                    f"spectrum_examiner, median of {t['images']} images: with PNG (as in production) wall "
                    f"{t['median_examine_with_png_wall_s']:.3f} s, CPU {t['median_examine_with_png_cpu_s']:.3f} s "
                    f"per image (target <= {SPECTRUM_CPU_TARGET} s: {'met' if t['cpu_target_met'] else 'NOT met'}; "
                    f"the first, which builds the figure: {t['first_examine_with_png_cpu_s']:.3f} s); "
                    f"without PNG wall {t['median_examine_wall_s']:.3f} s, CPU {t['median_examine_cpu_s']:.3f} s "
                    f"(ISR {t['median_isr_cpu_s']:.3f} s of it); "
                    f"reference read wall {t['median_read_wall_s']:.3f} s, CPU {t['median_read_cpu_s']:.3f} s; "
                    f"examiner/reference CPU x{t['median_ratio_cpu']:.1f} (with PNG "
                    f"x{t['median_png_ratio_cpu']:.1f}), wall x{t['median_ratio_wall']:.1f}"
                )
            elif name == "continuum":
                t = summary[name]
                print(
                    f"continuum at per-row S/N >= 10: worst |mean bias| {t['max_abs_cont_bias_pct_snr_ge_10']:.2f} % "
                    f"(peak pixel {t['max_abs_peak_bias_pct_snr_ge_10']:.2f} %; summit's estimator "
                    f"{t['max_abs_summit_cont_bias_pct_snr_ge_10']:.2f} %); target <= {CONTINUUM_BIAS_TARGET} %: "
                    f"{'met' if t['bias_target_met'] else 'NOT met'}"
                )
    print("JSON " + json.dumps(summary))


if __name__ == "__main__":
    main()
