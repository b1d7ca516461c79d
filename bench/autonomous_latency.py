"""Autonomous path latency: the camera's endReadout → the image's first pipeline task running on a worker.

DESIGN target: "endReadout to first pipeline task running on a worker: p50 under 20 ms."

Measures, on this machine, in one run:

1. bare Dask: ``await client.submit(trivial)`` round trips on a LocalCluster of 2 worker
   processes (the floor, as in ``bench/dispatch.py``);
2. the CSC (``run_rapid_analysis 2 --simulate`` in its own process, its own LocalCluster of 2
   workers, LSSTComCam, autonomous mode: pattern ``all``, no automatic down-selection, science
   images → ``image_stats`` on each of the 9 detectors, no catch-up) hearing a CCCamera simulator
   run here, whose stream writer puts small raws on disk before endReadout. One image at a time,
   each taken once the previous one's 9 jobs have ended (the pool is idle at every endReadout).
   Per image, from endReadout's ``private_sndStamp`` (the camera's send time):

   * to the earliest ``jobResult.startTime`` of its jobs (stamped on the worker): the first
     pipeline task running — the DESIGN figure;
   * to the latest ``startTime``: all 9 detectors started (2 workers: bounded by the jobs
     themselves; context only);
   * split by the jobs' ``submit_time`` in the results database (when the CSC made them):
     endReadout → jobs made (hearing the event, choosing the pipelines) and jobs made → first
     running (waiting for the raws to be complete, queueing, Dask);
   * for scale, the CSC's wait for complete raws redone here once the image's jobs have ended:
     ``RawStore.wait_for`` for each detector at once, as the CSC resolves each job's input, until
     the first returns (the raws are long complete by then, so this is its floor).

Usage: ``python bench/autonomous_latency.py [--images 30]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import statistics
import tempfile
import time

from benchlib import bare_dask_round_trips, percentile, wait_enabled, write_csc_config
from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.data.data_id import parse_data_id
from lsst.ts.rapidanalysis.data.raw_store import RawStore
from lsst.ts.rapidanalysis.results.database import open_results
from lsst.ts.rapidanalysis.sal.testutils import set_random_lsst_dds_partition_prefix
from lsst.ts.rapidanalysis.sim.camera_sim import CameraSimulator
from lsst.ts.rapidanalysis.sim.csc_process import start_rapid_analysis
from lsst.ts.rapidanalysis.sim.stream import StreamWriter

INDEX = 2  # LSSTComCam: 9 detectors
N_DETECTORS = 9
EXP_TIME = 1.0  # simulated seconds
TIME_SCALE = 0.1  # wall seconds per simulated second: 0.1 s exposure, 0.2 s readout
WARMUP = 2  # images not counted (first jobs on fresh workers)
IDLE = 0.3  # wall seconds the pool is left idle before the next image is taken


def settings(root: pathlib.Path) -> dict:
    """The bench's settings, on top of the shipped defaults."""
    raw = str(root / "raw")
    return {
        "data_roots": {"LATISS": raw, "LSSTComCam": raw, "LSSTCam": raw},
        "worker_memory_limit": "2GB",
        "max_queue_length": 100,
        "default_time_limit": 60.0,
        "gather_timeout": 30.0,
        "regather_timeout": 60.0,
        "autonomous": {
            "enabled": True,
            "pattern": "all",
            "automatic": False,
            "worker_mode": 1,
            "science_pipelines": ["image_stats"],
            "calibration_pipelines": ["image_stats"],
            "catchup_idle_seconds": 0,
        },
        "pipelines": {},
        "output_root": str(root / "products"),
    }


async def first_input_wait(store: RawStore, image_name: str) -> float:
    """Seconds until the first of one ``wait_for`` per detector (all at once, as the CSC does) returns."""
    instrument = store.instrument
    t0 = time.perf_counter()
    waits = [
        asyncio.ensure_future(
            store.wait_for(parse_data_id(json.dumps({"obsid": image_name, "detectors": [d.id]}), instrument))
        )
        for d in instrument.science_detectors
    ]
    done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    elapsed = time.perf_counter() - t0
    await asyncio.gather(*waits)
    return elapsed


async def autonomous(n: int, root: pathlib.Path) -> dict:
    config_dir = root / "config"
    write_csc_config(config_dir, settings(root))
    writer = StreamWriter("LSSTComCam", root / "raw", scale=0.2, n_templates=1, write_truth=False, eager=False)
    writer.prepare("OBJECT", EXP_TIME)
    store = RawStore(root / "raw", get_instrument("LSSTComCam"))
    process = await start_rapid_analysis(INDEX, config_dir, simulate=True)
    camera = CameraSimulator(
        "LSSTComCam", writer=writer.write_exposure, time_scale=TIME_SCALE, initial_state=sal.State.ENABLED
    )
    images: list[dict] = []
    try:
        await asyncio.wait_for(camera.start_task, 60)
        include = ["summaryState", "jobResult"]
        async with (
            sal.Domain() as domain,
            sal.Remote(domain, "RapidAnalysis", INDEX, include=include) as remote,
            sal.Remote(domain, "CCCamera", include=["endReadout"]) as camera_remote,
        ):
            await wait_enabled(remote)
            for i in range(n + WARMUP):
                camera_remote.evt_endReadout.flush()
                await camera_remote.cmd_takeImages.set_start(
                    numImages=1, expTime=EXP_TIME, shutter=True, keyValueMap="", timeout=60
                )
                end = await camera_remote.evt_endReadout.next(flush=False, timeout=60)
                starts = []
                while len(starts) < N_DETECTORS:
                    result = await remote.evt_jobResult.next(flush=False, timeout=60)
                    if result.imageName != end.imageName:
                        raise RuntimeError(f"jobResult of another image: {result.imageName} ({result.pipeline})")
                    if not result.success or result.trigger != "autonomous":
                        raise RuntimeError(f"{result.pipeline} on {result.dataId}: {result.errorReport}")
                    starts.append(result.startTime)
                if i >= WARMUP:
                    images.append(
                        {
                            "name": end.imageName,
                            "end_readout": end.private_sndStamp,
                            "starts": starts,
                            "input_wait": await first_input_wait(store, end.imageName),
                        }
                    )
                await asyncio.sleep(IDLE)
            await sal.set_summary_state(remote, sal.State.OFFLINE, timeout=60)
        await asyncio.wait_for(process.wait(), 60)
    finally:
        await camera.close()
        writer.close()
        if process.returncode is None:
            process.terminate()
            await process.wait()
    # When the CSC made each image's jobs (it records submit_time in the results database).
    with open_results(root / "products" / "results.sqlite3") as db:
        jobs = db.jobs(image_name=[image["name"] for image in images])
    made: dict[str, float] = {}
    for row in jobs:
        name = str(row["image_name"])
        made[name] = min(made.get(name, float("inf")), float(row["submit_time"]))
    for image in images:
        image["made"] = made.get(image["name"], float("nan"))
    return {"images": images}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=30, help="images measured (after 2 not counted)")
    args = parser.parse_args()
    set_random_lsst_dds_partition_prefix()
    os.environ["LSST_SITE"] = "bench"
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        bare, _ = asyncio.run(bare_dask_round_trips(max(args.images, 100)))
        run = asyncio.run(autonomous(args.images, pathlib.Path(tmp)))
    load_after = os.getloadavg()
    images = run["images"]
    first = [min(im["starts"]) - im["end_readout"] for im in images]
    last = [max(im["starts"]) - im["end_readout"] for im in images]
    to_made = [im["made"] - im["end_readout"] for im in images]
    made_to_first = [min(im["starts"]) - im["made"] for im in images]
    input_wait = [im["input_wait"] for im in images]
    print(
        f"\nAutonomous latency on this machine ({os.cpu_count()} cores; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; LSSTComCam, 2 worker processes, "
        f"{len(images)} images, image_stats on 9 detectors each, pool idle at each endReadout):"
    )
    print(f"{'':52s} {'p50':>9s} {'p90':>9s} {'max':>9s}")
    rows = (
        ("bare Dask submit → result round trip", bare),
        ("endReadout → first task running (DESIGN: p50 < 20 ms)", first),
        ("  of which endReadout → jobs made by the CSC", to_made),
        ("  of which jobs made → first task running", made_to_first),
        ("    for scale: RawStore.wait_for, complete raws (here)", input_wait),
        ("endReadout → all 9 detectors running (2 workers)", last),
    )
    for label, values in rows:
        print(
            f"{label:52s} {percentile(values, 0.5) * 1e3:7.1f}ms {percentile(values, 0.9) * 1e3:7.1f}ms "
            f"{max(values) * 1e3:7.1f}ms"
        )
    ratio = statistics.median(first) / statistics.median(bare)
    print(f"ratio (endReadout → first running) / (bare Dask round trip) at p50: {ratio:.1f}")
    summary = {
        "images": len(images),
        "bare_round_trip_p50_ms": statistics.median(bare) * 1e3,
        "end_readout_to_first_running_p50_ms": statistics.median(first) * 1e3,
        "end_readout_to_first_running_p90_ms": percentile(first, 0.9) * 1e3,
        "end_readout_to_first_running_max_ms": max(first) * 1e3,
        "end_readout_to_jobs_made_p50_ms": statistics.median(to_made) * 1e3,
        "jobs_made_to_first_running_p50_ms": statistics.median(made_to_first) * 1e3,
        "raw_wait_for_floor_p50_ms": statistics.median(input_wait) * 1e3,
        "end_readout_to_all_running_p50_ms": statistics.median(last) * 1e3,
        "ratio_to_bare_p50": ratio,
        "load_average": [load_before[0], load_after[0]],
    }
    print("JSON " + json.dumps(summary))


if __name__ == "__main__":
    main()
