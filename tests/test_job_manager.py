"""JobManager on a real LocalCluster: stopping while jobs end on their own."""

from __future__ import annotations

import asyncio
import pathlib

from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.data.data_id import parse_data_id
from lsst.ts.rapidanalysis.dispatch.job_manager import JobCallback, JobManager
from lsst.ts.rapidanalysis.dispatch.jobs import Job, JobState, Trigger, new_job_id
from lsst.ts.rapidanalysis.dispatch.pool import WorkerPool
from lsst.ts.rapidanalysis.sal import current_tai


async def no_inputs(job: Job) -> list[str]:
    return []


def make_manager(pool: WorkerPool, tmp_path: pathlib.Path, on_job_done: JobCallback) -> JobManager:
    return JobManager(
        pool=pool,
        max_queue_length=10,
        resolve_inputs=no_inputs,
        on_job_done=on_job_done,
        output_dir_for=lambda job: str(tmp_path / job.job_id),
        simulation_mode=True,
    )


def sleep_jobs(n: int, **config: float) -> list[Job]:
    """``n`` test.sleep jobs on one LATISS image."""
    data_id = parse_data_id('{"obsid": "AT_O_20251115_000001"}', get_instrument("LATISS"))
    return [
        Job(
            job_id=new_job_id(),
            pipeline="test.sleep",
            data_id=data_id,
            config=dict(config),
            trigger=Trigger.COMMAND,
            time_limit=30,
            submit_time=current_tai(),
        )
        for _ in range(n)
    ]


async def test_stop_while_running_jobs_end_meanwhile(tmp_path: pathlib.Path) -> None:
    """Each queued job's abort awaits its (slow) publication; the running jobs end during it.

    Before the fix, stop() then tried to abort a job that had just succeeded and raised
    "already ended", which failed the CSC's standby command.
    """
    pool = WorkerPool(scheduler_address="", n_workers=2, threads_per_worker=1, memory_limit="1GB")
    await pool.start()
    ended: list[Job] = []

    async def published(job: Job) -> None:
        ended.append(job)
        await asyncio.sleep(0.4)  # the CSC's database writes and events take time under load

    manager = make_manager(pool, tmp_path, published)
    manager.start()
    jobs = sleep_jobs(4, duration=0.6, check_interval=0.05)
    try:
        for job in jobs:
            manager.submit(job)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while manager.n_running < 2:  # the first start imports the pipeline code in the workers
            assert loop.time() < deadline, "jobs never started"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        # Two queued aborts take 0.8 s of publication: the two running jobs (0.6 s) end meanwhile.
        await asyncio.wait_for(manager.stop("test stop"), 60)
        assert all(job.done for job in jobs)
        assert sorted(j.job_id for j in ended) == sorted(j.job_id for j in jobs)  # each ended once
        states = {job.state for job in jobs}
        assert JobState.ABORTED in states and JobState.SUCCEEDED in states, states
    finally:
        await pool.close()


async def test_slot_freed_before_publication(tmp_path: pathlib.Path) -> None:
    """A finished job's slow publication (database, events) must not keep the next job off the worker."""
    pool = WorkerPool(scheduler_address="", n_workers=1, threads_per_worker=1, memory_limit="1GB")
    await pool.start()
    started_during_publication: list[bool] = []

    async def published(job: Job) -> None:
        if job is jobs[1]:  # newest first: the second job submitted runs first
            await asyncio.sleep(3.0)
            started_during_publication.append(jobs[0].state != JobState.QUEUED)

    manager = make_manager(pool, tmp_path, published)
    jobs = sleep_jobs(2, duration=0.2)
    try:
        for job in jobs:
            manager.submit(job)
        manager.start()
        await asyncio.wait_for(asyncio.gather(*(manager.wait_done(job.job_id) for job in jobs)), 60)
        assert [job.state for job in jobs] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
        # The second job ran while the first one's results were still being published.
        assert started_during_publication == [True]
        await manager.stop("test done")
    finally:
        await pool.close()


async def test_wait_done_after_the_job_ended(tmp_path: pathlib.Path) -> None:
    """wait_done on a job that has already ended (and been published) returns it, as often as asked.

    Synchronous processData waits on its jobs one after the other; before the fix, a job that had
    ended before its turn raised KeyError (its future was dropped when it ended).
    """
    pool = WorkerPool(scheduler_address="", n_workers=1, threads_per_worker=1, memory_limit="1GB")
    await pool.start()
    published: list[str] = []

    async def publish(job: Job) -> None:
        published.append(job.job_id)

    manager = make_manager(pool, tmp_path, publish)
    manager.start()
    slow, fast = sleep_jobs(2, duration=0.0)
    slow.config = {"duration": 1.0}
    try:
        manager.submit(slow)
        manager.submit(fast)  # newest first: runs first, and ends while slow is awaited
        first = await asyncio.wait_for(manager.wait_done(slow.job_id), 60)
        assert first is slow and slow.state == JobState.SUCCEEDED
        assert fast.done and fast.job_id in published, (fast.state, published)
        assert await asyncio.wait_for(manager.wait_done(fast.job_id), 1) is fast
        assert await asyncio.wait_for(manager.wait_done(fast.job_id), 1) is fast  # and again
        assert published == [fast.job_id, slow.job_id]  # each published once
        try:
            await manager.wait_done("ra-nosuchjob")
        except KeyError as e:
            assert "no job 'ra-nosuchjob'" in str(e)
        else:
            raise AssertionError("wait_done of an unknown job did not raise KeyError")
        await manager.stop("test done")
    finally:
        await pool.close()
