"""Accuracy and time per image of the ``mount_torque`` pipeline, on simulated mounts with truth.

For both telescopes (AuxTel: ATMCS at 100 Hz in 1 s packed rows; Simonyi: MTMount and MTRotator
at 20 Hz), for every jitter amplitude × elevation: the mount simulator tracks a star with that
injected jitter (sinusoids plus white noise; elevation 0.7x and rotator 2x the azimuth
amplitude), the raw writer makes a raw of the exposure (its header gives the window), and the
simulated CSC buffer (`MountTelemetryBuffer`) writes the exposure window of the telemetry to an
ECSV file, as the CSC will. Then per exposure:

* accuracy: azRms, elRms, rotRms and imageImpactRms against the same quantities computed from
  the injected jitter over the window (the simulator's truth), in %;
* time: the pipeline with and without its PNG (best of ``repeat``), beside the time to read the
  same two files (the raw's primary header and the telemetry file) — the floor of the
  pipeline's time.

Usage: ``python bench/mount_torque_bench.py [--amplitudes 0.02 0.1 0.5] [--elevations 30 60 80]
[--exp-time 30] [--repeat 3]``. `run_mount_bench` returns the rows for ``bench/examiners.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import json
import math
import os
import pathlib
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from astropy.io import fits

from lsst.ts.rapidanalysis.data.mount_telemetry import MountTelemetryBuffer, read_telemetry_file
from lsst.ts.rapidanalysis.pipelines.base import PipelineContext
from lsst.ts.rapidanalysis.pipelines.mount_torque import FIELD_RADIUS_ARCSEC, MountTorquePipeline
from lsst.ts.rapidanalysis.sal.testutils import set_random_lsst_dds_partition_prefix
from lsst.ts.rapidanalysis.sim.camera_sim import SimClock
from lsst.ts.rapidanalysis.sim.mount_sim import AuxTelMountSimulator, BaseMountSimulator, SimonyiMountSimulator
from lsst.ts.rapidanalysis.sim.raw_writer import simulate_detector

__all__ = ["run_mount_bench", "MOUNT_BENCH_COLUMNS", "DEFAULT_AMPLITUDES", "DEFAULT_ELEVATIONS"]

#: Azimuth jitter RMS, arcsec (Simonyi's nominal is ~0.03″, AuxTel's ~0.2″).
DEFAULT_AMPLITUDES = (0.02, 0.1, 0.5)
#: Elevations, deg.
DEFAULT_ELEVATIONS = (30.0, 60.0, 80.0)
#: Table columns: (row key, header, width, format) — what `bench/examiners.py` calls a Column.
MOUNT_BENCH_COLUMNS: tuple[tuple[str, str, int, str], ...] = (
    ("telescope", "telescope", 9, "s"),
    ("el", "el", 4, ".0f"),
    ("amplitude", "amp ″", 5, ".2f"),
    ("az_err", "az %", 6, "+.2f"),
    ("el_err", "el %", 6, "+.2f"),
    ("rot_err", "rot %", 6, "+.2f"),
    ("impact_err", "impact %", 8, "+.2f"),
    ("read", "read s", 7, ".3f"),
    ("examine_no_plot", "no-plot s", 9, ".3f"),
    ("examine", "w/ png s", 8, ".3f"),
    ("ratio_no_plot", "no-plot/read", 12, ".1f"),
    ("ratio", "png/read", 8, ".1f"),
)
_SIMULATORS: dict[str, tuple[type[BaseMountSimulator], str, str, int]] = {
    "AuxTel": (AuxTelMountSimulator, "LATISS", "AT", 0),
    "Simonyi": (SimonyiMountSimulator, "LSSTCam", "MC", 94),
}
_TIME_SCALE = 0.005
_SETTLE = 1.0  # s of tracking before the shutter opens
_MARGIN = 2.0  # s of telemetry either side of the window in the file


def _jitter(amplitude: float) -> dict[str, float]:
    return {"azimuth": amplitude, "elevation": 0.7 * amplitude, "rotator": 2.0 * amplitude}


async def _simulate(
    cls: type[BaseMountSimulator], cases: list[tuple[float, float]], exp_time: float
) -> tuple[BaseMountSimulator, list[tuple[float, float]]]:
    """One track per case, back to back; returns the simulator and each exposure window."""
    clock = SimClock(_TIME_SCALE)
    simulator = cls(clock=clock, seed=17)
    windows = []
    async with simulator:
        t = clock.now() + 2.0
        for k, (el, amplitude) in enumerate(cases):
            simulator.start_tracking(az=(40.0 + 47.0 * k) % 360.0, el=el, jitter_arcsec=_jitter(amplitude), start_tai=t)
            windows.append((t + _SETTLE, t + _SETTLE + exp_time))
            t += exp_time + _SETTLE + 2.0 * _MARGIN
        while True:  # the simulators catch up in batches: wait for every stream
            ends = [simulator.truth.series(axis)["time"] for axis in ("azimuth", "rotator")]
            if all(len(x) and x.max() > t for x in ends):
                break
            await asyncio.sleep(0.05)
    return simulator, windows


def _run_async(factory: Callable[[], Any]) -> Any:
    """Run a coroutine to completion, also from inside a running event loop (in a thread then)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _best(function: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - t0)
    return min(times), value


def _read_files(raw: pathlib.Path, telemetry: pathlib.Path) -> int:
    """Read what the pipeline reads: the raw's primary header and the whole telemetry file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(raw, memmap=False, lazy_load_hdus=True) as hdul:
            n_cards = len(hdul[0].header)
    return n_cards + sum(len(c["time"]) for c in read_telemetry_file(telemetry).values())


def _percent(measured: float, truth: float) -> float:
    return 100.0 * (measured - truth) / truth if truth else math.nan


def run_mount_bench(
    workdir: pathlib.Path | None = None,
    *,
    scale: float = 0.02,
    repeat: int = 3,
    n_images: int | None = None,
    amplitudes: Sequence[float] = DEFAULT_AMPLITUDES,
    elevations: Sequence[float] = DEFAULT_ELEVATIONS,
    exp_time: float = 30.0,
    telescopes: Sequence[str] = ("AuxTel", "Simonyi"),
) -> list[dict[str, Any]]:
    """Simulate, measure and time ``mount_torque`` over amplitudes × elevations × telescopes.

    Parameters
    ----------
    workdir : `pathlib.Path`, optional
        Where to write raws, telemetry files and PNGs (default a temporary directory).
    scale : `float`
        Data-section scale of the simulated raws (only their header is read).
    repeat : `int`
        Timing repeats per image; the best is kept.
    n_images : `int`, optional
        At most this many exposures per telescope (the first of the amplitude × elevation grid).
    amplitudes : sequence of `float`
        Azimuth jitter RMS, arcsec (elevation gets 0.7x, the rotator 2x).
    elevations : sequence of `float`
        Elevations, deg.
    exp_time : `float`
        Exposure time, s.
    telescopes : sequence of `str`
        ``AuxTel`` and/or ``Simonyi``.

    Returns
    -------
    rows : `list` [`dict`]
        Per exposure: ``telescope``, ``el``, ``amplitude``, ``exp_time``; errors in % against
        the injected truth ``az_err``, ``el_err``, ``rot_err``, ``impact_err``, ``azel_err``;
        times in s ``read`` (raw header + telemetry file), ``examine_no_plot``, ``examine``
        (with the PNG), their ratios to ``read``; ``status`` and ``max_gap``.
    """
    if workdir is None:
        with tempfile.TemporaryDirectory() as tmp:
            return run_mount_bench(
                pathlib.Path(tmp),
                scale=scale,
                repeat=repeat,
                n_images=n_images,
                amplitudes=amplitudes,
                elevations=elevations,
                exp_time=exp_time,
                telescopes=telescopes,
            )
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cases = [(float(el), float(a)) for a in amplitudes for el in elevations]
    if n_images is not None:
        cases = cases[: max(1, n_images)]
    pipeline = MountTorquePipeline()
    with_plot = MountTorquePipeline.make_config({"make_plot": True})
    no_plot = MountTorquePipeline.make_config({"make_plot": False})
    rows: list[dict[str, Any]] = []
    saved = os.environ.get("LSST_DDS_PARTITION_PREFIX")
    os.environ.setdefault("LSST_DDS_PARTITION_PREFIX", "bench")
    set_random_lsst_dds_partition_prefix()  # the simulators publish: keep out of anyone's partition
    try:
        for telescope in telescopes:
            cls, instrument, code, detector = _SIMULATORS[telescope]
            simulator, windows = _run_async(lambda cls=cls: _simulate(cls, cases, exp_time))
            buffer = MountTelemetryBuffer(duration=1e6, max_messages=10**7)
            for topic in simulator.recorder.topics:  # every message, as the CSC receives them
                columns = simulator.recorder.columns(topic)
                for j in range(len(next(iter(columns.values())))):
                    buffer.append(topic, {name: values[j] for name, values in columns.items()})
            for k, ((el, amplitude), (begin, end)) in enumerate(zip(cases, windows, strict=True)):
                obsid = f"{code}_O_20260115_{k + 1:06d}"
                raw = simulate_detector(
                    instrument,
                    detector,
                    workdir / "raw",
                    obsid,
                    scale=scale,
                    exp_time=end - begin,
                    tai_start=begin,
                    pointing=simulator.pointing_at(begin),
                    write_truth_file=False,
                    write_refcat_file=False,
                ).path
                (telemetry,) = buffer.write(workdir / f"{obsid}.ecsv", begin, end, margin=_MARGIN)
                context = PipelineContext(obsid, workdir / "products")
                read, _ = _best(functools.partial(_read_files, raw, telemetry), repeat)
                examine_no_plot, result = _best(
                    functools.partial(pipeline.run, [raw, telemetry], no_plot, context), repeat
                )
                examine, _ = _best(functools.partial(pipeline.run, [raw, telemetry], with_plot, context), repeat)
                fields = result.telemetry[0].fields
                truth = {
                    axis: float(np.sqrt(np.mean(simulator.truth.series(axis, begin, end)["jitter"] ** 2)) * 3600.0)
                    for axis in ("azimuth", "elevation", "rotator")
                }
                true_el = float(np.mean(simulator.truth.series("elevation", begin, end)["demand"]))
                image_az = truth["azimuth"] * math.cos(math.radians(true_el))
                image_rot = truth["rotator"] * FIELD_RADIUS_ARCSEC[instrument] * math.pi / (180.0 * 3600.0)
                azel = math.hypot(image_az, truth["elevation"])
                rows.append(
                    {
                        "telescope": telescope,
                        "el": el,
                        "amplitude": amplitude,
                        "exp_time": end - begin,
                        "az_err": _percent(fields["azRms"], truth["azimuth"]),
                        "el_err": _percent(fields["elRms"], truth["elevation"]),
                        "rot_err": _percent(fields["rotRms"], truth["rotator"]),
                        "impact_err": _percent(fields["imageImpactRms"], math.hypot(azel, image_rot)),
                        "azel_err": _percent(fields["imageAzElRms"], azel),
                        "read": read,
                        "examine_no_plot": examine_no_plot,
                        "examine": examine,
                        "ratio_no_plot": examine_no_plot / read,
                        "ratio": examine / read,
                        "max_gap": fields["maxTelemetryGap"],
                        "status": fields["status"],
                    }
                )
    finally:
        if saved is None:
            os.environ.pop("LSST_DDS_PARTITION_PREFIX", None)
        else:
            os.environ["LSST_DDS_PARTITION_PREFIX"] = saved
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    """The rows as a fixed-width table."""
    print(" ".join(f"{header:>{width}s}" for _, header, width, _ in MOUNT_BENCH_COLUMNS))
    for row in rows:
        cells = []
        for key, _, width, fmt in MOUNT_BENCH_COLUMNS:
            value = row[key]
            text = "nan" if isinstance(value, float) and value != value else format(value, fmt)
            cells.append(f"{text:>{width}s}")
        print(" ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--amplitudes", type=float, nargs="+", default=list(DEFAULT_AMPLITUDES), help="arcsec")
    parser.add_argument("--elevations", type=float, nargs="+", default=list(DEFAULT_ELEVATIONS), help="deg")
    parser.add_argument("--exp-time", type=float, default=30.0, help="exposure time, s")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats per image (best kept)")
    parser.add_argument("--telescopes", nargs="+", default=["AuxTel", "Simonyi"], choices=sorted(_SIMULATORS))
    args = parser.parse_args()
    os.environ.setdefault("LSST_SITE", "bench")
    rows = run_mount_bench(
        amplitudes=args.amplitudes,
        elevations=args.elevations,
        exp_time=args.exp_time,
        repeat=args.repeat,
        telescopes=args.telescopes,
    )
    print(
        f"\nmount_torque, {args.exp_time:g} s exposures (errors vs injected jitter in %; best of {args.repeat}; "
        "read = raw header + telemetry file):"
    )
    print_table(rows)
    summary = {
        "max_abs_axis_err_pct": max(abs(r[k]) for r in rows for k in ("az_err", "el_err", "rot_err")),
        "max_abs_impact_err_pct": max(abs(r["impact_err"]) for r in rows),
        "median_examine_s": statistics.median(r["examine"] for r in rows),
        "median_examine_no_plot_s": statistics.median(r["examine_no_plot"] for r in rows),
        "median_read_s": statistics.median(r["read"] for r in rows),
    }
    print("JSON " + json.dumps(summary))


if __name__ == "__main__":
    main()
