"""A bounded, time-indexed buffer of mount telemetry as the CSC receives it from DDS, and telemetry files.

The CSC subscribes to the mount topics (ATMCS for AuxTel; MTMount, MTRotator and, when present,
MTHexapod for Simonyi), appends every sample it receives to a `MountTelemetryBuffer` keyed by
the topic's EFD name (``lsst.sal.<Component>.<topic>``), and, when an image is to be analysed,
writes the exposure window of the buffer to a telemetry file which it passes to the
``mount_torque`` pipeline. The pipeline only ever reads files, so the same code runs on live
data, on a replay, and on files written by the simulators.

Files have the format of `lsst.ts.rapidanalysis.data.telemetry_file`, whose code unpacks the
messages and reads the files: EFD column names, packed ATMCS arrays unpacked to one row per
sample, small array fields split into ``name0``, ``name1``, ..., a ``time`` column in TAI unix
seconds, one ECSV file with a ``topic`` column and the ``topics`` metadata (or one file per
topic). Writing is done here, without the masked columns ``telemetry_file`` leaves, which
astropy writes about ten times slower (seconds per exposure window). Parquet works only if
pyarrow is importable; it is not a dependency, so asking for Parquet without it raises
`ParquetUnavailableError`, which says so.

Differences from ``telemetry_file``'s sample conversion, on purpose:

* ``salIndex`` is kept when it is non-zero: ``lsst.sal.MTHexapod.application`` carries both
  hexapods (1 = camera, 2 = M2) and is useless without it, as in the EFD.
* Samples are converted to plain numbers and arrays when appended, so the buffer never holds
  on to DDS sample objects.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import math
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from astropy.table import Table

from .telemetry_file import (
    EFD_PREFIX,
    PACKED_RATE,
    TIME_COLUMN,
    TOPIC_COLUMN,
    columns_to_table,
    read_telemetry,
)

__all__ = [
    "DEFAULT_BUFFER_SECONDS",
    "MountTelemetryBuffer",
    "ParquetUnavailableError",
    "TelemetryColumns",
    "parquet_available",
    "read_telemetry_file",
    "sample_fields",
    "select_window",
    "write_telemetry_file",
]

#: Default span of the buffer: the longest exposure (a few minutes) plus margins, with room to spare.
DEFAULT_BUFFER_SECONDS = 600.0
#: Default bound on messages kept per topic, whatever their timestamps say (a stuck clock must not
#: let the buffer grow without limit): 10 minutes of a 50 Hz topic.
DEFAULT_MAX_MESSAGES = 30_000
#: Message time fields, in order of preference (as ``telemetry_file``): the first present is used.
_TIME_FIELDS = ("timestamp", "cRIO_timestamp", "actualPositionTimestamp", "private_sndStamp")
_PACKED_TIMESTAMP = "cRIO_timestamp"
#: Table metadata of a telemetry file (as ``telemetry_file`` writes it).
_FILE_META = {"time_scale": "TAI", "time_unit": "unix seconds", "time_column": TIME_COLUMN}
#: Array fields at least this long next to a ``cRIO_timestamp`` are packed samples (as ``telemetry_file``).
_MIN_PACKED = 10

#: Per-topic columns: EFD topic name → column name → 1-d array (one entry per sample).
TelemetryColumns = dict[str, dict[str, np.ndarray]]


class ParquetUnavailableError(ImportError):
    """A Parquet telemetry file was asked for but pyarrow is not installed (it is optional)."""


def parquet_available() -> bool:
    """Whether Parquet telemetry files can be written and read (pyarrow is importable)."""
    return importlib.util.find_spec("pyarrow") is not None


def _check_format(path: pathlib.Path) -> None:
    """Refuse a Parquet path early, with a message that says what to do, when pyarrow is missing."""
    if path.suffix.lower() == ".parquet" and not parquet_available():
        raise ParquetUnavailableError(
            f"cannot use {path.name}: Parquet telemetry files need pyarrow, which is not installed "
            "(it is an optional dependency); use a .ecsv file instead"
        )


def sample_fields(sample: Any) -> dict[str, Any]:
    """The fields of one telemetry sample as plain values (numbers, strings, numpy arrays).

    Parameters
    ----------
    sample : mapping, dataclass or object
        A sample as a `Remote` delivers it, or a dict of field values.

    Returns
    -------
    fields : `dict` [`str`, `typing.Any`]
        Private fields other than ``private_sndStamp`` and DDS bookkeeping are dropped;
        ``salIndex`` is kept only when non-zero (an indexed component such as MTHexapod).
    """
    if isinstance(sample, Mapping):
        raw = dict(sample)
    elif dataclasses.is_dataclass(sample) and not isinstance(sample, type):
        raw = {f.name: getattr(sample, f.name) for f in dataclasses.fields(sample)}
    else:
        raw = {k: v for k, v in vars(sample).items() if not k.startswith("_")}
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name.startswith("private_") and name != "private_sndStamp":
            continue
        if name == "sample_info" or (name == "salIndex" and not value):
            continue
        if isinstance(value, list | tuple | np.ndarray):
            # copy: a DDS sample may reuse its buffers
            out[name] = np.array(value)
        elif isinstance(value, np.generic):
            out[name] = value.item()
        else:
            out[name] = value
    return out


@dataclasses.dataclass
class _Message:
    """One buffered message: its fields and the times of its first and last sample."""

    start: float
    end: float
    fields: dict[str, Any]


class _TopicBuffer:
    """The messages of one topic, oldest first."""

    def __init__(self, time_key: str, packed_width: int) -> None:
        self.time_key = time_key
        self.packed_width = packed_width
        self.messages: collections.deque[_Message] = collections.deque()
        self.newest = -math.inf


class MountTelemetryBuffer:
    """Mount telemetry samples per EFD topic, kept for a bounded time span.

    Parameters
    ----------
    duration : `float`
        Seconds of telemetry to keep per topic, counted back from the topic's newest sample;
        older messages are dropped as new ones arrive.
    max_messages : `int`
        Most messages kept per topic whatever their timestamps (a safety bound).
    packed_rate : `float`
        Samples per second of packed arrays (ATMCS, 100 Hz).
    topics : iterable of `str`, optional
        If given, only these topics are accepted; others raise `KeyError` (catches typos).

    Notes
    -----
    A message's time is its first field among ``timestamp``, ``cRIO_timestamp``,
    ``actualPositionTimestamp`` and ``private_sndStamp`` (TAI unix seconds). A message of packed
    arrays (ATMCS: 100 samples with ``cRIO_timestamp`` the first) spans
    ``[cRIO_timestamp, cRIO_timestamp + 99 / packed_rate]``. Messages may arrive out of order;
    windows are sorted by time.
    """

    def __init__(
        self,
        duration: float = DEFAULT_BUFFER_SECONDS,
        *,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        packed_rate: float = PACKED_RATE,
        topics: Iterable[str] | None = None,
    ) -> None:
        if not (math.isfinite(duration) and duration > 0):
            raise ValueError(f"duration={duration!r} must be a finite number of seconds > 0")
        if max_messages < 1:
            raise ValueError(f"max_messages={max_messages!r} must be >= 1")
        if not (math.isfinite(packed_rate) and packed_rate > 0):
            raise ValueError(f"packed_rate={packed_rate!r} must be > 0 (Hz)")
        self.duration = float(duration)
        self.max_messages = int(max_messages)
        self.packed_rate = float(packed_rate)
        self.allowed_topics = None if topics is None else frozenset(_check_topic(t) for t in topics)
        self._topics: dict[str, _TopicBuffer] = {}

    # -- filling --

    def append(self, topic: str, sample: Any) -> None:
        """Add one sample (message) of ``topic``.

        Parameters
        ----------
        topic : `str`
            EFD topic name, e.g. ``lsst.sal.MTMount.azimuth``.
        sample : mapping or object
            The sample as received (see `sample_fields`).

        Raises
        ------
        KeyError
            If ``topic`` is not one of ``topics`` given at construction.
        ValueError
            If the topic name is not an EFD name or the sample has no usable time field.
        """
        if self.allowed_topics is not None and topic not in self.allowed_topics:
            raise KeyError(
                f"topic {topic!r} is not buffered; buffered topics: {', '.join(sorted(self.allowed_topics))}"
            )
        fields = sample_fields(sample)
        buffer = self._topics.get(topic)
        if buffer is None:
            _check_topic(topic)
            time_key = next((k for k in _TIME_FIELDS if k in fields), None)
            if time_key is None:
                raise ValueError(f"{topic}: a sample has no time field (one of {', '.join(_TIME_FIELDS)})")
            widths = {
                np.size(v)
                for v in fields.values()
                if isinstance(v, np.ndarray) and v.ndim == 1 and v.size >= _MIN_PACKED
            }
            packed = time_key == _PACKED_TIMESTAMP and len(widths) == 1
            buffer = self._topics[topic] = _TopicBuffer(time_key, widths.pop() if packed else 1)
        try:
            start = float(fields[buffer.time_key])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{topic}: sample has no numeric {buffer.time_key}") from None
        if not math.isfinite(start):
            raise ValueError(f"{topic}: sample time {buffer.time_key}={start!r} is not finite")
        end = start + (buffer.packed_width - 1) / self.packed_rate
        buffer.messages.append(_Message(start, end, fields))
        buffer.newest = max(buffer.newest, end)
        self._trim(buffer)

    def extend(self, topic: str, samples: Iterable[Any]) -> None:
        """Add several samples of one topic (see `append`)."""
        for sample in samples:
            self.append(topic, sample)

    def _trim(self, buffer: _TopicBuffer) -> None:
        oldest_kept = buffer.newest - self.duration
        messages = buffer.messages
        while messages and (messages[0].end < oldest_kept or len(messages) > self.max_messages):
            messages.popleft()

    def clear(self) -> None:
        """Forget everything."""
        self._topics.clear()

    # -- looking --

    @property
    def topics(self) -> list[str]:
        """Topics with at least one message, in order of first arrival."""
        return [t for t, b in self._topics.items() if b.messages]

    def n_messages(self, topic: str | None = None) -> int:
        """Messages held for ``topic`` (default: all topics)."""
        if topic is not None:
            buffer = self._topics.get(topic)
            return len(buffer.messages) if buffer else 0
        return sum(len(b.messages) for b in self._topics.values())

    def time_range(self, topic: str | None = None) -> tuple[float, float] | None:
        """(first, last) sample time held for ``topic`` (default: over all topics); None if empty."""
        buffers = [self._topics[topic]] if topic in self._topics else [] if topic else list(self._topics.values())
        spans = [(min(m.start for m in b.messages), max(m.end for m in b.messages)) for b in buffers if b.messages]
        if not spans:
            return None
        return min(s for s, _ in spans), max(e for _, e in spans)

    def window_tables(
        self, t0: float, t1: float, margin: float = 0.0, topics: Sequence[str] | None = None
    ) -> dict[str, Table]:
        """Per-topic time series covering ``[t0 - margin, t1 + margin]``.

        Parameters
        ----------
        t0, t1 : `float`
            Exposure begin and end, TAI unix seconds.
        margin : `float`
            Seconds added either side (a fit or an interpolation needs samples just outside).
        topics : sequence of `str`, optional
            Topics to include (default all); a topic with no sample in the window is left out.

        Returns
        -------
        tables : `dict` [`str`, `astropy.table.Table`]
            EFD topic name → table sorted by ``time``, one row per sample, EFD column names.
        """
        if not t1 >= t0:
            raise ValueError(f"window end {t1} is before its start {t0}")
        if margin < 0:
            raise ValueError(f"margin={margin} must be >= 0")
        lo, hi = t0 - margin, t1 + margin
        out: dict[str, Table] = {}
        for topic in topics if topics is not None else list(self._topics):
            buffer = self._topics.get(topic)
            if buffer is None:
                continue
            selected = [m for m in buffer.messages if m.end >= lo and m.start <= hi]
            if not selected:
                continue
            columns = _stack([m.fields for m in selected], topic)
            table = columns_to_table(topic, columns, time_key=buffer.time_key, packed_rate=self.packed_rate)
            times = np.asarray(table[TIME_COLUMN], dtype=float)
            table = table[(times >= lo) & (times <= hi)]
            if len(table):
                out[topic] = table
        return out

    def window(
        self, t0: float, t1: float, margin: float = 0.0, topics: Sequence[str] | None = None
    ) -> TelemetryColumns:
        """Per-topic column arrays covering ``[t0 - margin, t1 + margin]`` (see `window_tables`).

        Returns
        -------
        columns : `dict` [`str`, `dict` [`str`, `numpy.ndarray`]]
            EFD topic name → column name → values, one per sample, sorted by ``time``.
        """
        return {topic: _table_columns(table) for topic, table in self.window_tables(t0, t1, margin, topics).items()}

    def write(
        self,
        path: str | pathlib.Path,
        t0: float,
        t1: float,
        margin: float = 0.0,
        *,
        topics: Sequence[str] | None = None,
        per_topic: bool = False,
    ) -> list[pathlib.Path]:
        """Write the window ``[t0 - margin, t1 + margin]`` to a telemetry file.

        Parameters
        ----------
        path : path-like
            ``.ecsv`` (or ``.parquet``, which needs pyarrow) holding every topic, or with
            ``per_topic`` a directory to hold one ``<topic>.ecsv`` per topic.
        t0, t1, margin, topics
            As `window_tables`.
        per_topic : `bool`
            One file per topic.

        Returns
        -------
        paths : `list` [`pathlib.Path`]
            The files written. A window with no telemetry still gives a (valid, empty) file, so
            that the pipeline, not the CSC, reports "no telemetry in the exposure window".

        Raises
        ------
        ParquetUnavailableError
            If a ``.parquet`` file is asked for and pyarrow is not installed.
        """
        return write_telemetry_file(path, self.window_tables(t0, t1, margin, topics), per_topic=per_topic)


def _check_topic(topic: str) -> str:
    if not isinstance(topic, str) or not topic.startswith(EFD_PREFIX) or topic.count(".") != 3:
        raise ValueError(f"topic {topic!r} is not an EFD topic name such as lsst.sal.MTMount.azimuth")
    return topic


def _stack(rows: list[dict[str, Any]], topic: str) -> dict[str, np.ndarray]:
    """Per-message dicts → per-field arrays (2-d for array fields); a field missing from a message is NaN."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    columns: dict[str, np.ndarray] = {}
    for name in names:
        values = [row.get(name) for row in rows]
        present = next(v for v in values if v is not None)
        if isinstance(present, np.ndarray):
            shape = present.shape
            filled = [np.full(shape, np.nan) if v is None else np.asarray(v) for v in values]
            if any(v.shape != shape for v in filled):
                raise ValueError(f"{topic}: field {name} changes length between messages")
            columns[name] = np.stack(filled)
        else:
            columns[name] = np.array([math.nan if v is None else v for v in values])
    return columns


def _table_columns(table: Table) -> dict[str, np.ndarray]:
    """A table's columns as plain arrays (masked floats → NaN)."""
    out = {}
    for name in table.colnames:
        column = table[name]
        if hasattr(column, "mask") and np.any(column.mask) and column.dtype.kind == "f":
            out[name] = np.asarray(column.filled(math.nan))
        else:
            out[name] = np.asarray(column)
    return out


def select_window(tables: Mapping[str, Table], t0: float, t1: float) -> TelemetryColumns:
    """Column arrays of the rows of each table with ``t0 <= time <= t1`` (topics left empty are kept)."""
    out: TelemetryColumns = {}
    for topic, table in tables.items():
        times = np.asarray(table[TIME_COLUMN], dtype=float)
        out[topic] = _table_columns(table[(times >= t0) & (times <= t1)])
    return out


def _fill_value(dtype: np.dtype) -> Any:
    """What a row of a topic that lacks a column holds in the single-file table (ignored on reading)."""
    if dtype.kind == "f":
        return math.nan
    if dtype.kind in "US":
        return ""
    if dtype.kind == "b":
        return False
    return 0


def _combined_table(tables: Mapping[str, Table]) -> Table:
    """All topics in one table with a ``topic`` column, every column filled (no masks).

    ``telemetry_file.write_telemetry`` stacks topics with an outer join, which leaves masked
    columns that astropy's ECSV writer formats one element at a time through numpy.ma: seconds
    per exposure window. Plain columns filled with NaN (or 0, "", False) write ~10x faster; the
    reader takes each topic's own columns from the ``topics`` metadata, so the fill is never read.
    """
    names: dict[str, np.dtype] = {}
    for table in tables.values():
        for name in table.colnames:
            dtype = np.asarray(table[name]).dtype
            names[name] = dtype if name not in names else np.result_type(names[name], dtype)
    sizes = [len(t) for t in tables.values()]
    total = sum(sizes)
    topics = list(tables)
    width = max(len(t) for t in topics)
    columns: dict[str, np.ndarray] = {TOPIC_COLUMN: np.repeat(np.array(topics, dtype=f"U{width}"), sizes)}
    for name, dtype in names.items():
        if dtype.kind == "O":
            dtype = np.dtype(str)
        column = np.full(total, _fill_value(dtype), dtype=dtype)
        start = 0
        for table, size in zip(tables.values(), sizes, strict=True):
            if name in table.colnames:
                column[start : start + size] = np.asarray(table[name])
            start += size
        columns[name] = column
    meta = {**_FILE_META, "topics": {topic: list(table.colnames) for topic, table in tables.items()}}
    return Table(columns, meta=meta)


def _table_format(path: pathlib.Path) -> str:
    return "parquet" if path.suffix.lower() == ".parquet" else "ascii.ecsv"


def write_telemetry_file(
    path: str | pathlib.Path, tables: Mapping[str, Table], *, per_topic: bool = False, suffix: str = ".ecsv"
) -> list[pathlib.Path]:
    """Write per-topic tables as a telemetry file that `read_telemetry_file` (and ``telemetry_file``) read.

    Parameters
    ----------
    path : path-like
        ``.ecsv`` or ``.parquet`` file, or with ``per_topic`` a directory.
    tables : mapping
        EFD topic name → table with a ``time`` column (TAI unix seconds) and EFD column names.
    per_topic : `bool`
        One ``<topic><suffix>`` file per topic in the directory ``path``.
    suffix : `str`
        ``.ecsv`` or ``.parquet``, for per-topic files.

    Returns
    -------
    paths : `list` [`pathlib.Path`]
        The files written. No topics (or only empty tables) still writes one valid ECSV (or
        Parquet) file, with no rows and no topics.

    Raises
    ------
    ParquetUnavailableError
        If Parquet is asked for and pyarrow is not installed.
    """
    path = pathlib.Path(path)
    non_empty = {_check_topic(topic): table for topic, table in tables.items() if len(table)}
    if per_topic:
        _check_format(path / f"x{suffix}")
        path.mkdir(parents=True, exist_ok=True)
        written = []
        for topic, table in non_empty.items():
            file_path = path / f"{topic}{suffix}"
            out = Table([np.asarray(table[name]) for name in table.colnames], names=table.colnames)
            out.meta = {**_FILE_META, "topic": topic}
            out.write(file_path, format=_table_format(file_path), overwrite=True)
            written.append(file_path)
        if written:
            return written
        path = path / f"empty{suffix}"
    _check_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if non_empty:
        combined = _combined_table(non_empty)
    else:
        combined = Table(
            {TOPIC_COLUMN: np.zeros(0, dtype="U1"), TIME_COLUMN: np.zeros(0)}, meta={**_FILE_META, "topics": {}}
        )
    combined.write(path, format=_table_format(path), overwrite=True)
    return [path]


def read_telemetry_file(path: str | pathlib.Path, t0: float | None = None, t1: float | None = None) -> TelemetryColumns:
    """Read a telemetry file (or directory of per-topic files) into per-topic column arrays.

    Parameters
    ----------
    path : path-like
        ``.ecsv`` or ``.parquet`` file, or a directory of them.
    t0, t1 : `float`, optional
        Keep only samples with ``t0 <= time <= t1`` (TAI unix seconds).

    Returns
    -------
    columns : `dict` [`str`, `dict` [`str`, `numpy.ndarray`]]
        EFD topic name → column name → values sorted by ``time``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (or a directory holds no telemetry files).
    ParquetUnavailableError
        For a ``.parquet`` file without pyarrow.
    ValueError
        If the file is not a telemetry file.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"telemetry file {path} does not exist")
    if path.is_file():
        _check_format(path)
    tables = read_telemetry(path)
    lo = -math.inf if t0 is None else t0
    hi = math.inf if t1 is None else t1
    return select_window(tables, lo, hi)
