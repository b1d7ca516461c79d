"""What the CSC benchmarks share: the bare-Dask reference, a CSC configuration, waiting for ENABLED.

Imported by the scripts in this directory (``python bench/<script>.py`` puts it on the path).
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import signal
import statistics
import time
from typing import Any

import yaml
from distributed import Client, LocalCluster

from lsst.ts.rapidanalysis import sal

__all__ = ["percentile", "bare_dask_round_trips", "write_csc_config", "wait_enabled"]


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def trivial(x: int) -> int:
    return x + 1


async def bare_dask_round_trips(n: int, burst: int = 0) -> tuple[list[float], float | None]:
    """The reference: ``await client.submit(trivial)`` round trips on a LocalCluster of 2 worker processes.

    Returns the ``n`` round trips (s; 20 warm-up ones not counted) and, if ``burst`` > 0, the rate
    (tasks/s) of a ``client.map`` of ``burst`` trivial tasks.
    """
    async with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            asynchronous=True,
        ) as cluster,
        Client(cluster, asynchronous=True) as client,
    ):
        await client.wait_for_workers(2)
        times = []
        for i in range(n + 20):
            t0 = time.perf_counter()
            await client.submit(trivial, i, pure=False)
            if i >= 20:
                times.append(time.perf_counter() - t0)
        rate = None
        if burst > 0:
            t0 = time.perf_counter()
            await client.gather(client.map(trivial, range(burst), pure=False))
            rate = burst / (time.perf_counter() - t0)
    return times, rate


def write_csc_config(config_dir: pathlib.Path, settings: dict[str, Any]) -> pathlib.Path:
    """Write ``_init.yaml`` holding ``settings``; the CSC fills in the schema's defaults for the rest."""
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / "_init.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


async def wait_enabled(remote: sal.Remote, timeout: float = 120.0) -> None:
    """Wait for the CSC's summaryState to say ENABLED."""
    deadline = time.monotonic() + timeout
    while (await remote.evt_summaryState.next(flush=False, timeout=timeout)).summaryState != sal.State.ENABLED:
        if time.monotonic() > deadline:
            raise RuntimeError("CSC never reached ENABLED")


def say(message: str = "") -> None:
    """Print a line of a benchmark's report at once (it runs for minutes)."""
    print(message, flush=True)


class Interrupts:
    """Ctrl-C and SIGTERM cancel a benchmark's run once; its cleanup then runs uninterrupted.

    `install` must be called again after a CSC (e.g. a camera simulator) starts in the
    benchmark's process: it installs its own SIGINT/SIGTERM handlers, which replace ours.

    Parameters
    ----------
    stopping : `str`
        What the report says is being shut down.
    """

    def __init__(self, stopping: str = "shutting down") -> None:
        self.stopping = stopping
        self.task: asyncio.Task | None = None
        self.received: list[int] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        if self.received:
            say("(still shutting down; please wait)")
            return
        self.received.append(signum)
        say(f"\n{signal.Signals(signum).name}: stopping; {self.stopping}")
        if self.task is not None:
            self.task.cancel()


class StopRun(Exception):
    """A benchmark run cannot go on (the CSC died or faulted, the cluster did not start, no disk)."""


def median(values: list[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


async def await_csc_enabled(ra: sal.Remote, process: asyncio.subprocess.Process, timeout: float) -> None:
    """Wait for a CSC process to report ENABLED; `StopRun` if it exits, faults or takes longer."""
    deadline = time.monotonic() + timeout
    while True:
        if process.returncode is not None:
            raise StopRun(f"the CSC process exited with code {process.returncode} before ENABLED")
        try:
            data = await ra.evt_summaryState.next(flush=False, timeout=2)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise StopRun(f"the CSC did not reach ENABLED within {timeout:g} s") from None
            continue
        if data.summaryState == sal.State.ENABLED:
            return
        if data.summaryState == sal.State.FAULT:
            error = ra.evt_errorCode.get()
            raise StopRun(f"the CSC went to FAULT: {error.errorReport if error else ''}")


def check_alive(ra: sal.Remote, process: asyncio.subprocess.Process) -> None:
    """`StopRun` if the CSC process has exited or its CSC is in FAULT."""
    if process.returncode is not None:
        raise StopRun(f"the CSC process exited (code {process.returncode})")
    state = ra.evt_summaryState.get()
    if state is not None and state.summaryState == sal.State.FAULT:
        error = ra.evt_errorCode.get()
        raise StopRun(f"the CSC went to FAULT: {error.errorReport if error else ''}")


async def shutdown_csc(ra: sal.Remote | None, process: asyncio.subprocess.Process) -> str:
    """standby → offline, then wait; terminate, then kill, if it does not exit."""
    notes = []
    for attempt in range(3):
        if ra is None or process.returncode is not None:
            break
        try:
            await asyncio.wait_for(sal.set_summary_state(ra, sal.State.OFFLINE, timeout=60), 180)
            notes.append("OFFLINE" + (f" (attempt {attempt + 1})" if attempt else ""))
            break
        except Exception as e:
            state = ra.evt_summaryState.get()
            state_name = sal.State(state.summaryState).name if state is not None else "?"
            notes.append(f"set_summary_state(OFFLINE) attempt {attempt + 1} failed in {state_name}: {e}")
            await asyncio.sleep(2.0)
    for signal_name, wait in (("", 60), ("terminate", 30), ("kill", 10)):
        if process.returncode is not None:
            break
        if signal_name == "terminate":
            process.terminate()
            notes.append("terminated")
        elif signal_name == "kill":
            process.kill()
            notes.append("killed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), wait)
    notes.append(f"exit code {process.returncode}")
    return "; ".join(notes)
