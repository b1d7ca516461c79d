"""`ExitCode`: one enum for pipelines and dispatch, with the values that are on the wire."""

from __future__ import annotations

import ast
import pathlib

from lsst.ts.rapidanalysis.dispatch import jobs
from lsst.ts.rapidanalysis.pipelines import base
from lsst.ts.rapidanalysis.pipelines.base import ExitCode, PipelineError

PIPELINES = pathlib.Path(base.__file__).parent


def test_values_are_those_on_the_wire() -> None:
    """jobResult.exitCode and the database hold these integers: they must never change."""
    assert {m.name: int(m) for m in ExitCode.__members__.values()} == {
        "SUCCESS": 0,
        "CRASHED": 1,
        "PIPELINE_FAILED": 2,
        "NO_INPUT": 3,
        "WORKER_DIED": 4,
        "POOL_LOST": 5,
        "TIMED_OUT": 124,
        "ABORTED": 255,
    }
    assert ExitCode.CSC_RESTARTED == ExitCode.POOL_LOST == 5


def test_dispatch_re_exports_the_same_enum() -> None:
    assert jobs.ExitCode is ExitCode


def test_pipeline_error_default() -> None:
    assert PipelineError("nothing to measure").exit_code == ExitCode.PIPELINE_FAILED == 2
    assert PipelineError("no raw", exit_code=ExitCode.NO_INPUT).exit_code == 3


def test_no_literal_exit_codes_in_pipelines() -> None:
    """Pipelines name their exit codes (``exit_code=ExitCode.NO_INPUT``), never write a number."""
    literals = []
    for path in sorted(PIPELINES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "exit_code" and isinstance(node.value, ast.Constant):
                literals.append(f"{path.name}:{node.value.lineno}")
    assert literals == []
