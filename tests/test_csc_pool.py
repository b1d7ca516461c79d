"""A pool that loses a worker gets it back, or says it is smaller; below its floor, the CSC faults.

Real parts, as in test_csc.py: the CSC's own LocalCluster, whose worker processes are killed here
with SIGKILL (as in test_csc_failures.test_worker_killed); to make a worker that does not come
back, every process started in its place is killed too, as soon as it appears.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import unittest
from collections.abc import AsyncIterator

import psutil

from lsst.ts.rapidanalysis.csc import ErrorCode
from lsst.ts.rapidanalysis.sal import State
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from test_csc import STD_TIMEOUT, RapidAnalysisTestMixin, wait_until


class CscPoolTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    def log_text(self) -> str:
        """Every logMessage received so far (kept for later calls)."""
        while self.remote.evt_logMessage.nqueued:
            self._log_lines.append(self.remote.evt_logMessage.get_oldest().message)
        return "\n".join(self._log_lines)

    async def next_pool_size(self, n_workers: int, timeout: float = STD_TIMEOUT) -> None:
        """Wait for a workerPool event with ``n_workers``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            data = await self.remote.evt_workerPool.next(flush=False, timeout=max(0.01, deadline - loop.time()))
            if data.nWorkers == n_workers:
                return

    async def worker_pids(self) -> dict[str, int]:
        return await asyncio.wait_for(self.csc.pool.client.run(os.getpid), STD_TIMEOUT)

    @contextlib.asynccontextmanager
    async def worker_killed_for_good(self, victim: int, survivor: int) -> AsyncIterator[list[int]]:
        """Kill ``victim``, and every worker process that appears in its place, until the block ends."""
        killed: list[int] = []
        me = psutil.Process()

        def kill_newcomers() -> None:
            for child in me.children(recursive=True):
                if child.pid in (survivor, *killed):
                    continue
                with contextlib.suppress(psutil.Error):
                    if "spawn_main" in " ".join(child.cmdline()):
                        child.kill()
                        killed.append(child.pid)

        async def killer() -> None:
            while True:
                await asyncio.to_thread(kill_newcomers)
                await asyncio.sleep(0.01)

        os.kill(victim, signal.SIGKILL)
        killed.append(victim)
        task = asyncio.create_task(killer())
        try:
            yield killed
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def test_worker_back(self) -> None:
        """A killed worker restarted by its nanny: workerPool 2 → 1 → 2, and the log says so."""
        self._log_lines: list[str] = []
        async with self.enabled_csc(warm=True):
            await self.next_pool_size(2)
            pids = await self.worker_pids()
            address, pid = sorted(pids.items())[0]
            os.kill(pid, signal.SIGKILL)
            await self.next_pool_size(1)
            await self.next_pool_size(2)
            await wait_until(lambda: "whole again" in self.log_text(), STD_TIMEOUT, "the log line of the pool whole")
            text = self.log_text()
            assert f"({address}) left the pool: 1 of 2 workers" in text, text
            assert "joined the pool: 2 of 2 workers" in text, text
            assert "Worker pool whole again: 2 of 2 workers" in text, text
            assert "smaller" not in text and self.csc.pool.n_replacements == 0, text
            job_id = await self.process()
            assert (await self.next_job_result(job_id)).success
            self.assert_enabled()

    async def test_worker_not_back_then_replaced(self) -> None:
        """A worker that does not come back: the pool says it is smaller (no fault above the
        floor), keeps working, and starts replacements until one comes up."""
        self._log_lines = []
        async with self.enabled_csc(warm=True, override="pool_watch.yaml"):
            await self.next_pool_size(2)
            (_, victim), (_, survivor) = sorted((await self.worker_pids()).items())
            async with self.worker_killed_for_good(victim, survivor):
                await self.next_pool_size(1)
                await wait_until(lambda: "smaller" in self.log_text(), STD_TIMEOUT, "the pool said to be smaller")
                text = self.log_text()
                assert "Worker pool is smaller than it should be: 1 of 2 workers for" in text, text
                assert "did not come back" in text and "replacement(s) started" in text, text
                assert "starting replacement(s)" in text, text
                assert self.csc.pool.n_replacements >= 1
                # Still at work on the worker it has.
                job_id = await self.process()
                assert (await self.next_job_result(job_id)).success
                self.assert_enabled()
            # Left alone, the next replacement comes up.
            await self.next_pool_size(2)
            await wait_until(lambda: "whole again" in self.log_text(), STD_TIMEOUT, "the log line of the pool whole")
            assert len(await self.worker_pids()) == 2
            job_id = await self.process()
            assert (await self.next_job_result(job_id)).success
            self.assert_enabled()

    async def test_floor_faults(self) -> None:
        """min_workers at the pool's size: a worker that does not come back faults the CSC, saying why."""
        self._log_lines = []
        async with self.enabled_csc(warm=True, override="pool_floor.yaml"):
            await self.next_pool_size(2)
            (_, victim), (_, survivor) = sorted((await self.worker_pids()).items())
            loop = asyncio.get_running_loop()
            async with self.worker_killed_for_good(victim, survivor):
                t0 = loop.time()
                await self.assert_next_summary_state(State.FAULT, timeout=STD_TIMEOUT)
                assert 4 <= loop.time() - t0 < 15, loop.time() - t0
            data = await self.remote.evt_errorCode.aget(timeout=STD_TIMEOUT)
            assert data.errorCode == ErrorCode.POOL_TOO_SMALL == 4, data
            assert "1 of 2 workers, fewer than min_workers=2" in data.errorReport, data.errorReport
            assert "did not come back" in data.errorReport and "replacement(s) started" in data.errorReport
            assert "fewer than min_workers=2" in self.log_text()
            await wait_until(lambda: self.csc.pool is None, STD_TIMEOUT, "the pool stopped with the fault")


if __name__ == "__main__":
    unittest.main()
