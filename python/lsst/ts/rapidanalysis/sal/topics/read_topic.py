"""Reading a topic: a queue of samples, ``get/aget/next/flush/get_oldest``, or a callback."""

from __future__ import annotations

import asyncio
import collections
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ExpectedError
from ..tai import current_tai
from .base_topic import BaseTopic

if TYPE_CHECKING:
    from ..sal_info import SalInfo

__all__ = ["ReadTopic", "DEFAULT_QUEUE_LEN", "MIN_QUEUE_LEN"]

DEFAULT_QUEUE_LEN = 100
MIN_QUEUE_LEN = 10
# Warn when the queue passes these fractions of its length; each warns once until it drains.
_WARNING_FRACTIONS = (0.5, 0.9)

#: A callback gets each sample; it may be a coroutine function. What it returns is ignored,
#: except for a Controller's command handlers, which may return an ackcmd (see
#: `ControllerCommand`).
TopicCallback = Callable[[Any], Any]


class ReadTopic(BaseTopic):
    """A topic that is read (salobj semantics).

    Samples are queued (oldest dropped when the queue is full, with a warning as it fills)
    unless a callback is set, in which case each sample is handed to it, in order. A queue
    of unlimited length (``queue_len=None``) never drops anything: commands (a Controller
    answers every one) and acknowledgements (a Remote waits for every one) are queued so.

    Parameters
    ----------
    salinfo : `SalInfo`
        The component.
    attr_name : `str`
        ``evt_x``, ``tel_x``, ``cmd_x`` or ``ack_ackcmd``.
    max_history : `int`
        How many samples written before this reader existed to keep (per SAL index);
        must be 0 for volatile topics.
    queue_len : `int` or None
        Queue length; None for no limit (nothing is ever dropped).
    """

    def __init__(
        self, *, salinfo: SalInfo, attr_name: str, max_history: int, queue_len: int | None = DEFAULT_QUEUE_LEN
    ) -> None:
        super().__init__(salinfo=salinfo, attr_name=attr_name)
        if max_history < 0:
            raise ValueError(f"max_history={max_history} must be >= 0")
        if queue_len is not None and queue_len <= MIN_QUEUE_LEN:
            raise ValueError(f"queue_len={queue_len} must be > {MIN_QUEUE_LEN} (or None for no limit)")
        if queue_len is not None and max_history > queue_len:
            raise ValueError(f"max_history={max_history} must be <= queue_len={queue_len}")
        if max_history > 0 and self.volatile:
            raise ValueError(f"max_history={max_history} must be 0 for volatile topic {attr_name}")
        self._max_history = max_history
        self._queue_len = queue_len
        self._queue: collections.deque = collections.deque()
        self._historical: dict[int, int] = {}  # salIndex → historical samples still in the queue
        self._historical_ids: set[int] = set()
        self._warned_fractions: set[float] = set()
        self._current_data: Any = None
        self._data_event = asyncio.Event()
        self._first_data_event = asyncio.Event()
        self._callback: TopicCallback | None = None
        self._callback_queue: collections.deque = collections.deque()
        self._callback_task: asyncio.Task | None = None
        self._closed = False
        self._reader, self._created_ns = salinfo.make_reader(self)

    # -- public API (as salobj) --

    @property
    def max_history(self) -> int:
        """Historical samples kept per SAL index."""
        return self._max_history

    @property
    def queue_len(self) -> int | None:
        """Queue length; None: unlimited, nothing is dropped."""
        return self._queue_len

    @property
    def has_data(self) -> bool:
        """Whether any sample has been seen."""
        return self._current_data is not None

    @property
    def nqueued(self) -> int:
        """Samples waiting in the queue."""
        return len(self._queue)

    @property
    def callback(self) -> TopicCallback | None:
        """Called with each new sample (a coroutine function); None to queue samples instead."""
        return self._callback

    @callback.setter
    def callback(self, func: TopicCallback | None) -> None:
        if func is not None and not callable(func):
            raise TypeError(f"callback={func!r} is not callable")
        # Clear any previous callback first: flush() refuses while one is set, which made
        # ``callback = None`` (or replacing a callback) raise.
        self._callback = None
        self.flush()
        self._callback = func

    def get(self) -> Any:
        """The newest sample seen, or None; does not remove anything from the queue."""
        return self._current_data

    async def aget(self, timeout: float | None = None) -> Any:
        """The newest sample seen, waiting for the first one if there is none yet.

        Raises
        ------
        asyncio.TimeoutError
            If no sample arrives in time.
        """
        self._check_no_callback("aget")
        if self._current_data is None:
            await asyncio.wait_for(self._first_data_event.wait(), timeout)
        return self._current_data

    def get_oldest(self) -> Any:
        """Pop and return the oldest queued sample, or None if the queue is empty."""
        self._check_no_callback("get_oldest")
        if not self._queue:
            return None
        return self._pop()

    async def next(self, *, flush: bool, timeout: float | None = None) -> Any:
        """Pop the oldest queued sample, waiting for one if the queue is empty.

        Parameters
        ----------
        flush : `bool`
            Empty the queue first, so that only a new sample is returned.
        timeout : `float`, optional
            Seconds to wait; None for ever.

        Raises
        ------
        asyncio.TimeoutError
            If no sample arrives in time.
        """
        self._check_no_callback("next")
        if flush:
            self.flush()
        return await self._next(timeout)

    def flush(self) -> None:
        """Empty the queue."""
        if self._callback is not None:
            raise RuntimeError(f"{self}: not allowed because there is a callback")
        self._queue.clear()
        self._historical.clear()
        self._historical_ids.clear()
        self._warned_fractions.clear()
        self._data_event.clear()

    # -- internals --

    async def _next(self, timeout: float | None) -> Any:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._queue:
            if self._closed:
                raise RuntimeError(f"{self} is closed")
            self._data_event.clear()
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            await asyncio.wait_for(self._data_event.wait(), remaining)
        return self._pop()

    def _pop(self) -> Any:
        data = self._queue.popleft()
        if self._historical_ids and id(data) in self._historical_ids:
            self._historical_ids.discard(id(data))
            index = getattr(data, "salIndex", 0)
            self._historical[index] -= 1
        if not self._queue:
            self._data_event.clear()
            self._warned_fractions.clear()
        return data

    def _check_no_callback(self, what: str) -> None:
        if self._callback is not None:
            raise RuntimeError(f"{self}: {what} not allowed because there is a callback")

    def _accept(self, data: Any) -> bool:
        """Whether a sample is for us; subclasses filter further (e.g. ackcmd)."""
        index = self.salinfo.index
        return index == 0 or data.salIndex == index

    def _deliver(self, samples: list[Any]) -> None:
        """Called on the event loop by the sample pump with a batch of valid samples."""
        if self._closed:
            return
        rcv_stamp = current_tai()
        byte_arrays = self.topic_type.byte_array_fields
        for data in samples:
            if not self._accept(data):
                continue
            for name in byte_arrays:
                setattr(data, name, list(getattr(data, name)))
            historical = data.sample_info.source_timestamp < self._created_ns
            if historical and self._max_history == 0:
                continue
            data.private_rcvStamp = rcv_stamp
            self._current_data = data
            if self._callback is not None:
                self._queue_for_callback(data, historical)
            else:
                self._queue_data(data, historical)
        if self._current_data is not None:
            self._first_data_event.set()

    def _queue_data(self, data: Any, historical: bool) -> None:
        if self._queue_len is None:
            self._queue.append(data)
            if historical:
                self._trim_history(data)
            self._data_event.set()
            return
        if len(self._queue) >= self._queue_len:
            # Once per overflow episode (until the queue drains), not once per dropped sample.
            if 1.0 not in self._warned_fractions:
                self._warned_fractions.add(1.0)
                self.log.error(
                    "%s data queue is full (%d); dropping the oldest samples. Read faster or use a callback.",
                    self.attr_name,
                    self._queue_len,
                )
            self._pop()
        self._queue.append(data)
        if historical:
            self._trim_history(data)
        n = len(self._queue)
        for fraction in _WARNING_FRACTIONS:
            if n >= fraction * self._queue_len and fraction not in self._warned_fractions:
                self._warned_fractions.add(fraction)
                self.log.warning(
                    "%s data queue is %d%% full (%d of %d)",
                    self.attr_name,
                    100 * fraction,
                    n,
                    self._queue_len,
                )
        self._data_event.set()

    def _trim_history(self, data: Any) -> None:
        # Keep only the newest max_history late-joiner samples per SAL index.
        index = getattr(data, "salIndex", 0)
        self._historical_ids.add(id(data))
        self._historical[index] = self._historical.get(index, 0) + 1
        while self._historical[index] > self._max_history:
            for old in self._queue:
                if id(old) in self._historical_ids and getattr(old, "salIndex", 0) == index:
                    self._queue.remove(old)
                    self._historical_ids.discard(id(old))
                    self._historical[index] -= 1
                    break

    def _queue_for_callback(self, data: Any, historical: bool) -> None:
        self._callback_queue.append(data)
        if self._callback_task is None or self._callback_task.done():
            self._callback_task = asyncio.create_task(self._run_callbacks())

    async def _run_callbacks(self) -> None:
        while self._callback_queue and not self._closed:
            data = self._callback_queue.popleft()
            await self._run_one_callback(data)

    async def _run_one_callback(self, data: Any) -> None:
        callback = self._callback
        if callback is None:
            return
        try:
            result = callback(data)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except ExpectedError as e:
            self.log.warning("%s callback failed: %s", self.attr_name, e)
        except Exception:
            self.log.exception("%s callback failed", self.attr_name)

    def _close(self) -> list[asyncio.Task]:
        """Called by SalInfo.close: stop callbacks, wake waiters; return the tasks cancelled."""
        self._closed = True
        self._callback_queue.clear()
        cancelled = []
        if self._callback_task is not None and not self._callback_task.done():
            self._callback_task.cancel()
            cancelled.append(self._callback_task)
        self._data_event.set()
        return cancelled
