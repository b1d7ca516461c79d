"""What runs inside a Dask worker: one pipeline on its inputs, every outcome turned into data.

The function never raises for a pipeline's own failure; it returns a plain dict (picklable and
independent of our classes' versions) with ``status`` in succeeded/failed/aborted. Only a dead
worker or a cancelled task is seen as an exception by the CSC.
"""

from __future__ import annotations

import functools
import pathlib
import time
import traceback
from typing import Any

from ..pipelines.base import ExitCode, JobAborted, PipelineContext, PipelineError
from ..pipelines.registry import PipelineRegistry
from ..sal.tai import current_tai

__all__ = ["run_job", "abort_event_name"]

# How often, at most, a pipeline's abort check asks the scheduler (each ask is a round trip).
_ABORT_POLL_INTERVAL = 0.1


def abort_event_name(job_id: str) -> str:
    """Name of the distributed.Event that says a job must stop."""
    return f"rapidanalysis-abort-{job_id}"


@functools.cache
def _registry(simulation_mode: bool) -> PipelineRegistry:
    return PipelineRegistry(simulation_mode=simulation_mode)


def _abort_checker(job_id: str) -> Any:
    """A cheap is_cancelled(): asks the scheduler's Event at most every 0.1 s."""
    state = {"last": 0.0, "value": False}

    def is_cancelled() -> bool:
        if state["value"]:
            return True
        now = time.monotonic()
        if now - state["last"] < _ABORT_POLL_INTERVAL:
            return False
        state["last"] = now
        try:
            from distributed import Event, get_client

            state["value"] = Event(abort_event_name(job_id), client=get_client()).is_set()
        except (ValueError, RuntimeError):
            # Not inside a Dask worker (e.g. run in-process): never aborted from outside.
            state["value"] = False
        return state["value"]

    return is_cancelled


def run_job(
    job_id: str,
    pipeline: str,
    inputs: list[str],
    config: dict[str, Any],
    output_dir: str,
    simulation_mode: bool,
    in_dask: bool = True,
) -> dict[str, Any]:
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
    outcome : `dict`
        ``status`` (succeeded/failed/aborted), ``exit_code``, ``message``, ``traceback``,
        ``result`` (a PipelineResult as a dict), ``start_time``, ``end_time`` (TAI).
    """
    start = current_tai()
    outcome: dict[str, Any] = {
        "start_time": start,
        "exit_code": ExitCode.SUCCESS,
        "message": "",
        "traceback": "",
        "result": None,
    }
    try:
        pipeline_cls = _registry(simulation_mode).get(pipeline)
        pipeline_config = pipeline_cls.make_config(config)
        context = PipelineContext(
            job_id, pathlib.Path(output_dir), is_cancelled=_abort_checker(job_id) if in_dask else None
        )
        result = pipeline_cls().run([pathlib.Path(p) for p in inputs], pipeline_config, context)
        outcome.update(status="succeeded", result=result.model_dump(mode="json"))
    except JobAborted as e:
        outcome.update(status="aborted", exit_code=ExitCode.ABORTED, message=str(e))
    except PipelineError as e:
        outcome.update(status="failed", exit_code=e.exit_code, message=str(e))
    except Exception as e:
        outcome.update(
            status="failed",
            exit_code=ExitCode.CRASHED,
            message=f"pipeline {pipeline} crashed: {type(e).__name__}: {e}",
            traceback=traceback.format_exc(),
        )
    outcome["end_time"] = current_tai()
    return outcome
