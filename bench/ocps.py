"""OCPS:101 (the observing scripts' front door): ``execute`` round trip, and request → job_result.

Measures, on this machine, in one run, each CSC in its own process:

1. ``execute`` round trip, as ts_standardscripts sends it (``cmd_execute.set_start(config=...,
   timeout=5)``), one at a time, ``--round-trips`` times: from the send to the final ack (which
   must be the first: CMD_COMPLETE, no in-progress ack). The requests are FOCUSSWEEPs for LATISS,
   whose RapidAnalysis CSC is not running here, so each ends at once with exit code 11 and the
   measurement is the facade's own path (parse, job id, job_id event, queue, ack). The
   reference in the same run: a no-op command (``setScalars``) to a Test CSC in its own process.
2. request → job_result for a 5-visit LSSTCam focus sweep (simulated raws of focus_sweep's
   three default detectors at ``--scale``, written first), ``--sweeps`` times one after the
   other: execute sent → the OCPS ``job_result`` received, through the RapidAnalysis CSC
   (``run_rapid_analysis 3``, its own Dask pool of 2 workers) and its ``focus_sweep`` job.
   Beside it, the same sweep sent straight to RapidAnalysis (processData → jobResult), so that
   the difference of the time each path spends outside the job is what the facade adds.
   focus_sweep measures each visit's FWHM itself from its raws (it does not read earlier sfm
   results), so "visits already measured" does not shorten the job: the job time includes the
   measurement of every visit.

Usage: ``python bench/ocps.py [--round-trips 300] [--sweeps 10] [--scale 0.25]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

from benchlib import percentile, wait_enabled, write_csc_config
from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sal.testutils import set_random_lsst_dds_partition_prefix
from lsst.ts.rapidanalysis.sim.csc_process import start_rapid_analysis
from lsst.ts.rapidanalysis.sim.focus import FOCUS_DETECTORS, simulate_focus_sweep, sweep_offsets
from lsst.ts.rapidanalysis.sim.scene import SceneConfig

LSSTCAM = 3
OCPS_INDEX = 101
FAST_TIMEOUT = 5.0  # ts_observatory_control's fast_timeout: what the scripts wait for execute


def summary(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"n={len(ms)} p50={percentile(ms, 0.5):.1f} ms p99={percentile(ms, 0.99):.1f} ms max={max(ms):.1f} ms"


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def ocps_process(config_dir: pathlib.Path, log_path: pathlib.Path) -> AsyncIterator[None]:
    """``run_ocps_rapid_analysis --state enabled`` (default index 101) in a process of its own."""
    exe = pathlib.Path(sys.executable).parent / "run_ocps_rapid_analysis"
    command = (
        [str(exe)]
        if exe.exists()
        else [sys.executable, "-c", "from lsst.ts.rapidanalysis.ocps.csc import run_ocps_rapid_analysis as r; r()"]
    )
    with log_path.open("w") as log:
        process = await asyncio.create_subprocess_exec(
            *command,
            "--state",
            "enabled",
            "--configdir",
            str(config_dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        yield
    finally:
        await stop(process)


async def reference_round_trips(n: int) -> list[float]:
    """A no-op command (setScalars) to a Test CSC in its own process."""
    index = 7
    exe = pathlib.Path(sys.executable).parent / "run_test_csc"
    process = await asyncio.create_subprocess_exec(
        str(exe),
        str(index),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with sal.Domain() as domain, sal.Remote(domain, "Test", index, include=["summaryState"]) as remote:
            await remote.evt_summaryState.next(flush=False, timeout=60)
            await sal.set_summary_state(remote, sal.State.ENABLED, timeout=60)
            times = []
            for i in range(n + 20):
                t0 = time.perf_counter()
                await remote.cmd_setScalars.set_start(int0=i, timeout=FAST_TIMEOUT)
                if i >= 20:
                    times.append(time.perf_counter() - t0)
            return times
    finally:
        await stop(process)


async def execute_round_trips(script: sal.Remote, n: int) -> tuple[list[float], int]:
    """``execute`` round trips (first ack = final ack); returns them and how many were not CMD_COMPLETE."""
    times, bad = [], 0
    config = json.dumps({"LATISS-FROM-OCS_FOCUSSWEEP": "2025111500001,2025111500002,2025111500003"})
    for i in range(n + 20):
        t0 = time.perf_counter()
        ackcmd = await script.cmd_execute.set_start(config=config, timeout=FAST_TIMEOUT, wait_done=False)
        elapsed = time.perf_counter() - t0
        bad += ackcmd.ack != sal.SalRetCode.CMD_COMPLETE
        if i >= 20:
            times.append(elapsed)
    return times, bad


async def amain(args: argparse.Namespace) -> None:
    root = pathlib.Path(tempfile.mkdtemp(prefix="bench_ocps_"))
    raw = root / "raw"
    detectors = list(FOCUS_DETECTORS["LSSTCam"])  # focus_sweep's default detectors (OCPS sends none)
    t0 = time.perf_counter()
    sweep = simulate_focus_sweep(
        raw,
        "LSSTCam",
        offsets=sweep_offsets(5, 0.1),
        scene=SceneConfig(n_stars=150, mag_bright=16.0, mag_faint=22.0, seeing_fwhm=0.8),
        detectors=detectors,
        scale=args.scale,
        first_seq=42,
        seed=1,
    )
    print(
        f"sweep: 5 LSSTCam visits {sweep.visits[0]}..{sweep.visits[-1]}, detectors {detectors} at scale "
        f"{args.scale}, true best focus {sweep.truth['best_focus_z_mm']} mm "
        f"(written in {time.perf_counter() - t0:.1f} s)"
    )
    reference = await reference_round_trips(args.round_trips)
    print(f"reference, Test CSC setScalars round trip (two processes): {summary(reference)}")

    config_dir = root / "ra_config"
    write_csc_config(
        config_dir,
        {
            "data_roots": {"LATISS": str(raw), "LSSTComCam": str(raw), "LSSTCam": str(raw)},
            "output_root": str(root / "products"),
            "default_time_limit": 300.0,
        },
    )
    ocps_config = root / "ocps_config"
    write_csc_config(ocps_config, {"discovery_timeout": 2.0})
    ra = await start_rapid_analysis(LSSTCAM, config_dir, log_path=root / "rapid_analysis.log")
    try:
        async with (
            ocps_process(ocps_config, root / "ocps.log"),
            sal.Domain() as domain,
            sal.Remote(domain, "RapidAnalysis", LSSTCAM, include=["summaryState", "jobResult"]) as ra_remote,
            sal.Remote(domain, "OCPS", OCPS_INDEX, include=["summaryState", "job_result"]) as script,
        ):
            await asyncio.gather(wait_enabled(ra_remote, timeout=180), wait_enabled(script, timeout=60))
            ra_results: dict[str, tuple[float, Any]] = {}
            ocps_results: dict[str, tuple[float, Any]] = {}
            ra_remote.evt_jobResult.callback = lambda d: ra_results.__setitem__(d.jobId, (time.perf_counter(), d))
            script.evt_job_result.callback = lambda d: ocps_results.__setitem__(d.job_id, (time.perf_counter(), d))

            async def wait_for(results: dict[str, tuple[float, Any]], key: str, timeout: float) -> tuple[float, Any]:
                deadline = time.perf_counter() + timeout
                while key not in results:
                    if time.perf_counter() > deadline:
                        raise TimeoutError(f"no result for {key} in {timeout} s")
                    await asyncio.sleep(0.002)
                return results[key]

            # (job_result is read by callback from here on, so that none queue up unread.)
            times, bad = await execute_round_trips(script, args.round_trips)
            print(
                f"OCPS execute round trip (two processes, final ack first): {summary(times)}; not CMD_COMPLETE: {bad}"
            )
            print(
                f"  ratio to the Test CSC reference at p50: {percentile(times, 0.5) / percentile(reference, 0.5):.2f}"
            )

            # Warm up: the first focus_sweep imports the pipeline on a worker.
            config = json.dumps({"LSSTCam-FROM-OCS_FOCUSSWEEP": ",".join(str(v) for v in sweep.visits)})
            direct_fields = {
                "pipeline": "focus_sweep",
                "dataId": json.dumps(sweep.data_id),
                "config": json.dumps({"visits": sweep.visits}),
            }
            ackcmd = await ra_remote.cmd_processData.set_start(**direct_fields, timeout=60)
            await wait_for(ra_results, json.loads(ackcmd.result)["jobId"], 300)

            via_ocps, via_ocps_job, via_ocps_exec, direct, direct_job, fits = [], [], [], [], [], []
            for _ in range(args.sweeps):
                t0 = time.perf_counter()
                ackcmd = await script.cmd_execute.set_start(config=config, timeout=FAST_TIMEOUT, wait_done=False)
                via_ocps_exec.append(time.perf_counter() - t0)
                assert ackcmd.ack == sal.SalRetCode.CMD_COMPLETE, ackcmd
                t_end, data = await wait_for(ocps_results, json.loads(ackcmd.result)["job_id"], 300)
                via_ocps.append(t_end - t0)
                result = json.loads(data.result)
                assert data.exit_code == 0, data
                via_ocps_job.append(result["jobs"][0]["duration"])
                fits.append(result["jobs"][0]["result"]["metrics"].get("bestFocus"))

                t0 = time.perf_counter()
                ackcmd = await ra_remote.cmd_processData.set_start(**direct_fields, timeout=60)
                t_end, ra_data = await wait_for(ra_results, json.loads(ackcmd.result)["jobId"], 300)
                direct.append(t_end - t0)
                direct_job.append(ra_data.duration)
            print(f"5-visit LSSTCam focus sweep, {args.sweeps} times each, one at a time:")
            print(f"  via OCPS:101  execute ack        {summary(via_ocps_exec)}")
            print(f"  via OCPS:101  execute → job_result {summary(via_ocps)}")
            print(f"                its focus_sweep job (jobResult.duration) {summary(via_ocps_job)}")
            print(f"  direct        processData → jobResult {summary(direct)}")
            print(f"                its focus_sweep job (jobResult.duration) {summary(direct_job)}")
            # The job's own time varies from run to run by more than the facade costs: compare what
            # each path spends outside the job (request → result minus jobResult.duration).
            outside_ocps = [a - b for a, b in zip(via_ocps, via_ocps_job, strict=True)]
            outside_direct = [a - b for a, b in zip(direct, direct_job, strict=True)]
            print(f"  outside the job, via OCPS:101 {summary(outside_ocps)}")
            print(f"  outside the job, direct       {summary(outside_direct)}")
            print(
                "  what the facade adds (p50 outside the job, via OCPS − direct): "
                f"{(percentile(outside_ocps, 0.5) - percentile(outside_direct, 0.5)) * 1000:.1f} ms"
            )
            print(
                f"  best focus fitted: {sorted(f for f in fits if f is not None)} "
                f"(truth {sweep.truth['best_focus_z_mm']})"
            )
            print(
                json.dumps(
                    {
                        "reference_p50_ms": percentile(reference, 0.5) * 1000,
                        "execute_p50_ms": percentile(times, 0.5) * 1000,
                        "execute_p99_ms": percentile(times, 0.99) * 1000,
                        "sweep_via_ocps_p50_s": percentile(via_ocps, 0.5),
                        "sweep_direct_p50_s": percentile(direct, 0.5),
                        "sweep_job_p50_s": percentile(via_ocps_job, 0.5),
                        "outside_job_via_ocps_p50_ms": percentile(outside_ocps, 0.5) * 1000,
                        "outside_job_direct_p50_ms": percentile(outside_direct, 0.5) * 1000,
                    }
                )
            )
    finally:
        await stop(ra)
    print(f"logs in {root}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round-trips", type=int, default=300, help="execute round trips measured")
    parser.add_argument("--sweeps", type=int, default=10, help="focus sweeps requested (each way)")
    parser.add_argument("--scale", type=float, default=0.25, help="fraction of a full-size detector")
    args = parser.parse_args()
    set_random_lsst_dds_partition_prefix()
    os.environ["LSST_SITE"] = "bench"
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
