"""Making jobs: a request (pipeline, data id, configuration, trigger) becomes its `Job` list.

One place, one rule, for every way a job is asked for (``processData``, autonomous images,
catch-up, murderous requeue, generator files, a visit's gather). How an image is split follows
from the pipeline's declaration (`Pipeline.per_detector`, `Pipeline.detector_parallel`) and the
trigger, as `split_of` says:

``Split.VISIT``
    A per-detector pipeline (``sfm``) on one image: one job per detector (the named ones, else
    the science detectors) and a `VisitGather` to gather them with the pipeline's
    ``gather_pipeline``. A catch-up gets no visit: its image was gathered already.
``Split.DETECTOR``
    A detector-parallel pipeline (``image_stats``) run autonomously: one job per detector, no
    gather. (``processData`` runs it as one job on all the detectors it names.)
``Split.IMAGE``
    Everything else: one job on the data id as given.

A generator's file has no detectors: it is always one job (`JobMaker.file_job`).

Jobs of a split are made in reverse spread order (`spread_order`): the newest job runs first, so
a visit the pool cannot finish is gathered on detectors spread over the focal plane, not on one
corner.

Pure, like `focal_plane`: no I/O, no asyncio, no SAL; the clock is a parameter. Every error is
a `JobRequestError` whose message says what is wrong and what is allowed; the CSC turns it into
the command's CMD_FAILED.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..data.camera import Instrument
from ..data.data_id import DataId, DataIdError, parse_data_id
from ..data.strict_json import StrictJsonError, loads_strict, quote
from ..pipelines.base import Pipeline
from ..pipelines.registry import PipelineRegistry
from .focal_plane import spread_order
from .gather import VisitGather
from .jobs import Job, Trigger, new_job_id

__all__ = [
    "JobMaker",
    "JobRequestError",
    "MadeJobs",
    "Split",
    "split_of",
    "FILE_ID_RE",
    "check_file_id",
]

#: A generator file's id names its jobs (jobResult.imageName, the database's 128-character
#: image_name) and their product directory: a plain name, never a path.
FILE_ID_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")  # \Z: "$" would pass a trailing newline
_ID_SHOWN = 200
#: A visit's gather runs before more detector work.
GATHER_PRIORITY = 1


class JobRequestError(ValueError):
    """A request that makes no job; the message says what is wrong (and what is allowed)."""


class Split(enum.StrEnum):
    """How one request on one image is split into jobs (see the module docstring)."""

    VISIT = "visit"
    DETECTOR = "detector"
    IMAGE = "image"


def split_of(pipeline: type[Pipeline], trigger: Trigger) -> Split:
    """The one rule: how a request for ``pipeline`` with ``trigger`` is split into jobs."""
    if pipeline.per_detector:
        return Split.VISIT
    if pipeline.detector_parallel and trigger != Trigger.COMMAND:
        return Split.DETECTOR
    return Split.IMAGE


def check_file_id(file_id: str) -> str:
    """Return ``file_id`` if it can name a generator's file; else raise `ValueError` saying why."""
    if not isinstance(file_id, str) or not file_id:
        raise ValueError("the announcement has no id (largeFileObjectAvailable.id is empty)")
    if not FILE_ID_RE.match(file_id):
        raise ValueError(
            f"id {file_id[:_ID_SHOWN]!r} is not a plain name (letters, digits, '.', '_' and '-', "
            f"starting with a letter or digit, at most 128 characters)"
        )
    return file_id


@dataclasses.dataclass
class MadeJobs:
    """The jobs of one request, and the visit that gathers them (per-detector pipelines)."""

    jobs: list[Job]
    visit: VisitGather | None = None

    @property
    def ids(self) -> dict[str, Any]:
        """What processData's ack result says of them: one job id, or the visit's job ids."""
        if self.visit is None:
            return {"jobId": self.jobs[0].job_id}
        return {
            "jobIds": [j.job_id for j in self.jobs],
            "imageName": self.visit.image_name,
            "gather": self.visit.gather_pipeline,
        }


class JobMaker:
    """Make the jobs of requests for one instrument, with one configuration.

    Parameters
    ----------
    instrument : `Instrument`
    registry : `PipelineRegistry`
        The pipelines that exist.
    pipelines : `Mapping`
        The configuration's ``pipelines``: name → ``{"config": {...}, "time_limit": seconds}``.
    default_time_limit : `float`
        Time limit of a pipeline that sets none.
    clock : callable
        TAI now (a job's ``submit_time``).
    """

    def __init__(
        self,
        instrument: Instrument,
        registry: PipelineRegistry,
        pipelines: Mapping[str, Any],
        default_time_limit: float,
        clock: Callable[[], float],
    ) -> None:
        self.instrument = instrument
        self.registry = registry
        self.pipelines = pipelines
        self.default_time_limit = float(default_time_limit)
        self.clock = clock

    # -- the rule --

    def split(self, pipeline: str, trigger: Trigger) -> Split:
        """How a request for ``pipeline`` is split; an unknown name is `Split.IMAGE` (`make` says why)."""
        try:
            spec = self.registry.get(pipeline)
        except ValueError:
            return Split.IMAGE
        return split_of(spec, trigger)

    # -- requests --

    def request(self, pipeline: str, data_id: str, config: str, trigger: Trigger) -> MadeJobs:
        """The jobs of a processData request (its dataId and config as JSON text).

        Raises
        ------
        JobRequestError
            Bad dataId, config that is not a JSON object, unknown or internal pipeline, or a
            configuration the pipeline rejects.
        """
        try:
            parsed = parse_data_id(data_id, self.instrument)
        except DataIdError as e:
            raise JobRequestError(f"bad dataId: {e}") from None
        try:
            override = loads_strict(config, "config") if config.strip() else {}
        except StrictJsonError as e:
            raise JobRequestError(str(e)) from None
        if not isinstance(override, dict):
            raise JobRequestError(f"config must be a JSON object of pipeline settings, not {quote(config)}")
        return self.make(pipeline, parsed, trigger, override=override)

    def make(
        self,
        pipeline: str,
        data_id: DataId | Mapping[str, Any],
        trigger: Trigger,
        *,
        override: Mapping[str, Any] | None = None,
        priority: int = 0,
        selected: Sequence[int] | None = None,
    ) -> MadeJobs:
        """The jobs of one pipeline on one data id (a `DataId`, or a dict parsed as processData's).

        ``selected``, the detectors chosen for an image (autonomous mode's focal-plane
        selection), are the detectors a split (`Split.VISIT`, `Split.DETECTOR`) runs on; an
        image-wide pipeline (`Split.IMAGE`) runs on the data id as given, whatever is selected.

        Raises
        ------
        JobRequestError
            As `request`; or a per-detector pipeline on a data id without an image.
        """
        if not isinstance(data_id, DataId):
            try:
                data_id = parse_data_id(json.dumps(dict(data_id)), self.instrument)
            except DataIdError as e:
                raise JobRequestError(f"bad dataId: {e}") from None
        spec, job = self._maker(pipeline, dict(override or {}), trigger, priority)
        split = split_of(spec, trigger)
        if split == Split.IMAGE:
            return MadeJobs([job(data_id)])
        if selected is not None:
            data_id = dataclasses.replace(data_id, detectors=tuple(sorted(selected)))
        if data_id.obsid is None:
            raise JobRequestError(
                f"pipeline {spec.name!r} runs per detector of one image: give obsid or dayObs+seqNum, not a groupId"
            )
        detectors = data_id.detectors or tuple(d.id for d in self.instrument.science_detectors)
        # Newest first: made in reverse spread order, so they run spread over the focal plane.
        made = {
            d: job(dataclasses.replace(data_id, detectors=(d,)))
            for d in reversed(spread_order(self.instrument, detectors))
        }
        jobs = [made[d] for d in sorted(made)]
        if split == Split.DETECTOR or trigger == Trigger.CATCHUP:
            return MadeJobs(jobs)  # a catch-up's image was gathered already
        visit = VisitGather(
            image_name=data_id.obsid,
            pipeline=spec.name,
            gather_pipeline=spec.gather_pipeline,
            expected=tuple(detectors),
            job_ids={made[d].job_id: d for d in sorted(made)},
            trigger=trigger,
        )
        return MadeJobs(jobs, visit)

    def file_job(self, pipeline: str, file_id: str, path: str, trigger: Trigger, priority: int = 0) -> Job:
        """The job of one pipeline on a generator's file (announced by largeFileObjectAvailable).

        A file has no detectors: a per-detector pipeline runs once on the whole file, with no
        visit to gather. The file's id goes in as obsid: `DataId.obsid` is "the image name", what
        `Job.image_name`, jobResult.imageName and the results database show, and
        jobResult.dataId then reads ``{"obsid": "GC101_O_20251115_000001"}``, which is true of the
        file (groupId would claim a timestamp). The id must be a plain name (`check_file_id`)
        because it also names the job's product directory. Nothing reads raws by this obsid: the
        job's inputs are the file.

        Raises
        ------
        JobRequestError
            Unknown or internal pipeline, or an id that is not a plain name.
        """
        try:
            check_file_id(file_id)
        except ValueError as e:
            raise JobRequestError(str(e)) from None
        _, job = self._maker(pipeline, {}, trigger, priority)
        return job(DataId(self.instrument.name, obsid=file_id), inputs=[str(path)])

    def gather_job(self, visit: VisitGather) -> Job:
        """The gather job of a visit (its inputs, the visit's description and images, set by the caller)."""
        spec = self.registry.get(visit.gather_pipeline)
        defaults = self.pipelines.get(spec.name, {})
        return Job(
            job_id=new_job_id(),
            pipeline=spec.name,
            data_id=parse_data_id(json.dumps({"obsid": visit.image_name}), self.instrument),
            config=spec.make_config(defaults.get("config", {})).model_dump(mode="json"),
            trigger=visit.trigger,
            time_limit=float(defaults.get("time_limit", self.default_time_limit)),
            submit_time=self.clock(),
            priority=GATHER_PRIORITY,
        )

    def gather_description(self, visit: VisitGather, partial: bool, regather: bool) -> dict[str, Any]:
        """The gather's ``visit.json``: what was expected, what landed, what failed."""
        return {
            "imageName": visit.image_name,
            "instrument": self.instrument.name,
            "expected": list(visit.expected),
            "detectors": [visit.rows[d] for d in sorted(visit.rows)],
            "failed": {str(d): reason for d, reason in sorted(visit.failed.items())},
            "partial": partial,
            "regather": regather,
        }

    # -- internals --

    def _maker(
        self, name: str, override: dict[str, Any], trigger: Trigger, priority: int
    ) -> tuple[type[Pipeline], Callable[..., Job]]:
        """A requestable pipeline and a maker of its jobs, with the configuration validated once."""
        try:
            spec = self.registry.get(name)
        except ValueError as e:
            raise JobRequestError(str(e)) from None
        if spec.internal:
            raise JobRequestError(f"pipeline {spec.name!r} is run by the CSC itself; it cannot be requested")
        defaults = self.pipelines.get(spec.name, {})
        try:
            validated = spec.make_config(defaults.get("config", {}), override)
        except ValueError as e:
            raise JobRequestError(str(e)) from None
        time_limit = float(defaults.get("time_limit", self.default_time_limit))

        def job(data_id: DataId, **fields: Any) -> Job:
            return Job(
                job_id=new_job_id(),
                pipeline=spec.name,
                data_id=data_id,
                config=validated.model_dump(mode="json"),
                trigger=trigger,
                time_limit=time_limit,
                submit_time=self.clock(),
                priority=priority,
                **fields,
            )

        return spec, job
