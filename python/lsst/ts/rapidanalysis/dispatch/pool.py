"""The Dask worker pool: a LocalCluster of worker processes, or an existing cluster by address.

Besides starting and stopping the pool, `WorkerPool` watches its workers (at every `refresh`,
which the CSC calls each second) and says what happens to them. The rule, with ``T`` =
``restart_timeout``:

- a worker that leaves, or joins, is logged at once, with how many of how many are left;
- a local pool's missing worker is normally restarted by its nanny within seconds; if the pool is
  still short ``T/2`` after the loss, the pool starts a replacement itself, and again every ``T/2``
  until the pool is whole (a nanny that failed to restart its worker never tries again);
- still short after ``T``: one warning that the pool is smaller than it should be (an external
  cluster's workers are its own to restart: the pool only says so), and one line when it is
  whole again;
- below ``min_workers`` for ``T``: ``on_too_small`` is called once, with the reason (the CSC goes
  to FAULT).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Awaitable, Callable

from distributed import Client, LocalCluster

__all__ = ["WorkerPool", "PoolInfo", "PoolLostError"]

_CONNECT_TIMEOUT = 10.0
_WORKER_PRELOAD = "lsst.ts.rapidanalysis.dispatch.worker_task"
_PROBE_TIMEOUT = 5.0


class PoolLostError(RuntimeError):
    """The Dask scheduler cannot be reached any more."""


@dataclasses.dataclass
class PoolInfo:
    """What the scheduler says about the pool."""

    n_workers: int = 0
    n_threads: int = 0
    memory_used_mb: float = 0.0
    scheduler_address: str = ""
    dashboard_url: str = ""
    #: Workers the pool should have: a local pool's ``n_workers``; for an external cluster, the
    #: most it has had.
    n_expected: int = 0
    #: The fewest workers the pool had since the refresh before: less than ``n_workers`` when a
    #: worker died and came back between two refreshes.
    n_fewest: int = 0


class WorkerPool:
    """Start or connect to a Dask cluster and watch that it stays reachable.

    Parameters
    ----------
    scheduler_address : `str`
        Address of an existing scheduler (``tcp://host:port``); empty to start a local pool.
    n_workers : `int`
        Worker processes of a local pool.
    threads_per_worker : `int`
        Threads per worker process (pipelines are CPU-bound numpy: 1 is usual).
    memory_limit : `str`
        Per-worker memory limit of a local pool (Dask syntax, e.g. ``"4GB"``; ``"auto"``).
    on_lost : callable, optional
        Coroutine function called once, with a reason, if the scheduler is lost.
    min_workers : `int`
        The floor: fewer workers than this for ``restart_timeout`` seconds calls ``on_too_small``
        (0: never).
    restart_timeout : `float`
        Seconds a lost worker has to come back (see the module's rule).
    on_too_small : callable, optional
        Coroutine function called once, with a reason, when the pool has stayed below
        ``min_workers`` for ``restart_timeout``.
    log : `logging.Logger`
        Logger.
    """

    def __init__(
        self,
        *,
        scheduler_address: str,
        n_workers: int,
        threads_per_worker: int,
        memory_limit: str,
        on_lost: Callable[[str], Awaitable[None]] | None = None,
        min_workers: int = 0,
        restart_timeout: float = 30.0,
        on_too_small: Callable[[str], Awaitable[None]] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.scheduler_address = scheduler_address
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.memory_limit = memory_limit
        self.on_lost = on_lost
        self.min_workers = min_workers
        self.restart_timeout = restart_timeout
        self.on_too_small = on_too_small
        self.log = log or logging.getLogger(__name__)
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None
        self.info = PoolInfo()
        self._lost = False
        self._closing = False
        #: Replacement workers this pool started itself (local pool).
        self.n_replacements = 0
        self._reset_watch()

    def _reset_watch(self) -> None:
        self._workers: dict[str, str] | None = None  # address → name, at the last refresh
        self._most_workers = 0
        self._short_since: float | None = None
        self._said_smaller = False
        self._left: list[str] = []  # workers that left since the pool was last whole
        self._below_floor_since: float | None = None
        self._said_too_small = False
        self._last_replacement = 0.0
        self._last_refresh = time.monotonic()
        self._replace_task: asyncio.Task | None = None

    @property
    def is_local(self) -> bool:
        """Whether this pool started its own cluster."""
        return not self.scheduler_address

    @property
    def running(self) -> bool:
        """Whether the pool is up and its scheduler reachable."""
        return self.client is not None and not self._lost and not self._closing

    async def start(self) -> None:
        """Start the local cluster (loopback only) or connect to the configured scheduler."""
        self._lost = False
        self._closing = False
        self._reset_watch()
        if self.is_local:
            # Workers are spawned processes; they must not inherit our DDS participant's config
            # needs, and they listen on loopback only.
            self.cluster = await LocalCluster(
                n_workers=self.n_workers,
                threads_per_worker=self.threads_per_worker,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                memory_limit=self.memory_limit,
                asynchronous=True,
                silence_logs=logging.WARNING,
                # Import the job code (and the pipelines) when a worker starts, not in its first job,
                # which would otherwise spend ~1 s of its time limit importing.
                preload=[_WORKER_PRELOAD],
            )
            self.client = await Client(self.cluster, asynchronous=True, timeout=_CONNECT_TIMEOUT)
            # An asynchronous client returns coroutines; distributed types them as plain values.
            await self.client.wait_for_workers(self.n_workers, timeout=_CONNECT_TIMEOUT)  # type: ignore[misc]
        else:
            client = Client(self.scheduler_address, asynchronous=True, timeout=_CONNECT_TIMEOUT)
            try:
                self.client = await client
            except (OSError, TimeoutError) as e:
                # Close it now: left to the garbage collector it tries to, after our loop is gone.
                await client.close()
                raise PoolLostError(f"Cannot connect to the Dask scheduler at {self.scheduler_address}: {e}") from e
        await self.refresh()
        self.log.info(
            "Worker pool ready: %d workers, %d threads, scheduler %s",
            self.info.n_workers,
            self.info.n_threads,
            self.info.scheduler_address,
        )

    async def refresh(self) -> PoolInfo:
        """Ask the scheduler for workers, threads and memory; detects a lost scheduler.

        Raises
        ------
        PoolLostError
            If the scheduler does not answer (``on_lost`` is called once as well).
        """
        if self.client is None:
            raise PoolLostError("The worker pool is not running")
        try:
            identity = await asyncio.wait_for(self.client.scheduler.identity(), _PROBE_TIMEOUT)
        except (OSError, TimeoutError, asyncio.CancelledError, Exception) as e:
            if isinstance(e, asyncio.CancelledError) and not self._closing:
                raise
            reason = f"Lost the Dask scheduler at {self.info.scheduler_address or self.scheduler_address}: {e!r}"
            await self._mark_lost(reason)
            raise PoolLostError(reason) from e
        workers = identity.get("workers", {})
        services = identity.get("services", {})
        host = "127.0.0.1"
        dashboard = f"http://{host}:{services['dashboard']}/status" if "dashboard" in services else ""
        self._most_workers = max(self._most_workers, len(workers))
        self.info = PoolInfo(
            n_workers=len(workers),
            n_threads=sum(w.get("nthreads", 0) for w in workers.values()),
            memory_used_mb=sum(w.get("metrics", {}).get("memory", 0) for w in workers.values()) / 1e6,
            scheduler_address=identity.get("address", self.scheduler_address),
            dashboard_url=dashboard,
            n_expected=self.n_workers if self.is_local else self._most_workers,
        )
        await self._watch({address: str(w.get("name", address)) for address, w in workers.items()})
        return self.info

    async def _watch(self, workers: dict[str, str]) -> None:
        """Say what happened to the workers since the last refresh, and act on it (the module's rule)."""
        if self._closing or self._lost:
            return
        now = time.monotonic()
        n, expected = len(workers), self.info.n_expected
        previous, self._workers = self._workers, workers
        last_refresh, self._last_refresh = self._last_refresh, now
        # A worker that died and was restarted between two refreshes: the pool had only the workers
        # that stayed, in between.
        fewest = n if previous is None else min(n, len(previous.keys() & workers.keys()))
        self.info.n_fewest = fewest
        if previous is not None:
            for address in sorted(previous.keys() - workers.keys()):
                self._left.append(f"worker {previous[address]} ({address})")
                self.log.warning(
                    "Worker %s (%s) left the pool: %d of %d workers", previous[address], address, fewest, expected
                )
            for address in sorted(workers.keys() - previous.keys()):
                self.log.info(
                    "Worker %s (%s) joined the pool: %d of %d workers", workers[address], address, n, expected
                )
        if fewest < expected and self._short_since is None:
            self._short_since = last_refresh if n >= expected else now
        if n >= expected:
            if self._short_since is not None:
                self.log.info(
                    "Worker pool whole again: %d of %d workers, after %.1f s", n, expected, now - self._short_since
                )
            self._short_since = None
            self._said_smaller = False
            self._left = []
        else:
            if self._short_since is None:
                self._short_since = now
            short_for = now - self._short_since
            if (
                self.is_local
                and short_for >= self.restart_timeout / 2
                and now - self._last_replacement >= self.restart_timeout / 2
                and (self._replace_task is None or self._replace_task.done())
            ):
                self._last_replacement = now
                self._replace_task = asyncio.create_task(self._replace_missing(short_for))
            if short_for >= self.restart_timeout and not self._said_smaller:
                self._said_smaller = True
                self.log.warning(
                    "Worker pool is smaller than it should be: %d of %d workers for %.0f s (%s did not come back)%s",
                    n,
                    expected,
                    short_for,
                    ", ".join(self._left) or "workers that never joined",
                    f"; {self.n_replacements} replacement(s) started so far"
                    if self.is_local
                    else "; an external cluster restarts its own workers",
                )
        if n >= self.min_workers:
            self._below_floor_since = None
            return
        if self._below_floor_since is None:
            self._below_floor_since = now
        below_for = now - self._below_floor_since
        if below_for >= self.restart_timeout and not self._said_too_small:
            self._said_too_small = True
            reason = (
                f"The worker pool has had {n} of {expected} workers, fewer than min_workers={self.min_workers}, "
                f"for {below_for:.0f} s: {', '.join(self._left) or 'workers that never joined'} did not come back"
                + (f" ({self.n_replacements} replacement(s) started)" if self.is_local else "")
            )
            self.log.error(reason)
            if self.on_too_small is not None:
                await self.on_too_small(reason)

    async def _replace_missing(self, short_for: float) -> None:
        """Local pool: start a new nanny (and worker) for each configured worker the scheduler lacks.

        A nanny whose worker died restarts it, unless the restart itself fails (under load, say):
        then nothing would ever bring it back. Its place is taken by a new one, as
        ``distributed``'s SpecCluster would do if asked to scale to the size it already has.
        """
        cluster, client = self.cluster, self.client
        if cluster is None or client is None:
            return
        missing: list = []
        try:
            identity = await asyncio.wait_for(client.scheduler.identity(), _PROBE_TIMEOUT)
            registered = {str(w.get("name")) for w in identity.get("workers", {}).values()}
            missing = [name for name in list(cluster.worker_spec) if str(name) not in registered]
            if not missing:
                return
            self.log.warning(
                "Worker pool: worker(s) %s missing for %.0f s; starting replacement(s)",
                ", ".join(str(name) for name in missing),
                short_for,
            )
            for name in missing:
                nanny = cluster.workers.pop(name, None)
                if nanny is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(nanny.close(timeout=5), 10)
            self.n_replacements += len(missing)

            async def correct_state() -> None:
                await cluster  # starts a worker for every configured name that has none

            task = asyncio.ensure_future(correct_state())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            await asyncio.wait_for(asyncio.shield(task), self.restart_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.log.warning(
                "Worker pool: replacing worker(s) %s failed: %s: %s", ", ".join(map(str, missing)), type(e).__name__, e
            )

    async def _mark_lost(self, reason: str) -> None:
        if self._lost or self._closing:
            return
        self._lost = True
        self.log.error(reason)
        if self.on_lost is not None:
            await self.on_lost(reason)

    async def close(self) -> None:
        """Disconnect, and stop the local cluster if we started it."""
        self._closing = True
        if self._replace_task is not None:
            self._replace_task.cancel()
            with contextlib.suppress(BaseException):
                await self._replace_task
            self._replace_task = None
        client, cluster = self.client, self.cluster
        self.client = None
        self.cluster = None
        if client is not None:
            try:
                await asyncio.wait_for(client.close(), 10)
            except Exception as e:
                self.log.warning("Error closing the Dask client: %r", e)
        if cluster is not None:
            try:
                await asyncio.wait_for(cluster.close(), 20)  # type: ignore[arg-type]  # asynchronous: awaitable
            except Exception as e:
                self.log.warning("Error closing the local Dask cluster: %r", e)
        self.info = PoolInfo()

    @staticmethod
    def cpu_load() -> float:
        """1-minute load average per core (0–1 means not saturated)."""
        try:
            return os.getloadavg()[0] / (os.cpu_count() or 1)
        except OSError:
            return float("nan")
