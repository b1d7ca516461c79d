"""AutonomousDispatcher unit tests: each rule of ``dispatch/autonomous.py``'s docstring, no DDS, no Dask.

The CSC is replaced by `Host`, a small implementation of the documented `DispatcherHost` protocol
that keeps a queue and a running list and records what the dispatcher asks of it (jobs made and
submitted, jobs aborted and why, focal-plane selections published, images that got no job).

Time is driven explicitly: the dispatcher reads ``time.monotonic`` (image ages, idle time), which
is replaced in its module by a `Clock`, and the housekeeping that runs once a second in the CSC
(`_age_out`, `_maybe_catch_up`) is run by the tests at the moments they choose (`housekeeping`).
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import types
from typing import Any

import pytest

from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.data.image_listener import ImageArrival
from lsst.ts.rapidanalysis.data.raw_store import RawStore
from lsst.ts.rapidanalysis.dispatch import autonomous
from lsst.ts.rapidanalysis.dispatch.autonomous import (
    UNDISPATCHED_PIPELINE,
    AutonomousDispatcher,
    AutonomousSettings,
    ImageKind,
    check_file_id,
    image_kind_of,
    is_instrument_obsid,
    resolve_file,
)
from lsst.ts.rapidanalysis.dispatch.focal_plane import (
    FocalPlaneSelector,
    Selection,
    WorkerMode,
    spread_order,
)
from lsst.ts.rapidanalysis.dispatch.gather import VisitGather
from lsst.ts.rapidanalysis.dispatch.job_maker import JobMaker
from lsst.ts.rapidanalysis.dispatch.jobs import ExitCode, Job, JobState, Trigger
from lsst.ts.rapidanalysis.pipelines.base import Pipeline

COMCAM = get_instrument("LSSTComCam")
ALL = [0, 1, 2, 3, 4, 5, 6, 7, 8]
CHECKER = [1, 3, 5, 7]  # ComCam's ccd_checkerboard at phase 0 (tests/test_csc_autonomous.py)
LEFT_OUT = {0, 2, 4, 6, 8}


def obsid(n: int, prefix: str = "CC") -> str:
    return f"{prefix}_O_20251115_{n:06d}"


class Clock:
    """What the dispatcher's module sees as ``time.monotonic``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


class Pipelines:
    """The pipeline registry the job maker reads: stand-ins declaring how each is split, nothing run."""

    def __init__(self) -> None:
        class Sfm(Pipeline):
            name = "sfm"
            per_detector = True
            gather_pipeline = "sfm_gather"

        class ImageStats(Pipeline):
            name = "image_stats"
            detector_parallel = True

        class MountTorque(Pipeline):
            name = "mount_torque"

        class SpectrumExaminer(Pipeline):
            name = "spectrum_examiner"

        self.pipelines = {p.name: p for p in (Sfm, ImageStats, MountTorque, SpectrumExaminer)}

    def get(self, name: str) -> type[Pipeline]:
        if name not in self.pipelines:
            raise ValueError(f"Unknown pipeline {name!r}; known pipelines: {', '.join(sorted(self.pipelines))}")
        return self.pipelines[name]


class Host:
    """The CSC's side (`DispatcherHost`) and the job manager's queue, recording what is asked of them."""

    def __init__(self, instrument: str = "LSSTComCam", n_workers: int = 2) -> None:
        self.instrument = get_instrument(instrument)
        self.slots = n_workers
        self.queued: list[Job] = []
        self.running: list[Job] = []
        self.submitted: list[tuple[list[Job], VisitGather | None, bool]] = []
        self.aborted: dict[str, str] = {}
        self.aborted_twice: list[str] = []
        self.selections: list[tuple[Selection, int]] = []
        self.down_selected: list[tuple[str, frozenset[int], int]] = []
        self.failed_images: list[tuple[str, int, str]] = []
        self.kinds: dict[str, str | Exception | asyncio.Event] = {}

    # DispatcherHost

    def submit_jobs(self, jobs: list[Job], visit: VisitGather | None, *, ignore_limit: bool) -> None:
        self.submitted.append((jobs, visit, ignore_limit))
        self.queued.extend(jobs)

    async def image_kind(self, arrival: ImageArrival) -> str:
        kind = self.kinds.get(arrival.image_name)
        if isinstance(kind, asyncio.Event):  # told when the test says (a raw read slowly)
            await kind.wait()
            kind = None
        if isinstance(kind, Exception):
            raise kind
        return kind or image_kind_of(self.instrument.name, arrival.img_type)

    async def image_failed(self, arrival: ImageArrival, exit_code: int, reason: str) -> None:
        self.failed_images.append((arrival.image_name, exit_code, reason))

    def publish_selection(self, selection: Selection, n_workers: int) -> None:
        self.selections.append((selection, n_workers))

    def image_down_selected(
        self, image_name: str, left_out: frozenset[int], n_all: int, n_workers: int, why: str
    ) -> None:
        self.down_selected.append((image_name, left_out, n_all))

    # The job manager's part

    def queued_jobs(self) -> list[Job]:
        return sorted(self.queued, key=lambda j: j.queue_key)

    def running_jobs(self) -> list[Job]:
        return list(self.running)

    async def abort(self, job_id: str, reason: str = "aborted by request") -> None:
        if job_id in self.aborted:
            self.aborted_twice.append(job_id)
            raise ValueError(f"job {job_id} already ended")
        self.aborted[job_id] = reason
        for jobs in (self.queued, self.running):
            for job in list(jobs):
                if job.job_id == job_id:
                    jobs.remove(job)
                    job.state = JobState.ABORTED

    # For the tests

    @property
    def jobs(self) -> list[Job]:
        """Every job submitted, in order."""
        return [j for jobs, _, _ in self.submitted for j in jobs]

    @property
    def file_jobs(self) -> list[tuple[str, str, pathlib.Path]]:
        """(pipeline, file id, path) of each job submitted on a generator's file."""
        return [(j.pipeline, j.image_name, pathlib.Path(j.inputs[0])) for j in self.jobs if j.inputs]

    def made(self, trigger: Trigger | None = None) -> list[tuple[str, str, tuple[int, ...] | None, Trigger, int]]:
        """(pipeline, image, detectors, trigger, priority) of each job submitted."""
        return [
            (j.pipeline, j.image_name, j.data_id.detectors, j.trigger, j.priority)
            for j in self.jobs
            if trigger is None or j.trigger == trigger
        ]

    def start(self, n: int | None = None) -> list[Job]:
        """Run the first ``n`` queued jobs (all by default), in queue order."""
        jobs = self.queued_jobs()[:n]
        for job in jobs:
            self.queued.remove(job)
            job.state = JobState.RUNNING
            self.running.append(job)
        return jobs

    def finish_all(self) -> None:
        for job in self.running:
            job.state = JobState.SUCCEEDED
        self.running.clear()

    def jobs_of(self, image: str, where: list[Job] | None = None) -> list[Job]:
        return [j for j in (self.queued if where is None else where) if j.image_name == image]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    # Only the dispatcher's module sees it (the event loop keeps the real clock).
    monkeypatch.setattr(autonomous, "time", types.SimpleNamespace(monotonic=c.monotonic))
    return c


def dispatcher(
    host: Host,
    worker_mode: WorkerMode = WorkerMode.CONSUMING,
    pattern: str = "all",
    guaranteed: str = "",
    file_store: RawStore | None = None,
    **settings: Any,
) -> AutonomousDispatcher:
    selector = FocalPlaneSelector(host.instrument, n_workers=host.slots)
    selector.set_mode(pattern=pattern, worker_mode=worker_mode, guaranteed_exposures=guaranteed)
    maker = JobMaker(host.instrument, Pipelines(), {}, 60.0, lambda: 0.0)  # type: ignore[arg-type]
    return AutonomousDispatcher(
        host,
        selector,
        AutonomousSettings(**settings),
        file_store=file_store,
        job_maker=maker,
        job_manager=host,  # type: ignore[arg-type]
    )


async def settle(d: AutonomousDispatcher) -> None:
    """Wait until the dispatcher's own tasks (handling arrivals, aborting, requeueing) are done."""
    for _ in range(100):
        await asyncio.sleep(0)
        if d._tasks:
            await asyncio.wait(list(d._tasks), timeout=0.05)
        if not d._tasks:
            return
    raise AssertionError("the dispatcher's tasks never ended")


async def arrive(d: AutonomousDispatcher, clock: Clock, name: str, img_type: str = "OBJECT", **kw: Any) -> None:
    d.on_arrival(ImageArrival(name, img_type=img_type, arrived=clock.now, **kw))
    await settle(d)


async def housekeeping(d: AutonomousDispatcher) -> None:
    """One tick of the CSC's once-a-second housekeeping (stale work, then catch-up)."""
    d._age_out()
    d._maybe_catch_up()
    await settle(d)


def detectors_of(jobs: list[Job]) -> list[int]:
    return [d for j in jobs for d in (j.data_id.detectors or ())]


# -- image kinds --


@pytest.mark.parametrize(
    "instrument, img_type, grating, kind",
    [
        ("LSSTComCam", "BIAS", None, ImageKind.CALIBRATION),
        ("LSSTComCam", "dark", None, ImageKind.CALIBRATION),
        ("LSSTComCam", " Flat ", None, ImageKind.CALIBRATION),
        ("LSSTCam", "SFLAT", None, ImageKind.CALIBRATION),
        ("LSSTCam", "DFLAT", None, ImageKind.CALIBRATION),
        ("LSSTComCam", "OBJECT", None, ImageKind.SCIENCE),
        ("LSSTComCam", "", None, ImageKind.SCIENCE),
        ("LSSTComCam", None, None, ImageKind.SCIENCE),
        ("LSSTCam", "CWFS", None, ImageKind.SCIENCE),
        ("LSSTCam", "ENGTEST", None, ImageKind.SCIENCE),
        ("LSSTCam", "unknown", None, ImageKind.SCIENCE),
        ("LATISS", "OBJECT", "holo4_003", ImageKind.DISPERSED),
        ("LATISS", "ENGTEST", "ronchi170lpmm", ImageKind.DISPERSED),
        ("LATISS", "OBJECT", "empty_1", ImageKind.SCIENCE),
        ("LATISS", "OBJECT", "EMPTY", ImageKind.SCIENCE),
        ("LATISS", "OBJECT", "none", ImageKind.SCIENCE),
        ("LATISS", "OBJECT", "", ImageKind.SCIENCE),
        ("LATISS", "BIAS", "holo4_003", ImageKind.CALIBRATION),  # a bias is a bias, grating or not
        ("LSSTCam", "OBJECT", "holo4_003", ImageKind.SCIENCE),  # only LATISS disperses
    ],
)
def test_image_kind_of(instrument: str, img_type: object, grating: object, kind: str) -> None:
    assert image_kind_of(instrument, img_type, grating) == kind


# -- the kind of image chooses the pipelines --


async def test_science_image_sfm_on_the_selected_detectors_as_a_visit_and_mount_torque(clock: Clock) -> None:
    host = Host()
    d = dispatcher(host)
    await arrive(d, clock, obsid(1))
    assert host.made() == [
        *[("sfm", obsid(1), (d,), Trigger.AUTONOMOUS, 0) for d in ALL],
        ("mount_torque", obsid(1), None, Trigger.AUTONOMOUS, 0),
    ]
    (sfm_jobs, visit, limit), (torque_jobs, no_visit, limit2) = host.submitted
    assert visit is not None and visit.expected == tuple(ALL) and no_visit is None
    assert visit.job_ids == {j.job_id: j.data_id.detectors[0] for j in sfm_jobs}  # gathered as one visit
    # Autonomous work is never refused for a full queue.
    assert limit and limit2
    assert d.n_images == 1 and len(host.queued) == 10


async def test_calibration_image_image_stats_per_selected_detector_spread_over_the_field(clock: Clock) -> None:
    host = Host()
    d = dispatcher(host, pattern="ccd_checkerboard")
    await arrive(d, clock, obsid(1), img_type="BIAS")
    assert {p for p, *_ in host.made()} == {"image_stats"}
    assert sorted(d for _, _, d, _, _ in host.made()) == [(d,) for d in CHECKER]  # one job per detector
    # Run newest first: in spread order over the focal plane.
    assert detectors_of(host.queued_jobs()) == spread_order(COMCAM, CHECKER)
    assert all(visit is None for _, visit, _ in host.submitted)  # no gather for a calibration


async def test_dispersed_image_spectrum_examiner_and_mount_torque(clock: Clock) -> None:
    host = Host("LATISS")
    host.kinds[obsid(1, "AT")] = ImageKind.DISPERSED
    d = dispatcher(host)
    await arrive(d, clock, obsid(1, "AT"))
    assert [(p, i, d) for p, i, d, *_ in host.made()] == [
        ("spectrum_examiner", obsid(1, "AT"), None),
        ("mount_torque", obsid(1, "AT"), None),
    ]


async def test_pipelines_are_the_configured_ones(clock: Clock) -> None:
    host = Host()
    d = dispatcher(host, science_pipelines=("mount_torque",), calibration_pipelines=())
    await arrive(d, clock, obsid(1))
    await arrive(d, clock, obsid(2), img_type="FLAT")
    assert [(p, i) for p, i, *_ in host.made()] == [("mount_torque", obsid(1))]


async def test_a_pipeline_that_cannot_be_queued_does_not_stop_the_others(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    host = Host()
    d = dispatcher(host, science_pipelines=("nope", "mount_torque"))
    with caplog.at_level(logging.WARNING):
        await arrive(d, clock, obsid(1))
    assert [j.pipeline for j in host.queued] == ["mount_torque"]
    assert f"Image {obsid(1)}: nope not dispatched: Unknown pipeline 'nope'" in caplog.text


async def test_an_image_announced_twice_is_processed_once(clock: Clock) -> None:
    host = Host()
    d = dispatcher(host)
    await arrive(d, clock, obsid(1))
    n = len(host.made())
    await arrive(d, clock, obsid(1), source="largeFileObjectAvailable", url="file:///x/raw.fits")
    await arrive(d, clock, obsid(1))
    assert len(host.made()) == n and d.n_images == 1


# -- an image whose kind cannot be told --


async def test_an_image_whose_kind_cannot_be_told_gets_one_job_result_saying_why(clock: Clock) -> None:
    host = Host()
    host.kinds[obsid(1)] = TimeoutError("no complete raw within raw_wait_timeout=30 s")
    d = dispatcher(host)
    await arrive(d, clock, obsid(1))
    assert host.made() == [] and d.n_undispatched == 1 and d.n_images == 0
    [(name, code, reason)] = host.failed_images
    assert name == obsid(1) and code == ExitCode.NO_INPUT == 3
    assert "no pipeline run" in reason and "raw_wait_timeout" in reason
    assert UNDISPATCHED_PIPELINE == "image_kind"


async def test_stopping_while_the_kind_is_awaited_ends_the_image_with_255(clock: Clock) -> None:
    host = Host()
    waiting = asyncio.Event()

    async def never(arrival: ImageArrival) -> str:
        waiting.set()
        await asyncio.Event().wait()
        raise AssertionError

    host.image_kind = never  # type: ignore[method-assign]
    d = dispatcher(host)
    d.on_arrival(ImageArrival(obsid(1), arrived=clock.now))
    await asyncio.wait_for(waiting.wait(), 1)
    await d.stop()
    [(name, code, reason)] = host.failed_images
    assert (name, code) == (obsid(1), ExitCode.ABORTED) and "stopped" in reason


# -- focal-plane selection --


async def test_selection_is_announced_when_it_changes_and_only_then(clock: Clock) -> None:
    host = Host(n_workers=3)
    d = dispatcher(host, pattern="ccd_checkerboard")
    await arrive(d, clock, obsid(1))
    await arrive(d, clock, obsid(2))
    assert len(host.selections) == 1
    selection, n_workers = host.selections[0]
    assert sorted(selection.detectors) == CHECKER and selection.decided_by == "manual" and n_workers == 3
    assert sorted(detectors_of([j for j in host.jobs if j.pipeline == "sfm"])) == sorted(CHECKER * 2)


async def test_guaranteed_exposure_is_processed_on_every_detector_and_announced(clock: Clock) -> None:
    host = Host()
    d = dispatcher(host, pattern="ccd_checkerboard", guaranteed=obsid(2))
    await arrive(d, clock, obsid(1))
    await arrive(d, clock, obsid(2))
    await arrive(d, clock, obsid(3))
    sfm = [sorted(detectors_of(jobs)) for jobs, _, _ in host.submitted if jobs[0].pipeline == "sfm"]
    assert sfm == [CHECKER, ALL, CHECKER]
    assert [s.decided_by for s, _ in host.selections] == ["manual", "guaranteed", "manual"]


async def test_down_selection_is_logged_once_per_image(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    host = Host()
    d = dispatcher(host, pattern="ccd_checkerboard")
    with caplog.at_level(logging.INFO):
        await arrive(d, clock, obsid(1))
        await arrive(d, clock, obsid(2))
    lines = [r.getMessage() for r in caplog.records if "4 of 9 detectors" in r.getMessage()]
    assert len(lines) == 2 and obsid(1) in lines[0] and obsid(2) in lines[1]


# -- worker modes --


async def test_waiting_mode_drops_queued_jobs_of_older_images_with_the_reason(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    host = Host()
    d = dispatcher(host, WorkerMode.WAITING)
    await arrive(d, clock, obsid(1))
    running = host.start(2)  # two of image 1's jobs run; eight wait
    with caplog.at_level(logging.WARNING):
        await arrive(d, clock, obsid(2))
    assert host.jobs_of(obsid(1)) == []
    assert len(host.aborted) == 8 and d.n_dropped_jobs == 8
    assert set(host.aborted.values()) == {"dropped: a newer image arrived (worker mode WAITING)"}
    assert all(j.state == JobState.RUNNING for j in running) and host.running == running  # never running work
    assert len(host.jobs_of(obsid(2))) == 10  # only the newest image is worked on
    assert host.aborted_twice == []
    assert [r.getMessage() for r in caplog.records if "Dropped" in r.getMessage()] == [
        f"Dropped 8 queued job(s) of {obsid(1)}: a newer image arrived (worker mode WAITING)"
    ]


async def test_an_abort_that_fails_is_logged_not_lost(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    host = Host()
    d = dispatcher(host, WorkerMode.WAITING)
    await arrive(d, clock, obsid(1))

    async def broken_abort(job_id: str, reason: str = "") -> None:
        raise RuntimeError("the job manager is gone")

    host.abort = broken_abort  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        await arrive(d, clock, obsid(2))
        for _ in range(3):
            await asyncio.sleep(0)
    failures = [r for r in caplog.records if r.getMessage() == "Autonomous dispatch step failed"]
    assert len(failures) == 10 and "the job manager is gone" in caplog.text


async def test_consuming_mode_keeps_older_work_and_runs_the_newest_first(clock: Clock) -> None:
    host = Host()
    d = dispatcher(host, WorkerMode.CONSUMING)
    await arrive(d, clock, obsid(1))
    host.start(2)
    await arrive(d, clock, obsid(2))
    assert host.aborted == {} and len(host.jobs_of(obsid(1))) == 8
    assert {j.image_name for j in host.queued_jobs()[:10]} == {obsid(2)}
    assert d.backlog() == 8


async def test_murderous_mode_abandons_running_backlog_work_and_requeues_it(clock: Clock) -> None:
    host = Host(n_workers=3)
    d = dispatcher(host, WorkerMode.MURDEROUS, science_pipelines=("sfm",))
    await arrive(d, clock, obsid(1))
    old = host.start(1)[0]
    await arrive(d, clock, obsid(2))
    previous_newest = host.start(1)[0]
    assert previous_newest.image_name == obsid(2)
    # Image 3 arrives: image 1 is backlog (older than the image that was newest), image 2 is not.
    await arrive(d, clock, obsid(3))
    assert host.aborted == {old.job_id: "abandoned for a newer image (worker mode MURDEROUS); requeued"}
    assert previous_newest in host.running and host.aborted_twice == []
    # Put back in the backlog: the same pipeline and detector, below the newest images' work.
    requeued = [j for j in host.jobs_of(obsid(1)) if j.priority == -1]
    assert len(requeued) == 1
    assert (requeued[0].pipeline, requeued[0].data_id.detectors, requeued[0].trigger) == (
        "sfm",
        old.data_id.detectors,
        Trigger.AUTONOMOUS,
    )
    assert requeued[0].config == old.config
    assert host.submitted[-1][1] is None  # no second visit for it
    assert host.queued_jobs()[-1] is requeued[0] or host.queued_jobs()[-1].priority == -1


async def test_two_images_heard_at_once_in_murderous_mode_requeue_a_backlog_job_once(clock: Clock) -> None:
    host = Host(n_workers=3)
    d = dispatcher(host, WorkerMode.MURDEROUS, science_pipelines=("mount_torque",))
    await arrive(d, clock, obsid(1))
    await arrive(d, clock, obsid(2))
    host.start()  # each image's one job runs
    # Both handled before the task abandoning image 1's job has run: each finds it still running.
    for n in (3, 4):
        d.on_arrival(ImageArrival(obsid(n), img_type="OBJECT", arrived=clock.now))
    await settle(d)
    requeued = sorted(j.image_name for j in host.jobs if j.priority == -1)
    assert requeued == [obsid(1), obsid(2)] and host.aborted_twice == [], host.aborted


async def test_murderous_mode_never_abandons_the_newest_images_work(clock: Clock) -> None:
    host = Host()
    d = dispatcher(host, WorkerMode.MURDEROUS)
    await arrive(d, clock, obsid(1))
    host.start(2)
    await arrive(d, clock, obsid(2))
    assert host.aborted == {} and len(host.running) == 2


async def test_an_older_image_told_late_does_not_displace_the_newest_in_waiting_mode(clock: Clock) -> None:
    host = Host()
    slow = host.kinds[obsid(1)] = asyncio.Event()
    d = dispatcher(host, WorkerMode.WAITING, science_pipelines=("mount_torque",))
    d.on_arrival(ImageArrival(obsid(1), img_type="OBJECT", arrived=clock.now))
    await asyncio.sleep(0)
    clock.now += 1
    d.on_arrival(ImageArrival(obsid(2), img_type="OBJECT", arrived=clock.now))  # its kind told at once
    for _ in range(10):
        await asyncio.sleep(0)
    assert [j.image_name for j in host.queued] == [obsid(2)]
    slow.set()  # image 1's kind told now
    await settle(d)
    assert host.jobs_of(obsid(2)) != [], host.aborted  # the newest image is still worked on
    # ... and the older one is dropped as it would have been had it been told first.
    assert {host.aborted[j.job_id] for j in host.jobs_of(obsid(1), host.jobs)} == {
        "dropped: a newer image arrived (worker mode WAITING)"
    }
    assert list(d.images) == [obsid(1), obsid(2)] and d.backlog() == 0


async def test_an_older_image_told_late_is_backlog_below_the_newest_in_consuming_mode(clock: Clock) -> None:
    host = Host()
    slow = host.kinds[obsid(1)] = asyncio.Event()
    d = dispatcher(host, WorkerMode.CONSUMING, science_pipelines=("mount_torque",))
    d.on_arrival(ImageArrival(obsid(1), img_type="OBJECT", arrived=clock.now))
    await asyncio.sleep(0)
    clock.now += 1
    d.on_arrival(ImageArrival(obsid(2), img_type="OBJECT", arrived=clock.now))  # its kind told at once
    for _ in range(10):
        await asyncio.sleep(0)
    slow.set()
    await settle(d)
    assert host.aborted == {}
    assert [(j.image_name, j.priority) for j in host.queued_jobs()] == [(obsid(2), 0), (obsid(1), -1)]
    assert d.backlog() == 1


async def test_an_older_image_told_late_abandons_nothing_in_murderous_mode(clock: Clock) -> None:
    host = Host(n_workers=3)
    d = dispatcher(host, WorkerMode.MURDEROUS, science_pipelines=("mount_torque",))
    await arrive(d, clock, obsid(1))
    slow = host.kinds[obsid(2)] = asyncio.Event()
    d.on_arrival(ImageArrival(obsid(2), img_type="OBJECT", arrived=clock.now))
    await asyncio.sleep(0)
    d.on_arrival(ImageArrival(obsid(3), img_type="OBJECT", arrived=clock.now))
    for _ in range(10):
        await asyncio.sleep(0)
    running = host.start()
    assert sorted(j.image_name for j in running) == [obsid(1), obsid(3)]
    slow.set()  # image 2, older than image 3, abandons none of image 1's work
    await settle(d)
    assert host.aborted == {} and host.running == running


# -- the backlog bound --


async def test_backlog_keeps_at_most_backlog_max_images_older_images(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    host = Host()
    d = dispatcher(host, WorkerMode.CONSUMING, backlog_max_images=2, science_pipelines=("mount_torque",))
    for n in (1, 2, 3):
        await arrive(d, clock, obsid(n))
    assert host.aborted == {}
    with caplog.at_level(logging.WARNING):
        await arrive(d, clock, obsid(4))
    [dropped] = host.aborted
    assert dropped not in {j.job_id for j in host.queued}
    assert host.aborted[dropped] == "dropped: the backlog is full"
    assert sorted(j.image_name for j in host.queued) == [obsid(2), obsid(3), obsid(4)]
    assert d.n_dropped_jobs == 1
    assert f"Dropped 1 queued job(s) of {obsid(1)}: the backlog is full" in caplog.text


async def test_backlog_bound_applies_in_murderous_mode_too(clock: Clock) -> None:
    host = Host()
    d = dispatcher(host, WorkerMode.MURDEROUS, backlog_max_images=1, science_pipelines=("mount_torque",))
    for n in (1, 2, 3):
        await arrive(d, clock, obsid(n))
    assert sorted(j.image_name for j in host.queued) == [obsid(2), obsid(3)]
    assert list(host.aborted.values()) == ["dropped: the backlog is full"]


async def test_a_queued_job_is_dropped_once_when_waiting_mode_and_the_backlog_bound_both_apply(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    host = Host()
    d = dispatcher(host, WorkerMode.CONSUMING, backlog_max_images=3, science_pipelines=("mount_torque",))
    for n in (1, 2, 3, 4):
        await arrive(d, clock, obsid(n))
    d.selector.set_mode(worker_mode=WorkerMode.WAITING)  # a backlog of 4 images, then WAITING
    with caplog.at_level(logging.WARNING):
        await arrive(d, clock, obsid(5))
    assert len(host.aborted) == 4 and host.queued == host.jobs_of(obsid(5))
    dropped_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Dropped")]
    assert (d.n_dropped_jobs, host.aborted_twice, len(dropped_lines)) == (4, [], 4), dropped_lines


async def test_stale_queued_work_is_dropped_after_backlog_max_age(clock: Clock) -> None:
    host = Host()
    d = dispatcher(host, backlog_max_age=30.0, science_pipelines=("mount_torque",), catchup_idle_seconds=0)
    await arrive(d, clock, obsid(1))
    clock.now += 20
    await arrive(d, clock, obsid(2))
    running = host.start(1)  # image 2's job runs; image 1's waits
    clock.now += 10  # image 1 has waited exactly 30 s: not yet over
    await housekeeping(d)
    assert host.aborted == {}
    clock.now += 0.5
    await housekeeping(d)
    assert list(host.aborted.values()) == ["dropped: stale (queued over backlog_max_age=30 s)"]
    assert host.queued == [] and host.running == running  # running work is not stale work
    clock.now += 100
    await housekeeping(d)
    assert len(host.aborted) == 1 and d.n_dropped_jobs == 1


# -- catch-up --


async def test_down_selected_detectors_are_caught_up_when_idle(clock: Clock) -> None:
    host = Host(n_workers=2)
    d = dispatcher(host, pattern="ccd_checkerboard", science_pipelines=("sfm", "mount_torque"), catchup_idle_seconds=5)
    await arrive(d, clock, obsid(1))
    await housekeeping(d)  # its own work is queued: not idle
    host.start()
    await housekeeping(d)  # ... or running
    host.finish_all()
    n_made = len(host.made())
    await housekeeping(d)  # idle from now
    clock.now += 4.9
    await housekeeping(d)
    assert len(host.made()) == n_made  # not idle for catchup_idle_seconds yet
    clock.now += 0.2
    await housekeeping(d)
    assert len(host.made()) == n_made + 2
    catchup = [(j.pipeline, j.image_name, j.data_id.detectors, j.trigger, j.priority) for j in host.queued_jobs()]
    # One detector per worker, run spread over the field, sfm only (mount_torque is per image), lowest priority.
    assert catchup == [("sfm", obsid(1), (d,), Trigger.CATCHUP, -2) for d in spread_order(COMCAM, LEFT_OUT)[:2]]
    assert all(visit is None for _, visit, _ in host.submitted[-2:])  # no new visit metrics
    await housekeeping(d)
    assert len(host.made()) == n_made + 2  # the workers have their queued detector each: no more
    # As they are taken, the rest follows, a few at a time, until every left-out detector is done.
    for _ in range(3):
        host.start()
        await housekeeping(d)
        host.finish_all()
    caught = sorted(d for _, _, (d,), _, _ in host.made(Trigger.CATCHUP))
    assert caught == sorted(LEFT_OUT)
    await housekeeping(d)
    assert len(host.made(Trigger.CATCHUP)) == 5


async def test_catch_up_takes_the_newest_image_first(clock: Clock) -> None:
    host = Host(n_workers=1)
    d = dispatcher(host, pattern="ccd_checkerboard", science_pipelines=("sfm",), catchup_idle_seconds=1)
    await arrive(d, clock, obsid(1))
    await arrive(d, clock, obsid(2))
    host.start()
    host.finish_all()
    order = []
    for _ in range(12):
        await housekeeping(d)
        clock.now += 2
        order += [j.image_name for j in host.start()]
        host.finish_all()
    assert order == [obsid(2)] * 5 + [obsid(1)] * 5


async def test_catch_up_jobs_of_a_newer_image_run_before_an_older_ones(clock: Clock) -> None:
    # Two workers, five left-out detectors each: one tick's batch holds image 2's last and image 1's first.
    host = Host(n_workers=2)
    d = dispatcher(host, pattern="ccd_checkerboard", science_pipelines=("sfm",), catchup_idle_seconds=1)
    await arrive(d, clock, obsid(1))
    await arrive(d, clock, obsid(2))
    host.start()
    host.finish_all()
    order: list[str] = []
    for _ in range(12):
        await housekeeping(d)
        clock.now += 2
        order += [j.image_name for j in host.queued_jobs()]  # queue order: what runs first
        host.start()
        host.finish_all()
    assert order == [obsid(2)] * 5 + [obsid(1)] * 5


async def test_catch_up_of_an_old_image_is_not_made_only_to_be_aborted_as_stale(clock: Clock) -> None:
    host = Host(n_workers=1)
    d = dispatcher(
        host, pattern="ccd_checkerboard", science_pipelines=("sfm",), catchup_idle_seconds=1, backlog_max_age=30
    )
    await arrive(d, clock, obsid(1))
    host.start()
    host.finish_all()
    clock.now += 100  # a pause in observing: the image is now older than backlog_max_age
    await housekeeping(d)
    clock.now += 2
    for _ in range(6):
        await housekeeping(d)  # one catch-up detector queued per worker...
        if not host.running:
            host.start(1)  # ... and one running, which takes longer than a tick
        clock.now += 1
    made = [detectors for _, _, detectors, _, _ in host.made(Trigger.CATCHUP)]
    put_off = [r for r in host.aborted.values() if r.startswith("put off: stale")]
    assert put_off == [] and len(made) == len(set(made)), (put_off, made)


async def test_catch_up_work_that_itself_waits_over_backlog_max_age_is_put_off(clock: Clock) -> None:
    host = Host(n_workers=2)
    d = dispatcher(
        host, pattern="ccd_checkerboard", science_pipelines=("sfm",), catchup_idle_seconds=1, backlog_max_age=30
    )
    await arrive(d, clock, obsid(1))
    host.start()
    host.finish_all()
    clock.now += 100
    await housekeeping(d)
    clock.now += 2
    await housekeeping(d)
    catchup = list(host.queued)
    assert [j.trigger for j in catchup] == [Trigger.CATCHUP] * 2
    await arrive(d, clock, obsid(2))  # consuming: catch-up waits behind the new image's work
    host.start(2)
    clock.now += 30
    await housekeeping(d)
    assert host.aborted == {}  # queued exactly backlog_max_age ago: not yet over
    clock.now += 0.5
    await housekeeping(d)
    assert {host.aborted.get(j.job_id) for j in catchup} == {
        "put off: stale (queued over backlog_max_age=30 s); to be caught up later"
    }
    assert {j.data_id.detectors[0] for j in catchup} <= d.images[obsid(1)].left_out


async def test_no_catch_up_with_catchup_idle_seconds_0_or_for_calibrations(clock: Clock) -> None:
    for settings, img_type in (({"catchup_idle_seconds": 0}, "OBJECT"), ({"catchup_idle_seconds": 1}, "BIAS")):
        host = Host()
        d = dispatcher(host, pattern="ccd_checkerboard", **settings)
        await arrive(d, clock, obsid(1), img_type=img_type)
        host.start()
        host.finish_all()
        for _ in range(3):
            await housekeeping(d)
            clock.now += 10
        assert host.made(Trigger.CATCHUP) == [], settings


async def test_catch_up_yields_to_a_new_image_in_waiting_mode(clock: Clock) -> None:
    host = Host(n_workers=2)
    d = dispatcher(
        host, WorkerMode.WAITING, pattern="ccd_checkerboard", science_pipelines=("sfm",), catchup_idle_seconds=1
    )
    await arrive(d, clock, obsid(1))
    host.start()
    host.finish_all()
    await housekeeping(d)
    clock.now += 2
    await housekeeping(d)
    put_off = [j for j in host.queued if j.trigger == Trigger.CATCHUP]
    assert len(put_off) == 2
    await arrive(d, clock, obsid(2))
    assert {host.aborted[j.job_id] for j in put_off} == {
        "put off: a newer image arrived (worker mode WAITING); to be caught up later"
    }
    assert d.n_dropped_jobs == 0 and host.aborted_twice == []  # put off, not lost
    # Its detectors come back when the pool is next idle, after the new image's own left-out ones.
    host.start()
    host.finish_all()
    caught: list[tuple[str, int]] = []
    for _ in range(12):
        await housekeeping(d)
        clock.now += 2
        caught += [(j.image_name, j.data_id.detectors[0]) for j in host.start()]
        host.finish_all()
    # Run newest image first.
    assert [name for name, _ in caught] == [obsid(2)] * 5 + [obsid(1)] * 5
    assert sorted(x for name, x in caught if name == obsid(2)) == sorted(LEFT_OUT)
    assert sorted(x for name, x in caught if name == obsid(1)) == sorted(LEFT_OUT)


async def test_catch_up_yields_to_a_new_image_in_murderous_mode(clock: Clock) -> None:
    host = Host(n_workers=2)
    d = dispatcher(
        host, WorkerMode.MURDEROUS, pattern="ccd_checkerboard", science_pipelines=("sfm",), catchup_idle_seconds=1
    )
    await arrive(d, clock, obsid(1))
    host.start()
    host.finish_all()
    await housekeeping(d)
    clock.now += 2
    await housekeeping(d)
    running = host.start()
    assert [j.trigger for j in running] == [Trigger.CATCHUP] * 2
    await arrive(d, clock, obsid(2))
    assert {host.aborted[j.job_id] for j in running} == {
        "abandoned for a newer image (worker mode MURDEROUS); to be caught up later"
    }
    assert host.running == [] and host.aborted_twice == []  # the workers are the new image's
    assert not any(j.trigger == Trigger.CATCHUP for j in host.queued)  # not requeued at once
    image1 = d.images[obsid(1)]
    assert {j.data_id.detectors[0] for j in running} <= image1.left_out


async def test_new_image_goes_before_queued_catch_up_in_consuming_mode(clock: Clock) -> None:
    host = Host(n_workers=2)
    d = dispatcher(host, pattern="ccd_checkerboard", science_pipelines=("sfm",), catchup_idle_seconds=1)
    await arrive(d, clock, obsid(1))
    host.start()
    host.finish_all()
    await housekeeping(d)
    clock.now += 2
    await housekeeping(d)
    await arrive(d, clock, obsid(2))
    assert host.aborted == {}
    order = [(j.image_name, j.trigger) for j in host.queued_jobs()]
    assert order == [(obsid(2), Trigger.AUTONOMOUS)] * 4 + [(obsid(1), Trigger.CATCHUP)] * 2
    # And the new image's work stops catch-up until the pool is idle again.
    n = len(host.made())
    clock.now += 100
    await housekeeping(d)
    assert len(host.made()) == n


# -- the throughput model --


async def test_successful_sfm_costs_feed_the_throughput_model(clock: Clock) -> None:
    host = Host()
    d = dispatcher(host)
    await arrive(d, clock, obsid(1))
    jobs = host.start()
    for job, state in zip(jobs, [JobState.SUCCEEDED, JobState.FAILED, JobState.SUCCEEDED], strict=False):
        job.state, job.start_time, job.end_time = state, 100.0, 100.0 + (4.0 if job.pipeline == "sfm" else 9.0)
    for job in jobs[:3]:
        d.job_done(job)
    sfm_ok = [j for j in jobs[:3] if j.pipeline == "sfm" and j.state == JobState.SUCCEEDED]
    assert d.throughput.n_costs == len(sfm_ok) and d.throughput.cost_per_detector == 4.0


async def test_arrivals_feed_the_cadence(clock: Clock) -> None:
    host = Host()
    d = dispatcher(host)
    for n in (1, 2, 3):
        await arrive(d, clock, obsid(n))
        clock.now += 30
    assert d.throughput.n_intervals == 2 and d.throughput.cadence == 30.0


# -- generators' files --


def test_is_instrument_obsid() -> None:
    assert is_instrument_obsid(obsid(1), COMCAM)
    assert not is_instrument_obsid(obsid(1, "MC"), COMCAM)  # LSSTCam's, not ComCam's
    assert not is_instrument_obsid("GC101_O_20251115_000001", COMCAM)
    assert not is_instrument_obsid("frame-0001", COMCAM)
    assert not is_instrument_obsid(obsid(1) + "\n", COMCAM)
    assert not is_instrument_obsid(None, COMCAM)  # type: ignore[arg-type]


@pytest.mark.parametrize("good", ["frame-0001", "a", "GC101_O_20251115_000001.fits", "0" + "x" * 127])
def test_check_file_id_accepts_a_plain_name(good: str) -> None:
    assert check_file_id(good) == good


@pytest.mark.parametrize(
    "bad, why",
    [
        ("", "no id"),
        (None, "no id"),
        ("../etc/passwd", "not a plain name"),
        ("a/b", "not a plain name"),
        (".hidden", "not a plain name"),
        ("-rf", "not a plain name"),
        ("frame 1", "not a plain name"),
        ("frame\n", "not a plain name"),
        ("é", "not a plain name"),
        ("0" + "x" * 128, "at most 128 characters"),
    ],
)
def test_check_file_id_refuses_and_says_why(bad: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_file_id(bad)


@pytest.fixture
def file_store(tmp_path: pathlib.Path) -> RawStore:
    root = tmp_path / "files"
    (root / "gc").mkdir(parents=True)
    (root / "gc" / "frame-0001.fits").write_bytes(b"SIMPLE")
    (tmp_path / "outside.fits").write_bytes(b"SIMPLE")
    return RawStore(root, COMCAM)


def test_resolve_file_an_existing_file_under_the_root(file_store: RawStore) -> None:
    path = file_store.root / "gc" / "frame-0001.fits"
    assert resolve_file(f"file://{path}", file_store) == path.resolve()
    assert resolve_file(f"file://localhost{path}", file_store) == path.resolve()


@pytest.mark.parametrize(
    "url, why",
    [
        ("s3://bucket/frame.fits", "S3"),
        ("http://example.org/frame.fits", "scheme 'http'"),
        ("file://otherhost/{root}/gc/frame-0001.fits", "host"),
        ("file://{root}/gc/../../outside.fits", r"\.\."),
        ("file://{root}/../outside.fits", r"\.\."),
        ("file://{root}/gc/missing.fits", "does not exist"),
        ("file://{root}/gc", "not a regular file"),
        ("", "non-empty"),
    ],
)
def test_resolve_file_refuses_and_says_why(file_store: RawStore, url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as info:
        resolve_file(url.format(root=file_store.root), file_store)
    assert "raw" not in str(info.value)  # spoken of as a file, not a raw


def test_resolve_file_refuses_a_symlink_out_of_the_root(file_store: RawStore) -> None:
    link = file_store.root / "gc" / "link.fits"
    link.symlink_to(file_store.root.parent / "outside.fits")
    with pytest.raises(ValueError):
        resolve_file(f"file://{link}", file_store)


def file_arrival(clock: Clock, name: str, url: str, generator: str = "GenericCamera:101") -> ImageArrival:
    return ImageArrival(name, source="largeFileObjectAvailable", arrived=clock.now, url=url, generator=generator)


async def test_a_generator_file_gets_one_job_per_file_pipeline_and_no_selection(
    clock: Clock, file_store: RawStore
) -> None:
    host = Host()
    d = dispatcher(host, file_store=file_store, file_pipelines=("image_stats", "mount_torque"))
    path = file_store.root / "gc" / "frame-0001.fits"
    d.on_arrival(file_arrival(clock, "frame-0001", f"file://{path}"))
    await settle(d)
    assert host.file_jobs == [
        ("image_stats", "frame-0001", path.resolve()),
        ("mount_torque", "frame-0001", path.resolve()),
    ]
    assert all(limit for *_, limit in host.submitted) and all(v is None for _, v, _ in host.submitted)
    assert all(j.data_id.detectors is None for j in host.jobs)  # a file has no detectors
    assert host.selections == [] and d.selector.n_dispatched == 0
    assert d.throughput.n_intervals == 0 and d.n_images == 0 and d.n_files == 1 and d.n_dropped_files == 0
    # A file's job is no detector cost.
    job = host.start()[0]
    job.state, job.start_time, job.end_time = JobState.SUCCEEDED, 1.0, 5.0
    job.pipeline = "sfm"
    d.job_done(job)
    assert d.throughput.n_costs == 0


async def test_files_neither_trigger_nor_suffer_the_worker_mode_or_the_backlog_bound(
    clock: Clock, file_store: RawStore
) -> None:
    host = Host()
    d = dispatcher(
        host, WorkerMode.WAITING, file_store=file_store, backlog_max_images=1, science_pipelines=("mount_torque",)
    )
    path = file_store.root / "gc" / "frame-0001.fits"
    await arrive(d, clock, obsid(1))
    d.on_arrival(file_arrival(clock, "frame-0001", f"file://{path}"))
    await settle(d)
    assert host.aborted == {}  # a file does not make older images' work go
    for n in (2, 3, 4):
        await arrive(d, clock, obsid(n))
    names = {j.image_name for j in host.queued}
    assert len(host.file_jobs) == 1 and len(host.aborted) == 3
    file_job = [j for j in host.queued if j.image_name == "frame-0001"]
    assert len(file_job) == 1 and names == {obsid(4), "frame-0001"}


async def test_stale_file_jobs_are_dropped_after_backlog_max_age(
    clock: Clock, file_store: RawStore, caplog: pytest.LogCaptureFixture
) -> None:
    host = Host()
    d = dispatcher(host, file_store=file_store, backlog_max_age=10.0, catchup_idle_seconds=0)
    path = file_store.root / "gc" / "frame-0001.fits"
    d.on_arrival(file_arrival(clock, "frame-0001", f"file://{path}"))
    await settle(d)
    clock.now += 10
    await housekeeping(d)
    assert host.aborted == {}
    clock.now += 1
    with caplog.at_level(logging.WARNING):
        await housekeeping(d)
    assert list(host.aborted.values()) == ["dropped: stale (queued over backlog_max_age=10 s)"]
    assert "Dropped 1 queued job(s) of file frame-0001 from GenericCamera:101" in caplog.text


@pytest.mark.parametrize(
    "name, url, why",
    [
        ("frame-0002", "file://{root}/gc/frame-0002.fits", "does not exist"),
        ("frame-0001", "s3://bucket/frame-0001.fits", "S3"),
        ("../frame", "file://{root}/gc/frame-0001.fits", "not a plain name"),
        ("", "file://{root}/gc/frame-0001.fits", "no id"),
    ],
)
async def test_a_bad_file_is_one_warning_naming_it_its_generator_and_why(
    clock: Clock, file_store: RawStore, caplog: pytest.LogCaptureFixture, name: str, url: str, why: str
) -> None:
    host = Host()
    d = dispatcher(host, file_store=file_store)
    with caplog.at_level(logging.WARNING):
        d.on_arrival(file_arrival(clock, name, url.format(root=file_store.root)))
        await settle(d)
    assert host.file_jobs == [] and host.submitted == [] and d.n_dropped_files == 1
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    text = record.getMessage()
    assert "dropped" in text and "GenericCamera:101" in text and why in text
    assert (name or "(no id)") in text


async def test_a_dropped_file_announced_again_is_looked_at_again(clock: Clock, file_store: RawStore) -> None:
    host = Host()
    d = dispatcher(host, file_store=file_store)
    path = file_store.root / "gc" / "frame-0002.fits"
    d.on_arrival(file_arrival(clock, "frame-0002", f"file://{path}"))
    await settle(d)
    assert d.n_dropped_files == 1
    path.write_bytes(b"SIMPLE")  # the file is there now
    d.on_arrival(file_arrival(clock, "frame-0002", f"file://{path}"))
    await settle(d)
    assert [name for _, name, _ in host.file_jobs] == ["frame-0002"]
    # Processed once: a repeat of a file that got its jobs is ignored.
    d.on_arrival(file_arrival(clock, "frame-0002", f"file://{path}"))
    await settle(d)
    assert len(host.file_jobs) == 1


async def test_files_dropped_without_a_file_root_or_when_no_pipeline_can_be_queued(
    clock: Clock, file_store: RawStore, caplog: pytest.LogCaptureFixture
) -> None:
    path = file_store.root / "gc" / "frame-0001.fits"
    host = Host()
    d = dispatcher(host)  # no file root
    with caplog.at_level(logging.WARNING):
        d.on_arrival(file_arrival(clock, "frame-0001", f"file://{path}"))
        await settle(d)
    assert d.n_dropped_files == 1 and "no file root is configured" in caplog.text
    caplog.clear()
    host = Host()
    d = dispatcher(host, file_store=file_store, file_pipelines=("nope",))
    with caplog.at_level(logging.WARNING):
        d.on_arrival(file_arrival(clock, "frame-0001", f"file://{path}"))
        await settle(d)
    assert d.n_dropped_files == 1 and "nope cannot be queued: Unknown pipeline 'nope'" in caplog.text


async def test_one_file_pipeline_refused_the_others_run_and_it_is_counted(
    clock: Clock, file_store: RawStore, caplog: pytest.LogCaptureFixture
) -> None:
    host = Host()
    d = dispatcher(host, file_store=file_store, file_pipelines=("nope", "image_stats"))
    path = file_store.root / "gc" / "frame-0001.fits"
    with caplog.at_level(logging.WARNING):
        d.on_arrival(file_arrival(clock, "frame-0001", f"file://{path}"))
        await settle(d)
    assert [p for p, *_ in host.file_jobs] == ["image_stats"]
    assert d.n_dropped_files == 0 and d.n_dropped_jobs == 1
    assert "1 job(s) queued; dropped: nope cannot be queued" in caplog.text


async def test_large_file_of_the_instruments_own_image_is_its_end_readout(clock: Clock, file_store: RawStore) -> None:
    host = Host()
    d = dispatcher(host, file_store=file_store, science_pipelines=("mount_torque",))
    d.on_arrival(file_arrival(clock, obsid(1), "file:///data/raw.fits", generator="CCCamera"))
    await settle(d)
    assert host.file_jobs == [] and [(p, i) for p, i, *_ in host.made()] == [("mount_torque", obsid(1))]
    await arrive(d, clock, obsid(1))  # its endReadout, heard second: ignored
    assert len(host.made()) == 1 and d.n_images == 1
