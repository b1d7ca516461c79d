"""Dispatch latency and throughput of the Rapid Analysis CSC, beside bare Dask in the same run.

Measures, on this machine, in one run:

1. bare Dask: ``await client.submit(trivial)`` round trips on a LocalCluster of 2 worker
   processes (the floor: Dask's client batches sends every 10 ms), and ``client.map``
   throughput of trivial tasks;
2. the CSC (``run_rapid_analysis --simulate`` in its own process, its own LocalCluster of 2
   workers): from sending ``processData`` (a Remote here) to the job running on a worker
   (``jobResult.startTime``, stamped by the worker), p50/p99, and the ack round trip;
3. sustained jobs/s: many ``test.succeed`` jobs sent back to back, completions per second.

Usage: ``python bench/dispatch.py [--jobs 200] [--burst 500]``
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
from lsst.ts.rapidanalysis.sal.testutils import set_random_lsst_dds_partition_prefix
from lsst.ts.rapidanalysis.sim.csc_process import start_rapid_analysis


def settings(root: pathlib.Path) -> dict:
    """The bench's settings, on top of the shipped defaults."""
    raw = str(root / "raw")
    return {
        "data_roots": {"LATISS": raw, "LSSTComCam": raw, "LSSTCam": raw},
        "raw_wait_timeout": 1.0,
        "worker_memory_limit": "2GB",
        "max_queue_length": 5000,
        "default_time_limit": 60.0,
        "pipelines": {},
        "output_root": str(root / "products"),
    }


async def csc_dispatch(n: int, burst: int, root: pathlib.Path) -> dict:
    config_dir = root / "config"
    write_csc_config(config_dir, settings(root))
    process = await start_rapid_analysis(1, config_dir, simulate=True)
    try:
        include = ["summaryState", "jobResult"]
        async with sal.Domain() as domain, sal.Remote(domain, "RapidAnalysis", 1, include=include) as remote:
            await wait_enabled(remote, timeout=60)
            data_id = json.dumps({"obsid": "AT_O_20251115_000001"})
            to_running, acks = [], []
            for i in range(n + 10):
                t_send = sal.current_tai()
                t0 = time.perf_counter()
                await remote.cmd_processData.set_start(dataId=data_id, pipeline="test.succeed", config="", timeout=30)
                ack_time = time.perf_counter() - t0
                result = await remote.evt_jobResult.next(flush=False, timeout=30)
                if not result.success:
                    raise RuntimeError(f"job failed: {result.errorReport}")
                if i >= 10:
                    to_running.append(result.startTime - t_send)
                    acks.append(ack_time)
            remote.evt_jobResult.flush()
            t0 = time.perf_counter()
            for _ in range(burst):
                await remote.cmd_processData.set_start(dataId=data_id, pipeline="test.succeed", config="", timeout=30)
            send_time = time.perf_counter() - t0
            done = 0
            while done < burst:
                await remote.evt_jobResult.next(flush=False, timeout=60)
                done += 1
            total = time.perf_counter() - t0
            # Pool efficiency with short real work: 0.2 s jobs on 2 workers can at best do 10/s.
            n_work, work = 60, 0.2
            t0 = time.perf_counter()
            for _ in range(n_work):
                await remote.cmd_processData.set_start(
                    dataId=data_id, pipeline="test.sleep", config=json.dumps({"duration": work}), timeout=30
                )
            for _ in range(n_work):
                await remote.evt_jobResult.next(flush=False, timeout=60)
            efficiency = (n_work * work / 2) / (time.perf_counter() - t0)
            await sal.set_summary_state(remote, sal.State.OFFLINE, timeout=60)
        await asyncio.wait_for(process.wait(), 60)
        return {
            "to_running": to_running,
            "acks": acks,
            "burst_rate": burst / total,
            "send_rate": burst / send_time,
            "efficiency": efficiency,
        }
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200, help="sequential jobs for the latency figures")
    parser.add_argument("--burst", type=int, default=500, help="jobs sent back to back for the throughput figure")
    args = parser.parse_args()
    set_random_lsst_dds_partition_prefix()
    os.environ["LSST_SITE"] = "bench"
    with tempfile.TemporaryDirectory() as tmp:
        round_trips, map_rate = asyncio.run(bare_dask_round_trips(args.jobs, args.burst))
        bare = {"round_trips": round_trips, "map_rate": map_rate}
        csc = asyncio.run(csc_dispatch(args.jobs, args.burst, pathlib.Path(tmp)))
    bare_p50 = statistics.median(bare["round_trips"])
    run_p50 = statistics.median(csc["to_running"])
    print(f"\nDispatch on this machine (2 worker processes, {args.jobs} sequential jobs, burst of {args.burst}):")
    print(f"{'':46s} {'p50':>9s} {'p99':>9s}")
    rows = (
        ("bare Dask submit → result round trip", bare["round_trips"]),
        ("processData sent → job running on a worker", csc["to_running"]),
        ("processData ack (CMD_COMPLETE, job queued)", csc["acks"]),
    )
    for label, values in rows:
        print(f"{label:46s} {percentile(values, 0.5) * 1e3:7.2f}ms {percentile(values, 0.99) * 1e3:7.2f}ms")
    print(f"ratio (command → running) / (bare Dask round trip) at p50: {run_p50 / bare_p50:.2f}")
    print(
        f"throughput: bare client.map {bare['map_rate']:.0f} tasks/s; CSC {csc['burst_rate']:.0f} jobs/s "
        f"sustained (commands accepted at {csc['send_rate']:.0f}/s) = "
        f"{csc['burst_rate'] / bare['map_rate']:.2f} of bare"
    )
    print(f"pool efficiency with 0.2 s jobs (60 jobs, 2 workers): {csc['efficiency']:.0%} of the ideal 10 jobs/s")
    summary = {
        "pool_efficiency_0p2s_jobs": csc["efficiency"],
        "bare_round_trip_p50_ms": bare_p50 * 1e3,
        "command_to_running_p50_ms": run_p50 * 1e3,
        "command_to_running_p99_ms": percentile(csc["to_running"], 0.99) * 1e3,
        "ack_p50_ms": statistics.median(csc["acks"]) * 1e3,
        "bare_map_rate": bare["map_rate"],
        "csc_jobs_per_s": csc["burst_rate"],
    }
    print("JSON " + json.dumps(summary))


if __name__ == "__main__":
    main()
