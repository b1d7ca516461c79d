"""Which worker runs which job: each detector keeps its worker while that worker lives.

A detector's jobs go to its *home* worker, so that what the worker caches for that detector
(calibration masters, the camera description) stays useful. The home is chosen by rendezvous
(highest-random-weight) hashing of the detector over the live workers: every CSC process and
every restart agrees on it, detectors spread evenly, and when a worker joins or leaves only the
detectors that hashed to it move.

Affinity never makes a worker idle: a job goes to its home only when the home has a free slot;
otherwise the most-free worker takes it (its detector's home stays where it is). Jobs are
placed in queue order; among the jobs of the top priority, one whose home is free goes first.

Pure logic: no Dask, no clock; `place` is what `JobManager` asks before it submits.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

__all__ = ["WorkerSlots", "affinity_key", "home_worker", "place"]


class Placeable(Protocol):
    """What `place` needs of a job."""

    @property
    def job_id(self) -> str: ...

    @property
    def priority(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class WorkerSlots:
    """A worker that may take jobs: how many at once, and how many it has now.

    Attributes
    ----------
    address : `str`
        Its Dask address.
    n_threads : `int`
        Jobs it runs at once.
    busy : `int`
        Jobs placed on it and not ended.
    """

    address: str
    n_threads: int
    busy: int = 0

    @property
    def free(self) -> int:
        """Slots it has free (never negative)."""
        return max(0, self.n_threads - self.busy)


def affinity_key(instrument: str, detectors: Sequence[int] | None) -> str | None:
    """The affinity key of a job: its detector, if it has exactly one; else None (no home)."""
    if detectors is None or len(detectors) != 1:
        return None
    return f"{instrument}:{detectors[0]}"


def _weight(key: str, address: str) -> bytes:
    return hashlib.blake2b(f"{key}\x00{address}".encode(), digest_size=8).digest()


def home_worker(key: str, addresses: Iterable[str]) -> str | None:
    """The home worker of ``key`` among ``addresses`` (None if there is none)."""
    return _home_worker(key, tuple(sorted(addresses)))


@functools.lru_cache(maxsize=16384)
def _home_worker(key: str, addresses: tuple[str, ...]) -> str | None:
    # Cached: `place` asks for every queued job each time a slot frees, and the answer changes
    # only with the set of workers (a queue of 189 behind 16 slots asked ~36,000 times a visit).
    return max(addresses, key=lambda address: _weight(key, address), default=None)


def place(
    queue: Sequence[Placeable],
    keys: Mapping[str, str | None],
    workers: Sequence[WorkerSlots],
    free_total: int,
    *,
    affinity: bool = True,
) -> list[tuple[str, str]]:
    """Which queued jobs start now, and where.

    Parameters
    ----------
    queue : sequence of jobs
        Jobs ready to run, in run order (highest priority first, then newest first).
    keys : `dict` [`str`, `str` or None]
        Each job's affinity key by job id (`affinity_key`); missing or None: no home.
    workers : sequence of `WorkerSlots`
        The workers that may take jobs now.
    free_total : `int`
        Slots free in the whole pool: fewer than the workers' own count when jobs run on workers
        the manager no longer knows of (re-run by the scheduler after their worker left).
    affinity : `bool`
        Prefer each job's home worker.

    Returns
    -------
    placements : `list` [`tuple` [`str`, `str`]]
        (job id, worker address), in the order to submit them.
    """
    free = {w.address: w.free for w in workers}
    addresses = tuple(sorted(free))
    homes = {
        job.job_id: _home_worker(key, addresses) if affinity and (key := keys.get(job.job_id)) else None
        for job in queue
    }
    remaining = list(queue)
    placements: list[tuple[str, str]] = []
    budget = free_total
    while remaining and budget > 0 and any(n > 0 for n in free.values()):
        top = remaining[0].priority
        # Among the top priority's jobs, the first whose home has room; else the first job.
        chosen = next(
            (
                job
                for job in remaining
                if job.priority == top and (home := homes[job.job_id]) is not None and free[home] > 0
            ),
            remaining[0],
        )
        home = homes[chosen.job_id]
        if home is not None and free[home] > 0:
            address = home
        else:
            # The most-free worker (ties: the first address, so placement repeats).
            address = min(addresses, key=lambda a: (-free[a], a))
        remaining.remove(chosen)
        placements.append((chosen.job_id, address))
        free[address] -= 1
        budget -= 1
    return placements
