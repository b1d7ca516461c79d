"""Hand DDS samples from Cyclone to an asyncio event loop.

One thread per DDS participant waits on a WaitSet that holds a ReadCondition per reader and
a GuardCondition (to add readers or stop). The thread itself takes the samples and hands each
reader's batch to the loop with ``call_soon_threadsafe``: a thread that only signals and lets
a coroutine take loses wake-ups.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from cyclonedds.core import GuardCondition, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import DomainParticipant
from cyclonedds.sub import DataReader

__all__ = ["SamplePump"]

_TAKE_BATCH = 256
_WAIT_NS = 2_000_000_000  # only bounds how long a stop can go unseen if the guard is missed

log = logging.getLogger(__name__)


class _Entry:
    __slots__ = ("reader", "condition", "deliver")

    def __init__(self, reader: DataReader, deliver: Callable[[list[Any]], None]) -> None:
        self.reader = reader
        self.condition = ReadCondition(reader, SampleState.NotRead | ViewState.Any | InstanceState.Any)
        self.deliver = deliver


class SamplePump:
    """A thread that takes samples from registered readers and delivers them on a loop.

    Parameters
    ----------
    participant : `cyclonedds.domain.DomainParticipant`
        The participant whose readers this pump serves.
    loop : `asyncio.AbstractEventLoop`
        Loop on which ``deliver`` callbacks run.
    name : `str`
        Thread name.
    """

    def __init__(self, participant: DomainParticipant, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self.loop = loop
        self._waitset = WaitSet(participant)
        self._guard = GuardCondition(participant)
        self._waitset.attach(self._guard)
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add_reader(self, reader: DataReader, deliver: Callable[[list[Any]], None]) -> None:
        """Start serving ``reader``: its valid samples go to ``deliver(samples)`` on the loop."""
        entry = _Entry(reader, deliver)
        with self._lock:
            self._entries = [*self._entries, entry]
        self._waitset.attach(entry.condition)
        self._guard.set(True)  # so samples already cached are taken now

    def remove_reader(self, reader: DataReader) -> None:
        """Stop serving ``reader`` (before it is deleted)."""
        with self._lock:
            kept = [e for e in self._entries if e.reader is not reader]
            removed = [e for e in self._entries if e.reader is reader]
            self._entries = kept
        for entry in removed:
            try:
                self._waitset.detach(entry.condition)
            except Exception:  # the reader may already be gone
                pass

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stopping = True
        self._guard.set(True)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        with self._lock:
            entries, self._entries = self._entries, []
        for entry in entries:
            try:
                self._waitset.detach(entry.condition)
            except Exception:
                pass

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._waitset.wait(_WAIT_NS)
                if self._guard.read():
                    self._guard.take()
                if self._stopping:
                    return
                for entry in self._entries:
                    if not entry.condition.triggered:
                        continue
                    samples = entry.reader.take(N=_TAKE_BATCH, condition=entry.condition)
                    # Invalid samples (no data) mark a writer going away: not for users.
                    valid = [s for s in samples if s.sample_info.valid_data]
                    if valid:
                        self.loop.call_soon_threadsafe(entry.deliver, valid)
            except RuntimeError:
                # The loop is closed: nothing left to deliver to.
                return
            except Exception:
                if self._stopping:
                    return
                log.exception("DDS sample pump failed; continuing")
