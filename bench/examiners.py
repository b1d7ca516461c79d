"""Time per image and accuracy of the Rapid Analysis examiners, on simulated inputs with truth.

Sections (each a function that simulates its inputs, runs the pipeline, and returns table rows):

* ``spectrum``: ``spectrum_examiner`` on LATISS dispersed raws from `lsst.ts.rapidanalysis.sim.spectrum`
  at several brightnesses, exposure times and positions. Per image: the time to read the same file
  with astropy (every amp's pixels), the examiner's time with and without its PNG, their ratios,
  and the errors against the truth sidecar of the continuum rate, the continuum peak-pixel rate,
  the star's peak-pixel rate and the median FWHM (%).
* ``mount``: ``mount_torque`` (``bench/mount_torque_bench.py``, also runnable alone) on simulated
  AuxTel and Simonyi telemetry over jitter amplitudes x elevations: errors of the measured RMS
  against the injected jitter (%), and the time per image beside the time to read the same raw
  header and telemetry file.

Times are the best of ``--repeat`` runs on warm files (the page cache holds them: this is CPU
time, not disk time).

Usage: ``python bench/examiners.py [--sections spectrum mount] [--scale 1.0] [--repeat 3] [--images 6] [--compress]``
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import pathlib
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from astropy.io import fits

from lsst.ts.rapidanalysis.pipelines.base import PipelineContext
from lsst.ts.rapidanalysis.pipelines.spectrum_examiner import SpectrumExaminerPipeline
from lsst.ts.rapidanalysis.sim.spectrum import SpectrumConfig, simulate_dispersed
from mount_torque_bench import MOUNT_BENCH_COLUMNS, run_mount_bench


@dataclasses.dataclass(frozen=True)
class Column:
    """A table column: header, width, format of its values."""

    key: str
    header: str
    width: int
    fmt: str


def best_time(function: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """(shortest wall time of ``repeat`` calls, the last call's value)."""
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - t0)
    return min(times), value


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
    Column("read", "read s", 7, ".3f"),
    Column("examine", "exam s", 7, ".3f"),
    Column("examine_no_plot", "no-plot s", 9, ".3f"),
    Column("ratio", "exam/read", 9, ".1f"),
    Column("ratio_no_plot", "no-plot/read", 12, ".1f"),
    Column("cont_err", "cont %", 7, "+.2f"),
    Column("cpeak_err", "cpeak %", 7, "+.2f"),
    Column("peak_err", "peak %", 7, "+.2f"),
    Column("fwhm_err", "fwhm %", 7, "+.2f"),
    Column("n_good", "good rows", 9, "d"),
    Column("flags", "flags", 5, "d"),
)


def spectrum_section(
    workdir: pathlib.Path, *, scale: float, repeat: int, n_images: int, compress: bool = False
) -> list[dict[str, Any]]:
    """Simulate LATISS dispersed raws, examine them, compare with truth.

    Parameters
    ----------
    workdir : `pathlib.Path`
        Where to write the raws and products.
    scale : `float`
        Data-section scale of the simulated raws (1 = full size). Below 1 the star and spectrum are
        placed and the extraction box is shortened to fit.
    repeat : `int`
        Timing repeats (the best is kept).
    n_images : `int`
        How many of the cases to run.
    compress : `bool`
        Write RICE-compressed raws (as the summit's are; astropy decompresses them slowly).
    """
    pipeline = SpectrumExaminerPipeline()
    if scale < 1:
        rows = round(4000 * scale)
        place = {"zeroth_order_x": 2036 * scale, "zeroth_order_y": 0.1 * rows, "offset": 0.1 * rows}
        place.update(length=0.8 * rows, ramp_start=0.04 * rows, ramp_end=0.06 * rows, lines=((0.3 * rows, 0.6, 6.0),))
        box = {"offset": 0.1 * rows, "length": rows, "half_width": 60, "background_width": 20}
        overrides: dict[str, Any] = {"box": box}
    else:
        place, overrides = {}, {}
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
        read_time, _ = best_time(functools.partial(read_with_astropy, raw.path), repeat)
        examine_time, result = best_time(functools.partial(pipeline.run, [raw.path], with_plot, context), repeat)
        no_plot_time, _ = best_time(functools.partial(pipeline.run, [raw.path], without_plot, context), repeat)
        truth = raw.truth["spectrum"]
        m = result.metrics
        centred = dx == round(dx)  # truth's continuum peak is that of a ridge centred on a pixel
        out.append(
            {
                "case": index + 1,
                "zeroth": zeroth,
                "continuum": continuum,
                "exp_time": exp_time,
                "read": read_time,
                "examine": examine_time,
                "examine_no_plot": no_plot_time,
                "ratio": examine_time / read_time,
                "ratio_no_plot": no_plot_time / read_time,
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


def mount_section(
    workdir: pathlib.Path, *, scale: float, repeat: int, n_images: int, compress: bool
) -> list[dict[str, Any]]:
    """``mount_torque`` over amplitudes x elevations x both telescopes (only raw headers are read,
    so the raws are tiny whatever ``scale``; ``compress`` does not apply)."""
    del scale, compress
    return run_mount_bench(workdir, repeat=repeat, n_images=n_images)


MOUNT_COLUMNS = tuple(Column(*column) for column in MOUNT_BENCH_COLUMNS)


def spectrum_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "median_examine_s": statistics.median(r["examine"] for r in rows),
        "median_examine_no_plot_s": statistics.median(r["examine_no_plot"] for r in rows),
        "median_read_s": statistics.median(r["read"] for r in rows),
        "max_abs_cont_err_pct": max(abs(r["cont_err"]) for r in rows),
        # A saturated star's peak is flagged as a lower limit: not an error of the method.
        "max_abs_peak_err_pct_unflagged": max((abs(r["peak_err"]) for r in rows if not r["flags"]), default=None),
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
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats per image (best kept)")
    parser.add_argument("--images", type=int, default=len(_SPECTRUM_CASES), help="images per section")
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
                compress=args.compress,
            )
            kind = "RICE-compressed" if args.compress else "uncompressed"
            title = f"{name} ({kind}, scale {args.scale:g}, best of {args.repeat}; errors vs truth in %):"
            print_table(title, rows, columns)
            for row in rows:
                if row.get("flag_text"):
                    print(f"  image {row['case']}: {'; '.join(row['flag_text'])}")
            summary[name] = summarize(rows)
    print("JSON " + json.dumps(summary))


if __name__ == "__main__":
    main()
