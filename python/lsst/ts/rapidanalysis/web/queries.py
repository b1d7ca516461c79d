"""What the page reads from the results database: the night's table, an image, trends.

Synchronous and read-only: the web app calls these from a thread, never on its event loop. Each
call is a few indexed queries (``ix_ra_image_instrument_day_obs``, ``ix_ra_metric_image_detector_name``,
``ix_ra_metric_job_detector``, ``ix_ra_job_image_pipeline``), whatever the size of the database:
``bench/page.py`` times a night of 1,000 LSSTCam visits × 189 detectors.

*Per-image* metrics are the rows with no detector written by jobs on the whole image: a visit's
gather (``sfm_gather``), ``mount_torque``, ``spectrum_examiner``. A per-detector job (``sfm``) writes
its detector's values as its own per-image metrics too (`sfm`: "its metrics are the job's"); those
are per-detector values, and are read as such (a job that wrote per-detector rows is a detector
job). When two jobs wrote the same per-image metric of an image (a gather and its re-gather, a
processData run again), the later one counts.

Images from before the image record: jobs recorded before their database had ``ra_image``
(schema version 1, or jobs older than its upgrade, ``ResultsDatabase.images_since``) still make
rows of the night: the image, dayObs and sequence number from the image name (an obsid;
jobs on group ids and generators' files are not in the night's table), the state from the jobs'
outcomes (complete: all succeeded; partial: some; failed: none; dropped: none ran), the time from
the first job's submission, the latency to the first successful job's end; no visit-metrics
latency and no endReadout time (the jobs did not record them).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from ..data.data_id import OBSID_RE
from ..results.database import ResultsDatabase, ra_image, ra_job, ra_metric, ra_product

__all__ = ["HEADLINE_METRICS", "NightRow", "ImagePage", "PageQueries"]

#: The night table's metric columns: label -> per-image metric name as recorded in ``ra_metric``.
HEADLINE_METRICS: dict[str, str] = {
    # sfm_gather: mean over the visit's detectors of sfm's psfFwhm (arcsec), RubinTV's "PSF FWHM".
    "FWHM": "psfFwhmMean",
    # sfm_gather: median over detectors of each detector's |e| = sqrt(e1² + e2²) of the PSF.
    "Ellipticity": "ellipticityMedian",
    # sfm_gather: median over detectors of sfm's skyBg (ADU).
    "Sky": "skyBgMedian",
    # sfm_gather: median over detectors of sfm's photometric zeroPoint (mag).
    "Zero point": "zeroPointMedian",
    # sfm_gather: median over detectors of sfm's effTime, the effective exposure time t_eff (s).
    "t_eff": "effTimeMedian",
    # mount_torque: image motion from the mount's (and hexapods') tracking errors, RMS (arcsec).
    "Mount impact": "imageImpactRms",
    # spectrum_examiner (LATISS dispersed images): first-order continuum plateau, ADU/s per row.
    "Continuum": "continuumRate",
}

#: The reason of a partial, failed or dropped image known only from its jobs.
_OLD_REASON = "as its jobs ended (recorded before the image record; see the image's jobs)"


def _finite(value: Any) -> float | None:
    """A float for JSON: None for NULL, NaN and infinities."""
    if value is None:
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _since(later: float | None, earlier: float | None) -> float | None:
    if later is None or earlier is None:
        return None
    return _finite(later - earlier)


@dataclasses.dataclass(frozen=True)
class NightRow:
    """One image in the night's table.

    Attributes
    ----------
    instrument, image_name : `str`
    day_obs, seq_num : `int` or None
    obs_time : `float` or None
        TAI unix seconds the image was taken (read out); for processData, when its job was made
        if nothing better is known.
    image_type, filter : `str` or None
        As the camera says (``OBJECT``, ``BIAS``...; ``r_57``...).
    exposure_time : `float` or None
        Seconds.
    state : `str`
        ``processing``, ``complete``, ``partial``, ``failed`` or ``dropped``.
    reason : `str` or None
        Why partial, failed or dropped.
    n_expected, n_done, n_failed, n_dropped : `int`
        Jobs (per detector, per image) the image was to get, and how they ended.
    metrics : `dict` [`str`, `float` or None]
        The headline metrics, keyed by the labels of `HEADLINE_METRICS`.
    latency_first_detector : `float` or None
        Seconds from endReadout heard (or, for processData, ``obs_time``) to the end of its first
        successful job.
    latency_visit_metrics : `float` or None
        Seconds from the same moment to its visit metrics.
    """

    instrument: str
    image_name: str
    day_obs: int | None
    seq_num: int | None
    obs_time: float | None
    image_type: str | None
    filter: str | None
    exposure_time: float | None
    state: str
    reason: str | None
    n_expected: int
    n_done: int
    n_failed: int
    n_dropped: int
    metrics: dict[str, float | None]
    latency_first_detector: float | None
    latency_visit_metrics: float | None

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values (NaN as None)."""
        out = dataclasses.asdict(self)
        for key in ("obs_time", "exposure_time", "latency_first_detector", "latency_visit_metrics"):
            out[key] = _finite(out[key])
        out["metrics"] = {label: _finite(value) for label, value in self.metrics.items()}
        return out


@dataclasses.dataclass(frozen=True)
class ImagePage:
    """Everything the image page shows.

    Attributes
    ----------
    row : `NightRow`
        Its row in the night's table.
    visit_metrics : `dict` [`str`, `float` or None]
        Every per-image metric (see the module docstring), by name.
    detector_metrics : `dict` [`int`, `dict` [`str`, `float` or None]]
        Per detector, every per-detector metric.
    jobs : `list` [`dict`]
        Its jobs: ``job_id``, ``pipeline``, ``detector`` (None for a job on the whole image),
        ``trigger``, ``state``, ``exit_code``, ``error_report``, ``submit_time``,
        ``start_time``, ``end_time``, ``duration``; by pipeline, then detector.
    products : `list` [`dict`]
        Its product files: ``job_id``, ``path``, ``url``, ``mime_type``, ``description``,
        ``byte_size``; oldest first.
    """

    row: NightRow
    visit_metrics: dict[str, float | None]
    detector_metrics: dict[int, dict[str, float | None]]
    jobs: list[dict[str, Any]]
    products: list[dict[str, Any]]


def _detector_of(data_id: Any) -> int | None:
    """The one detector a job's data id names (JSON text), else None."""
    if not data_id:
        return None
    try:
        detectors = json.loads(data_id).get("detectors")
    except (ValueError, AttributeError):
        return None
    if isinstance(detectors, list) and len(detectors) == 1 and isinstance(detectors[0], int):
        return int(detectors[0])
    return None


class PageQueries:
    """The page's reads of one results database (see the module docstring).

    Parameters
    ----------
    database : `ResultsDatabase`
        Open; not closed by this.
    """

    def __init__(self, database: ResultsDatabase) -> None:
        self.database = database
        # Images from before ra_image, by instrument and day (see _old_images); kept once they cannot change.
        self._old_cache: dict[str, dict[int, list[NightRow]]] | None = None

    def _read(self) -> Any:
        return self.database._read()

    # -- the night --

    def instruments(self) -> list[str]:
        """Instruments with images, sorted."""
        found: set[str] = set()
        if self.database.has_images:
            with self._read() as conn:
                found.update(conn.scalars(sa.select(ra_image.c.instrument).distinct()))
        found.update(self._old_days())
        return sorted(i for i in found if i)

    def days(self, instrument: str) -> list[int]:
        """The dayObs with images of ``instrument``, newest first."""
        days: set[int] = set()
        if self.database.has_images:
            query = (
                sa.select(ra_image.c.day_obs)
                .where(ra_image.c.instrument == instrument, ra_image.c.day_obs.is_not(None))
                .distinct()
            )
            with self._read() as conn:
                days.update(int(d) for d in conn.scalars(query))
        days.update(self._old_days().get(instrument, ()))
        return sorted(days, reverse=True)

    def night(self, instrument: str, day_obs: int) -> list[NightRow]:
        """The night's table: one row per image of ``instrument`` on ``day_obs``, newest (seq_num) first."""
        rows: list[dict[str, Any]] = []
        if self.database.has_images:
            query = sa.select(ra_image).where(ra_image.c.instrument == instrument, ra_image.c.day_obs == int(day_obs))
            night_images = sa.select(ra_image.c.image_name).where(
                ra_image.c.instrument == instrument, ra_image.c.day_obs == int(day_obs)
            )
            with self._read() as conn:
                rows = [dict(r) for r in conn.execute(query).mappings()]
                metrics = self._headline(conn, night_images.scalar_subquery())
            out = [self._night_row(row, metrics.get(row["image_name"], {})) for row in rows]
        else:
            out = []
        known = {row.image_name for row in out}
        out += [row for row in self._old_images(instrument, int(day_obs)) if row.image_name not in known]
        out.sort(key=lambda r: (r.seq_num if r.seq_num is not None else -1, r.image_name), reverse=True)
        return out

    def night_row(self, instrument: str, image_name: str) -> NightRow | None:
        """One image's row of the night's table (what a live update shows), or None if unknown."""
        row = self.database.image_row(instrument, image_name)
        if row is None:
            match = OBSID_RE.match(image_name)
            if match is None:
                return None
            old = self._old_images(instrument, int(match["day"]), image_name)
            return old[0] if old else None
        with self._read() as conn:
            metrics = self._headline(conn, [image_name])
        return self._night_row(row, metrics.get(image_name, {}))

    def _headline(self, conn: sa.Connection, images: Any) -> dict[str, dict[str, float | None]]:
        """The headline metrics of some images (names, or a subquery of names): image -> label -> value."""
        m = ra_metric.c
        names = list(HEADLINE_METRICS.values())
        label = {name: lab for lab, name in HEADLINE_METRICS.items()}
        query = (
            sa.select(m.image_name, m.name, m.value)
            .where(m.image_name.in_(images), m.detector.is_(None), m.name.in_(names))
            .order_by(m.id)  # the later job's value wins
        )
        out: dict[str, dict[str, float | None]] = {}
        for row in conn.execute(query):
            out.setdefault(str(row.image_name), {})[label[str(row.name)]] = _finite(row.value)
        return out

    @staticmethod
    def _night_row(row: Mapping[str, Any], metrics: Mapping[str, float | None]) -> NightRow:
        start = row["end_readout_time"] if row["end_readout_time"] is not None else row["obs_time"]
        return NightRow(
            instrument=row["instrument"],
            image_name=row["image_name"],
            day_obs=row["day_obs"],
            seq_num=row["seq_num"],
            obs_time=_finite(row["obs_time"]),
            image_type=row["image_type"],
            filter=row["filter"],
            exposure_time=_finite(row["exposure_time"]),
            state=row["state"] or "processing",
            reason=row["reason"],
            n_expected=row["n_expected"] or 0,
            n_done=row["n_done"] or 0,
            n_failed=row["n_failed"] or 0,
            n_dropped=row["n_dropped"] or 0,
            metrics={label: metrics.get(label) for label in HEADLINE_METRICS},
            latency_first_detector=_since(row["first_detector_time"], start),
            latency_visit_metrics=_since(row["visit_metrics_time"], start),
        )

    # -- images from before the image record --

    def _old_job_filter(self) -> sa.ColumnElement[bool] | None:
        """Which ra_job rows may lack an image row (None: none may)."""
        since = self.database.images_since()
        if since is None:
            return None
        if math.isinf(since):
            return sa.true()
        return ra_job.c.submit_time < since

    def _old_days(self) -> dict[str, set[int]]:
        """Instrument -> the dayObs of images known only from their jobs."""
        return {instrument: set(days) for instrument, days in self._old_index().items()}

    def _old_index(self) -> dict[str, dict[int, list[NightRow]]]:
        """The images known only from their jobs: instrument -> dayObs -> rows (see the module docstring).

        Kept once read when the database has an image record since a known time (those jobs are
        history); read each time from a version 1 database (its CSC may still be writing).
        """
        if self._old_cache is not None:
            return self._old_cache
        where = self._old_job_filter()
        if where is None:
            self._old_cache = {}
            return self._old_cache
        index = self._old_rows(where)
        if self.database.has_images:
            self._old_cache = index
        return index

    def _old_images(self, instrument: str, day_obs: int, image_name: str | None = None) -> list[NightRow]:
        where = self._old_job_filter()
        if where is None:
            return []
        if image_name is not None:
            where = sa.and_(where, ra_job.c.image_name == image_name)
            return self._old_rows(where).get(instrument, {}).get(day_obs, [])
        return self._old_index().get(instrument, {}).get(day_obs, [])

    def _old_rows(self, where: sa.ColumnElement[bool]) -> dict[str, dict[int, list[NightRow]]]:
        j = ra_job.c
        query = sa.select(
            j.instrument, j.image_name, j.state, j.success, j.start_time, j.submit_time, j.end_time
        ).where(where, j.image_name.is_not(None))
        if self.database.has_images:
            # Images with a row of their own are not made again from their jobs.
            has_row = sa.exists().where(ra_image.c.instrument == j.instrument, ra_image.c.image_name == j.image_name)
            query = query.where(~has_row)
        jobs: dict[tuple[str, str], list[Any]] = {}
        with self._read() as conn:
            for row in conn.execute(query):
                if row.instrument and row.image_name and OBSID_RE.match(row.image_name):
                    jobs.setdefault((row.instrument, row.image_name), []).append(row)
            metrics = self._headline(conn, sorted({name for _, name in jobs})) if jobs else {}
        index: dict[str, dict[int, list[NightRow]]] = {}
        for (instrument, image_name), rows in jobs.items():
            match = OBSID_RE.match(image_name)
            assert match is not None
            done = [r for r in rows if r.state == "succeeded"]
            dropped = [r for r in rows if r.state == "aborted" and not r.start_time]
            failed = [r for r in rows if r.state in ("failed", "aborted", "timed_out") and r not in dropped]
            pending = len(rows) - len(done) - len(failed) - len(dropped)
            state = (
                "processing"
                if pending
                else "complete"
                if len(done) == len(rows)
                else "partial"
                if done
                else "failed"
                if failed
                else "dropped"
            )
            submitted = [r.submit_time for r in rows if r.submit_time]
            ended = [r.end_time for r in done if r.end_time]
            obs_time = min(submitted) if submitted else None
            image_metrics = metrics.get(image_name, {})
            row = NightRow(
                instrument=instrument,
                image_name=image_name,
                day_obs=int(match["day"]),
                seq_num=int(match["seq"]),
                obs_time=obs_time,
                image_type=None,
                filter=None,
                exposure_time=None,
                state=state,
                reason=None
                if state in ("complete", "processing")
                else "from its jobs (recorded before the image record)",
                n_expected=len(rows),
                n_done=len(done),
                n_failed=len(failed),
                n_dropped=len(dropped),
                metrics={label: image_metrics.get(label) for label in HEADLINE_METRICS},
                latency_first_detector=_since(min(ended) if ended else None, obs_time),
                latency_visit_metrics=None,
            )
            index.setdefault(instrument, {}).setdefault(row.day_obs or 0, []).append(row)
        return index

    # -- an image --

    def image(self, instrument: str, image_name: str) -> ImagePage | None:
        """Everything the image page shows, or None for an unknown image."""
        row = self.night_row(instrument, image_name)
        if row is None:
            return None
        m, j, p = ra_metric.c, ra_job.c, ra_product.c
        metrics_query = (
            sa.select(m.job_id, m.detector, m.name, m.value).where(m.image_name == image_name).order_by(m.id)
        )
        jobs_query = sa.select(
            j.job_id,
            j.pipeline,
            j.data_id,
            j.trigger,
            j.state,
            j.exit_code,
            j.error_report,
            j.submit_time,
            j.start_time,
            j.end_time,
            j.duration,
        ).where(j.image_name == image_name, j.instrument == instrument)
        products_query = (
            sa.select(p.job_id, p.path, p.url, p.mime_type, p.description, p.byte_size)
            .where(p.image_name == image_name)
            .order_by(p.created, p.id)
        )
        with self._read() as conn:
            metric_rows = conn.execute(metrics_query).all()
            job_rows = conn.execute(jobs_query).mappings().all()
            product_rows = conn.execute(products_query).mappings().all()
        detector_jobs = {job for job, detector, _, _ in metric_rows if detector is not None}
        visit: dict[str, float | None] = {}
        detectors: dict[int, dict[str, float | None]] = {}
        for job, detector, name, value in metric_rows:
            if detector is not None:
                detectors.setdefault(int(detector), {})[name] = _finite(value)
            elif job not in detector_jobs:
                visit[name] = _finite(value)
        jobs = []
        for job_row in job_rows:
            job = dict(job_row)
            job["detector"] = _detector_of(job.pop("data_id"))
            for key in ("submit_time", "start_time", "end_time", "duration"):
                job[key] = _finite(job[key])
            jobs.append(job)
        jobs.sort(key=lambda r: (r["pipeline"] or "", r["detector"] is not None, r["detector"] or 0, r["job_id"]))
        return ImagePage(
            row=row,
            visit_metrics=dict(sorted(visit.items())),
            detector_metrics=dict(sorted(detectors.items())),
            jobs=jobs,
            products=[dict(r) for r in product_rows],
        )

    # -- trends --

    def _night_images(self, instrument: str, day_obs: int) -> dict[str, float | None]:
        """The night's images -> obs_time (those known only from their jobs too)."""
        return {row.image_name: row.obs_time for row in self.night(instrument, day_obs)}

    def _image_level(self, where_image: Any) -> Any:
        """Per-image metric rows (no detector) of jobs that wrote no per-detector rows."""
        m = ra_metric.c
        detector_rows = sa.alias(ra_metric, "d")
        return sa.and_(
            m.image_name.in_(where_image),
            m.detector.is_(None),
            ~sa.exists().where(detector_rows.c.job_id == m.job_id, detector_rows.c.detector.is_not(None)),
        )

    def metric_names(self, instrument: str, day_obs: int) -> list[str]:
        """The per-image metrics recorded that night (see the module docstring), sorted."""
        images = list(self._night_images(instrument, day_obs))
        if not images:
            return []
        j, m = ra_job.c, ra_metric.c
        with self._read() as conn:
            # The pipelines of the night, and which run per detector (one job each is enough to tell).
            pipelines = list(conn.scalars(sa.select(j.pipeline).where(j.image_name.in_(images)).distinct()))
            detector_rows = sa.alias(ra_metric, "d")
            image_level = []
            for pipeline in pipelines:
                job_ids = sa.select(j.job_id).where(j.image_name.in_(images), j.pipeline == pipeline)
                per_detector = conn.scalar(
                    sa.select(
                        sa.exists().where(
                            detector_rows.c.job_id.in_(job_ids.limit(5).scalar_subquery()),
                            detector_rows.c.detector.is_not(None),
                        )
                    )
                )
                if not per_detector:
                    image_level.append(pipeline)
            if not image_level:
                return []
            jobs = sa.select(j.job_id).where(j.image_name.in_(images), j.pipeline.in_(image_level))
            query = sa.select(m.name).where(m.job_id.in_(jobs.scalar_subquery()), m.detector.is_(None)).distinct()
            return sorted(conn.scalars(query))

    def trend(self, instrument: str, day_obs: int, metric: str) -> list[tuple[float, float, str]]:
        """A per-image metric over the night: (obs_time, value, image_name), in time order.

        Images without the metric, without a value (NaN) or without a time are left out.
        """
        obs_times = self._night_images(instrument, day_obs)
        if not obs_times:
            return []
        m = ra_metric.c
        query = (
            sa.select(m.image_name, m.value)
            .where(self._image_level(list(obs_times)), m.name == metric)
            .order_by(m.id)  # the later job's value wins
        )
        values: dict[str, float | None] = {}
        with self._read() as conn:
            for image, value in conn.execute(query):
                values[image] = _finite(value)
        points = [
            (t, v, image) for image, v in values.items() if v is not None and (t := obs_times.get(image)) is not None
        ]
        return sorted(points)

    def detector_values(self, instrument: str, image_name: str, metric: str) -> dict[int, float]:
        """A per-detector metric of one image, for its focal-plane plot: detector -> value (NaN left out).

        (Image names are obsids, which name their camera: ``instrument`` is not needed to find them.)
        """
        m = ra_metric.c
        # ``name || ''`` keeps the planner off the name index: SQLite without statistics (the CSC
        # does not ANALYZE) chose it over the image's, reading the whole night's rows of that
        # metric (85 ms for 300 visits instead of 0.8 ms; bench/page.py).
        query = (
            sa.select(m.detector, m.value)
            .where(m.image_name == image_name, m.detector.is_not(None), m.name.concat("") == metric)
            .order_by(m.id)
        )
        out: dict[int, float] = {}
        with self._read() as conn:
            for detector, value in conn.execute(query):
                f = _finite(value)
                if f is None:
                    out.pop(int(detector), None)
                else:
                    out[int(detector)] = f
        return dict(sorted(out.items()))
