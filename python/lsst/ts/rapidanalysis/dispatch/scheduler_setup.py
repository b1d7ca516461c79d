"""The preload of a deployed Dask scheduler: an autoscaling target that counts the CSCs' own queues.

``dask scheduler --preload lsst.ts.rapidanalysis.dispatch.scheduler_setup``. An autoscaler (the
Dask Kubernetes operator's ``DaskAutoscaler``, or ``Adaptive``) asks the scheduler how many workers
it wants, ``Scheduler.adaptive_target``, which counts the tasks the scheduler holds. A Rapid
Analysis CSC keeps its queue to itself (it places each job on a free thread, newest image first,
and drops work it cannot afford) and submits a job only when a thread is free, so that count never
exceeds the workers there are: the cluster could shrink but never grow.

Each CSC therefore says what it wants, once a second, in the scheduler's metadata under
``rapid_analysis/demand/<instrument>`` (`DEMAND_KEY`; `WorkerPool.report_demand`): ``slots``, its
running and queued jobs, or more when automatic down-selection is leaving detectors out for want of
workers, and ``time``. This preload makes ``adaptive_target`` the larger of Dask's own answer and
the workers those slots fill (`workers_wanted`). A demand older than `MAX_DEMAND_AGE` (a CSC that
stopped reporting) counts for nothing. A scheduler without this preload keeps the metadata and
ignores it; a CSC against it works as before.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["DEMAND_KEY", "MAX_DEMAND_AGE", "dask_setup", "workers_wanted"]

#: Where in the scheduler's metadata each CSC's demand is kept, under its instrument's name.
DEMAND_KEY = ("rapid_analysis", "demand")
#: Seconds after which a CSC's demand no longer counts (it reports every second while it runs).
MAX_DEMAND_AGE = 60.0

_log = logging.getLogger(__name__)


def workers_wanted(
    dask_target: int,
    demands: Mapping[str, Any],
    worker_threads: list[int],
    now: float,
    max_age: float = MAX_DEMAND_AGE,
) -> int:
    """Workers the cluster should have: Dask's own target, or the CSCs' demand if larger.

    Parameters
    ----------
    dask_target : `int`
        ``Scheduler.adaptive_target()`` as Dask computes it.
    demands : `dict` [`str`, `dict`]
        Per instrument, ``{"slots": int, "time": float}`` as CSCs report them. Anything malformed
        counts for nothing (the scheduler must answer its autoscaler whatever a client wrote).
    worker_threads : `list` [`int`]
        Threads of each worker now in the cluster; slots are turned into workers with their mean
        (1 when there are none: one thread per worker is the deployed shape).
    now : `float`
        Current time (unix seconds, the clock the CSCs stamp ``time`` with).
    max_age : `float`
        Seconds after which a demand is stale and ignored.

    Returns
    -------
    n_workers : `int`
        ``max(dask_target, ceil(total fresh slots / threads per worker))``.
    """
    slots = 0
    for demand in demands.values() if isinstance(demands, Mapping) else ():
        if not isinstance(demand, Mapping):
            continue
        wanted, stamp = demand.get("slots"), demand.get("time")
        if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 0:
            continue
        if isinstance(stamp, bool) or not isinstance(stamp, int | float) or not now - max_age <= stamp <= now + max_age:
            continue
        slots += wanted
    threads = sum(worker_threads) / len(worker_threads) if worker_threads else 1.0
    return max(dask_target, math.ceil(slots / max(threads, 1.0)))


def dask_setup(scheduler: Any) -> None:
    """Make the scheduler's ``adaptive_target`` count the CSCs' demand (called when it loads this preload)."""
    dask_target: Callable[..., int] = scheduler.adaptive_target

    def adaptive_target(target_duration: float | None = None) -> int:  # Dask's signature
        own = dask_target(target_duration)
        demands = scheduler.get_metadata(keys=list(DEMAND_KEY), default={})
        threads = [worker.nthreads for worker in scheduler.workers.values()]
        return workers_wanted(own, demands, threads, time.time())

    # The HTTP route (/api/v1/adaptive_target) calls the attribute; the RPC calls the handler table.
    scheduler.adaptive_target = adaptive_target
    scheduler.handlers["adaptive_target"] = adaptive_target
    _log.info("Rapid Analysis: adaptive_target counts the CSCs' demand (metadata %s)", "/".join(DEMAND_KEY))
