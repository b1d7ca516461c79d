"""What a pipeline is: a named function of input files and a validated configuration.

Pipelines run in Dask worker processes. They receive a `PipelineContext` (job id, where to write
products, how to notice an abort) and return a `PipelineResult`: metrics per image and per
detector, the SAL telemetry to publish, and product files. A pipeline raises `PipelineError`
for a failure it understands (a clear reason, no traceback); anything else is a crash.
"""

from __future__ import annotations

import abc
import enum
import logging
import pathlib
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import pydantic

if TYPE_CHECKING:
    from ..data.camera import Instrument

__all__ = [
    "Pipeline",
    "PipelineConfig",
    "PipelineContext",
    "PipelineResult",
    "Product",
    "TelemetrySample",
    "PipelineError",
    "ExitCode",
    "JobAborted",
    "safe_file_name",
]


def safe_file_name(text: str) -> str:
    """``text`` made safe as part of a file name (an image name, a label): at most 100 characters."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:100] or "image"


class ExitCode(enum.IntEnum):
    """jobResult.exitCode values: those pipelines raise (`PipelineError`) and those the CSC assigns.

    The values are on the wire (``jobResult.exitCode``) and in the results database: never change
    one. ``dispatch.jobs`` re-exports this enum.
    """

    SUCCESS = 0
    CRASHED = 1  # the pipeline raised an unexpected exception
    #: A failure the pipeline understands that is not its input's fault: nothing to measure (no
    #: star found), a result it refuses to report. The default of `PipelineError`.
    PIPELINE_FAILED = 2
    NO_INPUT = 3  # no usable input: the raws never appeared, or are unreadable or truncated
    WORKER_DIED = 4  # the worker process died (repeatedly) while running it
    ABORTED = 255  # as OCPS's abort_job
    TIMED_OUT = 124  # as timeout(1)
    POOL_LOST = 5  # the Dask scheduler went away
    #: The CSC process ended (a crash, kill -9) before the job did; its next start ends the job.
    #: The same code as POOL_LOST: the compute the job was given went away with it.
    CSC_RESTARTED = 5


class PipelineError(Exception):
    """A failure the pipeline understands (bad input, nothing to measure): reported, not a crash.

    Parameters
    ----------
    message : `str`
        Reason, for the jobResult errorReport.
    exit_code : `int`
        Non-zero code for jobResult.exitCode: an `ExitCode` member (default
        `ExitCode.PIPELINE_FAILED`; `ExitCode.NO_INPUT` for a missing or unusable input).
    """

    def __init__(self, message: str, exit_code: int = ExitCode.PIPELINE_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class JobAborted(Exception):
    """Raised by `PipelineContext.check_cancelled` when the job has been aborted."""


class PipelineConfig(pydantic.BaseModel):
    """Base of pipeline configuration models: unknown fields are errors."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class Product(pydantic.BaseModel):
    """A file a pipeline wrote (a plot, a table); announced with largeFileObjectAvailable."""

    path: str
    mime_type: str = "image/png"
    description: str = ""


class TelemetrySample(pydantic.BaseModel):
    """One sample of a RapidAnalysis telemetry topic to publish (e.g. ``sfmDetectorMetrics``)."""

    topic: str
    fields: dict[str, Any]


class PipelineResult(pydantic.BaseModel):
    """What a pipeline run produced.

    Attributes
    ----------
    image_name : `str`
        The image (obsid) it concerns, if any.
    metrics : `dict` [`str`, `float`]
        Per-image metrics (stored in the results database).
    detector_metrics : `list` [`dict`]
        Per-detector rows; each must have ``detector`` (int) and numeric metrics.
    telemetry : `list` [`TelemetrySample`]
        SAL telemetry samples to write.
    products : `list` [`Product`]
        Files written under the job's output directory.
    summary : `dict`
        Small JSON-able summary for jobResult.result.
    skipped : `str`
        Non-empty when the pipeline deliberately did not measure this input (a bias frame for
        ``mount_torque``, an undispersed image for ``spectrum_examiner``): the reason. The job
        still succeeds; nothing is published but the jobResult.
    """

    image_name: str = ""
    metrics: dict[str, float | int | None] = pydantic.Field(default_factory=dict)
    detector_metrics: list[dict[str, Any]] = pydantic.Field(default_factory=list)
    telemetry: list[TelemetrySample] = pydantic.Field(default_factory=list)
    products: list[Product] = pydantic.Field(default_factory=list)
    summary: dict[str, Any] = pydantic.Field(default_factory=dict)
    skipped: str = ""


class PipelineContext:
    """What a running pipeline may know and do besides its inputs.

    Parameters
    ----------
    job_id : `str`
        The job.
    output_dir : `pathlib.Path`
        Where to write products (created on demand).
    is_cancelled : callable
        Returns True once the job is aborted or timed out.
    """

    def __init__(self, job_id: str, output_dir: pathlib.Path, is_cancelled: Callable[[], bool] | None = None) -> None:
        self.job_id = job_id
        self.output_dir = output_dir
        self._is_cancelled = is_cancelled or (lambda: False)
        self.log = logging.getLogger(f"rapidanalysis.job.{job_id}")

    def check_cancelled(self) -> None:
        """Raise `JobAborted` if the job was aborted; call between stages of long work."""
        if self._is_cancelled():
            raise JobAborted(f"job {self.job_id} was aborted")

    def product_path(self, file_name: str) -> pathlib.Path:
        """A path for a product file in this job's output directory."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        return self.output_dir / file_name


#: A pipeline's configuration model (`Pipeline` is generic in it).
ConfigT = TypeVar("ConfigT", bound=PipelineConfig)


class Pipeline(abc.ABC, Generic[ConfigT]):
    """A named pipeline, generic in its configuration model (``Pipeline[SfmConfig]``).

    Class attributes
    ----------------
    name : `str`
        Name used in ``processData`` (e.g. ``sfm``).
    description : `str`
        One line for listings.
    Config : `type` [`PipelineConfig`]
        Its configuration model; ``processData`` overrides are validated against it.
    simulation_only : `bool`
        Only available in simulation mode (test pipelines).
    requires_inputs : `bool`
        Whether the CSC must find raw files for the dataId before running it.
    per_detector : `bool`
        ``processData`` on an image runs one job per selected detector, then a gather.
    detector_parallel : `bool`
        Autonomous mode runs one job per selected detector, with no gather (``processData``
        still runs one job on all the detectors it names).
    gather_pipeline : `str`
        For per-detector pipelines: the pipeline that combines a visit's results (run by the CSC).
    internal : `bool`
        Run only by the CSC itself (a gather), never by ``processData``.
    needs_mount_telemetry : `bool`
        Its inputs are one raw of the exposure and a mount-telemetry file of the exposure window,
        which the CSC writes from the telemetry it has received.
    multi_visit : `bool`
        Its inputs are the raws of several visits (`input_visits`), on `input_detectors` when
        the dataId names none (``focus_sweep``).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Config: ClassVar[type[PipelineConfig]] = PipelineConfig
    simulation_only: ClassVar[bool] = False
    requires_inputs: ClassVar[bool] = True
    per_detector: ClassVar[bool] = False
    detector_parallel: ClassVar[bool] = False
    gather_pipeline: ClassVar[str] = ""
    internal: ClassVar[bool] = False
    needs_mount_telemetry: ClassVar[bool] = False
    multi_visit: ClassVar[bool] = False

    @classmethod
    def input_visits(cls, config: Mapping[str, Any], day_obs: int | None, seq_num: int | None) -> list[int]:
        """A multi-visit pipeline's visits (ids dayObs*100000+seqNum) for a job's configuration and dataId."""
        return []

    @classmethod
    def input_detectors(cls, instrument: Instrument, config: Mapping[str, Any]) -> tuple[int, ...]:
        """The detectors of each visit a multi-visit pipeline reads, when the dataId names none."""
        return ()

    @classmethod
    def make_config(cls, *layers: dict[str, Any]) -> PipelineConfig:
        """Validate configuration layers merged in order (defaults, site, override).

        Raises
        ------
        ValueError
            Naming each bad field and why.
        """
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(layer or {})
        try:
            return cls.Config(**merged)
        except pydantic.ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(config)'}: {err['msg']}" for err in e.errors()
            )
            raise ValueError(f"bad configuration for pipeline {cls.name!r}: {problems}") from None

    @abc.abstractmethod
    def run(self, inputs: list[pathlib.Path], config: ConfigT, context: PipelineContext) -> PipelineResult:
        """Run on ``inputs`` (files) with ``config`` (made by `make_config`); return what it measured."""
        raise NotImplementedError()
