"""The results database: jobs and their per-image and per-detector metrics and products.

The CSC records a job when it is queued and updates it when it ends; when the job succeeded it
also records the metrics and product files of its `PipelineResult`. Notebooks open the same
database (`open_results`) and get `astropy.table.Table` objects back, while the CSC keeps writing.

Why SQLAlchemy Core rather than the ORM: the schema is five flat tables written in bulk
(``executemany`` of metric rows) and read into astropy tables, so mapped objects, identity maps
and sessions would only add cost; Core still gives portable SQL. Everything here is plain
SQLAlchemy constructs, so the same code runs on the default SQLite file and on a site's
PostgreSQL server (``postgresql+psycopg://...``; the driver is the site's to install). The only
dialect-specific code is the SQLite connection set-up, which the SQLite backend needs:

- WAL journal mode, so a notebook reads while the CSC writes;
- a busy timeout, so concurrent writers wait instead of failing with "database is locked";
- ``BEGIN IMMEDIATE`` for write transactions (taken over from the ``sqlite3`` module, whose
  legacy transaction handling begins lazily), so a writer takes the write lock up front, where
  the busy timeout applies, rather than failing when it upgrades a read lock;
- ``foreign_keys=ON``, so SQLite enforces what PostgreSQL enforces;
- ``check_same_thread=False``, since the CSC writes from executor threads.

Times are TAI unix seconds (floats), as in SAL.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import math
import numbers
import os
import pathlib
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from astropy.table import Column, MaskedColumn, Table

__all__ = [
    "SCHEMA_VERSION",
    "JOB_STATES",
    "JOB_TRIGGERS",
    "IMAGE_STATES",
    "IMAGE_TRIGGERS",
    "ResultsDatabase",
    "open_results",
]

_log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
"""Version of the table layout, stored in ``ra_meta``; bump it with every schema change.

1: ``ra_job``, ``ra_metric``, ``ra_product``. 2: + ``ra_image`` and the page's indexes; a version 1
database is upgraded when opened with ``create=True`` (its tables and indexes are added, nothing
is rewritten) and read as it is otherwise (no image rows).
"""
#: Older versions this code still opens (see `SCHEMA_VERSION`).
_UPGRADABLE_VERSIONS = ("1",)
#: ``ra_meta`` key: TAI when ``ra_image`` was added to a version 1 database (jobs submitted
#: before it have no image rows; the page reads them from ``ra_job``).
IMAGES_SINCE_KEY = "images_since"

JOB_TRIGGERS = ("command", "autonomous", "catchup")
JOB_STATES = ("queued", "running", "succeeded", "failed", "aborted", "timed_out")
IMAGE_TRIGGERS = ("autonomous", "command")
IMAGE_STATES = ("processing", "complete", "partial", "failed", "dropped")

_JSON_FIELDS = ("data_id", "result", "config")

# Fixed columns of the wide metrics table; a metric with one of these names would clash.
_WIDE_KEY_COLUMNS = ("job_id", "pipeline", "image_name", "detector", "end_time")
# Keys of a detector row that identify the detector rather than measure it.
_DETECTOR_KEYS = ("detector", "detectorName")

_metadata = sa.MetaData()

# Double, not Float: TAI unix seconds need 53 bits to keep microseconds.
_Time = sa.Double

# Metric rows grow fastest (a full LSSTCam night is millions): 64-bit ids on servers; SQLite
# only autoincrements an INTEGER PRIMARY KEY (which is 64-bit there anyway).
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

ra_meta = sa.Table(
    "ra_meta",
    _metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

ra_job = sa.Table(
    "ra_job",
    _metadata,
    sa.Column("job_id", sa.String(128), primary_key=True),
    sa.Column("instrument", sa.String(64)),
    sa.Column("pipeline", sa.String(128)),
    sa.Column("data_id", sa.Text),
    sa.Column("image_name", sa.String(128)),
    # Enumerations are checked in Python, not with a native ENUM (PostgreSQL's needs CREATE TYPE
    # and a migration to extend).
    sa.Column("trigger", sa.String(16)),
    sa.Column("state", sa.String(16)),
    sa.Column("success", sa.Boolean),
    sa.Column("exit_code", sa.Integer),
    sa.Column("error_report", sa.Text),
    sa.Column("submit_time", _Time),
    sa.Column("start_time", _Time),
    sa.Column("end_time", _Time),
    sa.Column("duration", _Time),
    sa.Column("result", sa.Text),
    sa.Column("config", sa.Text),
    sa.Index("ix_ra_job_submit_time", "submit_time"),
    sa.Index("ix_ra_job_image_name", "image_name"),
    # The page: an image's jobs by pipeline without reading the rows (schema version 2).
    sa.Index("ix_ra_job_image_pipeline", "image_name", "pipeline"),
)

ra_metric = sa.Table(
    "ra_metric",
    _metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(128), sa.ForeignKey("ra_job.job_id", ondelete="CASCADE"), nullable=False),
    sa.Column("image_name", sa.String(128), nullable=False),
    sa.Column("detector", sa.Integer, nullable=True),  # NULL: a per-image metric
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("value", sa.Double, nullable=True),  # NULL: NaN or no value
    sa.Index("ix_ra_metric_image_name", "image_name"),
    sa.Index("ix_ra_metric_job_id", "job_id"),
    sa.Index("ix_ra_metric_name", "name"),
    # The page (schema version 2): an image's per-image metrics by name (detector NULL), a
    # detector's metric, whether a job wrote per-detector rows and the names of a job's per-image
    # metrics, each one index range (the second covers what it reads).
    sa.Index("ix_ra_metric_image_detector_name", "image_name", "detector", "name"),
    sa.Index("ix_ra_metric_job_detector", "job_id", "detector", "name"),
)

ra_product = sa.Table(
    "ra_product",
    _metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(128), sa.ForeignKey("ra_job.job_id", ondelete="CASCADE"), nullable=False),
    sa.Column("image_name", sa.String(128)),
    sa.Column("path", sa.Text),
    sa.Column("url", sa.Text),
    sa.Column("mime_type", sa.String(128)),
    sa.Column("byte_size", sa.BigInteger),
    sa.Column("checksum", sa.String(256)),
    sa.Column("description", sa.Text),
    sa.Column("created", _Time),
    sa.Index("ix_ra_product_image_name", "image_name"),
    sa.Index("ix_ra_product_job_id", "job_id"),
)

ra_image = sa.Table(
    "ra_image",
    _metadata,
    sa.Column("instrument", sa.String(64), primary_key=True),
    sa.Column("image_name", sa.String(128), primary_key=True),
    sa.Column("day_obs", sa.Integer),
    sa.Column("seq_num", sa.Integer),
    sa.Column("image_type", sa.String(32)),  # as the camera says: BIAS, FLAT, ENGTEST, ACQ, CWFS, SCIENCE...
    sa.Column("filter", sa.String(64)),
    sa.Column("exposure_time", sa.Double),  # s
    sa.Column("obs_time", _Time),  # taken/read out; for processData, the job's making if nothing better
    sa.Column("trigger", sa.String(16)),  # IMAGE_TRIGGERS
    sa.Column("end_readout_time", _Time, nullable=True),  # the CSC heard endReadout; NULL for processData
    sa.Column("first_detector_time", _Time, nullable=True),  # first per-detector/per-image job ended
    sa.Column("visit_metrics_time", _Time, nullable=True),  # visit-level metrics published
    sa.Column("n_expected", sa.Integer),
    sa.Column("n_done", sa.Integer),
    sa.Column("n_failed", sa.Integer),
    sa.Column("n_dropped", sa.Integer),
    sa.Column("state", sa.String(16)),  # IMAGE_STATES
    sa.Column("reason", sa.Text, nullable=True),
    sa.Index("ix_ra_image_instrument_day_obs", "instrument", "day_obs"),
)

#: Indexes added by schema version 2 to tables of version 1 (``create_all`` adds only new tables).
_V2_INDEXES = [
    index
    for table in (ra_job, ra_metric)
    for index in table.indexes
    if index.name in ("ix_ra_job_image_pipeline", "ix_ra_metric_image_detector_name", "ix_ra_metric_job_detector")
]

# Statements built once and reused. A job's row is written three times and its metrics once, for
# each of a visit's 189 jobs, in the writer thread that shares the GIL with the CSC's event loop:
# building a statement per call (clauses, coercions, its cache key) cost more Python than running it.
_JOB_KEY = "key_job_id"  # not a column name: SQLAlchemy reserves those for SET
_JOB_INSERT = sa.insert(ra_job)
_JOB_EXISTS = sa.select(ra_job.c.job_id).where(ra_job.c.job_id == sa.bindparam(_JOB_KEY))
_JOB_UPDATES: dict[tuple[str, ...], sa.Update] = {}
_METRIC_INSERT = sa.insert(ra_metric)
_METRIC_DELETES: dict[tuple[bool, bool], sa.Delete] = {}


def _job_update(columns: tuple[str, ...]) -> sa.Update:
    """``UPDATE ra_job SET <columns> WHERE job_id = :key_job_id``, built once per set of columns."""
    update = _JOB_UPDATES.get(columns)
    if update is None:
        update = (
            sa.update(ra_job)
            .where(ra_job.c.job_id == sa.bindparam(_JOB_KEY))
            .values({name: sa.bindparam(name) for name in columns})
        )
        _JOB_UPDATES[columns] = update  # a handful of column sets: queued, running, ended
    return update


def _metric_delete(detectors: bool, per_image: bool) -> sa.Delete:
    """Delete a job's metrics of one image: of the ``:detectors`` given and/or its per-image ones."""
    delete = _METRIC_DELETES.get((detectors, per_image))
    if delete is None:
        which = []
        if detectors:
            which.append(ra_metric.c.detector.in_(sa.bindparam("detectors", expanding=True)))
        if per_image:
            which.append(ra_metric.c.detector.is_(None))
        delete = sa.delete(ra_metric).where(
            ra_metric.c.job_id == sa.bindparam("job_id"),
            ra_metric.c.image_name == sa.bindparam("image_name"),
            sa.or_(*which),
        )
        _METRIC_DELETES[(detectors, per_image)] = delete
    return delete


_Kind = Literal["str", "float", "int", "bool"]


def _kind(column: sa.Column) -> _Kind:
    """The astropy column kind for a database column."""
    if isinstance(column.type, sa.Boolean):
        return "bool"
    if isinstance(column.type, sa.Integer):
        return "int"
    if isinstance(column.type, sa.Float):  # Double is a Float
        return "float"
    return "str"


def _spec(table: sa.Table) -> list[tuple[str, _Kind]]:
    return [(c.name, _kind(c)) for c in table.columns]


_JOB_SPEC = _spec(ra_job)
_PRODUCT_SPEC = _spec(ra_product)


def _astropy_column(name: str, kind: _Kind, values: Sequence[Any]) -> Column:
    """An astropy column from database values, NULL as "" (str), NaN (float) or masked (int, bool)."""
    if kind == "str":
        return Column(["" if v is None else str(v) for v in values], name=name, dtype=str)
    if kind == "float":
        return Column([np.nan if v is None else float(v) for v in values], name=name, dtype=np.float64)
    dtype = np.int64 if kind == "int" else np.bool_
    data: np.ndarray = np.array([0 if v is None else v for v in values], dtype=dtype)
    return MaskedColumn(data, name=name, mask=[v is None for v in values], dtype=dtype)


def _to_table(rows: Sequence[Sequence[Any]], spec: Sequence[tuple[str, _Kind]]) -> Table:
    return Table([_astropy_column(name, kind, [r[i] for r in rows]) for i, (name, kind) in enumerate(spec)])


def _as_url(url_or_path: str | os.PathLike[str] | sa.URL) -> sa.URL:
    """A SQLAlchemy URL from a URL or a plain file path (which means a SQLite file)."""
    if isinstance(url_or_path, sa.URL):
        return url_or_path
    text = os.fspath(url_or_path)
    if "://" in text:
        return sa.make_url(text)
    path = pathlib.Path(text).expanduser().absolute()
    return sa.URL.create("sqlite", database=str(path))


def _is_memory(url: sa.URL) -> bool:
    return url.database in (None, "", ":memory:")


def _one_of(column: sa.ColumnElement[Any], value: str | Iterable[str]) -> sa.ColumnElement[bool]:
    """``column = value`` for one value, ``column IN (...)`` for several."""
    if isinstance(value, str):
        return column == value
    return column.in_(list(value))


def _metric_value(value: Any) -> tuple[bool, float | None]:
    """Whether ``value`` is a storable metric, and its stored form (NaN and None as NULL)."""
    if value is None:
        return True, None
    if isinstance(value, bool | np.bool_):
        return True, float(bool(value))
    if isinstance(value, numbers.Real):  # includes numpy integer and floating scalars
        f = float(value)
        return True, None if math.isnan(f) else f
    return False, None


def _enum_text(field: str, value: Any, allowed: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        value = value.value
    if value not in allowed:
        raise ValueError(f"{field}={value!r} is not one of {', '.join(allowed)}")
    return str(value)


def _json_text(value: Any) -> str | None:
    """JSON fields may be given as text (stored as is) or as JSON-able objects."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


class ResultsDatabase:
    """Jobs, metrics and products of Rapid Analysis, in SQLite or PostgreSQL.

    Writes are synchronous and each is one transaction; the CSC calls them from a thread
    executor, and one instance may be used from many threads at once. Queries return
    `astropy.table.Table` objects, empty (with the documented columns) when nothing matches.

    Parameters
    ----------
    url : `str`, path-like or `sqlalchemy.URL`
        ``sqlite:///path/to/file.sqlite3`` (the default kind; parent directories are created),
        ``postgresql+psycopg://user@host/db`` at a site, or a plain file path (a SQLite file).
    create : `bool`
        Create the tables if they are missing (and the SQLite file with its directories). If
        False, the database must already exist: `FileNotFoundError` for a missing SQLite file,
        `RuntimeError` for a database without the results tables.
    busy_timeout : `float`
        SQLite only: seconds a connection waits for another's write lock before giving up.
    **engine_kwargs
        Passed to `sqlalchemy.create_engine` (e.g. ``pool_size`` for a server).

    Raises
    ------
    RuntimeError
        If the database has a different schema version than this code.

    Notes
    -----
    Tables (all times TAI unix seconds):

    - ``ra_job``: one row per job, key ``job_id``; ``data_id``, ``result`` and ``config`` are
      JSON text; ``trigger`` is one of `JOB_TRIGGERS`, ``state`` one of `JOB_STATES`.
    - ``ra_metric``: one row per (job, image, detector, metric name); ``detector`` NULL for
      per-image metrics; ``value`` NULL for NaN.
    - ``ra_product``: one row per product file.
    - ``ra_image``: one row per image, key (``instrument``, ``image_name``): what it is, when it
      was heard and measured, how many of its jobs ran, failed or were dropped, and its
      ``state`` (one of `IMAGE_STATES`) with the ``reason``; ``trigger`` is one of
      `IMAGE_TRIGGERS`.
    - ``ra_meta``: ``schema_version`` (and ``images_since`` in a database upgraded from 1).
    """

    def __init__(
        self,
        url: str | os.PathLike[str] | sa.URL,
        *,
        create: bool = True,
        busy_timeout: float = 30.0,
        **engine_kwargs: Any,
    ) -> None:
        self.url = _as_url(url)
        self._closed = False
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        # The open batch() transaction of each thread, if any.
        self._batch = threading.local()
        if self.is_sqlite:
            self._engine = self._make_sqlite_engine(create, busy_timeout, engine_kwargs)
        else:
            # pre_ping: the CSC holds connections for days; a server restart must not break it.
            engine_kwargs.setdefault("pool_pre_ping", True)
            self._engine = sa.create_engine(self.url, **engine_kwargs)
        # Writes go through an engine view whose connections begin with BEGIN IMMEDIATE on SQLite.
        self._write_engine = self._engine.execution_options(ra_write=True)
        try:
            self._init_schema(create)
        except BaseException:
            self._engine.dispose()
            raise

    def _make_sqlite_engine(self, create: bool, busy_timeout: float, engine_kwargs: dict[str, Any]) -> sa.Engine:
        connect_args = dict(engine_kwargs.pop("connect_args", {}))
        connect_args.setdefault("check_same_thread", False)
        connect_args.setdefault("timeout", busy_timeout)  # sqlite3's busy timeout
        if _is_memory(self.url):
            # One shared connection, or every checkout would see a new empty database.
            engine_kwargs.setdefault("poolclass", sa.StaticPool)
        else:
            assert self.url.database  # a URL without one is in memory (above)
            path = pathlib.Path(self.url.database)
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif not path.exists():
                raise FileNotFoundError(f"no results database at {path}")
        engine = sa.create_engine(self.url, connect_args=connect_args, **engine_kwargs)

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take transaction control from the sqlite3 module (see _on_begin).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                # NORMAL is durable across application crashes in WAL mode and much faster than FULL.
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA foreign_keys=ON")
            finally:
                cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            # Writers take the write lock at BEGIN, where the busy timeout applies; readers take a
            # consistent snapshot (a deferred BEGIN) and never block the writer in WAL mode.
            write = conn.get_execution_options().get("ra_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def _init_schema(self, create: bool) -> None:
        key = "schema_version"
        if create:
            with self._write() as conn:
                _metadata.create_all(conn)
                version = conn.scalar(sa.select(ra_meta.c.value).where(ra_meta.c.key == key))
                if version is None:
                    version = str(SCHEMA_VERSION)
                    conn.execute(sa.insert(ra_meta).values(key=key, value=version))
                elif version in _UPGRADABLE_VERSIONS:
                    version = self._upgrade(conn, version)
        else:
            with self._read() as conn:
                if not sa.inspect(conn).has_table(ra_meta.name):
                    raise RuntimeError(f"{self!r} has no results tables")
                version = conn.scalar(sa.select(ra_meta.c.value).where(ra_meta.c.key == key))
        if version in _UPGRADABLE_VERSIONS and not create:
            # Read as it is (a page on last year's file must not need write access): no image rows.
            self.schema_version = int(version)
            return
        if version != str(SCHEMA_VERSION):
            allowed = ", ".join([*_UPGRADABLE_VERSIONS, str(SCHEMA_VERSION)])
            raise RuntimeError(
                f"{self!r} has results schema version {version}; this code uses {SCHEMA_VERSION} "
                f"(and opens versions {allowed})"
            )
        self.schema_version = SCHEMA_VERSION

    @staticmethod
    def _upgrade(conn: sa.Connection, version: str) -> str:
        """Bring a version 1 database to `SCHEMA_VERSION` (``create_all`` has made ``ra_image``)."""
        for index in _V2_INDEXES:
            index.create(conn, checkfirst=True)
        from ..sal.tai import current_tai  # here, so that notebooks that only read skip DDS imports

        # Jobs before now have no image rows: the page reads those images from ra_job.
        conn.execute(sa.insert(ra_meta).values(key=IMAGES_SINCE_KEY, value=repr(current_tai())))
        conn.execute(sa.update(ra_meta).where(ra_meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
        _log.info("Results database upgraded from schema version %s to %d (ra_image added)", version, SCHEMA_VERSION)
        return str(SCHEMA_VERSION)

    @property
    def has_images(self) -> bool:
        """Whether the database has the ``ra_image`` table (schema version 2 or later)."""
        return self.schema_version >= 2

    def images_since(self) -> float | None:
        """TAI from which jobs have image rows: None if all do (the database began at version 2 or later).

        A version 1 database upgraded on open records when; one read without upgrade has none at all
        (``inf``).
        """
        if not self.has_images:
            return math.inf
        with self._read() as conn:
            value = conn.scalar(sa.select(ra_meta.c.value).where(ra_meta.c.key == IMAGES_SINCE_KEY))
        return None if value is None else float(value)

    def __repr__(self) -> str:
        return f"ResultsDatabase({self.url.render_as_string(hide_password=True)!r})"

    # Connections and lifetime

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """One write transaction: commits on success, rolls back on error (inside `batch`: the batch's)."""
        self._check_open()
        conn = getattr(self._batch, "conn", None)
        if conn is not None:
            yield conn
            return
        with self._write_engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Make the writes inside (in this thread) one transaction: one commit instead of one each.

        A write transaction costs a commit (an fsync of the WAL) and the write lock; the CSC
        records hundreds of small rows when a stream drops work, and one commit for all of them
        is what keeps its writer thread from falling behind. If anything inside raises, none of
        the batch's writes are kept.
        """
        if getattr(self._batch, "conn", None) is not None:
            yield  # already in a batch: part of it
            return
        with self._write() as conn:
            self._batch.conn = conn
            try:
                yield
            finally:
                self._batch.conn = None

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        """A connection for queries (one snapshot; rolled back at the end).

        Inside `batch` (in this thread), the batch's own connection: a read-modify-write in a
        batch sees the batch's earlier writes.
        """
        self._check_open()
        conn = getattr(self._batch, "conn", None)
        if conn is not None:
            yield conn
            return
        with self._engine.connect() as conn:
            yield conn

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    def close(self) -> None:
        """Close all connections (dispose of the engine). Calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> ResultsDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Writes

    def record_job(self, job_id: str, **fields: Any) -> None:
        """Insert a job, or update the given fields of an existing one (an upsert by job_id).

        Fields not given keep their stored values, so a job recorded when queued can be updated
        with only what changed when it ends.

        Parameters
        ----------
        job_id : `str`
            The job.
        **fields
            Any of the other ``ra_job`` columns: ``instrument``, ``pipeline``, ``data_id``,
            ``image_name``, ``trigger``, ``state``, ``success``, ``exit_code``, ``error_report``,
            ``submit_time``, ``start_time``, ``end_time``, ``duration``, ``result``, ``config``.
            ``data_id``, ``result`` and ``config`` may be JSON text or JSON-able objects;
            ``trigger`` and ``state`` may be strings or enums with string values.

        Raises
        ------
        ValueError
            For an unknown field or a ``trigger``/``state`` outside the allowed values.
        """
        values = self._job_values(fields)
        # Update first, then insert: portable (no dialect upsert). Two writers inserting the same
        # new job race at INSERT; the loser retries, and its UPDATE then finds the row.
        for attempt in range(2):
            try:
                with self._write() as conn:
                    if values:
                        update = _job_update(tuple(values))
                        found = conn.execute(update, {_JOB_KEY: job_id, **values}).rowcount > 0
                    else:
                        found = conn.scalar(_JOB_EXISTS, {_JOB_KEY: job_id}) is not None
                    if not found:
                        conn.execute(_JOB_INSERT, {"job_id": job_id, **values})
                return
            except sa.exc.IntegrityError:
                if attempt:
                    raise

    @staticmethod
    def _job_values(fields: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(fields) - set(ra_job.c.keys())
        if unknown:
            raise ValueError(f"unknown job fields {sorted(unknown)}")
        values = dict(fields)
        if "trigger" in values:
            values["trigger"] = _enum_text("trigger", values["trigger"], JOB_TRIGGERS)
        if "state" in values:
            values["state"] = _enum_text("state", values["state"], JOB_STATES)
        for name in _JSON_FIELDS:
            if name in values:
                values[name] = _json_text(values[name])
        if values.get("success") is not None:
            values["success"] = bool(values["success"])
        return values

    def record_metrics(
        self,
        job_id: str,
        image_name: str,
        metrics: Mapping[str, Any] | None = None,
        detector_metrics: Iterable[Mapping[str, Any]] = (),
    ) -> int:
        """Record the per-image and per-detector metrics of a job for one image.

        A call replaces what the same job recorded before for the same image and detectors (the
        per-image row counts as one detector), so recording a result twice does not duplicate it.

        Parameters
        ----------
        job_id : `str`
            The job; it must have been recorded with `record_job`.
        image_name : `str`
            The image (obsid) the metrics concern.
        metrics : `dict` [`str`, `float` | `int` | `bool` | `None`]
            Per-image metrics. None and NaN are stored as NULL, bools as 0/1.
        detector_metrics : `list` [`dict`]
            Per-detector rows, as in `PipelineResult.detector_metrics`: each with an integer
            ``detector`` and numeric metrics. ``detectorName`` and other non-numeric values
            are skipped.

        Returns
        -------
        n_values : `int`
            Number of metric values stored.

        Raises
        ------
        ValueError
            If a detector row has no integer ``detector``, or the job is unknown.
        """
        rows: list[dict[str, Any]] = []
        self._add_metric_rows(rows, job_id, image_name, None, metrics or {})
        detectors: set[int] = set()
        for i, det_row in enumerate(detector_metrics):
            detector = det_row.get("detector")
            if isinstance(detector, bool) or not isinstance(detector, numbers.Integral):
                raise ValueError(f"detector_metrics[{i}] has no integer 'detector': {detector!r}")
            detectors.add(int(detector))
            measured = {k: v for k, v in det_row.items() if k not in _DETECTOR_KEYS}
            self._add_metric_rows(rows, job_id, image_name, int(detector), measured)
        if not rows:
            return 0
        per_image = any(r["detector"] is None for r in rows)
        replace: dict[str, Any] = {"job_id": job_id, "image_name": image_name}
        if detectors:
            replace["detectors"] = sorted(detectors)
        try:
            with self._write() as conn:
                conn.execute(_metric_delete(bool(detectors), per_image), replace)
                conn.execute(_METRIC_INSERT, rows)
        except sa.exc.IntegrityError as e:
            # The only constraint a metric row can break is its job's foreign key.
            raise ValueError(f"cannot record metrics of job {job_id!r}: record_job it first ({e.orig})") from e
        return len(rows)

    @staticmethod
    def _add_metric_rows(
        rows: list[dict[str, Any]], job_id: str, image_name: str, detector: int | None, values: Mapping[str, Any]
    ) -> None:
        for name, value in values.items():
            if name in _WIDE_KEY_COLUMNS or name in _DETECTOR_KEYS:
                _log.warning("Job %s: skipping metric %r, a reserved column name", job_id, name)
                continue
            ok, stored = _metric_value(value)
            if not ok:
                # Pipelines may put labels (a filter name, say) next to numbers; only numbers are metrics.
                _log.debug("Job %s: skipping non-numeric metric %s=%r", job_id, name, value)
                continue
            rows.append(dict(job_id=job_id, image_name=image_name, detector=detector, name=str(name), value=stored))

    def record_product(
        self,
        job_id: str,
        image_name: str,
        path: str | os.PathLike[str],
        url: str = "",
        mime_type: str = "",
        byte_size: int | None = None,
        checksum: str = "",
        description: str = "",
        created: float | None = None,
    ) -> int:
        """Record a product file (a plot, a table) a job wrote.

        Parameters
        ----------
        job_id : `str`
            The job; it must have been recorded with `record_job`.
        image_name : `str`
            The image it concerns ("" if none).
        path : `str` or path-like
            Where the file is on the CSC's file system.
        url : `str`
            Where others get it (as in largeFileObjectAvailable).
        mime_type : `str`
            E.g. ``image/png``.
        byte_size : `int`, optional
            File size in bytes.
        checksum : `str`
            E.g. ``sha256:...``.
        description : `str`
            One line about it.
        created : `float`, optional
            TAI unix seconds; now if None.

        Returns
        -------
        product_id : `int`
            The row's id.
        """
        if created is None:
            from ..sal.tai import current_tai  # here, so that notebooks that only read skip DDS imports

            created = current_tai()
        values = dict(
            job_id=job_id,
            image_name=image_name,
            path=os.fspath(path),
            url=url,
            mime_type=mime_type,
            byte_size=None if byte_size is None else int(byte_size),
            checksum=checksum,
            description=description,
            created=float(created),
        )
        try:
            with self._write() as conn:
                key = conn.execute(sa.insert(ra_product).values(values)).inserted_primary_key
                assert key is not None  # a single-row insert always has one
                return key[0]
        except sa.exc.IntegrityError as e:
            raise ValueError(f"cannot record a product of job {job_id!r}: record_job it first ({e.orig})") from e

    def record_image(
        self, instrument: str, image_name: str, *, defaults: Mapping[str, Any] | None = None, **fields: Any
    ) -> None:
        """Insert an image, or update the given fields of an existing one (an upsert by instrument and name).

        Parameters
        ----------
        instrument : `str`
            The instrument.
        image_name : `str`
            The image (obsid).
        **fields
            Any of the other ``ra_image`` columns: ``day_obs``, ``seq_num``, ``image_type``,
            ``filter``, ``exposure_time``, ``obs_time``, ``trigger`` (one of `IMAGE_TRIGGERS`),
            ``end_readout_time``, ``first_detector_time``, ``visit_metrics_time``, ``n_expected``,
            ``n_done``, ``n_failed``, ``n_dropped``, ``state`` (one of `IMAGE_STATES`), ``reason``.
        defaults : `dict`, optional
            Fields (as ``fields``) set only where the stored value is NULL (or the row is new): a
            guess (processData's image time, the time its job was made) does not replace what
            was known (the camera's readout time).

        Raises
        ------
        ValueError
            For an unknown field or a ``trigger``/``state`` outside the allowed values.
        RuntimeError
            If the database is at schema version 1 (opened without ``create``, so not upgraded).
        """
        values = self._image_values(fields)
        guesses = self._image_values(defaults or {})
        if not self.has_images:
            raise RuntimeError(
                f"{self!r} has results schema version {self.schema_version}, without ra_image: "
                "open it with create=True to upgrade it"
            )
        key = sa.and_(ra_image.c.instrument == instrument, ra_image.c.image_name == image_name)
        # As record_job: update, else insert; a concurrent insert of the same image retries once.
        for attempt in range(2):
            try:
                with self._write() as conn:
                    update = dict(values)
                    update.update({name: sa.func.coalesce(ra_image.c[name], v) for name, v in guesses.items()})
                    if update:
                        found = conn.execute(sa.update(ra_image).where(key).values(update)).rowcount > 0
                    else:
                        found = (conn.scalar(sa.select(sa.func.count()).select_from(ra_image).where(key)) or 0) > 0
                    if not found:
                        row = {**guesses, **values}
                        conn.execute(sa.insert(ra_image).values(instrument=instrument, image_name=image_name, **row))
                return
            except sa.exc.IntegrityError:
                if attempt:
                    raise

    @staticmethod
    def _image_values(fields: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(fields) - (set(ra_image.c.keys()) - {"instrument", "image_name"})
        if unknown:
            raise ValueError(
                f"unknown image fields {sorted(unknown)}; allowed: "
                f"{', '.join(c for c in ra_image.c.keys() if c not in ('instrument', 'image_name'))}"
            )
        values = dict(fields)
        if "trigger" in values:
            values["trigger"] = _enum_text("trigger", values["trigger"], IMAGE_TRIGGERS)
        if "state" in values:
            values["state"] = _enum_text("state", values["state"], IMAGE_STATES)
        return values

    # Queries

    def job(self, job_id: str) -> dict[str, Any] | None:
        """One job as a dict of its ``ra_job`` columns, or None if unknown.

        ``data_id``, ``result`` and ``config`` are decoded from JSON (left as text if they are
        not valid JSON); missing values are None.
        """
        with self._read() as conn:
            row = conn.execute(sa.select(ra_job).where(ra_job.c.job_id == job_id)).mappings().first()
        if row is None:
            return None
        job = dict(row)
        for name in _JSON_FIELDS:
            if job[name] is not None:
                with contextlib.suppress(ValueError):
                    job[name] = json.loads(job[name])
        return job

    def image_row(self, instrument: str, image_name: str) -> dict[str, Any] | None:
        """One image as a dict of its ``ra_image`` columns, or None if unknown (or no ``ra_image``)."""
        if not self.has_images:
            return None
        query = sa.select(ra_image).where(ra_image.c.instrument == instrument, ra_image.c.image_name == image_name)
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else dict(row)

    def images(self, instrument: str, day_obs: int) -> list[dict[str, Any]]:
        """The images of one instrument and dayObs as dicts of their ``ra_image`` columns, by seq_num.

        Empty for a database without ``ra_image`` (schema version 1, read without upgrade).
        """
        if not self.has_images:
            return []
        query = (
            sa.select(ra_image)
            .where(ra_image.c.instrument == instrument, ra_image.c.day_obs == int(day_obs))
            .order_by(ra_image.c.seq_num, ra_image.c.image_name)
        )
        with self._read() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def unfinished_jobs(self, instrument: str) -> list[dict[str, Any]]:
        """Jobs of one instrument still ``queued`` or ``running``, oldest first, as `job` gives them.

        When a CSC starts, these were left by an earlier CSC process that ended before they did
        (a crash, kill -9): nothing will end them but the CSC that finds them.
        """
        query = (
            sa.select(ra_job.c.job_id)
            .where(ra_job.c.instrument == instrument, ra_job.c.state.in_(("queued", "running")))
            .order_by(ra_job.c.submit_time.asc().nulls_last(), ra_job.c.job_id.asc())
        )
        with self._read() as conn:
            job_ids: list[str] = list(conn.scalars(query))
        return [job for job in (self.job(job_id) for job_id in job_ids) if job is not None]

    def jobs(
        self,
        pipeline: str | Iterable[str] | None = None,
        image_name: str | Iterable[str] | None = None,
        state: str | Iterable[str] | None = None,
        success: bool | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> Table:
        """Jobs, one row each, with all ``ra_job`` columns.

        Parameters
        ----------
        pipeline, image_name, state : `str` or iterable of `str`, optional
            Only jobs with this value (or one of these values).
        success : `bool`, optional
            Only jobs that succeeded (True) or did not (False; jobs not ended yet have neither).
        since, until : `float`, optional
            Only jobs submitted at or after ``since`` and before ``until`` (TAI unix seconds).
        limit : `int`, optional
            At most this many rows (the newest, if ``newest_first``).
        newest_first : `bool`
            Order by submit time, newest first (else oldest first); jobs with no submit time last.

        Returns
        -------
        jobs : `astropy.table.Table`
            Columns as in ``ra_job``: strings ("" for missing), times as floats (NaN for missing),
            ``success`` and ``exit_code`` masked where missing; JSON columns as text.
        """
        query = sa.select(ra_job).where(*self._job_filters(pipeline, image_name, state, since, until))
        if success is not None:
            query = query.where(ra_job.c.success == bool(success))
        if newest_first:
            query = query.order_by(ra_job.c.submit_time.desc().nulls_last(), ra_job.c.job_id.desc())
        else:
            query = query.order_by(ra_job.c.submit_time.asc().nulls_last(), ra_job.c.job_id.asc())
        if limit is not None:
            query = query.limit(int(limit))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return _to_table(rows, _JOB_SPEC)

    @staticmethod
    def _job_filters(
        pipeline: str | Iterable[str] | None,
        image_name: str | Iterable[str] | None,
        state: str | Iterable[str] | None,
        since: float | None,
        until: float | None,
    ) -> list[sa.ColumnElement[bool]]:
        filters = []
        if pipeline is not None:
            filters.append(_one_of(ra_job.c.pipeline, pipeline))
        if image_name is not None:
            filters.append(_one_of(ra_job.c.image_name, image_name))
        if state is not None:
            filters.append(_one_of(ra_job.c.state, state))
        if since is not None:
            filters.append(ra_job.c.submit_time >= float(since))
        if until is not None:
            filters.append(ra_job.c.submit_time < float(until))
        return filters

    def metrics(
        self,
        image_name: str | Iterable[str] | None = None,
        pipeline: str | Iterable[str] | None = None,
        names: str | Iterable[str] | None = None,
        per_detector: bool | None = None,
        since: float | None = None,
        until: float | None = None,
        job_id: str | Iterable[str] | None = None,
    ) -> Table:
        """Metrics as a wide table: one row per (job, image, detector), one column per metric.

        Parameters
        ----------
        image_name, pipeline, job_id : `str` or iterable of `str`, optional
            Only metrics of this image, pipeline or job (or one of these).
        names : `str` or iterable of `str`, optional
            Only these metrics; their columns come in this order and exist even with no data.
            Otherwise every metric found, in alphabetical order.
        per_detector : `bool`, optional
            True: only per-detector rows; False: only per-image rows; None: both.
        since, until : `float`, optional
            Only jobs submitted at or after ``since`` and before ``until`` (TAI unix seconds),
            as in `jobs`.

        Returns
        -------
        metrics : `astropy.table.Table`
            Columns ``job_id``, ``pipeline``, ``image_name``, ``detector`` (int, masked in
            per-image rows), ``end_time`` (NaN if the job has not ended), then one float column
            per metric, NaN where a row has no value. Rows are ordered by ``end_time`` (jobs not
            ended last), job, image, then detector (the per-image row first).

        Raises
        ------
        ValueError
            If ``names`` has one of the fixed column names.
        """
        m = ra_metric.c
        query = (
            sa.select(m.job_id, ra_job.c.pipeline, m.image_name, m.detector, ra_job.c.end_time, m.name, m.value)
            .select_from(ra_metric.join(ra_job, m.job_id == ra_job.c.job_id))
            .where(*self._job_filters(pipeline, None, None, since, until))
            .order_by(m.id)  # so that a later value of the same cell wins
        )
        if image_name is not None:
            query = query.where(_one_of(m.image_name, image_name))
        if job_id is not None:
            query = query.where(_one_of(m.job_id, job_id))
        wanted = [names] if isinstance(names, str) else None if names is None else list(names)
        if wanted is not None:
            if clash := set(wanted) & set(_WIDE_KEY_COLUMNS):
                raise ValueError(f"{sorted(clash)} are columns of the table, not metric names")
            query = query.where(m.name.in_(wanted))
        if per_detector is True:
            query = query.where(m.detector.is_not(None))
        elif per_detector is False:
            query = query.where(m.detector.is_(None))
        with self._read() as conn:
            rows: list[Any] = list(conn.execute(query).all())

        # Pivot in Python: portable, where SQL pivots are not (and the metric names are data).
        wide: dict[tuple[str, str, int | None], tuple[str | None, float | None, dict[str, float | None]]] = {}
        for job, pipe, image, detector, end_time, name, value in rows:
            wide.setdefault((job, image, detector), (pipe, end_time, {}))[2][name] = value
        metric_names = wanted if wanted is not None else sorted({row[5] for row in rows})

        def order(item: tuple[tuple[str, str, int | None], Any]) -> tuple[Any, ...]:
            (job, image, detector), (_, end_time, _) = item
            return (end_time is None, end_time or 0.0, job, image, detector is not None, detector or 0)

        items = sorted(wide.items(), key=order)
        table = _to_table(
            [(job, pipe, image, detector, end_time) for (job, image, detector), (pipe, end_time, _) in items],
            list(zip(_WIDE_KEY_COLUMNS, ("str", "str", "str", "int", "float"), strict=True)),
        )
        for name in metric_names:
            table[name] = _astropy_column(name, "float", [values.get(name) for _, (_, _, values) in items])
        return table

    def products(
        self, image_name: str | Iterable[str] | None = None, job_id: str | Iterable[str] | None = None
    ) -> Table:
        """Product files, oldest first, with all ``ra_product`` columns.

        Parameters
        ----------
        image_name, job_id : `str` or iterable of `str`, optional
            Only products of this image or job (or one of these).

        Returns
        -------
        products : `astropy.table.Table`
            Columns as in ``ra_product``; ``byte_size`` masked where unknown.
        """
        query = sa.select(ra_product).order_by(ra_product.c.created, ra_product.c.id)
        if image_name is not None:
            query = query.where(_one_of(ra_product.c.image_name, image_name))
        if job_id is not None:
            query = query.where(_one_of(ra_product.c.job_id, job_id))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return _to_table(rows, _PRODUCT_SPEC)


def open_results(
    url_or_path: str | os.PathLike[str] | sa.URL, *, create: bool = False, **kwargs: Any
) -> ResultsDatabase:
    """Open a results database, e.g. from a notebook.

    Parameters
    ----------
    url_or_path : `str`, path-like or `sqlalchemy.URL`
        A database URL, or the path of a SQLite file.
    create : `bool`
        Create the database if missing. False by default, so that a mistyped path is an error
        rather than a new empty database.
    **kwargs
        Passed to `ResultsDatabase`.

    Returns
    -------
    db : `ResultsDatabase`
        Use it as a context manager, or call ``close()`` when done.

    Examples
    --------
    >>> with open_results("/data/rapidanalysis/results.sqlite3") as db:  # doctest: +SKIP
    ...     fwhm = db.metrics(pipeline="sfm", names=["psfFwhm"], per_detector=True)
    """
    return ResultsDatabase(url_or_path, create=create, **kwargs)
