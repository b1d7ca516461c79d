"""Resolving inputs: the files a job runs on, and the kind of an announced image.

- A job's inputs (`InputResolver.resolve`): what the CSC set itself (a gather's visit file and
  images, a generator's file); nothing for a pipeline that needs no raw; for a mount pipeline one
  raw of the exposure and the exposure window of the received mount telemetry, written as a file
  (`InputResolver.mount_inputs`); for a multi-visit pipeline (``focus_sweep``: a class attribute
  ``multi_visit``) the raws of each of its visits (`InputResolver.visit_inputs`); else the raws of
  the job's detectors (the science detectors when it names none), waited for in the raw store up
  to ``raw_wait_timeout``.
- An image's kind (`InputResolver.image_kind`): science, dispersed or calibration, from the
  announced image type, or from the raw's header when that is needed (LATISS, file announcements
  without a type).

A missing or unreadable input is a `ValueError` saying which and why: the job manager ends the
job with `ExitCode.NO_INPUT` and that message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
from collections.abc import Callable

from ..data.camera import Instrument
from ..data.data_id import parse_data_id
from ..data.image_listener import ImageArrival
from ..data.mount_listener import MountListener
from ..data.mount_telemetry import MountTelemetryBuffer, write_telemetry_file
from ..data.raw_store import MissingRawError, RawStore
from ..pipelines.base import Pipeline, PipelineError
from ..pipelines.fits_input import read_primary_header
from ..pipelines.registry import PipelineRegistry
from .autonomous import CALIBRATION_TYPES, image_kind_of
from .jobs import Job

__all__ = ["InputResolver", "MOUNT_TELEMETRY_FILE"]

#: The mount-telemetry file of a mount pipeline's job, in its output directory.
MOUNT_TELEMETRY_FILE = "mount_telemetry.ecsv"


class InputResolver:
    """Find the inputs of jobs, and the kind of images, for one instrument.

    Parameters
    ----------
    instrument : `Instrument`
    registry : `PipelineRegistry`
    raw_store : `RawStore`
        Where raws land.
    raw_wait_timeout : `float`
        Seconds to wait for a raw to land complete.
    mount_telemetry_wait : `float`
        Seconds to wait for mount telemetry to cover an exposure's window.
    output_dir_for : callable
        A job's output directory (where a mount pipeline's telemetry file is written).
    log : `logging.Logger`, optional

    Attributes
    ----------
    mount_listener : `MountListener` or None
    mount_buffer : `MountTelemetryBuffer` or None
        The received mount telemetry; None: a mount pipeline gets its raw only.
    """

    def __init__(
        self,
        instrument: Instrument,
        registry: PipelineRegistry,
        raw_store: RawStore,
        *,
        raw_wait_timeout: float,
        mount_telemetry_wait: float,
        output_dir_for: Callable[[Job], str],
        log: logging.Logger | None = None,
    ) -> None:
        self.instrument = instrument
        self.registry = registry
        self.raw_store = raw_store
        self.raw_wait_timeout = raw_wait_timeout
        self.mount_telemetry_wait = mount_telemetry_wait
        self.output_dir_for = output_dir_for
        self.log = log or logging.getLogger(__name__)
        self.mount_listener: MountListener | None = None
        self.mount_buffer: MountTelemetryBuffer | None = None

    async def resolve(self, job: Job) -> list[str]:
        """The job's input files (see the module docstring); `ValueError` saying what is missing."""
        if job.inputs:  # set by the CSC itself (a gather's inputs, a generator's file)
            return job.inputs
        pipeline = self.registry.get(job.pipeline)
        if not getattr(pipeline, "requires_inputs", True):
            return []
        if pipeline.needs_mount_telemetry:
            return await self.mount_inputs(job)
        if pipeline.multi_visit:
            return await self.visit_inputs(job, pipeline)
        # No detectors named: the science detectors (guiders and wavefront sensors are not raws
        # for these pipelines, and waiting for them would always run into the timeout).
        detectors = job.data_id.detectors or tuple(d.id for d in self.instrument.science_detectors)
        try:
            found = await self.raw_store.wait_for(job.data_id, detectors, timeout=self.raw_wait_timeout)
        except MissingRawError as e:
            raise ValueError(str(e)) from None
        return [str(found[detector]) for detector in sorted(found)]

    async def mount_inputs(self, job: Job) -> list[str]:
        """One raw of the exposure, and the exposure window of the received mount telemetry as a file."""
        # Any detector's header gives the window: the first named, else the witness detector.
        detectors = job.data_id.detectors[:1] if job.data_id.detectors else (self.witness_detector(),)
        try:
            found = await self.raw_store.wait_for(job.data_id, detectors, timeout=self.raw_wait_timeout)
        except MissingRawError as e:
            raise ValueError(str(e)) from None
        raw = found[detectors[0]]
        loop = asyncio.get_running_loop()
        # Imported here: the mount pipeline (and what it imports) only when a mount job runs.
        from ..pipelines.mount_torque import read_exposure_window

        try:
            window = await loop.run_in_executor(None, read_exposure_window, raw)
        except PipelineError as e:
            raise ValueError(str(e)) from None
        listener, buffer = self.mount_listener, self.mount_buffer
        if window.img_type in ("BIAS", "DARK", "FLAT") or listener is None or buffer is None:
            return [str(raw)]  # the pipeline says why it skips a calibration frame
        margin = float(job.config.get("window_margin", 1.0))
        covered = await listener.wait_until_covered(window.end + margin, self.mount_telemetry_wait)
        if not covered:
            self.log.warning(
                "Mount telemetry for %s covers only up to %.1f s before the end of its window; analysing what there is",
                window.image_name,
                window.end + margin - listener.covered_until(),
            )
        path = pathlib.Path(self.output_dir_for(job)) / MOUNT_TELEMETRY_FILE
        # The window is taken here, on the event loop, where DDS callbacks append to the buffer:
        # reading it from the writer thread raced with them ("deque mutated during iteration").
        tables = buffer.window_tables(window.begin, window.end, margin)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_telemetry_file(path, tables)

        await loop.run_in_executor(None, write)
        return [str(raw), str(path)]

    async def visit_inputs(self, job: Job, pipeline: type[Pipeline]) -> list[str]:
        """The raws of every visit of a multi-visit pipeline's job, visit by visit.

        The visits are ``pipeline.input_visits(job.config, day_obs, seq_num)`` (visit ids
        dayObs*100000+seqNum), the detectors the job's dataId names or else
        ``pipeline.input_detectors(instrument, job.config)``. Every visit is waited for at once,
        up to ``raw_wait_timeout``; a visit whose raws never land is left out (the pipeline says
        which visits it did not get), and only a job with no raw of any visit is a `ValueError`.
        """
        visits = pipeline.input_visits(job.config, job.data_id.day_obs, job.data_id.seq_num)
        if not visits:
            raise ValueError(
                f"pipeline {job.pipeline!r} was given no visit (config 'visits', or a dataId of one visit)"
            )
        detectors = job.data_id.detectors or tuple(pipeline.input_detectors(self.instrument, job.config))
        data_ids = []
        for visit in visits:
            day_obs, seq_num = divmod(int(visit), 100_000)
            data_ids.append(parse_data_id(json.dumps({"dayObs": day_obs, "seqNum": seq_num}), self.instrument))
        found = await asyncio.gather(
            *(self.raw_store.wait_for(d, detectors, timeout=self.raw_wait_timeout) for d in data_ids),
            return_exceptions=True,
        )
        files: list[str] = []
        missing: list[str] = []
        for raws in found:
            if isinstance(raws, MissingRawError):
                missing.append(str(raws))
            elif isinstance(raws, BaseException):
                raise raws
            else:
                files.extend(str(raws[detector]) for detector in sorted(raws))
        if not files:
            raise ValueError("; ".join(missing))
        if missing:
            self.log.warning(
                "Job %s runs without %d of its %d visits: %s", job.job_id, len(missing), len(visits), "; ".join(missing)
            )
        return files

    def witness_detector(self) -> int:
        """The detector whose raw stands for the exposure (LSSTCam R22_S11, ComCam S11, LATISS 0)."""
        by_name = self.instrument.by_name
        for name in ("R22_S11",):
            if name in by_name:
                return by_name[name].id
        return self.instrument.science_detectors[0].id

    async def image_kind(self, arrival: ImageArrival) -> str:
        """Science, dispersed (LATISS, from the raw's GRATING) or calibration (from the image type).

        Raises
        ------
        Exception
            When the raw it needs never arrives complete within ``raw_wait_timeout``
            (`MissingRawError`) or its header is unreadable.
        """
        img_type = arrival.img_type
        if img_type and (self.instrument.name != "LATISS" or img_type.strip().upper() in CALIBRATION_TYPES):
            return image_kind_of(self.instrument.name, img_type)
        # LATISS (and file announcements without a type): the raw's header says.
        data_id = parse_data_id(json.dumps({"obsid": arrival.image_name}), self.instrument)
        detector = self.instrument.science_detectors[0].id
        found = await self.raw_store.wait_for(data_id, (detector,), timeout=self.raw_wait_timeout)
        header = await asyncio.get_running_loop().run_in_executor(None, read_primary_header, found[detector])
        return image_kind_of(self.instrument.name, img_type or header.get("IMGTYPE"), header.get("GRATING"))
