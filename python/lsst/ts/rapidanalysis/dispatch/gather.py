"""Gather: when the per-detector jobs of one visit are done (or waited for long enough), combine them.

TN100's design, which the summit's code left out (``ra-algorithms.md`` §1): the first detector
to finish starts a timer; if every selected detector finishes first, the gather runs at once,
otherwise it runs at ``gather_timeout`` on whatever is done, and a partial gather is followed
by a re-gather when the rest has landed or at ``regather_timeout`` (both counted from the first
finished detector), whichever comes first. A failed, aborted or timed-out detector job counts
as finished, and the timers need no job at all to fire, so a dead worker never stalls a visit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .jobs import Job, JobState, Trigger

__all__ = ["VisitGather", "Gatherer"]


@dataclasses.dataclass
class VisitGather:
    """One visit's per-detector jobs and what they produced.

    Attributes
    ----------
    image_name : `str`
        The visit's image (obsid).
    pipeline : `str`
        The per-detector pipeline (``sfm``).
    gather_pipeline : `str`
        The pipeline that combines them (``sfm_gather``).
    expected : `tuple` [`int`]
        Detectors selected.
    job_ids : `dict` [`str`, `int`]
        Detector job id → detector.
    trigger : `Trigger`
        What asked for the visit.
    rows : `dict` [`int`, `dict`]
        Detector → its metrics row (successful jobs).
    binned : `dict` [`int`, `str`]
        Detector → its binned post-ISR image.
    failed : `dict` [`int`, `str`]
        Detector → why it produced nothing.
    first_done : `float` or None
        Monotonic time the first detector finished.
    gathered, regathered : `bool`
        Whether the gather / the re-gather has run.
    """

    image_name: str
    pipeline: str
    gather_pipeline: str
    expected: tuple[int, ...]
    job_ids: dict[str, int]
    trigger: Trigger = Trigger.COMMAND
    rows: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    binned: dict[int, str] = dataclasses.field(default_factory=dict)
    failed: dict[int, str] = dataclasses.field(default_factory=dict)
    first_done: float | None = None
    gathered: bool = False
    regathered: bool = False
    last_gathered_count: int = 0

    @property
    def n_finished(self) -> int:
        """Detectors whose job has ended, however."""
        return len(self.rows) + len(self.failed)

    @property
    def complete(self) -> bool:
        """Every expected detector's job has ended."""
        return self.n_finished >= len(self.expected)


GatherCallback = Callable[[VisitGather, bool, bool], Awaitable[None]]


class Gatherer:
    """Track visits and call ``on_gather(visit, partial, regather)`` at the right moments.

    Parameters
    ----------
    gather_timeout : `float`
        Seconds after the first finished detector to gather whatever is done.
    regather_timeout : `float`
        Seconds after the first finished detector for the final re-gather of a partial visit.
    on_gather : callable
        Coroutine called for each gather and re-gather.
    log : `logging.Logger`, optional
    """

    def __init__(
        self,
        gather_timeout: float,
        regather_timeout: float,
        on_gather: GatherCallback,
        log: logging.Logger | None = None,
    ) -> None:
        self.gather_timeout = gather_timeout
        self.regather_timeout = max(regather_timeout, gather_timeout)
        self.on_gather = on_gather
        self.log = log or logging.getLogger(__name__)
        self.visits: dict[str, VisitGather] = {}
        self._by_job: dict[str, str] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()

    @staticmethod
    def key(visit: VisitGather) -> str:
        """Visits are told apart by image and pipeline (one image may be gathered by two pipelines)."""
        return f"{visit.pipeline}:{visit.image_name}"

    def add(self, visit: VisitGather) -> None:
        """Start tracking a visit (a re-request of the same image replaces the old one)."""
        key = self.key(visit)
        if key in self.visits:
            self._forget(key)
        self.visits[key] = visit
        for job_id in visit.job_ids:
            self._by_job[job_id] = key

    def visit_of(self, job_id: str) -> VisitGather | None:
        """The visit a detector job belongs to."""
        key = self._by_job.get(job_id)
        return self.visits.get(key) if key else None

    def job_done(self, job: Job) -> bool:
        """Record a finished detector job; returns whether it belonged to a tracked visit."""
        key = self._by_job.pop(job.job_id, None)
        visit = self.visits.get(key) if key is not None else None
        if key is None or visit is None:
            return False
        detector = visit.job_ids[job.job_id]
        result = job.result
        rows = result.detector_metrics
        if job.state == JobState.SUCCEEDED and rows:
            visit.rows[detector] = rows[0]
            for summary in result.summary.get("detectors", []):
                # The summary's metrics also hold the text fields (band, detector name).
                if isinstance(summary.get("metrics"), dict):
                    visit.rows[detector] = summary["metrics"]
                if summary.get("binnedImage"):
                    visit.binned[detector] = summary["binnedImage"]
        else:
            visit.failed[detector] = job.error_report or result.skipped or job.state.value
        if visit.first_done is None:
            visit.first_done = time.monotonic()
            if not visit.complete:
                self._schedule(key, self.gather_timeout, self._gather_timer)
        if visit.complete:
            self._run(key, regather=visit.gathered)
        return True

    def _schedule(self, key: str, delay: float, callback: Callable[[str], None]) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(max(delay, 0.0), callback, key)

    def _gather_timer(self, key: str) -> None:
        self._timers.pop(key, None)
        visit = self.visits.get(key)
        if visit is not None and not visit.gathered:
            self._run(key, regather=False)

    def _regather_timer(self, key: str) -> None:
        self._timers.pop(key, None)
        visit = self.visits.get(key)
        if visit is not None and visit.gathered and not visit.regathered:
            self._run(key, regather=True)

    def _run(self, key: str, regather: bool) -> None:
        visit = self.visits[key]
        partial = not visit.complete
        if regather:
            visit.regathered = True
        else:
            visit.gathered = True
        visit.last_gathered_count = visit.n_finished
        final = not partial or regather
        if final:
            self._forget(key)
        else:
            assert visit.first_done is not None
            remaining = self.regather_timeout - (time.monotonic() - visit.first_done)
            self._schedule(key, remaining, self._regather_timer)
        task = asyncio.create_task(self._call(visit, partial, regather))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, visit: VisitGather, partial: bool, regather: bool) -> None:
        try:
            await self.on_gather(visit, partial, regather)
        except Exception:
            self.log.exception("Gather of %s failed", visit.image_name)

    def _forget(self, key: str) -> None:
        visit = self.visits.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if visit is not None:
            for job_id in visit.job_ids:
                if self._by_job.get(job_id) == key:
                    del self._by_job[job_id]

    async def stop(self) -> None:
        """Cancel every timer and wait for gathers in progress."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.visits.clear()
        self._by_job.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
