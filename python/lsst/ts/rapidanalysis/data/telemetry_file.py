"""Mount telemetry files: what a mount simulator published (or any samples), with EFD column names.

A telemetry file can stand in for the live telemetry (``DESIGN.md``, data flow). Each topic is
identified by its EFD name, ``lsst.sal.<Component>.<topic>`` (e.g.
``lsst.sal.ATMCS.mount_AzEl_Encoders``), and becomes a time series with one row per sample and a
``time`` column in **TAI unix seconds**:

* Packed topics (ATMCS: 100 samples at 100 Hz per message, ``cRIO_timestamp`` = first sample)
  are unpacked: row ``i`` of a message has ``time = cRIO_timestamp + i / 100`` and the message's
  ``cRIO_timestamp``; the array fields (``azimuthCalculatedAngle``, ``elevationCalculatedAngle``,
  ``nasmyth2CalculatedAngle``, ``azimuthMotor1Torque``, ...) become plain columns.
* Other topics keep one row per message; ``time`` is the topic's ``timestamp`` field (MTMount
  ``azimuth``/``elevation`` also keep ``actualPosition``/``actualPositionTimestamp``,
  ``demandPosition``/``demandPositionTimestamp``, ...). Small array fields become ``name0``,
  ``name1``, ... as in the EFD (MTRotator ``motors``: ``torque0``, ``torque1``).

File formats: one ECSV file holding every topic, with a ``topic`` column (columns a topic lacks
are masked, and the table metadata lists each topic's columns), or, with ``per_topic=True``, a
directory with one ``<topic>.ecsv`` per topic. ``.parquet`` works too if pyarrow is installed
(it is not a dependency). `read_telemetry` reads either form back into per-topic tables.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from astropy.table import Column, MaskedColumn, Table, vstack

__all__ = [
    "EFD_PREFIX",
    "PACKED_RATE",
    "TIME_COLUMN",
    "TOPIC_COLUMN",
    "efd_topic_name",
    "columns_to_table",
    "samples_to_table",
    "telemetry_tables",
    "write_telemetry",
    "read_telemetry",
]

EFD_PREFIX = "lsst.sal."
#: Samples per second of packed arrays (ATMCS).
PACKED_RATE = 100.0
#: The time column: TAI unix seconds.
TIME_COLUMN = "time"
#: The topic column of a single-file telemetry table.
TOPIC_COLUMN = "topic"
_PACKED_TIMESTAMP = "cRIO_timestamp"
#: Array fields at least this long next to a cRIO_timestamp are packed samples.
_MIN_PACKED = 10
_TIME_FIELDS = ("timestamp", _PACKED_TIMESTAMP, "actualPositionTimestamp", "private_sndStamp")
_SUFFIXES = (".ecsv", ".parquet")


def efd_topic_name(component: str, topic: str) -> str:
    """``lsst.sal.<component>.<topic>``; ``tel_``/``evt_`` prefixes are dropped."""
    for prefix in ("tel_", "evt_", "logevent_"):
        topic = topic.removeprefix(prefix)
    return f"{EFD_PREFIX}{component}.{topic}"


def _check_topic(topic: str) -> str:
    if not topic.startswith(EFD_PREFIX) or topic.count(".") != 3:
        raise ValueError(f"topic {topic!r} is not an EFD topic name such as lsst.sal.ATMCS.mount_AzEl_Encoders")
    return topic


def columns_to_table(
    topic: str,
    columns: Mapping[str, Any],
    *,
    time_key: str | None = None,
    packed_rate: float = PACKED_RATE,
) -> Table:
    """One topic's messages (columns, one entry per message) as a time series table.

    Parameters
    ----------
    topic : `str`
        EFD topic name.
    columns : mapping
        Field name → values per message (1-d), or per message and element (2-d, for array
        fields).
    time_key : `str`, optional
        Field holding each message's time; default the first of ``timestamp``,
        ``cRIO_timestamp``, ``actualPositionTimestamp``, ``private_sndStamp`` present.
    packed_rate : `float`
        Samples per second of packed arrays (those next to a ``cRIO_timestamp``).

    Returns
    -------
    table : `astropy.table.Table`
        Sorted by ``time`` (TAI unix seconds), one row per sample; ``meta["topic"]`` is the topic.
    """
    _check_topic(topic)
    arrays = {name: np.asarray(values) for name, values in columns.items()}
    if time_key is None:
        time_key = next((k for k in _TIME_FIELDS if k in arrays), None)
        if time_key is None:
            raise ValueError(f"{topic}: no time field (one of {', '.join(_TIME_FIELDS)}) in {sorted(arrays)}")
    n_messages = len(arrays[time_key])
    for name, values in arrays.items():
        if len(values) != n_messages:
            raise ValueError(f"{topic}: column {name} has {len(values)} messages, {time_key} has {n_messages}")
    packed_width = {v.shape[1] for v in arrays.values() if v.ndim == 2 and v.shape[1] >= _MIN_PACKED}
    out: dict[str, np.ndarray] = {}
    if time_key == _PACKED_TIMESTAMP and packed_width:
        if len(packed_width) > 1:
            raise ValueError(f"{topic}: packed arrays of different lengths {sorted(packed_width)}")
        width = packed_width.pop()
        base = arrays[time_key].astype(float)
        out[TIME_COLUMN] = (base[:, None] + np.arange(width)[None, :] / packed_rate).ravel()
        for name, values in arrays.items():
            if values.ndim == 2 and values.shape[1] == width:
                out[name] = values.reshape(-1)
            elif values.ndim == 2:
                for k in range(values.shape[1]):
                    out[f"{name}{k}"] = np.repeat(values[:, k], width)
            else:
                out[name] = np.repeat(values, width)
    else:
        out[TIME_COLUMN] = arrays[time_key].astype(float)
        for name, values in arrays.items():
            if values.ndim == 2:
                for k in range(values.shape[1]):
                    out[f"{name}{k}"] = values[:, k]
            else:
                out[name] = values
    table = Table(out, meta={"topic": topic})
    if len(table) > 1 and np.any(np.diff(table[TIME_COLUMN]) < 0):
        table.sort(TIME_COLUMN, kind="stable")
    return table


def _sample_fields(sample: Any) -> dict[str, Any]:
    if isinstance(sample, Mapping):
        fields = dict(sample)
    elif dataclasses.is_dataclass(sample):
        fields = {f.name: getattr(sample, f.name) for f in dataclasses.fields(sample)}
    else:
        fields = {k: v for k, v in vars(sample).items() if not k.startswith("_")}
    return {
        k: v
        for k, v in fields.items()
        if not (k.startswith("private_") and k != "private_sndStamp") and k not in ("salIndex", "sample_info")
    }


def samples_to_table(topic: str, samples: Iterable[Any], **kwargs: Any) -> Table:
    """Samples (as a Remote reads them, or dicts of field values) of one topic as a time series table.

    Private fields other than ``private_sndStamp`` are left out. Keyword arguments are those
    of `columns_to_table`.
    """
    rows = [_sample_fields(s) for s in samples]
    if not rows:
        raise ValueError(f"{topic}: no samples")
    names = list(rows[0])
    columns = {name: [row[name] for row in rows] for name in names}
    if "private_sndStamp" in columns and any(k in columns for k in _TIME_FIELDS[:-1]):
        del columns["private_sndStamp"]
    return columns_to_table(topic, columns, **kwargs)


def _select(table: Table, start: float | None, end: float | None) -> Table:
    if start is None and end is None:
        return table
    times = np.asarray(table[TIME_COLUMN])
    keep = np.ones(len(table), dtype=bool)
    if start is not None:
        keep &= times >= start
    if end is not None:
        keep &= times < end
    return table[keep]


def telemetry_tables(
    source: Any,
    start: float | None = None,
    end: float | None = None,
    topics: Sequence[str] | None = None,
) -> dict[str, Table]:
    """Per-topic time series of a telemetry source, limited to [start, end) (TAI).

    Parameters
    ----------
    source
        A mount simulator (anything with a ``recorder``), its `TelemetryRecorder`, or a mapping
        of topic → table (as `read_telemetry` returns).
    start, end : `float`, optional
        Time range, TAI unix seconds.
    topics : sequence of `str`, optional
        Topics to include (default all).
    """
    recorder = getattr(source, "recorder", source)
    tables: dict[str, Table] = {}
    if isinstance(recorder, Mapping):
        for topic, table in recorder.items():
            tables[topic] = _select(table, start, end)
    elif hasattr(recorder, "columns") and hasattr(recorder, "topics"):
        for topic in recorder.topics:
            # a packed message starts up to a second before its last sample: ask for a margin
            margin = None if start is None else start - 10.0
            columns = recorder.columns(topic, margin, end)
            if not columns:
                continue
            table = columns_to_table(topic, columns, time_key=recorder.time_key(topic))
            tables[topic] = _select(table, start, end)
    else:
        raise TypeError(f"cannot read telemetry from {type(source).__name__}")
    if topics is not None:
        missing = sorted(set(topics) - set(tables))
        if missing:
            raise KeyError(f"no telemetry for {missing}; available: {', '.join(sorted(tables)) or 'none'}")
        tables = {t: tables[t] for t in topics}
    return tables


def _file_format(path: pathlib.Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".ecsv":
        return "ascii.ecsv"
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError(f"writing or reading {path.name} needs pyarrow, which is not installed") from None
        return "parquet"
    raise ValueError(f"telemetry file {path} must end in .ecsv or .parquet")


def write_telemetry(
    path: str | pathlib.Path,
    source: Any,
    *,
    start: float | None = None,
    end: float | None = None,
    topics: Sequence[str] | None = None,
    per_topic: bool = False,
    suffix: str = ".ecsv",
    overwrite: bool = True,
) -> list[pathlib.Path]:
    """Write telemetry (see `telemetry_tables` for ``source``, ``start``, ``end``, ``topics``).

    Parameters
    ----------
    path : path
        A ``.ecsv`` (or ``.parquet``) file holding every topic, or with ``per_topic`` a
        directory to hold one ``<topic><suffix>`` per topic.
    per_topic : `bool`
        One file per topic.
    suffix : `str`
        ``.ecsv`` or ``.parquet`` for per-topic files.
    overwrite : `bool`
        Replace existing files.

    Returns
    -------
    paths : `list` [`pathlib.Path`]
        The files written.
    """
    path = pathlib.Path(path)
    tables = telemetry_tables(source, start, end, topics)
    if not tables:
        raise ValueError("no telemetry to write (nothing recorded in that time range)")
    meta = {"time_scale": "TAI", "time_unit": "unix seconds", "time_column": TIME_COLUMN}
    if per_topic:
        path.mkdir(parents=True, exist_ok=True)
        written = []
        for topic, table in tables.items():
            out = table.copy(copy_data=False)
            out.meta = {**meta, "topic": topic}
            file_path = path / f"{topic}{suffix}"
            out.write(file_path, format=_file_format(file_path), overwrite=overwrite)
            written.append(file_path)
        return written
    file_format = _file_format(path)
    parts = []
    for topic, table in tables.items():
        part = table.copy(copy_data=False)
        part.meta = {}
        part.add_column(Column([topic] * len(part), name=TOPIC_COLUMN, dtype=f"U{max(len(topic), 1)}"), index=0)
        parts.append(part)
    combined = vstack(parts, join_type="outer", metadata_conflicts="silent") if len(parts) > 1 else parts[0]
    combined[TOPIC_COLUMN] = Column(np.asarray(combined[TOPIC_COLUMN], dtype=str), name=TOPIC_COLUMN)
    combined.meta = {**meta, "topics": {topic: list(table.colnames) for topic, table in tables.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    combined.write(path, format=file_format, overwrite=overwrite)
    return [path]


def _plain(column: Column) -> Column:
    """A masked column with nothing masked → a plain column (masked floats → NaN)."""
    if isinstance(column, MaskedColumn):
        if not np.any(column.mask):
            return Column(np.asarray(column.data), name=column.name, unit=column.unit)
        if column.dtype.kind == "f":
            return Column(column.filled(math.nan), name=column.name, unit=column.unit)
    return column


def _read_one(path: pathlib.Path) -> dict[str, Table]:
    table = Table.read(path, format=_file_format(path))
    if TOPIC_COLUMN not in table.colnames:
        topic = table.meta.get("topic") or path.name.removesuffix(path.suffix)
        out = Table([_plain(table[name]) for name in table.colnames], meta={"topic": topic})
        return {_check_topic(topic): out}
    listed = table.meta.get("topics") or {}
    topics = np.asarray(table[TOPIC_COLUMN], dtype=str)
    result = {}
    for topic in dict.fromkeys(topics):  # in order of appearance
        rows = table[topics == topic]
        names = listed.get(topic)
        if names is None:  # no metadata: the columns with a value for this topic
            names = [
                n
                for n in rows.colnames
                if n != TOPIC_COLUMN and not (isinstance(rows[n], MaskedColumn) and np.all(rows[n].mask))
            ]
        result[_check_topic(str(topic))] = Table([_plain(rows[name]) for name in names], meta={"topic": topic})
    return result


def read_telemetry(path: str | pathlib.Path) -> dict[str, Table]:
    """Read a telemetry file (or a directory of per-topic files) into per-topic time series.

    Returns
    -------
    tables : `dict` [`str`, `astropy.table.Table`]
        EFD topic name → table sorted by ``time`` (TAI unix seconds) with the topic's columns.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES and p.is_file())
        if not files:
            raise FileNotFoundError(f"no telemetry files (*.ecsv, *.parquet) in {path}")
        tables: dict[str, Table] = {}
        for file_path in files:
            tables.update(_read_one(file_path))
    else:
        tables = _read_one(path)
    for table in tables.values():
        if len(table) > 1 and np.any(np.diff(table[TIME_COLUMN]) < 0):
            table.sort(TIME_COLUMN, kind="stable")
    return tables
