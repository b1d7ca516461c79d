"""The preload of a deployed Dask worker: the job code and every built-in pipeline, imported at start.

``dask worker <scheduler> --preload lsst.ts.rapidanalysis.dispatch.worker_setup``: without it a
worker imports each pipeline (SciPy, matplotlib: ~2 s here) during its first job of that
pipeline, counted against that job's time limit, on the first image after every pod start.
The CSC's own local pool preloads only `worker_task` (it is restarted with the CSC, and its
first jobs are not a visit's worth).
"""

from __future__ import annotations

import logging
from typing import Any

from ..pipelines.registry import PipelineRegistry
from . import worker_task  # noqa: F401  (the job code itself)

__all__ = ["dask_setup"]

_log = logging.getLogger(__name__)


def dask_setup(worker: Any) -> None:
    """Import every built-in pipeline (called by the worker when it loads this preload)."""
    registry = PipelineRegistry(simulation_mode=False)
    for name in registry.names:
        try:
            registry.get(name)
        except Exception:  # a pipeline that cannot be imported fails its own jobs, saying why
            _log.exception("Pipeline %s could not be imported at worker start", name)
