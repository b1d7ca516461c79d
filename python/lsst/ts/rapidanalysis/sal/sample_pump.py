"""Hand DDS samples from Cyclone to an asyncio event loop.

One thread per DDS participant waits on a WaitSet that holds a ReadCondition per reader and
a GuardCondition (to add readers or stop). The thread itself takes the samples and hands all
that one wake-up took (every reader's) to the loop in one ``call_soon_threadsafe`` callback: a
thread that only signals and lets a coroutine take loses wake-ups, and delivering reader by
reader would let a coroutine see a later sample (an ack) before an earlier one of another
topic (the summaryState it caused). A late joiner's history is collected whole before delivery.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cyclonedds.core import GuardCondition, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import DomainParticipant
from cyclonedds.sub import DataReader

__all__ = ["SamplePump"]

_TAKE_BATCH = 256
_MAX_PASSES = 4  # passes over the readers per wake-up, while samples keep coming
_WAIT_NS = 2_000_000_000  # only bounds how long a stop can go unseen if the guard is missed
#: A late joiner's history (transient-local samples resent by a newly matched writer) arrives in
#: several packets. Once history shows up, keep taking until this long passes with nothing new...
_HISTORY_QUIET_NS = 10_000_000
#: ...but never hold samples back longer than this.
_HISTORY_MAX_SETTLE = 0.1

log = logging.getLogger(__name__)


def _deliver_batch(batch: list[tuple[Callable[[list[Any]], None], list[Any]]]) -> None:
    """Run on the loop: deliver one pump iteration's samples, reader by reader, in one go."""
    for deliver, samples in batch:
        try:
            deliver(samples)
        except Exception:
            log.exception("Delivering DDS samples failed")


class _Entry:
    __slots__ = ("reader", "condition", "deliver", "created_ns")

    def __init__(self, reader: DataReader, deliver: Callable[[list[Any]], None], created_ns: int | None = None) -> None:
        self.reader = reader
        self.condition = ReadCondition(reader, SampleState.NotRead | ViewState.Any | InstanceState.Any)
        self.deliver = deliver
        self.created_ns = created_ns


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
        # Held while samples are taken and handed over, so remove_reader can wait for that.
        self._iteration_lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add_reader(
        self, reader: DataReader, deliver: Callable[[list[Any]], None], created_ns: int | None = None
    ) -> None:
        """Start serving ``reader``: its valid samples go to ``deliver(samples)`` on the loop.

        ``created_ns`` (UTC ns, when the reader was made) tells history from new samples: history
        is collected completely before it is delivered.
        """
        entry = _Entry(reader, deliver, created_ns)
        with self._lock:
            self._entries = [*self._entries, entry]
        self._waitset.attach(entry.condition)
        self._guard.set(True)  # so samples already cached are taken now

    def remove_reader(self, reader: DataReader) -> None:
        """Stop serving ``reader`` (before it is deleted).

        Waits for a take in progress: once this returns, every sample the pump took from
        ``reader`` has been handed to the loop (``call_soon_threadsafe``) and the rest are
        still in the reader, for the caller to drain.
        """
        with self._iteration_lock, self._lock:
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

    def _take_all(self, batch: list[tuple[Callable[[list[Any]], None], list[Any]]]) -> bool:
        """Take every reader's new samples into ``batch``; return whether any of them is history."""
        historical = False
        for _ in range(_MAX_PASSES):
            took_any = False
            for entry in self._entries:
                if not entry.condition.triggered:
                    continue
                samples = entry.reader.take(N=_TAKE_BATCH, condition=entry.condition)
                took_any = took_any or bool(samples)
                # Invalid samples (no data) mark a writer going away: not for users.
                valid = [s for s in samples if s.sample_info.valid_data]
                if valid:
                    batch.append((entry.deliver, valid))
                    if entry.created_ns is not None and valid[0].sample_info.source_timestamp < entry.created_ns:
                        historical = True
            if not took_any:
                break
        return historical

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._waitset.wait(_WAIT_NS)
                if self._guard.read():
                    self._guard.take()
                if self._stopping:
                    return
                # Take from every reader, passing again while anything came in, and hand it all to
                # the loop in ONE callback: then a sample written before another (e.g. summaryState
                # before the ackcmd of the command that changed it) is delivered no later than it,
                # even if the two land in different passes. Delivering reader by reader let a command's
                # waiter resume before the state it caused was visible (set_summary_state then read a
                # stale summaryState and sent the wrong command).
                batch: list[tuple[Callable[[list[Any]], None], list[Any]]] = []
                with self._iteration_lock:
                    self._take_and_deliver(batch)
            except RuntimeError:
                # The loop is closed: nothing left to deliver to.
                return
            except Exception:
                if self._stopping:
                    return
                log.exception("DDS sample pump failed; continuing")

    def _take_and_deliver(self, batch: list[tuple[Callable[[list[Any]], None], list[Any]]]) -> None:
        """Take everything new (history in full) and hand it to the loop in one callback."""
        historical = self._take_all(batch)
        # History comes in several packets; deliver it all at once, or get()/aget() of a late
        # joiner would return a sample from the first packet rather than the newest one.
        deadline = time.monotonic() + _HISTORY_MAX_SETTLE
        while historical and not self._stopping and time.monotonic() < deadline:
            count = len(batch)
            self._waitset.wait(_HISTORY_QUIET_NS)
            if self._guard.read():
                self._guard.take()
            self._take_all(batch)
            if len(batch) == count:
                break
        if batch:
            self.loop.call_soon_threadsafe(_deliver_batch, batch)
