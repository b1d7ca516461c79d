"""A job: one pipeline run on one data id, from request to its single jobResult."""

from __future__ import annotations

import dataclasses
import enum
import itertools
import json
import uuid
from typing import TYPE_CHECKING, Any

from ..data.data_id import DataId

# Defined with the pipeline contract, which pipelines can import (dispatch depends on pipelines,
# not the reverse); re-exported here for the CSC and dispatch.
from ..pipelines.base import ExitCode, PipelineResult

if TYPE_CHECKING:
    from .worker_task import JobOutcome

__all__ = ["Job", "JobState", "Trigger", "new_job_id", "FINAL_STATES", "ExitCode"]


class JobState(enum.StrEnum):
    """Where a job is: queued → running → one of the final states."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    TIMED_OUT = "timed_out"


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.ABORTED, JobState.TIMED_OUT})


class Trigger(enum.StrEnum):
    """What asked for a job."""

    COMMAND = "command"
    AUTONOMOUS = "autonomous"
    CATCHUP = "catchup"


_sequence = itertools.count(1)


def new_job_id() -> str:
    """A short unique job id."""
    return f"ra-{uuid.uuid4().hex[:12]}"


@dataclasses.dataclass(eq=False)
class Job:
    """One job and everything known about it.

    Attributes
    ----------
    job_id : `str`
    pipeline : `str`
    data_id : `DataId`
    config : `dict`
        The validated configuration (defaults merged with the override).
    trigger : `Trigger`
    time_limit : `float`
        Seconds from the start of running.
    submit_time : `float`
        TAI when accepted.
    priority : `int`
        Higher runs first; ties run newest first.
    """

    job_id: str
    pipeline: str
    data_id: DataId
    config: dict[str, Any]
    trigger: Trigger
    time_limit: float
    submit_time: float
    priority: int = 0
    state: JobState = JobState.QUEUED
    sequence: int = dataclasses.field(default_factory=lambda: next(_sequence))
    start_time: float = 0.0
    end_time: float = 0.0
    exit_code: int = 0
    error_report: str = ""
    #: How the pipeline run ended on its worker (None if it never ended there: aborted while
    #: queued, timed out, its worker lost).
    outcome: JobOutcome | None = None
    inputs: list[str] = dataclasses.field(default_factory=list)
    #: Times the scheduler ran the job again because its worker left while it ran.
    reruns: int = 0
    #: What of the job's results could not be published as it was, and why (one sentence each).
    publication: list[str] = dataclasses.field(default_factory=list)

    @property
    def done(self) -> bool:
        """Whether the job has ended."""
        return self.state in FINAL_STATES

    @property
    def duration(self) -> float:
        """Seconds from running to end (0 if it never ran)."""
        return max(0.0, self.end_time - self.start_time) if self.start_time and self.end_time else 0.0

    @property
    def image_name(self) -> str:
        """The image this job is about (obsid or group id)."""
        return self.data_id.obsid or self.data_id.group_id or ""

    @property
    def queue_key(self) -> tuple[int, int]:
        """Sort key: highest priority first, then newest first."""
        return (-self.priority, -self.sequence)

    @property
    def result(self) -> PipelineResult:
        """What the pipeline returned; empty if it returned nothing (it failed, or never ran)."""
        if self.outcome is None or self.outcome.result is None:
            return PipelineResult()
        return self.outcome.result

    def result_json(self) -> str:
        """The jobResult.result JSON: the pipeline's summary, metrics and products.

        With ``publication`` when something of the job's results could not be published as it
        was. Never raises: a result that cannot be encoded is replaced by a note saying why.
        """
        result = self.result
        out: dict[str, Any] = {
            "skipped": result.skipped,
            "summary": result.summary,
            "metrics": result.metrics,
            "products": [product.path for product in result.products],
        }
        if self.publication:
            out["publication"] = list(self.publication)
        try:
            return json.dumps(out, default=str, allow_nan=True)
        except (TypeError, ValueError) as e:  # e.g. a circular structure
            return json.dumps(
                {"publication": [*self.publication, f"result could not be encoded as JSON: {e}"]}, default=str
            )
