"""Gatherer unit tests: each rule of ``dispatch/gather.py``'s docstring, with no DDS, no Dask, no CSC.

Time is real but short: timeouts of tens of milliseconds, and every "not yet" is checked well
before the deadline and every "now" well after it, so the tests do not depend on the machine's load
beyond a margin of ~50 ms.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from lsst.ts.rapidanalysis.data.data_id import DataId
from lsst.ts.rapidanalysis.dispatch.gather import Gatherer, VisitGather
from lsst.ts.rapidanalysis.dispatch.jobs import Job, JobState, Trigger
from lsst.ts.rapidanalysis.dispatch.worker_task import JobOutcome
from lsst.ts.rapidanalysis.pipelines.base import PipelineResult

OBSID = "CC_O_20251115_000001"
#: Short timers: far enough apart that "before" and "after" are unambiguous on a loaded machine.
GATHER = 0.15
REGATHER = 0.45


class Recorder:
    """on_gather: records (image, partial, regather, finished detectors) per call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, bool, tuple[int, ...]]] = []

    async def __call__(self, visit: VisitGather, partial: bool, regather: bool) -> None:
        self.calls.append((visit.image_name, partial, regather, tuple(sorted({*visit.rows, *visit.failed}))))


def job(job_id: str, detector: int, state: JobState = JobState.SUCCEEDED, *, rows: bool = True, **kw) -> Job:
    j = Job(
        job_id=job_id,
        pipeline="sfm",
        data_id=DataId("LSSTComCam", obsid=OBSID, detectors=(detector,)),
        config={},
        trigger=Trigger.AUTONOMOUS,
        time_limit=60.0,
        submit_time=0.0,
        state=state,
        **kw,
    )
    if state == JobState.SUCCEEDED and rows:
        metrics = [{"detector": detector, "nStars": 10 + detector}]
        j.outcome = JobOutcome("succeeded", 0, result=PipelineResult(detector_metrics=metrics))
    return j


def visit(detectors: tuple[int, ...] = (0, 1, 2), pipeline: str = "sfm", image: str = OBSID) -> VisitGather:
    return VisitGather(
        image_name=image,
        pipeline=pipeline,
        gather_pipeline="sfm_gather",
        expected=detectors,
        job_ids={f"{pipeline}-{image}-{d}": d for d in detectors},
        trigger=Trigger.AUTONOMOUS,
    )


def job_of(v: VisitGather, detector: int, state: JobState = JobState.SUCCEEDED, **kw) -> Job:
    return job(f"{v.pipeline}-{v.image_name}-{detector}", detector, state, **kw)


async def settle() -> None:
    """Let the gather task created by the Gatherer run (it is scheduled, not awaited)."""
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.fixture
async def rec() -> Recorder:
    return Recorder()


def gatherer(rec: Recorder, gather: float = GATHER, regather: float = REGATHER) -> Gatherer:
    return Gatherer(gather, regather, rec)


# -- the gather --


async def test_every_detector_finished_gathers_at_once(rec: Recorder) -> None:
    g = gatherer(rec, gather=30.0, regather=60.0)  # timers that would never fire within the test
    v = visit()
    g.add(v)
    for d in (0, 1):
        assert g.job_done(job_of(v, d))
        await settle()
        assert rec.calls == []  # not complete: waits
    assert g.job_done(job_of(v, 2))
    await settle()
    assert rec.calls == [(OBSID, False, False, (0, 1, 2))]
    assert v.gathered and not v.regathered and v.last_gathered_count == 3
    # A complete gather is final: nothing left tracked, no timer pending.
    assert g.visits == {} and g._timers == {}
    await g.stop()


async def test_partial_gather_at_gather_timeout_after_the_first_detector(rec: Recorder) -> None:
    g = gatherer(rec, regather=30.0)
    v = visit()
    g.add(v)
    await asyncio.sleep(GATHER * 2)  # the timer starts at the first finished detector, not at add()
    assert rec.calls == []
    g.job_done(job_of(v, 1))
    await asyncio.sleep(GATHER / 3)
    assert rec.calls == []  # before gather_timeout
    await asyncio.sleep(GATHER)
    assert rec.calls == [(OBSID, True, False, (1,))]
    assert v.gathered and v.last_gathered_count == 1
    await g.stop()


async def test_gather_timeout_counts_from_the_first_detector_not_the_latest(rec: Recorder) -> None:
    g = gatherer(rec, regather=30.0)
    v = visit((0, 1, 2, 3))
    g.add(v)
    g.job_done(job_of(v, 0))
    await asyncio.sleep(GATHER * 0.6)
    g.job_done(job_of(v, 1))  # must not restart the timer
    await asyncio.sleep(GATHER * 0.7)  # 1.3 x gather_timeout after the first
    assert rec.calls == [(OBSID, True, False, (0, 1))]
    await g.stop()


async def test_partial_gather_is_regathered_when_the_rest_lands(rec: Recorder) -> None:
    g = gatherer(rec, regather=30.0)
    v = visit()
    g.add(v)
    g.job_done(job_of(v, 0))
    await asyncio.sleep(GATHER * 1.5)
    assert rec.calls == [(OBSID, True, False, (0,))]
    g.job_done(job_of(v, 1))
    await settle()
    assert len(rec.calls) == 1  # not yet complete: no re-gather
    g.job_done(job_of(v, 2))
    await settle()
    assert rec.calls[1:] == [(OBSID, False, True, (0, 1, 2))]  # at once, not at regather_timeout
    assert v.regathered and g.visits == {} and g._timers == {}
    await g.stop()


async def test_partial_gather_is_regathered_at_regather_timeout_counted_from_the_first_detector(
    rec: Recorder,
) -> None:
    g = gatherer(rec)
    v = visit()
    g.add(v)
    g.job_done(job_of(v, 0))
    await asyncio.sleep(GATHER + 0.05)
    g.job_done(job_of(v, 1))  # after the partial gather, before the re-gather
    assert rec.calls == [(OBSID, True, False, (0,))]
    # regather_timeout (0.45 s) after the first detector, i.e. ~0.25 s from now; if it were counted
    # from the gather it would be ~0.45 s from now.
    await asyncio.sleep(REGATHER - GATHER - 0.05 - 0.1)
    assert len(rec.calls) == 1
    await asyncio.sleep(0.2)
    assert rec.calls[1:] == [(OBSID, True, True, (0, 1))]
    assert v.last_gathered_count == 2
    await g.stop()


async def test_regather_timeout_shorter_than_gather_timeout_is_raised_to_it(rec: Recorder) -> None:
    g = Gatherer(GATHER, GATHER / 10, rec)
    assert g.regather_timeout == GATHER
    v = visit()
    g.add(v)
    g.job_done(job_of(v, 0))
    await asyncio.sleep(GATHER + 0.1)
    # Both are due: the gather comes first, then the re-gather at once, each exactly once.
    assert rec.calls == [(OBSID, True, False, (0,)), (OBSID, True, True, (0,))]
    await g.stop()


# -- what counts as finished --


@pytest.mark.parametrize("state", [JobState.FAILED, JobState.ABORTED, JobState.TIMED_OUT])
async def test_failed_aborted_timed_out_detectors_count_as_finished(rec: Recorder, state: JobState) -> None:
    g = gatherer(rec, gather=30.0, regather=60.0)
    v = visit()
    g.add(v)
    g.job_done(job_of(v, 0))
    g.job_done(job_of(v, 1, state, error_report="worker died"))
    g.job_done(job_of(v, 2, state))  # no error report: its state says why
    await settle()
    assert rec.calls == [(OBSID, False, False, (0, 1, 2))]  # complete: at once, not partial
    assert set(v.rows) == {0} and v.failed == {1: "worker died", 2: state.value}
    await g.stop()


async def test_success_without_metrics_is_a_failed_detector_saying_why(rec: Recorder) -> None:
    g = gatherer(rec, gather=30.0)
    v = visit((4,))
    g.add(v)
    skipped = job_of(v, 4, rows=False)
    skipped.outcome = JobOutcome("succeeded", 0, result=PipelineResult(skipped="CWFS image: defocused"))
    g.job_done(skipped)
    await settle()
    assert v.rows == {} and v.failed == {4: "CWFS image: defocused"}
    assert rec.calls == [(OBSID, False, False, (4,))]
    await g.stop()


async def test_summary_metrics_and_binned_image_are_kept(rec: Recorder) -> None:
    g = gatherer(rec, gather=30.0)
    v = visit((0,))
    g.add(v)
    j = job_of(v, 0)
    summary = {"detectors": [{"metrics": {"detector": 0, "band": "r"}, "binnedImage": "/out/0.fits"}]}
    j.result.summary = summary
    g.job_done(j)
    assert v.rows == {0: {"detector": 0, "band": "r"}} and v.binned == {0: "/out/0.fits"}
    await g.stop()


# -- a dead worker never stalls a visit --


async def test_timers_need_no_job_a_dead_worker_never_stalls_a_visit(rec: Recorder) -> None:
    g = gatherer(rec)
    v = visit((0, 1, 2))
    g.add(v)
    g.job_done(job_of(v, 2))
    # Detectors 0 and 1 never end (their worker died and nothing reports them): both the gather and
    # the re-gather still happen, and the visit is then forgotten.
    await asyncio.sleep(REGATHER + 0.15)
    assert rec.calls == [(OBSID, True, False, (2,)), (OBSID, True, True, (2,))]
    assert g.visits == {} and g._timers == {} and g._by_job == {}
    await g.stop()


# -- exactly one gather, at most one re-gather --


async def test_exactly_one_gather_and_at_most_one_regather(rec: Recorder) -> None:
    g = gatherer(rec)
    v = visit((0, 1))
    g.add(v)
    g.job_done(job_of(v, 0))
    await asyncio.sleep(GATHER + 0.05)
    g.job_done(job_of(v, 1))  # re-gather at once
    await settle()
    # Late or repeated reports of the same jobs belong to no tracked visit any more.
    assert not g.job_done(job_of(v, 1))
    assert not g.job_done(job_of(v, 0, JobState.FAILED))
    await asyncio.sleep(REGATHER)  # the regather timer, if any were left, would have fired
    assert rec.calls == [(OBSID, True, False, (0,)), (OBSID, False, True, (0, 1))]
    await g.stop()


async def test_detectors_landing_after_the_regather_at_regather_timeout_change_nothing(rec: Recorder) -> None:
    g = gatherer(rec)
    v = visit((0, 1))
    g.add(v)
    g.job_done(job_of(v, 0))
    await asyncio.sleep(REGATHER + 0.1)
    assert rec.calls == [(OBSID, True, False, (0,)), (OBSID, True, True, (0,))]
    assert not g.job_done(job_of(v, 1))  # the visit is closed: no third gather
    await settle()
    assert len(rec.calls) == 2
    await g.stop()


async def test_complete_visit_is_not_gathered_again_by_a_timer(rec: Recorder) -> None:
    g = gatherer(rec)
    v = visit((0, 1))
    g.add(v)
    g.job_done(job_of(v, 0))
    g.job_done(job_of(v, 1))
    await asyncio.sleep(REGATHER + 0.1)
    assert rec.calls == [(OBSID, False, False, (0, 1))]
    await g.stop()


# -- visits --


async def test_job_of_no_tracked_visit_is_not_ours(rec: Recorder) -> None:
    g = gatherer(rec)
    assert not g.job_done(job("someone-else", 0))
    assert g.visit_of("someone-else") is None
    v = visit()
    g.add(v)
    assert g.visit_of(f"sfm-{OBSID}-1") is v
    await settle()
    assert rec.calls == []
    await g.stop()


async def test_same_image_requested_again_replaces_the_old_visit(rec: Recorder) -> None:
    g = gatherer(rec, gather=30.0)
    old = visit((0, 1))
    g.add(old)
    g.job_done(job_of(old, 0))  # starts old's gather timer
    new = VisitGather(OBSID, "sfm", "sfm_gather", (0, 1), {"new-0": 0, "new-1": 1})
    g.add(new)
    assert g._timers == {}  # the old visit's timer went with it
    assert not g.job_done(job_of(old, 1))  # the old visit's jobs are no longer tracked
    g.job_done(job("new-0", 0))
    g.job_done(job("new-1", 1))
    await settle()
    assert rec.calls == [(OBSID, False, False, (0, 1))]
    await g.stop()


async def test_one_image_gathered_by_two_pipelines_is_two_visits(rec: Recorder) -> None:
    g = gatherer(rec, gather=30.0)
    a, b = visit((0,), pipeline="sfm"), visit((0,), pipeline="other")
    g.add(a)
    g.add(b)
    assert len(g.visits) == 2
    g.job_done(job_of(a, 0))
    await settle()
    assert len(rec.calls) == 1 and g.visit_of(f"other-{OBSID}-0") is b
    await g.stop()


async def test_a_failing_gather_is_logged_and_does_not_stop_the_next(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    async def on_gather(v: VisitGather, partial: bool, regather: bool) -> None:
        calls.append(v.image_name)
        if len(calls) == 1:
            raise RuntimeError("database is locked")

    g = Gatherer(30.0, 60.0, on_gather)
    first, second = visit((0,), image="CC_O_20251115_000001"), visit((0,), image="CC_O_20251115_000002")
    g.add(first)
    g.add(second)
    with caplog.at_level(logging.ERROR):
        g.job_done(job_of(first, 0))
        await settle()
        g.job_done(job_of(second, 0))
        await settle()
    assert calls == ["CC_O_20251115_000001", "CC_O_20251115_000002"]
    assert "Gather of CC_O_20251115_000001 failed" in caplog.text
    await g.stop()


async def test_stop_cancels_timers_and_waits_for_gathers_in_progress() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[bool] = []

    async def slow(v: VisitGather, partial: bool, regather: bool) -> None:
        started.set()
        await release.wait()
        finished.append(partial)

    g = Gatherer(GATHER, REGATHER, slow)
    running, waiting = visit((0,), image="CC_O_20251115_000001"), visit((0, 1), image="CC_O_20251115_000002")
    g.add(running)
    g.add(waiting)
    g.job_done(job_of(running, 0))  # complete: its gather starts and blocks
    g.job_done(job_of(waiting, 0))  # partial: a timer is pending
    await asyncio.wait_for(started.wait(), 1)
    stopping = asyncio.create_task(g.stop())
    await settle()
    assert not stopping.done()  # waits for the gather in progress
    release.set()
    await asyncio.wait_for(stopping, 1)
    assert finished == [False]
    await asyncio.sleep(REGATHER + 0.05)
    assert finished == [False]  # the partial visit's timers never fired
