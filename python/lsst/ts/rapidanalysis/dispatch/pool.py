"""The Dask worker pool: a LocalCluster of worker processes, or an existing cluster by address."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
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
        log: logging.Logger | None = None,
    ) -> None:
        self.scheduler_address = scheduler_address
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.memory_limit = memory_limit
        self.on_lost = on_lost
        self.log = log or logging.getLogger(__name__)
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None
        self.info = PoolInfo()
        self._lost = False
        self._closing = False

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
            await self.client.wait_for_workers(self.n_workers, timeout=_CONNECT_TIMEOUT)
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
        self.info = PoolInfo(
            n_workers=len(workers),
            n_threads=sum(w.get("nthreads", 0) for w in workers.values()),
            memory_used_mb=sum(w.get("metrics", {}).get("memory", 0) for w in workers.values()) / 1e6,
            scheduler_address=identity.get("address", self.scheduler_address),
            dashboard_url=dashboard,
        )
        return self.info

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
                await asyncio.wait_for(cluster.close(), 20)
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
