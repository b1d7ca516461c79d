"""Queue jobs, run them on the worker pool newest first, and see each to exactly one end.

The queue is ours, not Dask's: we hand Dask only as many jobs as the pool's workers have free
threads, so that "newest first", the bound on the queue and aborting a queued job are exact and
cheap. A job waits for its raws before it competes for a worker, so a late file never holds a
worker. Each job is placed on a worker (`affinity.place`: its detector's home worker when that
has room) with a loose restriction (``workers=[address], allow_other_workers=True``), so that if
the worker dies the scheduler runs it elsewhere: measured here, a loosely pinned task whose worker
was killed ran on the other worker at once, and one pinned to a dead address ran elsewhere; a
strict pin waits forever for a worker that is gone. (Per-worker ``resources=`` would need each
pod started with its own resource, which a uniform Kubernetes worker spec does not give.)

What happens to a running job when the cluster fails under it:

- its worker leaves: the scheduler re-runs it on another worker, ``job_reruns`` times; the next
  time its worker is lost it ends with exit code 5, saying so;
- the scheduler is lost (an external one, restarted): it ends with exit code 5 at once, saying
  so; queued jobs wait for the pool to be back.

Paths go to the workers through the configuration's path map (`path_map`), and the paths in
their results come back through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from distributed import Event
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from ..pipelines.base import PipelineResult
from ..sal.tai import current_tai
from .affinity import WorkerSlots, affinity_key, place
from .jobs import ExitCode, Job, JobState
from .path_map import PathMap, PathMapError
from .pool import WorkerPool
from .worker_task import JobOutcome, abort_event_name, mark_aborted, run_job

__all__ = ["JobManager", "QueueFullError"]

InputResolver = Callable[[Job], Awaitable[list[str]]]
JobCallback = Callable[[Job], Awaitable[None]]
StartCallback = Callable[[Job], None]

#: Seconds an abort flag stays set after its job ended here. The pipeline may still be running on
#: its worker (cancelling a Dask future does not stop running code) and only stops when it next
#: checks the flag; clearing it at once would let it run to its end, holding the worker.
ABORT_FLAG_LINGER = 60.0


class QueueFullError(RuntimeError):
    """The queue already holds its maximum number of jobs."""


class JobManager:
    """Run jobs on a `WorkerPool`.

    Parameters
    ----------
    pool : `WorkerPool`
        The workers.
    max_queue_length : `int`
        Most jobs waiting (not yet running) at once.
    resolve_inputs : callable
        ``await resolve_inputs(job)`` → input file paths; raises ValueError with a reason if
        they never appear (the job then fails with exit code NO_INPUT).
    on_job_done : callable
        ``await on_job_done(job)``, called exactly once per job, whatever its end.
    output_dir_for : callable
        ``output_dir_for(job)`` → directory for the job's products.
    simulation_mode : `bool`
        Whether workers may run the test pipelines.
    on_job_started : callable, optional
        ``on_job_started(job)``, called when a job is handed to the pool (state RUNNING).
    log : `logging.Logger`
        Logger.
    """

    def __init__(
        self,
        *,
        pool: WorkerPool,
        max_queue_length: int,
        resolve_inputs: InputResolver,
        on_job_done: JobCallback,
        output_dir_for: Callable[[Job], str],
        simulation_mode: bool,
        on_job_started: StartCallback | None = None,
        path_map: PathMap | None = None,
        detector_affinity: bool = True,
        job_reruns: int = 1,
        log: logging.Logger | None = None,
    ) -> None:
        self.pool = pool
        self.max_queue_length = max_queue_length
        self.resolve_inputs = resolve_inputs
        self.on_job_done = on_job_done
        self.output_dir_for = output_dir_for
        self.simulation_mode = simulation_mode
        self.on_job_started = on_job_started
        self.path_map = path_map or PathMap()
        self.detector_affinity = detector_affinity
        self.job_reruns = job_reruns
        self.log = log or logging.getLogger(__name__)
        # The worker each running job was placed on ("" once its worker left and the scheduler
        # runs it where we do not know).
        self._placed: dict[str, str] = {}
        # Why a running job whose _run task is cancelled by us was lost with the cluster.
        self._lost: dict[str, str] = {}
        self.jobs: dict[str, Job] = {}
        self._queued: list[Job] = []
        self._ready: set[str] = set()
        self._running: dict[str, asyncio.Task] = {}
        # Every _run task, including those whose job has ended and is being published (which no
        # longer hold a slot): stop() waits for them all.
        self._run_tasks: set[asyncio.Task] = set()
        self._input_tasks: dict[str, asyncio.Task] = {}
        self._futures: dict[str, Any] = {}
        # One per job in ``jobs``, done once the job has ended *and* been published; kept (with
        # the job) after that, so that waiting on a job that has already ended returns at once.
        self._done_futures: dict[str, asyncio.Future] = {}
        self._wake = asyncio.Event()
        self._dispatch_task: asyncio.Task | None = None
        self._clear_tasks: set[asyncio.Task] = set()
        self.n_succeeded = 0
        self.n_failed = 0
        self._closing = False

    # -- counts --

    @property
    def n_queued(self) -> int:
        """Jobs accepted and not yet running."""
        return len(self._queued)

    @property
    def n_running(self) -> int:
        """Jobs handed to the pool."""
        return len(self._running)

    @property
    def slots(self) -> int:
        """How many jobs may run at once (the threads of the workers that take jobs; at least 1)."""
        return max(1, self.pool.info.n_threads)

    def worker_of(self, job_id: str) -> str:
        """The address of the worker a running job was placed on ("" if unknown or not running)."""
        return self._placed.get(job_id, "")

    def busy_by_worker(self) -> dict[str, int]:
        """Running jobs per worker address, as placed (jobs re-run where we do not know are left out)."""
        busy: dict[str, int] = {}
        for address in self._placed.values():
            if address:
                busy[address] = busy.get(address, 0) + 1
        return busy

    def queued_jobs(self) -> list[Job]:
        """Jobs accepted and not yet running (a copy)."""
        return list(self._queued)

    def running_jobs(self) -> list[Job]:
        """Jobs handed to the pool (a copy)."""
        return [self.jobs[job_id] for job_id in list(self._running)]

    @property
    def free_queue_slots(self) -> int:
        """How many more jobs the queue accepts."""
        return max(0, self.max_queue_length - self.n_queued)

    def oldest_queued_age(self) -> float:
        """Seconds the oldest queued job has waited (0 if none)."""
        if not self._queued:
            return 0.0
        return max(0.0, current_tai() - min(job.submit_time for job in self._queued))

    # -- life cycle --

    def start(self) -> None:
        """Start dispatching."""
        self._closing = False
        if self._dispatch_task is None or self._dispatch_task.done():
            self._dispatch_task = asyncio.create_task(self._dispatch_loop())

    async def stop(self, reason: str = "the CSC stopped processing") -> None:
        """Abort every queued and running job (each gets its jobResult) and stop dispatching."""
        self._closing = True
        if self._dispatch_task is not None:
            self._dispatch_task.cancel()
            self._dispatch_task = None
        for job in list(self._queued) + [self.jobs[j] for j in list(self._running)]:
            if job.done:
                continue
            try:
                await self.abort(job.job_id, reason=f"aborted: {reason}")
            except (KeyError, ValueError):
                # It ended while earlier ones were being aborted (each abort awaits): nothing to do,
                # and it must not fail the standby that is stopping us.
                pass
        if self._run_tasks:
            await asyncio.wait(list(self._run_tasks), timeout=10)
        # The pool goes away with us; aborted jobs still running on an external cluster keep their flags.
        for task in list(self._clear_tasks):
            task.cancel()

    # -- requests --

    def submit(self, job: Job, *, ignore_limit: bool = False) -> Job:
        """Accept a job into the queue.

        ``ignore_limit`` is for the CSC's own follow-up jobs (a gather), which must not be lost to
        a queue full of the detector jobs they follow.

        Raises
        ------
        QueueFullError
            If the queue is full.
        """
        if self.n_queued >= self.max_queue_length and not ignore_limit:
            raise QueueFullError(
                f"queue full: {self.n_queued} jobs waiting (max_queue_length={self.max_queue_length}); try again later"
            )
        self.jobs[job.job_id] = job
        self._queued.append(job)
        self._done_futures[job.job_id] = asyncio.get_running_loop().create_future()
        self._input_tasks[job.job_id] = asyncio.create_task(self._resolve(job))
        return job

    async def wait_done(self, job_id: str) -> Job:
        """Wait until the job has ended and its end has been published (`on_job_done`); return it.

        A job that has already ended is returned at once, whenever it ended: synchronous
        ``processData`` waits on one job after another, and a later one may end first.

        Raises
        ------
        KeyError
            No such job (never submitted here, or ended so long ago that it was forgotten).
        """
        future = self._done_futures.get(job_id)
        if future is None:
            job = self.jobs.get(job_id)
            if job is None or not job.done:
                raise KeyError(f"no job {job_id!r}")
            return job
        return await asyncio.shield(future)

    async def abort(self, job_id: str, reason: str = "aborted by request") -> Job:
        """Abort a queued or running job.

        Raises
        ------
        KeyError
            No such job.
        ValueError
            The job has already ended.
        """
        job = self.jobs.get(job_id)
        if job is None:
            raise KeyError(f"no job {job_id!r}")
        if job.done:
            raise ValueError(f"job {job_id} already ended ({job.state.value})")
        if job.state == JobState.QUEUED:
            task = self._input_tasks.pop(job_id, None)
            if task is not None:
                task.cancel()
            self._remove_queued(job)
            await self._finish(job, JobState.ABORTED, ExitCode.ABORTED, reason)
            return job
        # Running: tell the pipeline (it checks the flag) and stop waiting for it.
        job.error_report = reason
        await self._signal_abort(job_id)
        future = self._futures.get(job_id)
        if future is not None:
            await future.cancel()
        task = self._running.get(job_id)
        if task is not None:
            await asyncio.wait([task], timeout=5)
        return job

    # -- internals --

    def _remove_queued(self, job: Job) -> None:
        if job in self._queued:
            self._queued.remove(job)
        self._ready.discard(job.job_id)

    async def _resolve(self, job: Job) -> None:
        try:
            job.inputs = await self.resolve_inputs(job)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._remove_queued(job)
            await self._finish(job, JobState.FAILED, ExitCode.NO_INPUT, str(e))
            return
        finally:
            self._input_tasks.pop(job.job_id, None)
        self._ready.add(job.job_id)
        self._wake.set()

    async def _dispatch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._closing or not self.pool.running:
                continue  # woken again when the pool is back (`pool_reconnected`)
            free_total = self.pool.info.n_threads - self.n_running
            if free_total <= 0:
                continue  # woken again when a slot is freed
            ready = sorted((j for j in self._queued if j.job_id in self._ready), key=lambda j: j.queue_key)
            if not ready:
                continue
            busy = self.busy_by_worker()
            workers = [WorkerSlots(w.address, w.n_threads, busy.get(w.address, 0)) for w in self.pool.info.usable]
            keys = {j.job_id: affinity_key(j.data_id.instrument, j.data_id.detectors) for j in ready}
            by_id = {j.job_id: j for j in ready}
            for job_id, address in place(ready, keys, workers, free_total, affinity=self.detector_affinity):
                job = by_id[job_id]
                self._remove_queued(job)
                self._placed[job_id] = address
                task = asyncio.create_task(self._run(job, address))
                self._running[job_id] = task
                self._run_tasks.add(task)
                task.add_done_callback(self._run_tasks.discard)

    # -- the cluster failing under running jobs --

    async def workers_left(self, addresses: tuple[str, ...]) -> None:
        """Workers left the pool: their running jobs are re-run elsewhere, up to ``job_reruns`` times.

        The scheduler re-runs them by itself (the restriction to the worker is loose); a job that
        has been re-run ``job_reruns`` times already is ended here instead, with exit code 5.
        """
        gone = set(addresses)
        for job_id, address in list(self._placed.items()):
            if address not in gone or job_id not in self._running:
                continue
            job = self.jobs[job_id]
            job.reruns += 1
            self._placed[job_id] = ""
            if job.reruns > self.job_reruns:
                reason = (
                    f"its worker {address} left the pool while it ran, after {job.reruns - 1} re-run(s) on other "
                    f"workers (job_reruns={self.job_reruns}); not run again"
                )
                await self._end_lost(job_id, reason)
            else:
                self.log.warning(
                    "Job %s %s: its worker %s left the pool while it ran; run again on another worker "
                    "(re-run %d of %d)",
                    job_id,
                    job.pipeline,
                    address,
                    job.reruns,
                    self.job_reruns,
                )
        await self._relocate()
        self._wake.set()

    async def _relocate(self) -> None:
        """Learn where the scheduler now runs the jobs whose worker left (best effort)."""
        client = self.pool.client
        unknown = {f"{self.jobs[j].pipeline}-{j}": j for j, a in self._placed.items() if not a and j in self._running}
        if client is None or not unknown:
            return
        try:
            processing = await asyncio.wait_for(client.processing(), 5)
        except Exception as e:
            self.log.debug("Could not ask the scheduler where re-run jobs run: %r", e)
            return
        for address, keys in processing.items():
            for key in keys:
                job_id = unknown.get(str(key))
                if job_id is not None and job_id in self._placed:
                    self._placed[job_id] = address

    async def pool_disconnected(self, reason: str) -> None:
        """The scheduler is lost (it may come back): every running job ends now, with exit code 5."""
        for job_id in list(self._running):
            await self._end_lost(
                job_id, f"the Dask scheduler was lost while the job ran ({reason}); not run again: ask for it again"
            )

    async def pool_reconnected(self, message: str) -> None:
        """The pool is back: queued jobs go on (as soon as its workers are seen)."""
        self._wake.set()

    def workers_changed(self) -> None:
        """Workers joined, left or were excluded: place queued jobs on what there is now."""
        self._wake.set()

    async def _end_lost(self, job_id: str, reason: str) -> None:
        """End a running job lost with the cluster: exit code 5, the reason (its _run task stops)."""
        task = self._running.get(job_id)
        if task is None:
            return
        self._lost[job_id] = reason
        future = self._futures.get(job_id)
        if future is not None:
            await self._signal_abort(job_id)  # if it still runs somewhere, it stops at its next check
            with contextlib.suppress(Exception):
                await future.cancel()
        task.cancel()
        await asyncio.wait([task], timeout=5)

    async def _signal_abort(self, job_id: str) -> None:
        """Tell the job's worker directly (it stops at its next check), and set the job's Event.

        The Event is for a run this CSC did not place: the job re-run elsewhere after its worker
        died, or the direct word lost. Workers poll it at most once a second.
        """
        client = self.pool.client
        if client is None:
            return
        address = self._placed.get(job_id)
        if address:
            try:
                await asyncio.wait_for(client.run(mark_aborted, job_id, workers=[address], on_error="ignore"), 5)
            except Exception as e:
                self.log.warning("Could not tell worker %s to abort %s: %r", address, job_id, e)
        try:
            await asyncio.wait_for(Event(abort_event_name(job_id), client=client).set(), 5)
        except Exception as e:
            self.log.warning("Could not signal abort of %s to the workers: %r", job_id, e)

    def _clear_abort_later(self, job_id: str) -> None:
        task = asyncio.create_task(self._clear_abort(job_id, delay=ABORT_FLAG_LINGER))
        self._clear_tasks.add(task)
        task.add_done_callback(self._clear_tasks.discard)

    async def _clear_abort(self, job_id: str, delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        client = self.pool.client
        if client is None:
            return
        try:
            await asyncio.wait_for(Event(abort_event_name(job_id), client=client).clear(), 5)
        except Exception:
            pass

    async def _run(self, job: Job, address: str) -> None:
        job.state = JobState.RUNNING
        job.start_time = current_tai()
        if self.on_job_started is not None:
            try:
                self.on_job_started(job)
            except Exception:
                self.log.exception("on_job_started failed for job %s", job.job_id)
        client = self.pool.client
        waiter: asyncio.Future | None = None
        try:
            if client is None:
                raise ConnectionError("the worker pool is not running")
            try:
                inputs = [self.path_map.to_worker(path) for path in job.inputs]
                output_dir = self.path_map.to_worker(self.output_dir_for(job))
            except PathMapError as e:
                await self._finish(job, JobState.FAILED, ExitCode.NO_INPUT, str(e))
                return
            future = client.submit(
                run_job,
                job.job_id,
                job.pipeline,
                inputs,
                job.config,
                output_dir,
                self.simulation_mode,
                key=f"{job.pipeline}-{job.job_id}",
                pure=False,
                priority=job.priority,
                # Loose: if the worker dies, the scheduler runs it on another (pinning hangs).
                workers=[address],
                allow_other_workers=True,
            )
            self._futures[job.job_id] = future
            # An asynchronous client's result() is a coroutine; distributed types it as the value.
            waiter = asyncio.ensure_future(cast("Awaitable[JobOutcome]", future.result()))
            done, _ = await asyncio.wait({waiter}, timeout=job.time_limit)
            if not done:
                # Dask's cancel does not stop running code: the pipeline sees the abort flag.
                await self._signal_abort(job.job_id)
                await future.cancel()
                await self._finish(
                    job, JobState.TIMED_OUT, ExitCode.TIMED_OUT, f"timed out after {job.time_limit:g} s (time limit)"
                )
                return
            outcome: JobOutcome = self._to_csc(waiter.result())
            job.outcome = outcome
            job.start_time = outcome.start_time or job.start_time
            state = {"succeeded": JobState.SUCCEEDED, "aborted": JobState.ABORTED}.get(outcome.status, JobState.FAILED)
            message = job.error_report if state == JobState.ABORTED and job.error_report else outcome.message
            if outcome.worker and outcome.exit_code in (ExitCode.NO_INPUT, ExitCode.CRASHED):
                # Which worker could not read its input, or crashed: on a cluster of many hosts,
                # often a host's mounts, not the job.
                message = f"{message} [on worker {outcome.worker}]"
            await self._finish(job, state, outcome.exit_code, message, outcome.end_time or None)
        except FutureCancelledError as e:
            if job.error_report:
                # Cancelled by abort(): the reason is already in error_report.
                await self._finish(job, JobState.ABORTED, ExitCode.ABORTED, job.error_report)
            else:
                # Not by us: the client lost the scheduler, or someone cancelled it on the cluster.
                if e.reason == "scheduler-connection-lost":
                    address = self.pool.info.scheduler_address or self.pool.scheduler_address
                    message = (
                        f"the Dask scheduler was lost while the job ran (the connection to {address} broke); "
                        "not run again: ask for it again"
                    )
                    await self._finish(job, JobState.FAILED, ExitCode.POOL_LOST, message)
                else:
                    await self._finish(
                        job, JobState.FAILED, ExitCode.CRASHED, f"the Dask cluster cancelled the job: {e}"
                    )
        except asyncio.CancelledError:
            lost_reason = self._lost.pop(job.job_id, None)
            if lost_reason is not None:
                # Ended by us: the cluster lost it (`_end_lost`); nothing else is cancelling us.
                await self._finish(job, JobState.FAILED, ExitCode.POOL_LOST, lost_reason)
                return
            await self._finish(job, JobState.ABORTED, ExitCode.ABORTED, job.error_report or "aborted: CSC closing")
            raise
        except KilledWorker as e:
            await self._finish(
                job, JobState.FAILED, ExitCode.WORKER_DIED, f"the worker process died while running this job: {e}"
            )
        except Exception as e:
            code = ExitCode.POOL_LOST if not self.pool.running else ExitCode.CRASHED
            await self._finish(job, JobState.FAILED, code, f"could not run on the worker pool: {type(e).__name__}: {e}")
        finally:
            if waiter is not None and not waiter.done():
                waiter.cancel()
            elif waiter is not None and not waiter.cancelled():
                waiter.exception()  # seen (a timed-out job's FutureCancelledError), so asyncio does not log it
            self._futures.pop(job.job_id, None)
            self._free_slot(job.job_id)

    def _to_csc(self, outcome: JobOutcome) -> JobOutcome:
        """The outcome with the worker's paths in its result as the CSC sees them."""
        if not self.path_map or outcome.result is None:
            return outcome
        plain = self.path_map.results_to_csc(outcome.result.model_dump(mode="json"))
        return dataclasses.replace(outcome, result=PipelineResult.model_validate(plain))

    def _free_slot(self, job_id: str) -> None:
        """The job no longer holds a worker slot: let the next queued job run."""
        self._placed.pop(job_id, None)
        if self._running.pop(job_id, None) is not None:
            self._wake.set()

    async def _finish(
        self, job: Job, state: JobState, exit_code: int, message: str, end_time: float | None = None
    ) -> None:
        if job.done:
            return
        job.state = state
        job.exit_code = int(exit_code)
        job.error_report = "" if state == JobState.SUCCEEDED else message
        job.end_time = end_time or current_tai()
        if state == JobState.SUCCEEDED:
            self.n_succeeded += 1
        else:
            self.n_failed += 1
        if state in (JobState.ABORTED, JobState.TIMED_OUT):
            self._clear_abort_later(job.job_id)
        # The slot is freed before the (possibly slow) publication: a worker must not idle while
        # the results of the job it finished wait their turn for the database.
        self._free_slot(job.job_id)
        try:
            await self.on_job_done(job)
        except Exception:
            self.log.exception("Publishing the result of job %s failed", job.job_id)
        finally:
            # Even if publication was cancelled: nobody may wait for this job forever.
            future = self._done_futures.get(job.job_id)
            if future is not None and not future.done():
                future.set_result(job)
        # Keep a bounded history of ended jobs for abortJob messages, wait_done and status.
        if len(self.jobs) > 10_000:
            for old_id in [j for j, old in self.jobs.items() if old.done][:1000]:
                del self.jobs[old_id]
                self._done_futures.pop(old_id, None)
