"""RapidAnalysisCsc: ``processData`` commands become jobs on a Dask pool; results go out as events,
telemetry, database rows and product files."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
import pathlib
import re
import sys
import time
import types
from typing import Any

from lsst.ts.idl.enums.OCPS import SalIndex

from . import __version__
from .config_schema import CONFIG_DIR, CONFIG_SCHEMA
from .data.camera import Instrument, get_instrument
from .data.data_id import DataId, DataIdError, parse_data_id
from .data.image_listener import ImageArrival, ImageListener
from .data.mount_listener import MountListener
from .data.mount_telemetry import MountTelemetryBuffer
from .data.raw_store import RawStore
from .dispatch.autonomous import (
    UNDISPATCHED_PIPELINE,
    AutonomousDispatcher,
    AutonomousSettings,
)
from .dispatch.focal_plane import FocalPlaneSelector, Selection
from .dispatch.gather import Gatherer, VisitGather
from .dispatch.inputs import InputResolver
from .dispatch.job_maker import JobMaker, JobRequestError
from .dispatch.job_manager import JobManager, QueueFullError
from .dispatch.jobs import ExitCode, Job, JobState, Trigger, new_job_id
from .dispatch.path_map import PathMap, PathMapError
from .dispatch.pool import PoolLostError, WorkerPool
from .pipelines.registry import PipelineRegistry
from .results.publication import JobPublisher, fit_text
from .results.recorder import JobRecorder
from .sal import ConfigurableCsc, ExpectedError, SalRetCode, State, current_tai
from .sal.topics import ControllerCommand, ControllerEvent, ControllerTelemetry

__all__ = ["RapidAnalysisCsc", "ErrorCode", "CONFIG_SCHEMA", "run_rapid_analysis"]

_UNEXPANDED_RE = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*")
# How long processData may take to be queued in asynchronous mode (scripts use ~5 s timeouts).
_QUEUE_ACK_TIMEOUT = 5.0


class ErrorCode(enum.IntEnum):
    """errorCode values of the RapidAnalysis CSC."""

    POOL_LOST = 1
    POOL_START_FAILED = 2
    DATABASE_FAILED = 3
    POOL_TOO_SMALL = 4  # fewer than min_workers workers for worker_restart_timeout


def _expand(text: str, what: str) -> str:
    """Expand ~ and $VARS; an undefined variable is a configuration error."""
    expanded = os.path.expanduser(os.path.expandvars(text))
    leftover = _UNEXPANDED_RE.search(expanded)
    if leftover:
        raise ExpectedError(f"{what}: environment variable {leftover.group(0)} is not set (value {text!r})")
    return expanded


class RapidAnalysisCsc(ConfigurableCsc):
    """The Rapid Analysis CSC, one per instrument (SAL index = ``OCPS.SalIndex``).

    Parameters
    ----------
    index : `int`
        1 = LATISS, 2 = LSSTComCam, 3 = LSSTCam.
    config_dir : `str`, optional
        Configuration directory; default the one shipped with the package.
    initial_state : `State`, optional
        State to go to at start.
    override : `str`
        Configuration override (with ``initial_state`` DISABLED or ENABLED).
    simulation_mode : `int`
        1: the test pipelines ``test.succeed``, ``test.fail``, ``test.sleep`` exist.
    check_if_duplicate : `bool`
        Refuse to run beside another instance with the same index.
    """

    # The RapidAnalysis topics this class uses, declared so that type checkers check their use
    # (they are made from the interface XML at run time).
    cmd_processData: ControllerCommand
    evt_focalPlaneMode: ControllerEvent
    evt_visitGathered: ControllerEvent
    evt_workerPool: ControllerEvent
    tel_poolStatus: ControllerTelemetry

    valid_simulation_modes = (0, 1)
    simulation_help = "Simulation mode: the test pipelines test.succeed, test.fail and test.sleep exist."
    version = __version__
    enable_cmdline_state = True
    # $TS_CONFIG_OCS_DIR/<Name>/v1 if that is set, else the configuration shipped in the package.
    shipped_config_root = CONFIG_DIR

    def __init__(
        self,
        index: int,
        config_dir: str | pathlib.Path | None = None,
        initial_state: State | int | None = None,
        override: str = "",
        simulation_mode: int = 0,
        check_if_duplicate: bool = False,
    ) -> None:
        self.instrument: Instrument = get_instrument(int(index))
        self.registry = PipelineRegistry(simulation_mode=bool(simulation_mode))
        self.config: types.SimpleNamespace | None = None
        self.pool: WorkerPool | None = None
        self.job_manager: JobManager | None = None
        # Makes the jobs of every request (processData, autonomous, gathers); made by configure.
        self.job_maker: JobMaker | None = None
        # The results database's rows and the products' directories; made by configure, its database
        # open while processing.
        self.recorder: JobRecorder | None = None
        self.publisher: JobPublisher | None = None
        self.raw_store: RawStore | None = None
        # Finds jobs' inputs (raws, the mount window) and images' kinds; made when processing starts.
        self.inputs: InputResolver | None = None
        self.gatherer: Gatherer | None = None
        self.mount_buffer: MountTelemetryBuffer | None = None
        self.mount_listener: MountListener | None = None
        # The focal-plane mode lives as long as the CSC: setFocalPlaneMode may come before autonomous
        # processing starts, and survives a standby/start cycle.
        self.selector = FocalPlaneSelector(self.instrument)
        self.dispatcher: AutonomousDispatcher | None = None
        self.image_listener: ImageListener | None = None
        self._mode_configured = False
        self._status_task: asyncio.Task | None = None
        self._sync_busy_job: str | None = None
        self._pool_event_key: tuple | None = None
        self._fault_tasks: set[asyncio.Task] = set()
        self._processing_lock = asyncio.Lock()
        super().__init__(
            "RapidAnalysis",
            index=int(index),
            config_schema=CONFIG_SCHEMA,
            config_dir=config_dir,
            check_if_duplicate=check_if_duplicate,
            initial_state=initial_state,
            override=override,
            simulation_mode=simulation_mode,
        )
        # Validation is quick; each request acks on its own (synchronous mode rejects extras).
        self.cmd_processData.allow_multiple_callbacks = True

    @staticmethod
    def get_config_pkg() -> str:
        """The configuration package (``$TS_CONFIG_OCS_DIR/RapidAnalysis/v1``)."""
        return "ts_config_ocs"

    # -- configuration --

    async def configure(self, config: types.SimpleNamespace) -> None:
        """Check the configuration beyond the schema (pipelines, paths) and keep it."""
        for name, settings in config.pipelines.items():
            try:
                pipeline = self.registry.get(name)
                pipeline.make_config(settings.get("config", {}))
            except ValueError as e:
                raise ExpectedError(f"pipelines.{name}: {e}") from None
        root = config.data_roots.get(self.instrument.name)
        if root is None:
            raise ExpectedError(f"data_roots has no entry for {self.instrument.name}")
        config.data_root = pathlib.Path(_expand(root, f"data_roots.{self.instrument.name}"))
        config.output_root = pathlib.Path(_expand(config.output_root, "output_root"))
        config.scheduler_address = _expand(config.scheduler_address, "scheduler_address")
        config.output_url_root = _expand(config.output_url_root, "output_url_root")
        database_url = _expand(config.database_url, "database_url")
        if not database_url:
            database_url = f"sqlite:///{config.output_root / 'results.sqlite3'}"
        config.database_url = database_url
        self._configure_pool(config)
        self._configure_autonomous(config)
        self._configure_path_map(config)
        self.config = config
        self.job_maker = JobMaker(
            self.instrument, self.registry, config.pipelines, config.default_time_limit, clock=current_tai
        )
        self.recorder = JobRecorder(self.instrument.name, config.output_root, config.output_url_root, log=self.log)
        self.publisher = JobPublisher(
            self, job_row=self.recorder.row, product_url=self.recorder.product_url, log=self.log
        )

    @staticmethod
    def _configure_pool(config: types.SimpleNamespace) -> None:
        """Check the pool's floor against the pool."""
        if not config.scheduler_address and config.min_workers > config.n_workers:
            raise ExpectedError(
                f"min_workers={config.min_workers} is more than the local pool's n_workers={config.n_workers}: "
                "the pool could never reach it, and the CSC would go to FAULT; allowed: 0 (no floor) to n_workers"
            )

    @staticmethod
    def _configure_path_map(config: types.SimpleNamespace) -> None:
        """Make ``config.worker_paths`` from ``path_map``; the roots workers use must be mapped."""
        try:
            config.worker_paths = PathMap.from_config(config.path_map)
        except PathMapError as e:
            raise ExpectedError(str(e)) from None
        if not config.worker_paths:
            return
        for name, root in (
            ("data_roots", config.data_root),
            ("output_root", config.output_root),
            ("autonomous.file_root", config.file_root),
        ):
            if not config.worker_paths.covers(str(root)):
                raise ExpectedError(
                    f"path_map maps nothing for {name} {root}: workers could not be given its files; map one of "
                    f"its parent directories (path_map csc directories: "
                    f"{', '.join(csc for csc, _ in config.worker_paths.pairs)})"
                )

    def _configure_autonomous(self, config: types.SimpleNamespace) -> None:
        """Check the autonomous settings' pipelines and expand ``file_root`` (into ``config.file_root``)."""
        settings = config.autonomous
        for field in ("science_pipelines", "dispersed_pipelines", "calibration_pipelines", "file_pipelines"):
            for name in settings[field]:
                try:
                    pipeline = self.registry.get(name)
                except ValueError as e:
                    raise ExpectedError(f"autonomous.{field}: {e}") from None
                if pipeline.internal:
                    raise ExpectedError(f"autonomous.{field}: pipeline {name!r} is run by the CSC itself")
        file_root = settings["file_root"]
        config.file_root = pathlib.Path(_expand(file_root, "autonomous.file_root")) if file_root else config.data_root

    # -- state --

    async def begin_start(self, data: Any) -> None:
        """Configure, then start the pool and open the database (start fails if they cannot)."""
        await super().begin_start(data)
        await self._start_processing()

    async def handle_summary_state(self) -> None:
        """Listen for images only while ENABLED; stop the pool (aborting jobs) when leaving DISABLED/ENABLED."""
        if self.summary_state == State.ENABLED:
            await self._start_autonomous()
        else:
            await self._stop_autonomous()
        if not self.disabled_or_enabled:
            await self._stop_processing(f"the CSC went to {self.summary_state.name}")

    async def _start_autonomous(self) -> None:
        assert self.config is not None
        settings = self.config.autonomous
        if not settings["enabled"] or self.dispatcher is not None:
            return
        if not self._mode_configured:
            # The configured initial mode, once; later setFocalPlaneMode commands stay in force.
            self.selector.set_mode(
                pattern=settings["pattern"],
                automatic=settings["automatic"],
                worker_mode=settings["worker_mode"],
            )
            self._mode_configured = True
        autonomous_settings = AutonomousSettings.from_config(settings)
        generators = list(settings["generators"])
        file_store = RawStore(self.config.file_root, self.instrument)
        self.dispatcher = AutonomousDispatcher(
            self,
            self.selector,
            autonomous_settings,
            log=self.log,
            file_store=file_store,
            job_maker=self.job_maker,
            job_manager=self.job_manager,
        )
        self.dispatcher.start()
        self.image_listener = ImageListener(
            self.salinfo.domain,
            self.instrument,
            generators,
            self.dispatcher.on_arrival,
            log=self.log,
        )
        await self.image_listener.start()
        self._publish_mode("autonomous processing started")
        self.log.info("Autonomous processing: listening to %s endReadout", self.instrument.camera_component)
        if generators:
            self.log.info(
                "Autonomous processing: files from %s under %s go to %s",
                ", ".join(generators),
                file_store.root,
                ", ".join(autonomous_settings.file_pipelines) or "no pipeline (file_pipelines is empty)",
            )

    async def _stop_autonomous(self) -> None:
        if self.image_listener is not None:
            await self.image_listener.close()
            self.image_listener = None
        if self.dispatcher is not None:
            await self.dispatcher.stop()
            self.dispatcher = None

    async def _start_processing(self) -> None:
        """Open the database, start the pool, end what an earlier process left, start taking jobs.

        Never at the same time as `_stop_processing`: a stop that is still closing the pool of a
        fault would otherwise close the pool and the database that a quick standby/start opened.
        """
        async with self._processing_lock:
            await self._start_processing_unlocked()

    async def _stop_processing(self, reason: str) -> None:
        """Stop taking jobs (aborting what is queued and running), stop the pool, close the database."""
        async with self._processing_lock:
            await self._stop_processing_unlocked(reason)

    async def _start_processing_unlocked(self) -> None:
        assert self.config is not None and self.recorder is not None
        config = self.config
        recorder = self.recorder
        try:
            await recorder.open(config.database_url)
        except Exception as e:
            raise ExpectedError(f"Cannot open the results database {config.database_url}: {e}") from e
        self.raw_store = RawStore(config.data_root, self.instrument)
        self.inputs = InputResolver(
            self.instrument,
            self.registry,
            self.raw_store,
            raw_wait_timeout=config.raw_wait_timeout,
            mount_telemetry_wait=config.mount_telemetry_wait,
            output_dir_for=recorder.job_dir,
            log=self.log,
        )
        self.pool = WorkerPool(
            scheduler_address=config.scheduler_address,
            n_workers=config.n_workers,
            threads_per_worker=config.threads_per_worker,
            memory_limit=config.worker_memory_limit,
            on_lost=self._pool_lost,
            min_workers=config.min_workers,
            restart_timeout=config.worker_restart_timeout,
            on_too_small=self._pool_too_small,
            reconnect_timeout=config.scheduler_reconnect_timeout,
            job_reruns=config.job_reruns,
            demand_hold=config.demand_hold,
            log=self.log,
        )
        try:
            await self.pool.start()
        except Exception as e:
            await self.pool.close()
            self.pool = None
            # start failed: the CSC stays in STANDBY, which holds no database connection.
            await recorder.close()
            raise ExpectedError(f"Cannot start the worker pool: {e}") from e
        await self._end_jobs_left_unfinished()
        self.job_manager = JobManager(
            pool=self.pool,
            max_queue_length=config.max_queue_length,
            resolve_inputs=self.inputs.resolve,
            on_job_done=self._publish_job,
            output_dir_for=recorder.job_dir,
            simulation_mode=bool(self.simulation_mode),
            on_job_started=recorder.started,
            path_map=config.worker_paths,
            detector_affinity=config.detector_affinity,
            job_reruns=config.job_reruns,
            log=self.log,
        )
        self.pool.on_disconnected = self.job_manager.pool_disconnected
        self.pool.on_reconnected = self.job_manager.pool_reconnected
        self.pool.on_workers_left = self.job_manager.workers_left
        self.pool.on_workers_changed = self.job_manager.workers_changed
        self.job_manager.start()
        self.gatherer = Gatherer(config.gather_timeout, config.regather_timeout, self._gather, log=self.log)
        self.mount_buffer = MountTelemetryBuffer(config.mount_buffer_seconds)
        self.mount_listener = MountListener(self.salinfo.domain, self.instrument.name, self.mount_buffer, log=self.log)
        await self.mount_listener.start()
        self.inputs.mount_listener, self.inputs.mount_buffer = self.mount_listener, self.mount_buffer
        self._pool_event_key = None
        self._status_task = asyncio.create_task(self._status_loop())

    async def _stop_processing_unlocked(self, reason: str) -> None:
        if self._status_task is not None:
            self._status_task.cancel()
            self._status_task = None
        if self.job_manager is not None:
            await self.job_manager.stop(reason)
            self.job_manager = None
        if self.gatherer is not None:
            await self.gatherer.stop()
            self.gatherer = None
        if self.mount_listener is not None:
            if self.inputs is not None:
                self.inputs.mount_listener = self.inputs.mount_buffer = None
            await self.mount_listener.close()
            self.mount_listener = None
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
            self.evt_workerPool.set_write(
                nWorkers=0, nBusy=0, nQueued=0, keepingUp=True, lagSeconds=0, schedulerAddress="", dashboardUrl=""
            )
        if self.recorder is not None:
            await self.recorder.close()

    async def _end_jobs_left_unfinished(self) -> None:
        """End the jobs an earlier CSC process left queued or running (`JobRecorder.jobs_left_unfinished`)."""
        assert self.recorder is not None
        jobs = await self.recorder.jobs_left_unfinished(current_tai())
        # Concurrently, so that their database writes go in one transaction.
        await asyncio.gather(*(self._publish_job(job) for job in jobs))

    async def _pool_lost(self, reason: str) -> None:
        self._fault_soon(ErrorCode.POOL_LOST, reason)

    async def _pool_too_small(self, reason: str) -> None:
        self._fault_soon(ErrorCode.POOL_TOO_SMALL, reason)

    def _fault_soon(self, code: ErrorCode, reason: str) -> None:
        """Go to FAULT in a task of its own (the caller is part of what the fault stops)."""
        task = asyncio.create_task(self.fault(code=code, report=reason))
        self._fault_tasks.add(task)
        task.add_done_callback(self._fault_tasks.discard)

    async def close_tasks(self) -> None:
        """Stop processing, then the base class's tasks."""
        await self._stop_autonomous()
        await self._stop_processing("the CSC is closing")
        await super().close_tasks()

    # -- commands --

    async def do_processData(self, data: Any) -> Any:  # noqa: N802 (SAL name)
        """Queue (asynchronous mode) or run (synchronous mode) one pipeline on one data id.

        A per-detector pipeline (``sfm``) becomes one job per selected detector and a gather; the
        ack result then lists every job id and names the image.
        """
        self.assert_enabled("processData")
        assert self.config is not None and self.job_manager is not None and self.job_maker is not None
        try:
            made = self.job_maker.request(data.pipeline, data.dataId, data.config, Trigger.COMMAND)
        except JobRequestError as e:
            raise ExpectedError(str(e)) from None
        jobs, visit = made.jobs, made.visit
        if len(jobs) > self.job_manager.free_queue_slots:
            raise ExpectedError(
                f"queue full: {len(jobs)} jobs asked for and {self.job_manager.free_queue_slots} places free "
                f"(max_queue_length={self.config.max_queue_length}); try again later or name fewer detectors"
            )
        ids = made.ids
        if self.config.processing_mode == "synchronous":
            if self._sync_busy_job is not None:
                raise ExpectedError(
                    f"busy: synchronous mode runs one request at a time and job {self._sync_busy_job} is running"
                )
            self._sync_busy_job = jobs[0].job_id
            try:
                self.submit_jobs(jobs, visit, ignore_limit=False)
                self.cmd_processData.ack_in_progress(
                    data,
                    timeout=self.config.raw_wait_timeout + jobs[0].time_limit * len(jobs) + 10,
                    result=json.dumps(ids),
                )
                done = [await self.job_manager.wait_done(j.job_id) for j in jobs]
            finally:
                self._sync_busy_job = None
            succeeded = [j for j in done if j.state == JobState.SUCCEEDED]
            if not succeeded:
                raise ExpectedError(f"job {done[0].job_id} {done[0].state.value}: {done[0].error_report}")
            ids["state"] = done[0].state.value if visit is None else f"{len(succeeded)}/{len(done)} succeeded"
            return self.salinfo.make_ackcmd(
                private_seqNum=data.private_seqNum, ack=SalRetCode.CMD_COMPLETE, result=json.dumps(ids)
            )
        self.cmd_processData.ack_in_progress(data, timeout=_QUEUE_ACK_TIMEOUT)
        self.submit_jobs(jobs, visit, ignore_limit=False)
        return self.salinfo.make_ackcmd(
            private_seqNum=data.private_seqNum, ack=SalRetCode.CMD_COMPLETE, result=json.dumps(ids)
        )

    def _submit(self, job: Job, ignore_limit: bool = False) -> None:
        assert self.job_manager is not None
        try:
            self.job_manager.submit(job, ignore_limit=ignore_limit)
        except QueueFullError as e:
            raise ExpectedError(str(e)) from None
        self.log.debug("Queued job %s: %s on %s", job.job_id, job.pipeline, job.data_id.to_json())

    async def do_abortJob(self, data: Any) -> None:  # noqa: N802 (SAL name)
        """Abort a queued or running job."""
        self.assert_enabled("abortJob")
        assert self.job_manager is not None
        try:
            await self.job_manager.abort(data.jobId, reason="aborted by the abortJob command")
        except KeyError:
            raise ExpectedError(f"no queued or running job {data.jobId!r}") from None
        except ValueError as e:
            raise ExpectedError(str(e)) from None

    async def do_setFocalPlaneMode(self, data: Any) -> None:  # noqa: N802 (SAL name)
        """Set the focal-plane pattern, its variation, automatic down-selection, worker mode and
        guaranteed exposures; announced with ``focalPlaneMode``. A bad value changes nothing."""
        self.assert_enabled("setFocalPlaneMode")
        try:
            self.selector.set_mode(
                pattern=data.pattern,
                detectors=data.detectors,
                variation=data.variation,
                automatic=bool(data.automatic),
                worker_mode=data.workerMode,
                guaranteed_exposures=data.guaranteedExposures,
            )
        except ValueError as e:
            raise ExpectedError(f"setFocalPlaneMode: {e}") from None
        self._mode_configured = True
        note = "" if self.dispatcher is not None else " (autonomous processing is off: it applies when it is on)"
        self._publish_mode("set by setFocalPlaneMode" + note)

    def _publish_mode(self, reason: str, selection: Selection | None = None) -> None:
        """focalPlaneMode: the mode in force and what it selects (for the next image, or for ``selection``)."""
        mode = self.selector.mode
        if selection is None:
            detectors = self.selector.preview()
            decided_by, n_selected = "manual", len(detectors)
            detector_text = ",".join(str(d) for d in sorted(detectors))
        else:
            decided_by, n_selected, detector_text = (
                selection.decided_by,
                len(selection.detectors),
                selection.detectors_csv,
            )
            reason = selection.reason
        self.evt_focalPlaneMode.set_write(
            pattern=mode.pattern if selection is None else selection.pattern,
            detectors=detector_text,
            variation=int(mode.variation),
            automatic=mode.automatic,
            workerMode=int(mode.worker_mode),
            guaranteedExposures=mode.guaranteed_csv,
            nSelected=n_selected,
            reason=reason,
            decidedBy=decided_by,
            force_output=True,
        )

    # -- autonomous processing: what the dispatcher asks of the CSC --

    def submit_jobs(self, jobs: list[Job], visit: VisitGather | None, *, ignore_limit: bool) -> None:
        """Queue jobs (and their visit's gather), each recorded as queued in the results database.

        Raises
        ------
        ExpectedError
            The queue is full (and ``ignore_limit`` is false).
        """
        assert self.recorder is not None
        if visit is not None:
            assert self.gatherer is not None
            self.gatherer.add(visit)
        for job in jobs:
            self._submit(job, ignore_limit=ignore_limit)
            self.recorder.submitted(job, gathered=visit is not None)

    def publish_selection(self, selection: Selection, n_workers: int) -> None:
        """Announce the detectors chosen for an image when they differ from the last image's."""
        self._publish_mode(selection.reason, selection)
        if selection.decided_by == "automatic":
            self.log.info("Focal plane (automatic, %d workers): %s", n_workers, selection.reason)

    async def image_kind(self, arrival: ImageArrival) -> str:
        """Science, dispersed or calibration (`InputResolver.image_kind`); raises when it cannot be told."""
        assert self.inputs is not None and self.recorder is not None
        self.recorder.image_heard(arrival)  # its ra_image row, from the moment it is heard
        return await self.inputs.image_kind(arrival)

    def image_down_selected(
        self, image_name: str, left_out: frozenset[int], n_all: int, n_workers: int, why: str
    ) -> None:
        """The image's ra_image row counts the detectors down-selection left out as dropped."""
        if self.recorder is not None:
            self.recorder.image_down_selected(image_name, left_out, n_all, n_workers, why)

    async def image_failed(self, arrival: ImageArrival, exit_code: int, reason: str) -> None:
        """The one jobResult and results-database row of an image that got no job (see `image_kind`).

        A job that never ran: pipeline `UNDISPATCHED_PIPELINE`, started when the image was
        announced, ended now, so its duration is the time spent waiting for the raw.
        """
        now = current_tai()
        announced = now - max(0.0, time.monotonic() - arrival.arrived)
        try:
            data_id = parse_data_id(json.dumps({"obsid": arrival.image_name}), self.instrument)
        except DataIdError:
            data_id = DataId(self.instrument.name, obsid=arrival.image_name)  # the reason says what is wrong
        job = Job(
            job_id=new_job_id(),
            pipeline=UNDISPATCHED_PIPELINE,
            data_id=data_id,
            config={},
            trigger=Trigger.AUTONOMOUS,
            time_limit=0.0,
            submit_time=announced,
            state=JobState.ABORTED if exit_code == ExitCode.ABORTED else JobState.FAILED,
            start_time=announced,
            end_time=now,
            exit_code=exit_code,
            error_report=reason,
        )
        await self._publish_job(job)

    # -- job plumbing --

    async def _publish_job(self, job: Job) -> None:
        """Everything a finished job produces (`JobPublisher`), then tell the gatherer and the dispatcher."""
        assert self.publisher is not None and self.recorder is not None
        await self.publisher.publish(job, self.recorder.writer)
        self.recorder.job_ended(job)  # its image's row
        # One log line per failed job; successes are in jobResult (LOVE need not see 189 per visit).
        level = logging.DEBUG if job.state == JobState.SUCCEEDED else logging.WARNING
        self.log.log(level, "Job %s %s %s: %s", job.job_id, job.pipeline, job.state.value, job.error_report or "ok")
        for follower in (self.gatherer, self.dispatcher):
            if follower is None:
                continue
            try:
                follower.job_done(job)
            except Exception:
                self.log.exception("%s could not take the end of job %s", type(follower).__name__, job.job_id)

    async def _gather(self, visit: VisitGather, partial: bool, regather: bool) -> None:
        """Announce the gather (visitGathered) and queue the gather pipeline on what has landed."""
        assert self.config is not None
        self.evt_visitGathered.set_write(
            imageName=visit.image_name,
            nExpected=len(visit.expected),
            nProcessed=len(visit.rows),
            partial=partial,
            regather=regather,
            force_output=True,
        )
        if partial and visit.failed:
            self.log.warning(
                "Gathered %s with %d of %d detectors; %d failed",
                visit.image_name,
                len(visit.rows),
                len(visit.expected),
                len(visit.failed),
            )
        if self.job_manager is None or not visit.gather_pipeline:
            return
        assert self.job_maker is not None
        job = self.job_maker.gather_job(visit)
        description = self.job_maker.gather_description(visit, partial, regather)
        assert self.recorder is not None
        output_dir = pathlib.Path(self.recorder.job_dir(job))
        visit_file = output_dir / "visit.json"

        def write() -> None:
            output_dir.mkdir(parents=True, exist_ok=True)
            visit_file.write_text(json.dumps(description, allow_nan=True))

        await asyncio.get_running_loop().run_in_executor(None, write)
        job.inputs = [str(visit_file)] + [visit.binned[d] for d in sorted(visit.binned)]
        self._submit(job, ignore_limit=True)
        self.recorder.submitted(job, gather=True)

    # -- status --

    async def _status_loop(self) -> None:
        """1 Hz poolStatus telemetry; workerPool event when the pool's shape or health changes."""
        while True:
            try:
                await self._publish_status()
            except PoolLostError:
                return  # fault() has been scheduled
            except Exception:
                self.log.exception("Could not publish pool status")
            await asyncio.sleep(1.0)

    def _demand_slots(self) -> int:
        """Job slots this CSC wants of an autoscaling cluster (`WorkerPool.report_demand`).

        Its running and queued jobs; in autonomous mode with automatic down-selection, at least
        the workers that would afford the manual pattern at the measured cost and cadence, so that
        a cluster can grow out of down-selection rather than only shrink into it.
        """
        jobs = self.job_manager
        slots = jobs.n_running + jobs.n_queued if jobs is not None else 0
        if self.dispatcher is not None:
            slots = max(slots, self.selector.workers_for_manual_pattern() or 0)
        return slots

    async def _publish_status(self) -> None:
        pool, jobs = self.pool, self.job_manager
        if pool is None or jobs is None or self.config is None:
            return
        info = await pool.refresh()
        await pool.report_demand(self.instrument.name, self._demand_slots())
        lag = jobs.oldest_queued_age()
        keeping_up = lag <= self.config.lag_threshold
        self.tel_poolStatus.set_write(
            nWorkers=info.n_workers,
            nBusy=jobs.n_running,
            nQueued=jobs.n_queued,
            nRunning=jobs.n_running,
            jobsSucceeded=jobs.n_succeeded,
            jobsFailed=jobs.n_failed,
            lagSeconds=lag,
            keepingUp=keeping_up,
            memoryUsed=info.memory_used_mb,
            cpuLoad=pool.cpu_load(),
        )
        previous = self._pool_event_key
        # A worker that died and came back between two looks: workerPool shows the dip too.
        dipped = previous is not None and info.n_fewest < min(previous[0], info.n_workers)
        key = (info.n_workers, keeping_up, info.scheduler_address, info.dashboard_url, info.connected, info.excluded)
        counts = [info.n_fewest] if dipped else []
        if dipped or key != previous:
            counts.append(info.n_workers)
        for n_workers in counts:
            self.evt_workerPool.set_write(
                nWorkers=n_workers,
                nBusy=jobs.n_running,
                nQueued=jobs.n_queued,
                keepingUp=keeping_up,
                lagSeconds=lag,
                schedulerAddress=info.scheduler_address,
                dashboardUrl=info.dashboard_url,
                schedulerConnected=info.connected,
                excludedWorkers=fit_text(info.excluded, 4000)[0],  # 190 workers would make ~20 kB
                force_output=True,
            )
        self._pool_event_key = key


def run_rapid_analysis() -> None:
    """``run_rapid_analysis INDEX``: run the Rapid Analysis CSC for one instrument."""
    # The event loop is the latency path (acks, dispatch, jobResults); the results-database writer
    # and the raw-file checks are threads. Each time the loop releases the GIL (every socket
    # write), a busy thread may keep it for the switch interval: 5 ms by default, 1 ms here.
    sys.setswitchinterval(0.001)
    asyncio.run(RapidAnalysisCsc.amain(index=SalIndex))
