"""The Dask worker pool: a LocalCluster of worker processes, or an existing cluster by address.

`WorkerPool` starts or connects to the pool, looks at it each second (`refresh`, called by the
CSC) and says what it sees:

- its workers, and which of them may take jobs: a worker is asked its version of this package
  when it joins, and one whose version differs from the CSC's gets no jobs (logged once, and
  listed in `PoolInfo.excluded`; `worker_identity`);
- what happens to them (`pool_watch`: the rule for workers that leave, come back, are replaced,
  or leave the pool below its floor);
- whether the scheduler answers. A local pool's scheduler is the CSC's own: losing it is final
  (``on_lost``). An external scheduler may be restarted under the CSC: the pool tells the job
  manager the jobs on the cluster are lost (``on_disconnected``), then connects again by itself,
  every few seconds, for ``reconnect_timeout`` seconds (``on_reconnected`` once it is back); only
  then is it lost for good (``on_lost``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Awaitable, Callable

from distributed import Client, LocalCluster

from .. import __version__
from .pool_watch import MembershipWatch
from .scheduler_setup import DEMAND_KEY
from .worker_identity import WorkerIdentity, exclusion, worker_identity

__all__ = ["WorkerPool", "PoolInfo", "PoolLostError", "PoolWorker"]

_CONNECT_TIMEOUT = 10.0
_WORKER_PRELOAD = "lsst.ts.rapidanalysis.dispatch.worker_task"
_PROBE_TIMEOUT = 5.0
#: Seconds between attempts to reconnect to a lost scheduler, at most.
_RECONNECT_INTERVAL = 2.0
#: Seconds after which an unchanged demand is sent again (the scheduler ignores it after 60 s).
_DEMAND_REFRESH = 10.0

Callback = Callable[[str], Awaitable[None]]


class PoolLostError(RuntimeError):
    """The Dask scheduler cannot be reached any more."""


@dataclasses.dataclass(frozen=True)
class PoolWorker:
    """One worker the scheduler has.

    Attributes
    ----------
    address : `str`
        Its Dask address.
    name : `str`
        Its Dask name.
    n_threads : `int`
        Jobs it can run at once.
    host : `str`
        Its host name (once it said it).
    excluded : `str`
        Why it takes no jobs ("" when it takes them).
    """

    address: str
    name: str
    n_threads: int
    host: str = ""
    excluded: str = ""


@dataclasses.dataclass
class PoolInfo:
    """What the scheduler says about the pool."""

    #: Workers that take jobs, and their threads.
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
    #: Every worker the scheduler has, those that take no jobs included.
    workers: tuple[PoolWorker, ...] = ()
    #: Whether the scheduler answered at this refresh.
    connected: bool = False

    @property
    def usable(self) -> list[PoolWorker]:
        """The workers that take jobs."""
        return [w for w in self.workers if not w.excluded]

    @property
    def excluded(self) -> str:
        """The workers that take no jobs, and why; "" if none."""
        return "; ".join(
            f"{w.name} ({w.address}{', ' + w.host if w.host else ''}): {w.excluded}" for w in self.workers if w.excluded
        )


class WorkerPool:
    """Start or connect to a Dask cluster, and watch its workers and its scheduler.

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
        Coroutine function called once, with a reason, when the scheduler is lost for good.
    min_workers : `int`
        The floor: fewer workers than this for ``restart_timeout`` seconds calls ``on_too_small``
        (0: never).
    restart_timeout : `float`
        Seconds a lost worker has to come back (`pool_watch`'s rule).
    on_too_small : callable, optional
        Coroutine function called once, with a reason, when the pool has stayed below
        ``min_workers`` for ``restart_timeout``.
    reconnect_timeout : `float`
        Seconds to keep reconnecting to a lost external scheduler (0: lost at once).
    job_reruns : `int`
        Times the scheduler may re-run a task whose worker died (a local pool's
        ``allowed-failures``; an external scheduler has its own setting).
    demand_hold : `float`
        Seconds over which `report_demand` reports the peak demand.
    log : `logging.Logger`
        Logger.

    Attributes
    ----------
    on_disconnected : callable or None
        Coroutine function called with the reason when an external scheduler stops answering
        (the jobs on the cluster are lost with it).
    on_reconnected : callable or None
        Coroutine function called (with a message) once the pool is connected again.
    on_workers_left : callable or None
        Coroutine function called with the addresses of workers that left the pool.
    on_workers_changed : callable or None
        Called (plainly) when the workers that take jobs, or their threads, change: a worker
        joined, left, was excluded, or the pool reconnected.
    """

    def __init__(
        self,
        *,
        scheduler_address: str,
        n_workers: int,
        threads_per_worker: int,
        memory_limit: str,
        on_lost: Callback | None = None,
        min_workers: int = 0,
        restart_timeout: float = 30.0,
        on_too_small: Callback | None = None,
        reconnect_timeout: float = 0.0,
        job_reruns: int = 1,
        demand_hold: float = 120.0,
        log: logging.Logger | None = None,
    ) -> None:
        self.scheduler_address = scheduler_address
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.memory_limit = memory_limit
        self.on_lost = on_lost
        self.reconnect_timeout = reconnect_timeout
        self.job_reruns = job_reruns
        self.demand_hold = demand_hold
        self.log = log or logging.getLogger(__name__)
        self.on_disconnected: Callback | None = None
        self.on_reconnected: Callback | None = None
        self.on_workers_left: Callable[[tuple[str, ...]], Awaitable[None]] | None = None
        self.on_workers_changed: Callable[[], None] | None = None
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None
        self.info = PoolInfo()
        self.watch = MembershipWatch(
            is_local=self.is_local,
            min_workers=min_workers,
            restart_timeout=restart_timeout,
            on_too_small=on_too_small,
            log=self.log,
        )
        self._identities: dict[str, WorkerIdentity] = {}
        self._usable_shape: tuple[tuple[str, int], ...] = ()
        self._lost = False
        self._closing = False
        self._replace_task: asyncio.Task | None = None
        self._reconnect_task: asyncio.Task | None = None
        self._last_demand: tuple[int, float] | None = None
        self._demand_history: collections.deque[tuple[float, int]] = collections.deque()

    @property
    def is_local(self) -> bool:
        """Whether this pool started its own cluster."""
        return not self.scheduler_address

    @property
    def n_replacements(self) -> int:
        """Replacement workers this (local) pool started itself."""
        return self.watch.n_replacements

    @property
    def running(self) -> bool:
        """Whether the pool is up and its scheduler reachable."""
        return self.client is not None and not self._lost and not self._closing

    @property
    def reconnecting(self) -> bool:
        """Whether the pool lost its external scheduler and is trying to connect again."""
        return self._reconnect_task is not None and not self._reconnect_task.done()

    async def start(self) -> None:
        """Start the local cluster (loopback only) or connect to the configured scheduler."""
        self._lost = False
        self._closing = False
        self.watch.reset()
        self._identities.clear()
        if self.is_local:
            import dask

            # The scheduler re-runs a task whose worker died this many times, then reports it.
            with dask.config.set({"distributed.scheduler.allowed-failures": self.job_reruns}):
                # Workers are spawned processes listening on loopback only.
                self.cluster = await LocalCluster(
                    n_workers=self.n_workers,
                    threads_per_worker=self.threads_per_worker,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",
                    memory_limit=self.memory_limit,
                    asynchronous=True,
                    silence_logs=logging.WARNING,
                    # Import the job code (and the pipelines) when a worker starts, not in its first
                    # job, which would otherwise spend ~1 s of its time limit importing.
                    preload=[_WORKER_PRELOAD],
                )
            self.client = await Client(self.cluster, asynchronous=True, timeout=_CONNECT_TIMEOUT)
            # An asynchronous client returns coroutines; distributed types them as plain values.
            await self.client.wait_for_workers(self.n_workers, timeout=_CONNECT_TIMEOUT)  # type: ignore[misc]
        else:
            try:
                self.client = await self._connect(_CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as e:
                raise PoolLostError(f"Cannot connect to the Dask scheduler at {self.scheduler_address}: {e}") from e
        await self.refresh()
        self.log.info(
            "Worker pool ready: %d workers, %d threads, scheduler %s",
            self.info.n_workers,
            self.info.n_threads,
            self.info.scheduler_address,
        )

    async def _connect(self, timeout: float) -> Client:
        client = Client(self.scheduler_address, asynchronous=True, timeout=timeout)
        try:
            return await client
        except BaseException:
            # Close it now: left to the garbage collector it tries to, after our loop is gone.
            with contextlib.suppress(Exception):
                await client.close()
            raise

    async def refresh(self) -> PoolInfo:
        """Ask the scheduler for workers, threads and memory; notice a lost scheduler.

        While an external scheduler is being reconnected to, returns the last info with
        ``connected`` false.

        Raises
        ------
        PoolLostError
            If the scheduler is lost for good (``on_lost`` is called once as well).
        """
        if self.reconnecting:
            return self.info
        if self.client is None or self._lost:
            raise PoolLostError("The worker pool is not running")
        client = self.client
        try:
            identity = await asyncio.wait_for(client.scheduler.identity(), _PROBE_TIMEOUT)
        except (OSError, TimeoutError, asyncio.CancelledError, Exception) as e:
            if isinstance(e, asyncio.CancelledError) and not self._closing:
                raise
            await self._scheduler_gone(e)
            return self.info
        workers = identity.get("workers", {})
        await self._identify(client, [address for address in workers if address not in self._identities])
        for address in list(self._identities):
            if address not in workers:
                del self._identities[address]
        services = identity.get("services", {})
        dashboard = f"http://127.0.0.1:{services['dashboard']}/status" if "dashboard" in services else ""
        pool_workers = tuple(self._pool_worker(address, w) for address, w in sorted(workers.items()))
        usable = [w for w in pool_workers if not w.excluded]
        outcome = await self.watch.update(
            {w.address: w.name for w in pool_workers}, self.n_workers if self.is_local else self.watch.most_workers
        )
        self.info = PoolInfo(
            n_workers=len(usable),
            n_threads=sum(w.n_threads for w in usable),
            memory_used_mb=sum(w.get("metrics", {}).get("memory", 0) for w in workers.values()) / 1e6,
            scheduler_address=identity.get("address", self.scheduler_address),
            dashboard_url=dashboard,
            n_expected=self.n_workers if self.is_local else self.watch.most_workers,
            n_fewest=outcome.n_fewest,
            workers=pool_workers,
            connected=True,
        )
        if outcome.replace_after is not None and (self._replace_task is None or self._replace_task.done()):
            self._replace_task = asyncio.create_task(self._replace_missing(outcome.replace_after))
        if outcome.left and self.on_workers_left is not None:
            await self.on_workers_left(outcome.left)
        shape = tuple((w.address, w.n_threads) for w in usable)
        if shape != self._usable_shape:
            self._usable_shape = shape
            if self.on_workers_changed is not None:
                self.on_workers_changed()
        return self.info

    async def report_demand(self, instrument: str, slots: int) -> None:
        """Tell an external scheduler how many job slots this CSC wants (its autoscaling demand).

        Kept in the scheduler's metadata under ``rapid_analysis/demand/<instrument>`` with the
        time; a scheduler that preloads `scheduler_setup` counts it in ``adaptive_target``. What
        is sent is the peak of the last ``demand_hold`` seconds, so that a cluster sized for one visit is still
        there for the next. Only what changed is sent, and at least every 10 s so that the demand
        stays fresh. Nothing for a
        local pool (its size is the configuration's), nor while reconnecting; a failed report is
        logged at debug level (the next status tick notices a lost scheduler).
        """
        client = self.client
        if self.is_local or client is None or self.reconnecting or self._lost:
            return
        now = time.time()
        # The peak of the last demand_hold seconds: a visit's jobs are done in seconds and the
        # next comes 34 s later; the cluster must not shrink and grow again between the two.
        history = self._demand_history
        history.append((now, slots))
        while history and history[0][0] < now - self.demand_hold:
            history.popleft()
        slots = max(wanted for _, wanted in history)
        last = self._last_demand
        if last is not None and last[0] == slots and now - last[1] < _DEMAND_REFRESH:
            return
        try:
            await asyncio.wait_for(
                client.set_metadata([*DEMAND_KEY, instrument], {"slots": slots, "time": now}), _PROBE_TIMEOUT
            )
        except Exception as e:
            self.log.debug("Could not report the demand (%d slots) to the scheduler: %r", slots, e)
            return
        self._last_demand = (slots, now)

    def _pool_worker(self, address: str, scheduler_view: dict) -> PoolWorker:
        identity = self._identities.get(address)
        return PoolWorker(
            address=address,
            name=str(scheduler_view.get("name", address)),
            n_threads=int(scheduler_view.get("nthreads", 0)),
            host=identity.host if identity is not None else "",
            # Not yet asked (its answer timed out): no jobs until it says what it runs.
            excluded=exclusion(identity, __version__) if identity is not None else "it has not said its version yet",
        )

    async def _identify(self, client: Client, addresses: list[str]) -> None:
        """Ask new workers what they run; a worker that may take no jobs is logged once, saying why."""
        if not addresses:
            return
        try:
            answers = await asyncio.wait_for(
                client.run(worker_identity, workers=addresses, on_error="return"),
                _PROBE_TIMEOUT,
            )
        except Exception as e:
            self.log.warning("Could not ask worker(s) %s their version (asked again): %r", ", ".join(addresses), e)
            return
        for address in addresses:
            if address not in answers:
                continue  # it left meanwhile
            identity = self._identities[address] = WorkerIdentity.from_answer(answers[address])
            why = exclusion(identity, __version__)
            if why:
                self.log.error(
                    "Worker %s%s gets no jobs: %s", address, f" on {identity.host}" if identity.host else "", why
                )

    async def _scheduler_gone(self, error: BaseException) -> None:
        """The scheduler did not answer: lost for good, or (external) reconnect in the background."""
        address = self.info.scheduler_address or self.scheduler_address
        reason = f"Lost the Dask scheduler at {address}: {error!r}"
        if self.is_local or self.reconnect_timeout <= 0 or self._closing:
            await self._mark_lost(reason)
            raise PoolLostError(reason) from error
        self.log.error(
            "%s; jobs on the cluster end with exit code 5, new jobs wait, reconnecting for up to %g s",
            reason,
            self.reconnect_timeout,
        )
        old, self.client = self.client, None
        self.info = dataclasses.replace(self.info, n_workers=0, n_threads=0, workers=(), connected=False)
        self._reconnect_task = asyncio.create_task(self._reconnect(reason))
        if self.on_disconnected is not None:
            await self.on_disconnected(reason)
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.close(), _PROBE_TIMEOUT)

    async def _reconnect(self, reason: str) -> None:
        """Connect to the scheduler again, until ``reconnect_timeout``; then it is lost for good."""
        start = time.monotonic()
        deadline = start + self.reconnect_timeout
        while not self._closing:
            try:
                client = await self._connect(max(1.0, min(_CONNECT_TIMEOUT, deadline - time.monotonic())))
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if time.monotonic() >= deadline:
                    await self._mark_lost(f"{reason}; not back after {self.reconnect_timeout:g} s ({e!r})")
                    return
                await asyncio.sleep(_RECONNECT_INTERVAL)
                continue
            if self._closing:
                await client.close()
                return
            self.client = client
            self.watch.reset()
            self._identities.clear()
            message = (
                f"Reconnected to the Dask scheduler at {self.scheduler_address} after {time.monotonic() - start:.1f} s"
            )
            self.log.info(message)
            if self.on_reconnected is not None:
                await self.on_reconnected(message)
            return

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
            self.watch.n_replacements += len(missing)

            async def correct_state() -> None:
                await cluster  # starts a worker for every configured name that has none

            task = asyncio.ensure_future(correct_state())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            await asyncio.wait_for(asyncio.shield(task), self.watch.restart_timeout)
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
        for task in (self._replace_task, self._reconnect_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._replace_task = self._reconnect_task = None
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
