"""What runs inside a Dask worker: one pipeline on its inputs, every outcome turned into data.

The function never raises for a pipeline's own failure; it returns a `JobOutcome` with ``status``
succeeded, failed or aborted, and the pipeline's `PipelineResult` reduced to JSON-able data (what
the CSC publishes). Only a dead worker or a cancelled task is seen as an exception by the CSC.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any, Literal

from ..pipelines.base import ExitCode, JobAborted, PipelineContext, PipelineError, PipelineResult
from ..pipelines.registry import PipelineRegistry
from ..sal.tai import current_tai

__all__ = ["JobOutcome", "run_job", "abort_event_name", "mark_aborted"]

# How often, at most, a pipeline's abort check asks the scheduler: the fallback for when the CSC's
# direct word (`mark_aborted`) did not reach this worker (the job moved, the call failed). Each
# ask is a round trip to the scheduler: with 190 jobs checking, 10 Hz cost it ~1 s CPU a visit.
_ABORT_POLL_INTERVAL = 1.0
#: Jobs the CSC told this worker to stop (`mark_aborted`), newest last; a pipeline's check reads it
#: for free. Bounded: a word that comes after its job ended stays until pushed out.
_ABORTED: dict[str, None] = {}
_MAX_ABORTED = 10_000


@dataclasses.dataclass(frozen=True)
class JobOutcome:
    """How a job's pipeline run ended, as the worker saw it.

    Attributes
    ----------
    status : `str`
        ``succeeded``, ``failed`` (the pipeline raised) or ``aborted`` (it saw the abort flag).
    exit_code : `int`
        jobResult.exitCode: an `ExitCode` member, or a pipeline's own non-zero code.
    message : `str`
        Why it failed or was aborted; empty on success.
    start_time, end_time : `float`
        TAI when the pipeline started and ended on the worker.
    result : `PipelineResult` or None
        What the pipeline returned (None unless it succeeded).
    traceback : `str`
        The traceback of a crash (an exception that is not a `PipelineError`).
    worker : `str`
        The worker that ran it: its host and Dask address ("" when run in-process).
    """

    status: Literal["succeeded", "failed", "aborted"]
    exit_code: int
    message: str = ""
    start_time: float = 0.0
    end_time: float = 0.0
    result: PipelineResult | None = None
    traceback: str = ""
    worker: str = ""


def _this_worker() -> str:
    """This worker's host and address, for messages ("" outside a Dask worker)."""
    try:
        from distributed import get_worker

        return f"{socket.gethostname()} {get_worker().address}"
    except ValueError:
        return ""


def abort_event_name(job_id: str) -> str:
    """Name of the distributed.Event that says a job must stop."""
    return f"rapidanalysis-abort-{job_id}"


@functools.cache
def _registry(simulation_mode: bool) -> PipelineRegistry:
    return PipelineRegistry(simulation_mode=simulation_mode)


def mark_aborted(job_id: str) -> None:
    """Tell this worker's run of a job to stop at its next check (the CSC runs it here by ``Client.run``)."""
    _ABORTED[job_id] = None
    while len(_ABORTED) > _MAX_ABORTED:
        del _ABORTED[next(iter(_ABORTED))]


def _abort_checker(job_id: str) -> Callable[[], bool]:
    """A cheap is_cancelled(): the CSC's direct word, else the scheduler's Event at most every second."""
    last_asked = 0.0  # the first check asks: an abort may have come while the job waited for a thread
    aborted = False

    def is_cancelled() -> bool:
        nonlocal last_asked, aborted
        if aborted or job_id in _ABORTED:
            aborted = True
            return True
        now = time.monotonic()
        if now - last_asked < _ABORT_POLL_INTERVAL:
            return False
        last_asked = now
        try:
            from distributed import Event, get_client

            aborted = bool(Event(abort_event_name(job_id), client=get_client()).is_set())
        except (ValueError, RuntimeError):
            # Not inside a Dask worker (e.g. run in-process): never aborted from outside.
            aborted = False
        return aborted

    return is_cancelled


def run_job(
    job_id: str,
    pipeline: str,
    inputs: list[str],
    config: dict[str, Any],
    output_dir: str,
    simulation_mode: bool,
    in_dask: bool = True,
) -> JobOutcome:
    """Run one job's pipeline; return its outcome.

    Parameters
    ----------
    job_id : `str`
        Job id.
    pipeline : `str`
        Pipeline name.
    inputs : `list` [`str`]
        Input files.
    config : `dict`
        Configuration (validated again here against the worker's pipeline version).
    output_dir : `str`
        Where products go.
    simulation_mode : `bool`
        Whether test pipelines exist.
    in_dask : `bool`
        Poll the scheduler for aborts (False when run in-process).

    Returns
    -------
    outcome : `JobOutcome`
        How it ended, with the pipeline's result if it succeeded.
    """
    start = current_tai()
    try:
        pipeline_cls = _registry(simulation_mode).get(pipeline)
        pipeline_config = pipeline_cls.make_config(config)
        context = PipelineContext(
            job_id, pathlib.Path(output_dir), is_cancelled=_abort_checker(job_id) if in_dask else None
        )
        result = pipeline_cls().run([pathlib.Path(p) for p in inputs], pipeline_config, context)
        # Validated and reduced to JSON-able values here, where a bad result is the pipeline's crash
        # (with its traceback), not a publishing failure in the CSC.
        plain = PipelineResult.model_validate(result.model_dump(mode="json"))
        outcome = JobOutcome("succeeded", ExitCode.SUCCESS, start_time=start, result=plain)
    except JobAborted as e:
        outcome = JobOutcome("aborted", ExitCode.ABORTED, str(e), start)
    except PipelineError as e:
        outcome = JobOutcome("failed", e.exit_code, str(e), start)
    except Exception as e:
        outcome = JobOutcome(
            "failed",
            ExitCode.CRASHED,
            f"pipeline {pipeline} crashed: {type(e).__name__}: {e}",
            start,
            traceback=traceback.format_exc(),
        )
    _ABORTED.pop(job_id, None)
    return dataclasses.replace(outcome, end_time=current_tai(), worker=_this_worker() if in_dask else "")
