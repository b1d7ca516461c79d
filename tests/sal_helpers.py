"""Small helpers shared by the SAL-layer tests (tests/test_sal_*.py); not a test module."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import random
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sal.test_csc import TestCsc

#: Generous bound for anything that should happen "at once" (keeps slow CI from flaking).
STD_TIMEOUT = 10.0
DATA_DIR = pathlib.Path(__file__).parent / "data"
CONFIG_DIR = DATA_DIR / "config"
RUN_TEST_CSC = pathlib.Path(sys.executable).parent / "run_test_csc"


async def wait_until(predicate: Any, timeout: float = STD_TIMEOUT, what: str = "condition") -> None:
    """Poll ``predicate()`` until it is true (samples are delivered by another thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def random_index() -> int:
    """A Test SAL index unlikely to be used by another test (the partition isolates anyway)."""
    return random.randint(1, 2**30)


@contextlib.asynccontextmanager
async def csc_and_remote(
    initial_state: sal.State = sal.State.ENABLED,
    index: int | None = None,
    config_dir: pathlib.Path | str | None = None,
    own_domain: bool = True,
) -> AsyncIterator[tuple[TestCsc, sal.Remote]]:
    """A TestCsc in ``initial_state`` and a Remote of it.

    With ``own_domain`` the Remote gets its own Domain (a second DDS participant), as a
    separate program would; otherwise it shares the CSC's domain (as BaseCscTestCase does).
    """
    index = random_index() if index is None else index
    csc = TestCsc(index=index, initial_state=initial_state, config_dir=config_dir)
    domain = sal.Domain() if own_domain else None
    try:
        remote = sal.Remote(domain or csc.domain, "Test", index)
        try:
            await asyncio.wait_for(asyncio.gather(csc.start_task, remote.start_task), STD_TIMEOUT)
            # read the states on the way up, so that the queue is empty once there
            while True:
                data = await remote.evt_summaryState.next(flush=False, timeout=STD_TIMEOUT)
                if data.summaryState == initial_state:
                    break
            yield csc, remote
        finally:
            await remote.close()
    finally:
        await asyncio.wait_for(csc.close(), STD_TIMEOUT)
        if domain is not None:
            await domain.close()


async def start_run_test_csc(index: int, *args: str, **kwargs: Any) -> asyncio.subprocess.Process:
    """Start ``run_test_csc <index>`` as a separate process (inherits os.environ)."""
    return await asyncio.create_subprocess_exec(
        str(RUN_TEST_CSC),
        str(index),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        env=dict(os.environ),
        **kwargs,
    )


async def terminate(
    process: asyncio.subprocess.Process, timeout: float = STD_TIMEOUT, sig: int = signal.SIGTERM
) -> int:
    """Signal a process (if still running), wait for it; kill it if it hangs. Return its exit code."""
    if process.returncode is None:
        process.send_signal(sig)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"process {process.pid} did not exit within {timeout} s of signal {sig}") from None
    assert process.returncode is not None
    return process.returncode
