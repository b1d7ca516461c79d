"""Bursts of commands in flight at once, on a loaded machine: is every one answered?

Measures, on this machine, in one run, with ``--load`` busy-loop processes keeping the cores
busy for the whole run (they stop by themselves after ``--max-seconds``):

1. the reference: a Test CSC in its own process (``run_test_csc``); a Remote here sends a burst
   of ``wait(duration=0)`` commands all at once (a no-op that, like processData, acks
   CMD_INPROGRESS then CMD_COMPLETE);
2. the Rapid Analysis CSC in its own process (``run_rapid_analysis 3 --simulate``, its own Dask
   pool of 2 workers): a burst of ``processData(pipeline="test.succeed")``, one per data id.

Bursts: ``--burst`` commands (default 1,000) and ``--concurrent`` (default 189, one per LSSTCam
science detector, as a script might). For each: final acks received (% of commands; a command
with no final ack in ``--timeout`` s counts as lost), CMD_COMPLETE (%), ack latency from send
to final ack (p50, p99), and for processData the jobResults (% of accepted jobs with one, and
how many came twice).

Usage: ``python bench/command_burst.py [--burst 1000] [--concurrent 189] [--load 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchlib import percentile, wait_enabled, write_csc_config
from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.sal.testutils import set_random_lsst_dds_partition_prefix
from lsst.ts.rapidanalysis.sim.csc_process import start_rapid_analysis

LSSTCAM = 3
OBSID = "MC_O_20251115_000226"
#: What a busy-loop load process runs: spin until its deadline (so it ends even if we die).
_SPIN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


class Burst:
    """The outcome of one burst: per command, its final ack (or the exception) and latency."""

    def __init__(self, label: str, n: int) -> None:
        self.label = label
        self.n = n
        self.acks: list[Any] = []
        self.latencies: list[float] = []
        self.lost = 0
        self.failed: list[str] = []
        self.job_ids: list[str] = []
        self.job_results: dict[str, int] = {}
        self.wall = 0.0

    async def run(self, send: Callable[[int], Awaitable[Any]], timeout: float) -> None:
        async def one(i: int) -> None:
            t0 = time.perf_counter()
            try:
                ackcmd = await send(i)
            except sal.AckTimeoutError:
                self.lost += 1
                return
            except sal.AckError as e:
                ackcmd = e.ackcmd
                self.failed.append(ackcmd.result[:120])
            self.latencies.append(time.perf_counter() - t0)
            self.acks.append(ackcmd)

        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(self.n))), timeout + 30)
        self.wall = time.perf_counter() - t0

    @property
    def n_final(self) -> int:
        return len(self.acks)

    @property
    def n_complete(self) -> int:
        return sum(1 for a in self.acks if a.ack == sal.SalRetCode.CMD_COMPLETE)


def start_load(n: int, seconds: float) -> list[subprocess.Popen]:
    """``n`` busy-loop processes that end by themselves after ``seconds``."""
    return [subprocess.Popen([sys.executable, "-c", _SPIN, str(seconds)]) for _ in range(n)]


def stop_load(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        if process.poll() is None:
            process.kill()
            process.wait()


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


async def reference_bursts(sizes: list[int], timeout: float) -> list[Burst]:
    """Bursts of ``wait(duration=0)`` to a Test CSC in its own process."""
    index = random.randint(1, 2**30)
    exe = pathlib.Path(sys.executable).parent / "run_test_csc"
    process = await asyncio.create_subprocess_exec(
        str(exe),
        str(index),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    bursts = []
    try:
        async with sal.Domain() as domain, sal.Remote(domain, "Test", index, include=["summaryState"]) as remote:
            await remote.evt_summaryState.next(flush=False, timeout=60)
            await sal.set_summary_state(remote, sal.State.ENABLED, timeout=60)
            for n in sizes:
                burst = Burst(f"Test CSC wait(0), {n} at once (reference)", n)
                await burst.run(
                    lambda i: remote.cmd_wait.set_start(ack=sal.SalRetCode.CMD_COMPLETE, duration=0, timeout=timeout),
                    timeout,
                )
                bursts.append(burst)
    finally:
        await stop_process(process)
    return bursts


async def csc_bursts(sizes: list[int], timeout: float, root: pathlib.Path) -> list[Burst]:
    """Bursts of processData(test.succeed) to the Rapid Analysis CSC in its own process."""
    raw = str(root / "raw")
    config_dir = root / "config"
    write_csc_config(
        config_dir,
        {
            "data_roots": {"LATISS": raw, "LSSTComCam": raw, "LSSTCam": raw},
            "raw_wait_timeout": 1.0,
            "worker_memory_limit": "2GB",
            "max_queue_length": 2 * sum(sizes) + 100,
            "default_time_limit": 120.0,
            "pipelines": {},
            "output_root": str(root / "products"),
        },
    )
    process = await start_rapid_analysis(LSSTCAM, config_dir, simulate=True, log_path=root / "csc.log")
    detectors = [d.id for d in get_instrument("LSSTCam").science_detectors]
    bursts = []
    try:
        include = ["summaryState", "jobResult"]
        async with sal.Domain() as domain, sal.Remote(domain, "RapidAnalysis", LSSTCAM, include=include) as remote:
            job_results: dict[str, int] = {}
            pending: set[str] = set()
            all_in = asyncio.Event()

            def on_job_result(data: Any) -> None:
                job_results[data.jobId] = job_results.get(data.jobId, 0) + 1
                pending.discard(data.jobId)
                if not pending:
                    all_in.set()

            remote.evt_jobResult.callback = on_job_result
            await wait_enabled(remote, timeout=120)
            seq_base = 0
            for n in sizes:
                burst = Burst(f"RapidAnalysis processData, {n} at once", n)

                def data_id(i: int, n: int = n, base: int = seq_base) -> str:
                    if n <= len(detectors):  # one per detector, as a script might
                        return json.dumps({"obsid": OBSID, "detectors": [detectors[i]]})
                    return json.dumps({"dayObs": 20251115, "seqNum": base + i + 1})

                seq_base += n
                await burst.run(
                    lambda i, data_id=data_id: remote.cmd_processData.set_start(
                        dataId=data_id(i), pipeline="test.succeed", config="", timeout=timeout
                    ),
                    timeout,
                )
                burst.job_ids = [
                    json.loads(a.result)["jobId"] for a in burst.acks if a.ack == sal.SalRetCode.CMD_COMPLETE
                ]
                # Every accepted job ends with a jobResult: wait for them (bounded), then a little
                # longer, so that a second jobResult for any job would be seen.
                all_in.clear()
                pending.update(j for j in burst.job_ids if j not in job_results)
                if not pending:
                    all_in.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(all_in.wait(), timeout)
                pending.clear()
                await asyncio.sleep(1.0)
                burst.job_results = {j: job_results.get(j, 0) for j in burst.job_ids}
                bursts.append(burst)
            await sal.set_summary_state(remote, sal.State.OFFLINE, timeout=120)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 60)
    finally:
        await stop_process(process)
    return bursts


def report(bursts: list[Burst], load: int) -> dict[str, Any]:
    print(f"\nCommand bursts on this machine ({os.cpu_count()} cores, {load} busy-loop load processes running):")
    header = (
        f"{'':48s} {'final acks':>11s} {'COMPLETE':>9s} {'ack p50':>9s} {'ack p99':>9s} "
        f"{'jobResults':>11s} {'twice':>6s} {'wall':>7s}"
    )
    print(header)
    summary: dict[str, Any] = {}
    for b in bursts:
        final = 100 * b.n_final / b.n
        complete = 100 * b.n_complete / b.n
        p50 = percentile(b.latencies, 0.5) * 1e3 if b.latencies else float("nan")
        p99 = percentile(b.latencies, 0.99) * 1e3 if b.latencies else float("nan")
        if b.job_ids:
            got = sum(1 for c in b.job_results.values() if c >= 1)
            twice = sum(1 for c in b.job_results.values() if c > 1)
            jobs = f"{100 * got / len(b.job_ids):10.1f}%"
            twice_text = f"{twice:6d}"
        else:
            got = twice = 0
            jobs, twice_text = f"{'—':>11s}", f"{'—':>6s}"
        figures = f"{final:10.1f}% {complete:8.1f}% {p50:7.1f}ms {p99:7.1f}ms {jobs} {twice_text} {b.wall:6.1f}s"
        print(f"{b.label:48s} {figures}")
        if b.lost:
            print(f"    {b.lost} of {b.n} commands got no final ack (CMD_NOACK)")
        if b.failed:
            print(f"    {len(b.failed)} failed, e.g. {b.failed[0]!r}")
        summary[b.label] = {
            "n": b.n,
            "final_ack_pct": final,
            "complete_pct": complete,
            "ack_p50_ms": p50,
            "ack_p99_ms": p99,
            "job_results_pct": 100 * got / len(b.job_ids) if b.job_ids else None,
            "job_results_twice": twice if b.job_ids else None,
        }
    return summary


async def amain(args: argparse.Namespace) -> None:
    sizes = [args.burst, args.concurrent]
    load = start_load(args.load, args.max_seconds)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            reference = await asyncio.wait_for(reference_bursts(sizes, args.timeout), args.max_seconds)
            csc = await asyncio.wait_for(csc_bursts(sizes, args.timeout, pathlib.Path(tmp)), args.max_seconds)
    finally:
        stop_load(load)
    summary = report(reference + csc, args.load)
    print("JSON " + json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=1000, help="commands in the large burst")
    parser.add_argument("--concurrent", type=int, default=189, help="commands in the small burst")
    parser.add_argument("--load", type=int, default=2, help="busy-loop processes running meanwhile")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a command may wait for its final ack")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="bound on each half of the run (and the load)")
    args = parser.parse_args()
    set_random_lsst_dds_partition_prefix()
    os.environ["LSST_SITE"] = "bench"
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
