"""The page's live feed: the RapidAnalysis CSCs' events from DDS, kept and fanned out to browsers.

One `sal.Domain` and one read-only `sal.Remote` per followed CSC (SAL index 1 LATISS, 2
LSSTComCam, 3 LSSTCam), reading only the events the page shows. `LiveFeed` keeps the latest of
each per instrument (what the Now page shows when it opens) and hands every event to each
connected browser as a server-sent event.

Each browser has a `Subscription`: a bounded queue. The feed never waits for a browser: when a
slow one's queue is full, its oldest messages are dropped, and the next thing it reads is an
``overflow`` event and a fresh ``snapshot``, so that it can redraw rather than show a hole.

When a jobResult or visitGathered names an image, the feed looks up that image's row of the
night table (`PageQueries.night_row`, in a thread: the database must never block the loop) and
sends it as a ``row`` event, and again a little later (the CSC writes an image's row a moment after
its jobResult); lookups are made one at a time and coalesced per image, so that a visit's 189
detector jobs cost a handful of queries, not 189.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any

__all__ = [
    "LIVE_EVENTS",
    "InstrumentState",
    "LiveFeed",
    "Subscription",
    "sse_message",
]

_log = logging.getLogger(__name__)

#: The RapidAnalysis events the page reads (and nothing else: no telemetry, no commands).
LIVE_EVENTS = (
    "summaryState",
    "heartbeat",
    "errorCode",
    "logMessage",
    "workerPool",
    "focalPlaneMode",
    "visitGathered",
    "jobResult",
)
#: Events that change an image's row of the night table.
_ROW_EVENTS = ("jobResult", "visitGathered")
#: Longest string kept of any event field (a traceback, a job's result JSON).
MAX_TEXT = 2000
#: Recent log messages and jobResults kept per instrument.
RECENT = 30
#: Fields of jobResult kept (``result`` is the pipeline's whole output: too big to fan out).
_JOB_RESULT_FIELDS = (
    "jobId",
    "pipeline",
    "imageName",
    "dataId",
    "trigger",
    "success",
    "exitCode",
    "errorReport",
    "startTime",
    "endTime",
    "duration",
)
#: Seconds after a jobResult or visitGathered at which its image's row is looked up again (the CSC
#: writes it some 0.1 s after the jobResult: IMAGE_WRITE_DELAY plus the results writer's delay).
ROW_RECHECKS = (0.2, 0.6, 2.0)
#: Images whose last row sent is remembered (to skip sending the same row again).
_ROWS_REMEMBERED = 2000
_LOG_LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}

RowLookup = Callable[[str, str], "dict[str, Any] | None"]
"""``lookup(instrument, image_name)`` → the image's night-table row as JSON-able data, or None;
called in a thread."""


def sse_message(event: str, data: Any) -> str:
    """One server-sent event: ``event: <name>`` and its data as one line of JSON.

    `json.dumps` escapes newlines inside strings, so the data can never end the event early
    or inject another one.
    """
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


def _plain(value: Any) -> Any:
    """A DDS field value as JSON-able data, strings cut to `MAX_TEXT`."""
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "…"
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def sample_fields(data: Any) -> dict[str, Any]:
    """The public fields of a DDS sample (no ``private_*``, no ``salIndex``) as a dict."""
    if dataclasses.is_dataclass(data):
        names = [f.name for f in dataclasses.fields(data)]
    else:
        names = [n for n in vars(data) if not n.startswith("_")]
    return {n: _plain(getattr(data, n)) for n in names if not n.startswith("private_") and n != "salIndex"}


@dataclasses.dataclass
class InstrumentState:
    """What the Now page shows of one CSC: the newest of each event, and the recent ones.

    Each event has ``received`` (UTC unix seconds, this server's clock, when it arrived) and, from
    DDS, ``sent`` (the same, by the sender's clock); ``heartbeat`` is the last one's ``sent``.
    """

    instrument: str
    index: int
    summary_state: dict[str, Any] | None = None
    heartbeat: float | None = None
    error_code: dict[str, Any] | None = None
    worker_pool: dict[str, Any] | None = None
    focal_plane_mode: dict[str, Any] | None = None
    visit_gathered: dict[str, Any] | None = None
    log_messages: collections.deque[dict[str, Any]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=RECENT)
    )
    job_results: collections.deque[dict[str, Any]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=RECENT)
    )

    def update(self, topic: str, fields: dict[str, Any]) -> None:
        """Keep one event (its fields with ``received`` added)."""
        if topic == "heartbeat":
            # When it was sent, if known: a late joiner's first heartbeat is the CSC's last one,
            # which may be old (a CSC that died must not look alive to a page opened later).
            self.heartbeat = fields.get("sent") or fields["received"]
        elif topic == "summaryState":
            self.summary_state = fields
        elif topic == "errorCode":
            self.error_code = fields
        elif topic == "workerPool":
            self.worker_pool = fields
        elif topic == "focalPlaneMode":
            self.focal_plane_mode = fields
        elif topic == "visitGathered":
            self.visit_gathered = fields
        elif topic == "logMessage":
            self.log_messages.appendleft(fields)
        elif topic == "jobResult":
            self.job_results.appendleft(fields)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, newest log messages and jobResults first."""
        return {
            "instrument": self.instrument,
            "index": self.index,
            "summaryState": self.summary_state,
            "heartbeat": self.heartbeat,
            "errorCode": self.error_code,
            "workerPool": self.worker_pool,
            "focalPlaneMode": self.focal_plane_mode,
            "visitGathered": self.visit_gathered,
            "logMessages": list(self.log_messages),
            "jobResults": list(self.job_results),
        }


def _event_fields(topic: str, fields: dict[str, Any]) -> dict[str, Any]:
    """What the page needs of an event: a few readable additions, jobResult's ``result`` left out."""
    if topic == "jobResult":
        return {k: fields.get(k) for k in _JOB_RESULT_FIELDS}
    if topic == "summaryState":
        from ..sal.enums import State

        value: Any = fields.get("summaryState")
        try:
            fields["name"] = State(int(value)).name
        except (TypeError, ValueError):
            fields["name"] = str(value)
    elif topic == "logMessage":
        level = fields.get("level")
        fields["levelName"] = _LOG_LEVELS.get(level, str(level)) if isinstance(level, int) else str(level)
    return fields


class Subscription:
    """One browser's queue of server-sent events; bounded, oldest dropped first.

    Parameters
    ----------
    feed : `LiveFeed`
        Where the snapshot comes from after an overflow.
    maxlen : `int`
        Most messages waiting; beyond, the oldest go and the browser is told.
    events : collection of `str`, optional
        The kinds of message wanted (``event``, ``row``); None for all. The night table wants
        rows only, and then a visit's 189 jobResults do not fill its queue.
    """

    def __init__(self, feed: LiveFeed, maxlen: int, events: Collection[str] | None = None) -> None:
        self._feed = feed
        self.events = None if events is None else frozenset(events)
        self._queue: collections.deque[str] = collections.deque()
        self._maxlen = maxlen
        self._ready = asyncio.Event()
        self.n_dropped = 0
        self._overflowed = False
        self.closed = False

    def put(self, message: str) -> None:
        """Queue a message (never waits)."""
        if len(self._queue) >= self._maxlen:
            self._queue.popleft()
            self.n_dropped += 1
            self._overflowed = True
        self._queue.append(message)
        self._ready.set()

    def close(self) -> None:
        """End the stream (the server is stopping)."""
        self.closed = True
        self._ready.set()

    @property
    def nqueued(self) -> int:
        """Messages waiting."""
        return len(self._queue)

    async def messages(self, keepalive: float) -> AsyncIterator[str]:
        """The messages as they come; a comment line every ``keepalive`` seconds of silence."""
        yield sse_message("snapshot", self._feed.snapshot())
        while not self.closed:
            if not self._queue:
                self._ready.clear()
                try:
                    await asyncio.wait_for(self._ready.wait(), keepalive)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
            if self.closed:
                break
            if self._overflowed:
                # What is left is the newest; the browser redraws from a snapshot instead.
                self._overflowed = False
                self._queue.clear()
                yield sse_message("overflow", {"dropped": self.n_dropped})
                yield sse_message("snapshot", self._feed.snapshot())
                continue
            yield self._queue.popleft()


class LiveFeed:
    """The followed CSCs' events, kept per instrument and fanned out to subscribers.

    Parameters
    ----------
    indices : sequence of `int`
        SAL indices of the RapidAnalysis CSCs to follow (1 LATISS, 2 LSSTComCam, 3 LSSTCam);
        empty for no DDS at all (``--no-live``).
    row_lookup : callable, optional
        ``row_lookup(instrument, image_name)`` → the image's night-table row as JSON-able data
        (the app gives `NightRow.as_dict` with the formatted cells), or None. Called in a thread.
    queue_len : `int`
        Messages each subscriber may have waiting.
    max_subscribers : `int`
        Most browsers connected at once (each has a queue).
    """

    def __init__(
        self,
        indices: Sequence[int],
        row_lookup: RowLookup | None = None,
        queue_len: int = 500,
        max_subscribers: int = 100,
    ) -> None:
        from ..data.camera import get_instrument

        self.indices = tuple(dict.fromkeys(int(i) for i in indices))
        self.states = {get_instrument(i).name: InstrumentState(get_instrument(i).name, i) for i in self.indices}
        self.row_lookup = row_lookup
        self.queue_len = queue_len
        self.max_subscribers = max_subscribers
        self._subscribers: set[Subscription] = set()
        self._domain: Any = None
        self._remotes: list[Any] = []
        # Images whose row is to be looked up, in order, each once (a dict as an ordered set).
        self._pending_rows: dict[tuple[str, str], None] = {}
        self._rows_ready = asyncio.Event()
        # The last row sent of each image (as JSON), newest last.
        self._sent_rows: collections.OrderedDict[tuple[str, str], str] = collections.OrderedDict()
        self._row_task: asyncio.Task | None = None
        self.n_events = 0
        self.error: str | None = None

    @property
    def live(self) -> bool:
        """Whether any CSC is followed."""
        return bool(self.indices)

    # -- DDS --

    async def start(self, timeout: float = 30.0) -> None:
        """Join DDS and start reading the followed CSCs' events (nothing if none are followed).

        Raises
        ------
        RuntimeError
            If DDS cannot be joined (e.g. ``LSST_DDS_PARTITION_PREFIX`` unset).
        """
        await self.start_rows()
        if not self.indices:
            return
        from .. import sal

        self._domain = sal.Domain()
        try:
            for instrument, state in self.states.items():
                remote = sal.Remote(self._domain, "RapidAnalysis", state.index, readonly=True, include=LIVE_EVENTS)
                for topic in LIVE_EVENTS:
                    getattr(remote, f"evt_{topic}").callback = functools.partial(self._on_sample, instrument, topic)
                self._remotes.append(remote)
            await asyncio.wait_for(asyncio.gather(*(r.start_task for r in self._remotes)), timeout)
        except BaseException:
            await self.close()
            raise

    async def start_rows(self) -> None:
        """Start looking up the rows that events name (`start` does; without DDS, tests call it)."""
        if self._row_task is None:
            self._row_task = asyncio.create_task(self._look_up_rows())

    async def close(self) -> None:
        """Leave DDS and end every subscriber's stream."""
        for subscription in list(self._subscribers):
            subscription.close()
        if self._row_task is not None:
            self._row_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._row_task
            self._row_task = None
        remotes, self._remotes = self._remotes, []
        for remote in remotes:
            with contextlib.suppress(Exception):
                await remote.close()
        if self._domain is not None:
            domain, self._domain = self._domain, None
            await domain.close()

    def _on_sample(self, instrument: str, topic: str, data: Any) -> None:
        from ..sal.tai import utc_from_tai

        fields = sample_fields(data)
        sent = getattr(data, "private_sndStamp", None)
        if isinstance(sent, float) and sent > 0:
            fields["sent"] = utc_from_tai(sent)  # UTC unix seconds, as ``received``
        self.handle_event(instrument, topic, fields)

    # -- events --

    def handle_event(self, instrument: str, topic: str, fields: dict[str, Any]) -> None:
        """Keep an event and send it to every subscriber; for jobResult and visitGathered, its row too.

        Parameters
        ----------
        instrument : `str`
            The CSC's instrument.
        topic : `str`
            Event name (one of `LIVE_EVENTS`).
        fields : `dict`
            Its public fields.
        """
        state = self.states.get(instrument)
        if state is None:
            return
        fields = _event_fields(topic, dict(fields))
        fields["received"] = time.time()
        state.update(topic, fields)
        self.n_events += 1
        self.broadcast("event", {"instrument": instrument, "topic": topic, "data": fields})
        image = fields.get("imageName")
        if topic in _ROW_EVENTS and image and self.row_lookup is not None:
            self._queue_row(instrument, image)
            # The CSC writes an image's row a moment after the jobResult (it gathers an image's
            # changes for IMAGE_WRITE_DELAY): look again, so that the page ends up with what it wrote.
            with contextlib.suppress(RuntimeError):  # no running loop: a test without one
                loop = asyncio.get_running_loop()
                for delay in ROW_RECHECKS:
                    loop.call_later(delay, self._queue_row, instrument, image)

    def _queue_row(self, instrument: str, image: str) -> None:
        self._pending_rows[(instrument, image)] = None
        self._rows_ready.set()

    def broadcast(self, event: str, data: Any) -> None:
        """Send one event to every subscriber (never waits)."""
        if not self._subscribers:
            return
        message = sse_message(event, data)
        for subscription in self._subscribers:
            if subscription.events is None or event in subscription.events:
                subscription.put(message)

    async def _look_up_rows(self) -> None:
        while True:
            await self._rows_ready.wait()
            self._rows_ready.clear()
            while self._pending_rows:
                key = next(iter(self._pending_rows))
                del self._pending_rows[key]
                instrument, image = key
                assert self.row_lookup is not None
                try:
                    row = await asyncio.to_thread(self.row_lookup, instrument, image)
                except Exception as e:  # a database hiccup must not end the feed
                    _log.warning("Could not look up the night row of %s %s: %r", instrument, image, e)
                    continue
                if row is None:
                    continue
                # A recheck that finds the row as it was sends nothing.
                text = json.dumps(row, sort_keys=True, default=str)
                if self._sent_rows.get(key) == text:
                    continue
                self._sent_rows[key] = text
                self._sent_rows.move_to_end(key)
                while len(self._sent_rows) > _ROWS_REMEMBERED:
                    self._sent_rows.popitem(last=False)
                self.broadcast("row", {"instrument": instrument, "row": row})

    # -- subscribers --

    def subscribe(self, events: Collection[str] | None = None) -> Subscription:
        """A new subscriber's queue; `unsubscribe` it when its browser goes.

        ``events``: the kinds of message it wants (``event``, ``row``); None for all. It always
        gets ``snapshot`` and ``overflow``.

        Raises
        ------
        RuntimeError
            If `max_subscribers` are already connected.
        """
        if len(self._subscribers) >= self.max_subscribers:
            raise RuntimeError(f"{len(self._subscribers)} browsers already follow the live feed")
        subscription = Subscription(self, self.queue_len, events)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscriber."""
        self._subscribers.discard(subscription)

    @property
    def n_subscribers(self) -> int:
        """Browsers connected."""
        return len(self._subscribers)

    def snapshot(self) -> dict[str, Any]:
        """Everything kept, for a page that opens (or one that fell behind)."""
        return {
            "serverTime": time.time(),
            "live": self.live,
            "subscribers": len(self._subscribers),
            "error": self.error,
            "instruments": {name: state.as_dict() for name, state in self.states.items()},
        }
