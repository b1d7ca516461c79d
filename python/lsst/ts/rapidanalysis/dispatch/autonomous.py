"""Autonomous processing: every image the camera announces becomes jobs, newest first, within what the pool affords.

For each new image (`lsst.ts.rapidanalysis.data.image_listener.ImageArrival`):

1. its kind decides the pipelines (`AutonomousSettings`): science images → ``sfm`` on the
   selected detectors (gathered as a visit) and ``mount_torque``; LATISS dispersed images →
   ``spectrum_examiner`` and ``mount_torque``; bias, dark and flat → ``image_stats`` on the selected
   detectors (ISR statistics only);
2. the focal-plane selector (`lsst.ts.rapidanalysis.dispatch.focal_plane`) chooses the detectors:
   the manual pattern, an automatic down-selection from the measured cost per detector and the
   observed cadence, or everything for a guaranteed exposure; a change is announced with the
   ``focalPlaneMode`` event;
3. the worker mode decides what happens to older work (ra-algorithms §1 "Worker modes"):

   * ``WAITING``: queued jobs of older images are dropped (each gets its jobResult, aborted
     with the reason) — only the newest image is worked on;
   * ``CONSUMING``: older jobs stay queued and run, newest first, when the pool has room;
   * ``MURDEROUS``: as consuming, but *running* jobs of backlog images (older than the image
     that was newest until now) are abandoned and put back in the backlog; the work of the
     newest images is never abandoned;

   "newest" is the order images are heard in, not the order their kinds are told in: an image told
   after a newer one (its raw read late) is older work from the start (its jobs queued below the
   newer images', dropped at once in waiting mode), and it abandons nothing;

4. the backlog is bounded: at most ``backlog_max_images`` older images keep queued jobs and no
   queued job waits longer than ``backlog_max_age``; what falls out is dropped and reported;
5. when no image's work has been queued or running for ``catchup_idle_seconds``, the detectors
   down-selection left out of recent images are processed (trigger ``catchup``, lowest priority),
   newest image first, a few at a time so the workers stay busy until the next image: its jobs
   go first, murderous mode abandons running catch-up work (the detectors go back to be caught
   up later), and waiting mode drops queued catch-up work the same way.

No image is skipped silently: it is processed, deliberately down-selected (``focalPlaneMode``
and one log line per image), or dropped (a jobResult per job and one log line per image). An
image whose kind cannot be told (LATISS, or no image type announced: the kind is read from a raw,
which never arrived complete within ``raw_wait_timeout`` or is unreadable) gets no pipeline, and
one jobResult and results-database row of its own: pipeline `UNDISPATCHED_PIPELINE`, exit code 3
and an errorReport saying why and what was looked for (exit code 255 if autonomous processing
stops while it waits).

Files from generators: a ``largeFileObjectAvailable`` whose ``id`` is not an obsid of the CSC's
instrument (a GenericCamera frame, say) announces a *file* (`is_instrument_obsid` decides). Its
``file://`` URL must name an existing file under the configured file root (`resolve_file`, with
the raw store's URL rules); then each of ``file_pipelines`` gets one job with the file as input,
named by the announced ``id`` (jobResult.imageName, the results database). A file has no
detectors and is no exposure of the instrument: no focal-plane selection, no ``focalPlaneMode``,
nothing fed to the throughput model, and it neither triggers nor suffers the worker mode and the
``backlog_max_images`` bound of the instrument's images; its jobs share the queue (priority 0,
newest first) and nothing waits past ``backlog_max_age``. A bad URL, a missing file, an id that is
not a plain name or a pipeline that cannot be queued is one WARNING line naming the file, the
generator and why ("dropped: ..."), and is counted (`AutonomousDispatcher.n_dropped_files`).
``largeFileObjectAvailable`` of the instrument's own images is handled as its ``endReadout`` (the
first of the two is processed, the other ignored).

Jobs are made by the `JobMaker` (`lsst.ts.rapidanalysis.dispatch.job_maker`), by the same rule
as ``processData``'s, split over the selected detectors or not as each pipeline declares; they are
queued through the host (`DispatcherHost.submit_jobs`, which records them and registers the visit
to gather), and the queue is read and jobs are aborted through the `JobManager` directly.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import pathlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from ..config_schema import CONFIG_SCHEMA
from ..data.camera import Instrument
from ..data.data_id import DataIdError, parse_data_id
from ..data.image_listener import ImageArrival
from ..data.raw_store import RawStore
from ..sal.config_validator import schema_defaults
from .focal_plane import FocalPlaneSelector, Selection, ThroughputModel, WorkerMode, spread_order
from .gather import VisitGather
from .job_maker import FILE_ID_RE, JobMaker, Split, check_file_id
from .job_manager import JobManager
from .jobs import ExitCode, Job, JobState, Trigger

__all__ = [
    "AutonomousSettings",
    "AutonomousDispatcher",
    "DispatcherHost",
    "ImageKind",
    "CALIBRATION_TYPES",
    "image_kind_of",
    "UNDISPATCHED_PIPELINE",
    "FILE_ID_RE",
    "check_file_id",
    "is_instrument_obsid",
    "resolve_file",
]

#: Image types that get ISR statistics only.
CALIBRATION_TYPES = frozenset({"BIAS", "DARK", "FLAT", "SFLAT", "DFLAT"})
#: jobResult.pipeline of an image that got no pipeline because its kind could not be told.
UNDISPATCHED_PIPELINE = "image_kind"
#: Priorities: the newest images' jobs first, then backlog put back by murderous mode or told after a newer
#: image, then catch-up.
_REQUEUED_PRIORITY = -1
_CATCHUP_PRIORITY = -2
#: Generator files remembered (for staleness and repeats); their jobs are long done by then.
_FILES_REMEMBERED = 200
_URL_SHOWN = 200


def is_instrument_obsid(image_name: str, instrument: Instrument) -> bool:
    """Whether ``image_name`` is an obsid of ``instrument`` (as processData's dataId parsing says)."""
    if not isinstance(image_name, str):
        return False
    try:
        parse_data_id(json.dumps({"obsid": image_name}), instrument)
    except DataIdError:
        return False
    return True


def resolve_file(url: str, store: RawStore) -> pathlib.Path:
    """The path of a file announced by URL, if it may be read: `RawStore.resolve_url`'s rules, and it exists.

    Parameters
    ----------
    url : `str`
        ``largeFileObjectAvailable.url``.
    store : `RawStore`
        Rooted at the directory generator files must be under (``autonomous.file_root``).

    Returns
    -------
    path : `pathlib.Path`
        The resolved path of an existing regular file under the root.

    Raises
    ------
    ValueError
        Saying why not: not ``file://`` (``s3://`` included), a host, ``..``, outside the root
        (`lsst.ts.rapidanalysis.data.raw_store.RawUrlError`), missing, or not a regular file.
        May touch the file system: call it from a thread.
    """
    try:
        path = store.resolve_url(url)
    except ValueError as e:
        # RawStore speaks of raws; here it is the root generator files must be under.
        message = str(e).replace("raw URL", "URL").replace("raw store root", "file root")
        raise ValueError(message.replace(" for the raw store", "")) from None
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if not path.is_file():
        raise ValueError(f"{path} is not a regular file")
    return path


class ImageKind:
    """What an image is, for choosing pipelines."""

    SCIENCE = "science"
    DISPERSED = "dispersed"
    CALIBRATION = "calibration"


def image_kind_of(instrument: str, img_type: object, grating: object = None) -> str:
    """What an image is from its ``IMGTYPE`` and (LATISS) ``GRATING`` cards, as the camera writes them.

    ``IMGTYPE`` values seen in real raws: absent, BIAS, DARK, FLAT, OBJECT, ENGTEST, ACQ, CWFS,
    SKYEXP, UNKNOWN (any case). BIAS, DARK and FLAT (and SFLAT, DFLAT) are calibrations; every other
    value, or none, is a sky image: science, or dispersed when LATISS has a grating in the beam
    (``GRATING`` not ``empty``/``empty_1``/``none``). Pipelines that cannot use a sky image of some
    type say so themselves (``sfm`` skips CWFS, a defocused wavefront image).
    """
    if str(img_type or "").strip().upper() in CALIBRATION_TYPES:
        return ImageKind.CALIBRATION
    disperser = str(grating or "").strip().lower()
    if instrument == "LATISS" and disperser and not disperser.startswith(("empty", "none")):
        return ImageKind.DISPERSED
    return ImageKind.SCIENCE


_DEFAULTS = schema_defaults(CONFIG_SCHEMA, "autonomous")


@dataclasses.dataclass(frozen=True)
class AutonomousSettings:
    """How autonomous processing behaves (the CSC's ``autonomous`` configuration).

    Attributes
    ----------
    science_pipelines, dispersed_pipelines, calibration_pipelines : `tuple` [`str`]
        Pipelines per kind of image; per-detector ones run on the selected detectors.
    file_pipelines : `tuple` [`str`]
        Pipelines run on each file a generator announces (one job each, the file as input).
    backlog_max_images : `int`
        Older images that may keep queued jobs.
    backlog_max_age : `float`
        Seconds a queued job may wait before it is dropped as stale.
    catchup_idle_seconds : `float`
        Idle time after which down-selected detectors are caught up (0: never).
    catchup_max_images : `int`
        Recent images whose down-selected detectors are remembered for catch-up.
    """

    # The defaults are the schema's (the one place they are written).
    science_pipelines: tuple[str, ...] = tuple(_DEFAULTS["science_pipelines"])
    dispersed_pipelines: tuple[str, ...] = tuple(_DEFAULTS["dispersed_pipelines"])
    calibration_pipelines: tuple[str, ...] = tuple(_DEFAULTS["calibration_pipelines"])
    file_pipelines: tuple[str, ...] = tuple(_DEFAULTS["file_pipelines"])
    backlog_max_images: int = _DEFAULTS["backlog_max_images"]
    backlog_max_age: float = _DEFAULTS["backlog_max_age"]
    catchup_idle_seconds: float = _DEFAULTS["catchup_idle_seconds"]
    catchup_max_images: int = _DEFAULTS["catchup_max_images"]

    @classmethod
    def from_config(cls, autonomous: Mapping[str, Any]) -> AutonomousSettings:
        """The settings of the CSC's ``autonomous`` configuration (validated, defaults filled in).

        Its other keys (``enabled``, ``pattern``, ``generators``...) are the CSC's own.
        """
        return cls(
            science_pipelines=tuple(autonomous["science_pipelines"]),
            dispersed_pipelines=tuple(autonomous["dispersed_pipelines"]),
            calibration_pipelines=tuple(autonomous["calibration_pipelines"]),
            file_pipelines=tuple(autonomous["file_pipelines"]),
            backlog_max_images=int(autonomous["backlog_max_images"]),
            backlog_max_age=float(autonomous["backlog_max_age"]),
            catchup_idle_seconds=float(autonomous["catchup_idle_seconds"]),
            catchup_max_images=int(autonomous["catchup_max_images"]),
        )


class DispatcherHost(Protocol):
    """What the dispatcher needs from the CSC: what only the CSC can do (SAL, raws, the database).

    Jobs are made by the `JobMaker` and watched, counted and aborted through the `JobManager`,
    both given to the dispatcher directly.
    """

    def submit_jobs(self, jobs: list[Job], visit: VisitGather | None, *, ignore_limit: bool) -> None: ...

    async def image_kind(self, arrival: ImageArrival) -> str: ...

    async def image_failed(self, arrival: ImageArrival, exit_code: int, reason: str) -> None: ...

    def publish_selection(self, selection: Selection, n_workers: int) -> None: ...

    def image_down_selected(
        self, image_name: str, left_out: frozenset[int], n_all: int, n_workers: int, why: str
    ) -> None: ...


@dataclasses.dataclass
class _Image:
    """What the dispatcher remembers of one image."""

    arrival: ImageArrival
    rank: int
    kind: str
    selection: Selection | None
    job_ids: set[str] = dataclasses.field(default_factory=set)
    left_out: set[int] = dataclasses.field(default_factory=set)
    catching_up: bool = False


@dataclasses.dataclass
class _File:
    """What the dispatcher remembers of one generator file."""

    arrival: ImageArrival
    path: pathlib.Path
    job_ids: set[str] = dataclasses.field(default_factory=set)


class AutonomousDispatcher:
    """Turn image arrivals into jobs; see the module docstring.

    Parameters
    ----------
    host : `DispatcherHost`
        The CSC.
    selector : `FocalPlaneSelector`
        Focal-plane mode and per-image selection.
    settings : `AutonomousSettings`
        Behaviour.
    log : `logging.Logger`, optional
    file_store : `RawStore`, optional
        Rooted where generator files must be (``autonomous.file_root``); None: every generator
        file is dropped, saying so.
    job_maker : `JobMaker`, optional
        Makes the jobs of each image and file; None: no job is made (each pipeline's dispatch
        fails, saying so).
    job_manager : `JobManager`, optional
        The queue the jobs go to, for its workers and its queued and running jobs; None: no
        workers, nothing queued or running.
    """

    def __init__(
        self,
        host: DispatcherHost,
        selector: FocalPlaneSelector,
        settings: AutonomousSettings,
        log: logging.Logger | None = None,
        *,
        file_store: RawStore | None = None,
        job_maker: JobMaker | None = None,
        job_manager: JobManager | None = None,
    ) -> None:
        self.host = host
        self.job_maker = job_maker
        self.job_manager = job_manager
        self.selector = selector
        # The selector's model, which its automatic down-selection reads: fed here.
        self.throughput: ThroughputModel = selector.throughput
        self._imaging = {d.id for d in selector.instrument.science_detectors}
        self.settings = settings
        self.log = log or logging.getLogger(__name__)
        self.images: collections.OrderedDict[str, _Image] = collections.OrderedDict()
        self._job_image: dict[str, str] = {}
        # When each queued catch-up job was queued (time.monotonic), for its staleness.
        self._catchup_queued_at: dict[str, float] = {}
        self._rank = 0
        self._seen: collections.deque[str] = collections.deque(maxlen=1000)
        self._tasks: set[asyncio.Task] = set()
        # Jobs whose abort is spawned and not yet done: still queued or running meanwhile, so every rule
        # that picks jobs skips them (else one job is aborted, counted and logged twice, or requeued twice).
        self._aborting: set[str] = set()
        self._housekeeping: asyncio.Task | None = None
        self._idle_since: float | None = None
        self._last_selection_key: tuple | None = None
        self.n_dropped_jobs = 0
        self.n_images = 0
        #: Images that got no job (their kind could not be told); each had one jobResult saying why.
        self.n_undispatched = 0
        # Generator files: kept apart from the instrument's images (see the module docstring).
        self.file_store = file_store
        self.files: collections.OrderedDict[str, _File] = collections.OrderedDict()
        self._file_job: dict[str, str] = {}
        self.n_files = 0
        #: Generator files that got no job (a bad URL, a missing file, no pipeline queued).
        self.n_dropped_files = 0

    # -- life cycle --

    def start(self) -> None:
        """Start the backlog and catch-up housekeeping."""
        if self._housekeeping is None or self._housekeeping.done():
            self._housekeeping = asyncio.create_task(self._housekeeping_loop())

    async def stop(self) -> None:
        """Stop; images in flight are left to the job manager (which aborts them on stop)."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            self._housekeeping = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- arrivals --

    def on_arrival(self, arrival: ImageArrival) -> None:
        """An image was announced (called from the listener, on the loop)."""
        if arrival.image_name in self._seen:
            return  # the same image announced twice (endReadout and a file), or a repeat
        self._seen.append(arrival.image_name)
        # Ranked as heard: "newest" is arrival order, not the order kinds are told (LATISS reads a raw for it).
        self._rank += 1
        task = asyncio.create_task(self._handle(arrival, self._rank))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, arrival: ImageArrival, rank: int) -> None:
        try:
            if arrival.source == "largeFileObjectAvailable" and not is_instrument_obsid(
                arrival.image_name, self.selector.instrument
            ):
                await self._handle_file(arrival)
            else:
                await self._handle_image(arrival, rank)
        except Exception:  # never lost in an unawaited task
            self.log.exception("%s from %s dropped: dispatching it failed", arrival.image_name, arrival.source)

    async def _handle_image(self, arrival: ImageArrival, rank: int) -> None:
        try:
            kind = await self.host.image_kind(arrival)
        except asyncio.CancelledError:
            # Stopped while waiting for its raw: its jobResult says so, as a queued job's would.
            reason = "aborted: autonomous processing stopped before the image's kind could be told"
            await self._image_failed(arrival, ExitCode.ABORTED, reason)
            raise
        except Exception as e:
            kinds = "a science, dispersed or calibration image"
            reason = f"no pipeline run: cannot tell whether {arrival.image_name} is {kinds}: {e}"
            await self._image_failed(arrival, ExitCode.NO_INPUT, reason)
            return
        try:
            self.throughput.record_arrival(arrival.arrived)
        except ValueError:
            # Heard before the previous image, whose kind was told sooner (LATISS reads raws for
            # it): one cadence interval fewer, the image itself still processed.
            pass
        self.n_images += 1
        self.selector.n_workers = self.n_workers
        selection = self.selector.select(arrival.image_name)
        image = _Image(arrival, rank, kind, selection)
        self._announce(image)
        # Told after a newer image: older work from the start, so below the newer images' work (jobs of
        # one priority run newest-submitted first).
        late = any(old.rank > rank for old in self.images.values())
        priority = _REQUEUED_PRIORITY if late else 0
        pipelines = {
            ImageKind.SCIENCE: self.settings.science_pipelines,
            ImageKind.DISPERSED: self.settings.dispersed_pipelines,
            ImageKind.CALIBRATION: self.settings.calibration_pipelines,
        }[kind]
        # The job maker splits each pipeline's work over the selected detectors (or not), by its one rule.
        for pipeline in pipelines:
            self._submit(
                image, pipeline, {"obsid": arrival.image_name}, Trigger.AUTONOMOUS, priority, selection.detectors
            )
        if kind == ImageKind.SCIENCE:
            image.left_out = self._imaging - set(selection.detectors)
            if image.left_out:  # the image's record counts them as dropped until caught up
                self.host.image_down_selected(
                    arrival.image_name, frozenset(image.left_out), len(self._imaging), self.n_workers, selection.reason
                )
        self.images[arrival.image_name] = image
        for name in [name for name, old in self.images.items() if old.rank > rank]:
            self.images.move_to_end(name)  # kept in arrival order, the newest last
        self._make_room(image)
        while len(self.images) > max(self.settings.catchup_max_images, self.settings.backlog_max_images + 1):
            old_name, old = self.images.popitem(last=False)
            for job_id in old.job_ids:
                self._job_image.pop(job_id, None)
                self._catchup_queued_at.pop(job_id, None)

    async def _image_failed(self, arrival: ImageArrival, exit_code: int, reason: str) -> None:
        """The image's one jobResult (and database row) when it gets no job; counted in `n_undispatched`."""
        self.n_undispatched += 1
        try:
            await self.host.image_failed(arrival, exit_code, reason)
        except Exception:
            self.log.exception("Image %s got no job (%s), and reporting that failed", arrival.image_name, reason)

    async def _handle_file(self, arrival: ImageArrival) -> None:
        """A generator's file: one job per file pipeline on it, or one warning saying why not."""
        self.n_files += 1
        try:
            check_file_id(arrival.image_name)
            if self.file_store is None:
                raise ValueError("no file root is configured")
            path = await asyncio.to_thread(resolve_file, arrival.url, self.file_store)
        except ValueError as e:
            self._drop_file(arrival, str(e))
            return
        if not self.settings.file_pipelines:
            self.log.info(
                "File %s from %s not processed: autonomous.file_pipelines is empty",
                arrival.image_name,
                arrival.generator,
            )
            return
        record = _File(arrival, path)
        failures = []
        for pipeline in self.settings.file_pipelines:
            try:
                jobs = [self._job_maker().file_job(pipeline, arrival.image_name, str(path), Trigger.AUTONOMOUS)]
                self.host.submit_jobs(jobs, None, ignore_limit=True)
            except Exception as e:
                failures.append(f"{pipeline} cannot be queued: {e}")
                continue
            for job in jobs:
                record.job_ids.add(job.job_id)
                self._file_job[job.job_id] = arrival.image_name
        if not record.job_ids:
            self._drop_file(arrival, "; ".join(failures))
            return
        self.files[arrival.image_name] = record
        while len(self.files) > _FILES_REMEMBERED:
            _, old = self.files.popitem(last=False)
            for job_id in old.job_ids:
                self._file_job.pop(job_id, None)
        if failures:
            self.n_dropped_jobs += len(failures)
            self.log.warning(
                "File %s (%s) from %s: %d job(s) queued; dropped: %s",
                arrival.image_name,
                arrival.url[:_URL_SHOWN],
                arrival.generator,
                len(record.job_ids),
                "; ".join(failures),
            )

    def _drop_file(self, arrival: ImageArrival, reason: str) -> None:
        """One warning line naming the file, its generator and why it got no job."""
        self.n_dropped_files += 1
        # Not remembered as seen: announced again (the file fixed, say), it is looked at again.
        if arrival.image_name in self._seen:
            self._seen.remove(arrival.image_name)
        self.log.warning(
            "File %s (%s) from %s dropped: %s",
            arrival.image_name or "(no id)",
            arrival.url[:_URL_SHOWN] or "no URL",
            arrival.generator,
            reason,
        )

    def _submit(
        self,
        image: _Image,
        pipeline: str,
        data_id: dict[str, Any],
        trigger: Trigger,
        priority: int,
        selected: Iterable[int] | None = None,
    ) -> list[Job]:
        """Make and queue the image's jobs of one pipeline; return them (none if that failed, saying so)."""
        try:
            made = self._job_maker().make(
                pipeline,
                data_id,
                trigger,
                priority=priority,
                selected=None if selected is None else sorted(selected),
            )
            jobs = made.jobs
            # Autonomous work is never refused for a full queue: the backlog bound drops older work instead.
            self.host.submit_jobs(jobs, made.visit, ignore_limit=True)
        except Exception as e:
            self.log.warning("Image %s: %s not dispatched: %s", image.arrival.image_name, pipeline, e)
            return []
        for job in jobs:
            image.job_ids.add(job.job_id)
            self._job_image[job.job_id] = image.arrival.image_name
        return jobs

    def _announce(self, image: _Image) -> None:
        selection = image.selection
        assert selection is not None
        key = (selection.pattern, selection.phase, frozenset(selection.detectors), selection.decided_by)
        if key != self._last_selection_key:
            self._last_selection_key = key
            self.host.publish_selection(selection, self.n_workers)
        n_all = len(self._imaging)
        if len(selection.detectors) < n_all:
            self.log.info(
                "%s (%s): %d of %d detectors (%s)",
                image.arrival.image_name,
                image.kind,
                len(selection.detectors),
                n_all,
                selection.reason,
            )

    # -- older work --

    def _make_room(self, image: _Image) -> None:
        """Apply the worker mode and the backlog bound, the image's jobs queued and the image remembered."""
        images = list(self.images.values())  # in arrival order
        mode = self.selector.mode.worker_mode
        waiting = "a newer image arrived (worker mode WAITING)"
        if image is images[-1]:
            if mode == WorkerMode.WAITING:
                self._drop_queued(lambda job, old: old is not image, waiting)
            elif mode == WorkerMode.MURDEROUS and len(images) > 1:
                self._preempt_backlog(images[-2].rank)
        elif mode == WorkerMode.WAITING:
            # Told after a newer image: only the newest is worked on.
            self._drop_queued(lambda job, old: old is image, waiting)
        # The bound: the newest image and the backlog_max_images before it keep their queued jobs.
        keep = {img.arrival.image_name for img in images[-(self.settings.backlog_max_images + 1) :]}
        self._drop_queued(lambda job, old: old.arrival.image_name not in keep, "the backlog is full")

    def _image_of(self, job: Job) -> _Image | None:
        name = self._job_image.get(job.job_id)
        return self.images.get(name) if name else None

    def _drop_queued(self, which: Callable[[Job, _Image], bool], reason: str) -> None:
        """Drop the queued jobs ``which(job, image)`` picks (catch-up ones are put off); one line per image."""
        dropped: dict[str, int] = collections.Counter()
        deferred = 0
        for job in self._queued_jobs():
            if job.job_id in self._aborting:
                continue
            old = self._image_of(job)
            if old is None or not which(job, old):
                continue
            if job.trigger == Trigger.CATCHUP and old.arrival.image_name in self.images:
                # Not lost: back to be caught up when the pool is next quiet.
                old.left_out.update(job.data_id.detectors or ())
                deferred += 1
                self._spawn_abort(job.job_id, f"put off: {reason}; to be caught up later")
                continue
            dropped[old.arrival.image_name] += 1
            self._spawn_abort(job.job_id, f"dropped: {reason}")
        for name, count in dropped.items():
            self.n_dropped_jobs += count
            self.log.warning("Dropped %d queued job(s) of %s: %s", count, name, reason)
        if deferred:
            self.log.debug("Put off %d queued catch-up job(s): %s", deferred, reason)

    def _preempt_backlog(self, previous_rank: int) -> None:
        """Abandon running jobs of images older than the previous newest one (``previous_rank``); requeue them.

        Catch-up jobs are backlog work of any image: abandoned, and their detectors left to be
        caught up again when the pool is next quiet.
        """
        for job in self._running_jobs():
            old = self._image_of(job)
            if old is None or job.job_id in self._aborting:
                continue
            if job.trigger == Trigger.CATCHUP:
                old.left_out.update(job.data_id.detectors or ())
                reason = "abandoned for a newer image (worker mode MURDEROUS); to be caught up later"
                self._spawn_abort(job.job_id, reason)
                continue
            if old.rank >= previous_rank:
                continue
            self.log.info(
                "Abandoning backlog job %s of %s for a newer image; requeued", job.job_id, old.arrival.image_name
            )
            self._aborting.add(job.job_id)  # _requeue aborts it first
            self._spawn(self._requeue(job, old))

    async def _requeue(self, job: Job, image: _Image) -> None:
        await self._abort_job(job.job_id, "abandoned for a newer image (worker mode MURDEROUS); requeued")
        data_id: dict[str, Any] = {"obsid": image.arrival.image_name}
        if job.data_id.detectors:
            data_id["detectors"] = list(job.data_id.detectors)
        # The same jobs again (a per-detector job's visit is already being gathered).
        jobs = self._job_maker().make(job.pipeline, data_id, job.trigger, priority=_REQUEUED_PRIORITY).jobs
        for new in jobs:
            new.config = dict(job.config)
        self.host.submit_jobs(jobs, None, ignore_limit=True)
        for new in jobs:
            image.job_ids.add(new.job_id)
            self._job_image[new.job_id] = image.arrival.image_name

    # -- the job maker and the job manager --

    def _job_maker(self) -> JobMaker:
        if self.job_maker is None:
            raise RuntimeError("no job maker (the CSC is not configured)")
        return self.job_maker

    @property
    def n_workers(self) -> int:
        """Workers (threads) of the pool."""
        return self.job_manager.slots if self.job_manager is not None else 0

    def _queued_jobs(self) -> list[Job]:
        return self.job_manager.queued_jobs() if self.job_manager is not None else []

    def _running_jobs(self) -> list[Job]:
        return self.job_manager.running_jobs() if self.job_manager is not None else []

    async def _abort_job(self, job_id: str, reason: str) -> None:
        """Abort a job if it is still queued or running (it gets its jobResult with the reason)."""
        try:
            if self.job_manager is not None:
                await self.job_manager.abort(job_id, reason=reason)
        except (KeyError, ValueError):
            pass  # it ended meanwhile
        finally:
            self._aborting.discard(job_id)

    def _spawn_abort(self, job_id: str, reason: str) -> None:
        """Abort a job in a task of its own; until that is done, no rule picks the job again."""
        self._aborting.add(job_id)
        self._spawn(self._abort_job(job_id, reason))

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future) -> None:
        """Forget a finished task; an exception it raised (a job not aborted or requeued) is logged."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("Autonomous dispatch step failed", exc_info=task.exception())

    # -- results --

    def job_done(self, job: Job) -> None:
        """A job ended: measured sfm costs of the instrument's detectors feed the throughput model."""
        self._catchup_queued_at.pop(job.job_id, None)
        if self._file_job.pop(job.job_id, None) is not None:
            return  # a generator's whole file: no detector's cost
        if job.pipeline == "sfm" and job.state == JobState.SUCCEEDED and job.duration > 0:
            self.throughput.record_cost(job.duration)

    # -- housekeeping: stale backlog and catch-up --

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self._age_out()
                self._maybe_catch_up()
            except Exception:
                self.log.exception("Autonomous housekeeping failed")

    def _age_out(self) -> None:
        now = time.monotonic()

        def waited(job: Job, image: _Image) -> float:
            # An image's own jobs are queued as it arrives; catch-up is queued late on purpose, for images of any
            # age: counted from the image's arrival, an old image's catch-up would be stale at once, put off, and
            # made again at the next tick, over and over.
            return now - self._catchup_queued_at.get(job.job_id, image.arrival.arrived)

        self._drop_queued(
            lambda job, old: waited(job, old) > self.settings.backlog_max_age,
            f"stale (queued over backlog_max_age={self.settings.backlog_max_age:g} s)",
        )
        stale_files = {
            name for name, record in self.files.items() if now - record.arrival.arrived > self.settings.backlog_max_age
        }
        if stale_files:
            self._drop_queued_files(
                stale_files, f"stale (queued over backlog_max_age={self.settings.backlog_max_age:g} s)"
            )

    def _drop_queued_files(self, names: set[str], reason: str) -> None:
        """Drop the queued jobs of these generator files (each gets its jobResult); one line per file."""
        dropped: dict[str, int] = collections.Counter()
        for job in self._queued_jobs():
            name = self._file_job.get(job.job_id)
            if name is None or name not in names or job.job_id in self._aborting:
                continue
            dropped[name] += 1
            self._spawn_abort(job.job_id, f"dropped: {reason}")
        for name, count in dropped.items():
            self.n_dropped_jobs += count
            record = self.files[name]
            self.log.warning(
                "Dropped %d queued job(s) of file %s from %s: %s", count, name, record.arrival.generator, reason
            )

    def _maybe_catch_up(self) -> None:
        """When images' own work has left the pool for catchup_idle_seconds, keep it fed with catch-up work."""
        if self.settings.catchup_idle_seconds <= 0:
            return
        queued = self._queued_jobs()
        running = self._running_jobs()
        now = time.monotonic()
        if any(job.trigger != Trigger.CATCHUP for job in queued + running):
            self._idle_since = None
            return
        if self._idle_since is None:
            self._idle_since = now
        if now - self._idle_since < self.settings.catchup_idle_seconds:
            return
        # What down-selection left out: the science pipelines that run per detector.
        maker = self._job_maker()
        pipelines = [p for p in self.settings.science_pipelines if maker.split(p, Trigger.CATCHUP) != Split.IMAGE]
        if not pipelines:
            return
        # One detector per worker waiting behind the running ones: the workers never starve between
        # housekeeping ticks, and a new image finds at most that much catch-up work ahead of it.
        room = self.n_workers - sum(job.trigger == Trigger.CATCHUP for job in queued)
        plan: list[tuple[_Image, int, str]] = []  # in the order they are to run
        while room > 0:
            image = next((img for img in reversed(self.images.values()) if img.left_out), None)
            if image is None:
                break
            # Spread over the focal plane, as a visit's own detectors are.
            batch = spread_order(self.selector.instrument, image.left_out)[:room]
            if not image.catching_up:
                image.catching_up = True
                self.log.info(
                    "Catching up %s: %d down-selected detector(s)", image.arrival.image_name, len(image.left_out)
                )
            image.left_out.difference_update(batch)
            room -= len(batch)
            plan += [(image, detector, pipeline) for detector in batch for pipeline in pipelines]
        # Jobs of one priority run newest-submitted first: submitted last to run first.
        for image, detector, pipeline in reversed(plan):
            jobs = self._submit(
                image,
                pipeline,
                {"obsid": image.arrival.image_name, "detectors": [detector]},
                Trigger.CATCHUP,
                _CATCHUP_PRIORITY,
            )
            self._catchup_queued_at.update((job.job_id, now) for job in jobs)

    # -- reporting --

    def backlog(self) -> int:
        """Queued autonomous jobs of images older than the newest."""
        newest = next(reversed(self.images), None)
        return sum(
            1
            for job in self._queued_jobs()
            if (img := self._image_of(job)) is not None and img.arrival.image_name != newest
        )
