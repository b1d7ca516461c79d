"""Write to the results database from the event loop: one thread, in order, coalescing what piles up.

Each database write is small (a job row, a few metric rows) but costs a commit; under a
stream that drops work the CSC asks for hundreds at once (every dropped job's final row), and
one commit each kept the writer thread seconds behind. `ResultsWriter` runs writes in the order
they were asked for, in a single thread, and runs everything that queued up meanwhile as one
transaction (`ResultsDatabase.batch`). A write that fails does not take the others with it: the
batch is then replayed one write at a time, and only the failing write reports its error.

Writes wait ``delay`` (default 50 ms) before the thread starts on them. The writer thread shares
the GIL with the event loop: SQLAlchemy spends about 1 ms of Python per row, and an image's nine
"queued" rows written at once held the loop back for about 10 ms just when its first job was to
be sent to a worker. A short wait lets that go first, and gathers more writes per transaction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

from .database import ResultsDatabase

__all__ = ["ResultsWriter", "MAX_BATCH"]

#: Most writes in one transaction, so that one batch never holds the write lock for long.
MAX_BATCH = 500

Write = Callable[[ResultsDatabase], Any]


class ResultsWriter:
    """Run writes to one `ResultsDatabase` in a thread of its own, batched.

    Parameters
    ----------
    database : `ResultsDatabase`
        The database; `close` closes it.
    delay : `float`
        Seconds a write waits before the thread starts on it (and on what else has come by then).
    """

    def __init__(self, database: ResultsDatabase, delay: float = 0.05) -> None:
        self.database = database
        self.delay = delay
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="results-db")
        self._pending: list[tuple[Write, asyncio.Future]] = []
        self._drain_task: asyncio.Task | None = None
        self.n_transactions = 0
        self.n_writes = 0

    def write(self, write: Write) -> asyncio.Future:
        """Queue ``write(database)``; the returned future has its result or exception.

        Raises
        ------
        RuntimeError
            If the writer is closed.
        """
        if self.database.closed:
            raise RuntimeError(f"{self.database!r} is closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((write, future))
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = loop.create_task(self._drain())
        return future

    async def flush(self) -> None:
        """Wait until every write asked for so far has run."""
        while self._drain_task is not None and not self._drain_task.done():
            await asyncio.shield(self._drain_task)

    async def close(self) -> None:
        """Run what is queued, then close the database (in the writer thread, after its writes)."""
        await self.flush()
        if not self.database.closed:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.database.close)
        self._executor.shutdown(wait=False)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                outcomes = await loop.run_in_executor(self._executor, self._run_batch, [w for w, _ in batch])
            except BaseException as e:  # the thread is gone (interpreter exit): nobody may wait forever
                outcomes = [(False, e)] * len(batch)
                if isinstance(e, asyncio.CancelledError):
                    for _, future in batch:
                        future.cancel()
                    raise
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue  # the asker gave up waiting
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _run_batch(self, writes: list[Write]) -> list[tuple[bool, Any]]:
        """In the writer thread: all in one transaction, or, if that fails, one by one."""
        self.n_writes += len(writes)
        if len(writes) > 1:
            try:
                with self.database.batch():
                    values = [write(self.database) for write in writes]
                self.n_transactions += 1
                return [(True, value) for value in values]
            except Exception:
                pass  # rolled back; find the culprit by replaying them alone
        outcomes: list[tuple[bool, Any]] = []
        for write in writes:
            try:
                outcomes.append((True, write(self.database)))
            except Exception as e:
                outcomes.append((False, e))
            self.n_transactions += 1
        return outcomes
