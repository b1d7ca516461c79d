"""A running job stops when the CSC tells its worker directly, without the scheduler's Event."""

from __future__ import annotations

import asyncio
import pathlib
import time

from distributed import Client, LocalCluster

from lsst.ts.rapidanalysis.dispatch import worker_task
from lsst.ts.rapidanalysis.dispatch.worker_task import JobOutcome, mark_aborted, run_job
from sal_helpers import wait_until


def words_held() -> list[str]:
    """On a worker: the jobs it has been told to abort and still remembers."""
    return list(worker_task._ABORTED)


async def test_the_direct_word_stops_a_running_job(tmp_path: pathlib.Path) -> None:
    async with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, asynchronous=True, dashboard_address=None
        ) as cluster,
        Client(cluster, asynchronous=True) as client,
    ):
        (address,) = cluster.scheduler.workers
        future = client.submit(
            run_job, "ra-direct", "test.sleep", [], {"duration": 60.0, "check_interval": 0.05}, str(tmp_path), True
        )
        await wait_until(lambda: bool(cluster.scheduler.workers[address].processing), what="the job running")
        await asyncio.sleep(0.5)  # it runs, and has asked the scheduler's Event once (not set)
        t0 = time.monotonic()
        await client.run(mark_aborted, "ra-direct", workers=[address])
        outcome: JobOutcome = await asyncio.wait_for(future, 10)
        assert outcome.status == "aborted", outcome
        # At its next check, not at the job's end (60 s): the Event was never set.
        assert time.monotonic() - t0 < 5
        # The word is forgotten with its job.
        assert await client.run(words_held) == {address: []}
