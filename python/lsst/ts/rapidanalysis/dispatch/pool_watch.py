"""What happens to a pool's workers, said and acted on: the rule the worker pool follows.

At every look at the scheduler (`WorkerPool.refresh`, each second), `MembershipWatch.update` is
given the workers the scheduler has. With ``T`` = ``restart_timeout``:

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

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

__all__ = ["MembershipWatch", "WatchOutcome"]


@dataclasses.dataclass(frozen=True)
class WatchOutcome:
    """What one look found.

    Attributes
    ----------
    n_fewest : `int`
        The fewest workers the pool had since the look before (a worker that died and came back
        in between makes it less than the count now).
    left : `tuple` [`str`]
        Addresses of the workers that left since the look before.
    replace_after : `float` or None
        Seconds the pool has been short, when a local pool should start replacements now.
    """

    n_fewest: int
    left: tuple[str, ...] = ()
    replace_after: float | None = None


class MembershipWatch:
    """The module's rule, applied to one pool's successive lists of workers.

    Parameters
    ----------
    is_local : `bool`
        The pool started its own workers (and may replace them).
    min_workers : `int`
        The floor (0: none).
    restart_timeout : `float`
        ``T`` of the rule.
    on_too_small : callable, optional
        Coroutine function called once, with the reason, below the floor for ``T``.
    log : `logging.Logger`
        Where the rule speaks.
    """

    def __init__(
        self,
        *,
        is_local: bool,
        min_workers: int,
        restart_timeout: float,
        on_too_small: Callable[[str], Awaitable[None]] | None,
        log: logging.Logger,
    ) -> None:
        self.is_local = is_local
        self.min_workers = min_workers
        self.restart_timeout = restart_timeout
        self.on_too_small = on_too_small
        self.log = log
        #: Replacement workers the pool started (it counts them here, for the messages).
        self.n_replacements = 0
        self.reset()

    def reset(self) -> None:
        """Forget what was seen (a new connection to the scheduler)."""
        self.workers: dict[str, str] | None = None  # address → name, at the last look
        self.most_workers = 0
        self._short_since: float | None = None
        self._said_smaller = False
        self._left: list[str] = []  # workers that left since the pool was last whole
        self._below_floor_since: float | None = None
        self._said_too_small = False
        self._last_replacement = 0.0
        self._last_look = time.monotonic()

    async def update(self, workers: dict[str, str], expected: int) -> WatchOutcome:
        """Say what happened to the workers since the last look, and act on it.

        Parameters
        ----------
        workers : `dict` [`str`, `str`]
            The scheduler's workers now: address → name.
        expected : `int`
            Workers the pool should have.
        """
        now = time.monotonic()
        n = len(workers)
        self.most_workers = max(self.most_workers, n)
        previous, self.workers = self.workers, workers
        last_look, self._last_look = self._last_look, now
        fewest = n if previous is None else min(n, len(previous.keys() & workers.keys()))
        left: tuple[str, ...] = ()
        if previous is not None:
            left = tuple(sorted(previous.keys() - workers.keys()))
            for address in left:
                self._left.append(f"worker {previous[address]} ({address})")
                self.log.warning(
                    "Worker %s (%s) left the pool: %d of %d workers", previous[address], address, fewest, expected
                )
            for address in sorted(workers.keys() - previous.keys()):
                self.log.info(
                    "Worker %s (%s) joined the pool: %d of %d workers", workers[address], address, n, expected
                )
        if fewest < expected and self._short_since is None:
            self._short_since = last_look if n >= expected else now
        replace_after = None
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
            ):
                self._last_replacement = now
                replace_after = short_for
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
        await self._check_floor(n, expected, now)
        return WatchOutcome(fewest, left, replace_after)

    async def _check_floor(self, n: int, expected: int, now: float) -> None:
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
