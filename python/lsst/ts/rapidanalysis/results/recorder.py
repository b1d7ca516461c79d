"""Where a job's results are kept: its rows in the results database and its directory of products.

A job's row is written when it is queued (so that a notebook sees queued work), when it starts
running, and when it ends (`JobPublisher`, with its metrics and products). Each image's row
(``ra_image``, `ImageRecord`) is written when the image is heard, when its jobs are queued, when
autonomous mode down-selects its detectors, and when each of its jobs and its gather end; the
changes of one image within ``IMAGE_WRITE_DELAY`` go out as one write. A row still queued or
running when a CSC starts was left by an earlier CSC process that ended first (a crash, kill -9):
`JobRecorder.jobs_left_unfinished` ends each with exit code 5 (`ExitCode.CSC_RESTARTED`).

Products go under ``output_root/<instrument>/<dayObs>/<image>/<pipeline>-<jobId>/``; others get
them at ``output_url_root`` + the same relative path, or a ``file://`` URL when that is not set.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import pathlib
import time
from collections.abc import Callable, Collection
from typing import Any

from ..data.data_id import OBSID_RE, DataId
from ..data.fits_header import primary_header
from ..data.image_listener import ImageArrival
from ..dispatch.jobs import ExitCode, Job, JobState, Trigger
from ..sal.tai import current_tai
from .database import ResultsDatabase
from .image_record import ImageRecord, Unit
from .publication import finite_or_zero
from .writer import ResultsWriter

__all__ = ["JobRecorder", "IMAGE_WRITE_DELAY"]

#: Most job ids one log message lists.
_MAX_IDS_LOGGED = 50
#: Seconds an image's changes are gathered before its row is written (189 detector jobs ending
#: within it make one write, and the row is computed once, on the event loop).
IMAGE_WRITE_DELAY = 0.05
#: Images remembered: their later jobs (a catch-up, a processData) update the same row.
_IMAGES_REMEMBERED = 2000
#: Header cards an image's row takes from its raw.
_HEADER_CARDS = ("IMGTYPE", "FILTER", "FILTBAND", "EXPTIME", "MJD-END")


def _raw_of(job: Job) -> str | None:
    """The first of a job's inputs that is a raw (a FITS file), for the image's header."""
    for path in job.inputs:
        name = pathlib.Path(path).name
        if name.endswith((".fits", ".fits.fz", ".fits.gz")):
            return path
    return None


def _header_cards(path: str) -> dict[str, Any]:
    """The image's cards of a raw's primary header (in a thread: it reads the file)."""
    header = primary_header(pathlib.Path(path))
    return {card: header.get(card) for card in _HEADER_CARDS}


class JobRecorder:
    """The results database's rows of one instrument's jobs, and where their products go.

    Parameters
    ----------
    instrument : `str`
        The instrument whose jobs these are (a database holds several).
    output_root : `pathlib.Path`
        Directory under which each job gets its own directory of products.
    output_url_root : `str`
        URL at which ``output_root`` is served; empty for ``file://`` URLs.
    log : `logging.Logger`
        Where failed writes and ended leftover jobs are reported.
    """

    def __init__(self, instrument: str, output_root: pathlib.Path, output_url_root: str, log: logging.Logger) -> None:
        self.instrument = instrument
        self.output_root = output_root
        self.output_url_root = output_url_root
        self.log = log
        self.writer: ResultsWriter | None = None
        # Images (ra_image rows in the making) by name, oldest first; jobs -> (image, unit, None: a gather).
        self._images: collections.OrderedDict[str, ImageRecord] = collections.OrderedDict()
        self._job_units: dict[str, tuple[str, Unit | None]] = {}
        # Images whose row is to be written, and the timer that writes them.
        self._dirty: set[str] = set()
        self._flush_timer: asyncio.TimerHandle | None = None
        self.clock: Callable[[], float] = current_tai

    async def open(self, database_url: str) -> None:
        """Create ``output_root`` and open the results database (its tables are made if missing).

        Raises
        ------
        OSError, sqlalchemy.exc.SQLAlchemyError
            If either cannot be done.
        """
        self.output_root.mkdir(parents=True, exist_ok=True)
        database = await asyncio.get_running_loop().run_in_executor(None, ResultsDatabase, database_url)
        self.writer = ResultsWriter(database)

    async def close(self) -> None:
        """Close the database after the writes already asked for (image rows waiting included)."""
        self._flush_images()
        writer, self.writer = self.writer, None
        if writer is not None:
            await writer.close()

    # -- products --

    def job_dir(self, job: Job) -> str:
        """The directory a job writes its products in."""
        image = job.data_id.obsid or "groups"
        day = str(job.data_id.day_obs or "nodate")
        return str(self.output_root / self.instrument / day / image / f"{job.pipeline}-{job.job_id}")

    def product_url(self, path: pathlib.Path) -> str:
        """Where others get a product: under ``output_url_root`` if set, else a ``file://`` URL.

        A product outside ``output_root`` (the pipeline wrote it elsewhere) is not served under
        ``output_url_root``: it gets its ``file://`` URL.
        """
        resolved = path.resolve()
        if self.output_url_root:
            try:
                relative = resolved.relative_to(self.output_root.resolve())
            except ValueError:
                return resolved.as_uri()
            return self.output_url_root.rstrip("/") + "/" + relative.as_posix()
        return resolved.as_uri()

    # -- rows --

    def row(self, job: Job, image_name: str | None = None) -> dict[str, Any]:
        """The job's row as it stands now (its final columns once it has ended)."""
        row: dict[str, Any] = dict(
            job_id=job.job_id,
            instrument=self.instrument,
            pipeline=job.pipeline,
            data_id=job.data_id.to_json(),
            image_name=image_name if image_name is not None else job.image_name,
            trigger=job.trigger.value,
            state=job.state.value,
            submit_time=job.submit_time,
            config=json.dumps(job.config),
        )
        if job.done:
            row.update(
                success=job.state == JobState.SUCCEEDED,
                exit_code=job.exit_code,
                error_report=job.error_report,
                start_time=job.start_time,
                end_time=job.end_time,
                duration=job.duration,
                result=job.result_json(),
            )
        return row

    def submitted(self, job: Job, *, gathered: bool = False, gather: bool = False) -> None:
        """Record a job just queued, and its image's row.

        Parameters
        ----------
        job : `Job`
            The job.
        gathered : `bool`
            It is a detector job of a visit that will be gathered (its visit metrics come from
            the gather, not from the jobs).
        gather : `bool`
            It is a visit's gather job (its end is when the visit metrics are out).
        """
        self._write("record_job", **self.row(job))
        try:
            record = self._image_of_job(job)
            if record is None:
                return
            if gather:
                self._job_units[job.job_id] = (record.image_name, None)
            else:
                self._job_units[job.job_id] = (record.image_name, record.add_job(job))
                record.gathered = record.gathered or gathered
            self._changed(record)
        except Exception:  # the image's row must never stop a job
            self.log.exception("Image row of job %s not updated", job.job_id)

    # -- images --

    def _image_of_job(self, job: Job) -> ImageRecord | None:
        """The record of a job's image (made if new); None for a job on no single image (a group, a file)."""
        data_id = job.data_id
        if not data_id.obsid or data_id.day_obs is None:
            return None
        record = self._images.get(data_id.obsid)
        if record is None:
            record = self._remember(
                ImageRecord(
                    self.instrument,
                    data_id.obsid,
                    day_obs=data_id.day_obs,
                    seq_num=data_id.seq_num,
                    trigger=ImageRecord.trigger_of(job),
                    obs_time=job.submit_time or None,  # nothing better yet (processData)
                )
            )
        return record

    def _remember(self, record: ImageRecord) -> ImageRecord:
        self._images[record.image_name] = record
        while len(self._images) > _IMAGES_REMEMBERED:
            self._images.popitem(last=False)
        return record

    def image_heard(self, arrival: ImageArrival) -> None:
        """Autonomous mode heard an image of the instrument (``endReadout``, or its file announced)."""
        try:
            heard = self.clock() - max(0.0, time.monotonic() - arrival.arrived)
            match = OBSID_RE.match(arrival.image_name)
            if match is None:
                return  # not an obsid: nothing for the night's table
            record = self._images.get(arrival.image_name) or self._remember(
                ImageRecord(self.instrument, arrival.image_name, day_obs=int(match["day"]), seq_num=int(match["seq"]))
            )
            record.trigger = "autonomous"
            record.image_type = arrival.img_type or record.image_type
            if math.isfinite(arrival.exposure_time) and arrival.exposure_time >= 0:
                record.exposure_time = arrival.exposure_time
            record.obs_time = arrival.readout_tai or arrival.sent_tai or heard
            record.obs_time_guessed = False
            if arrival.source == "endReadout":
                record.end_readout_time = heard
            self._changed(record)
        except Exception:
            self.log.exception("Image row of %s not written", arrival.image_name)

    def image_down_selected(
        self, image_name: str, left_out: Collection[int], n_all: int, n_workers: int, why: str
    ) -> None:
        """Autonomous mode's down-selection left these detectors of the image out (dropped until caught up)."""
        record = self._images.get(image_name)
        if record is None or not left_out:
            return
        try:
            record.left_out(frozenset(left_out), n_all, n_workers, why)
            self._changed(record)
        except Exception:
            self.log.exception("Image row of %s not updated for its down-selection", image_name)

    def job_ended(self, job: Job) -> None:
        """A job ended (after its rows were asked for): its image's counts, times and state."""
        try:
            known = self._job_units.pop(job.job_id, None)
            if known is None:
                # Never queued here: the one job of an image that got none (heard here, so known), or
                # a job an earlier CSC process left, whose image's row that process wrote.
                obsid = job.data_id.obsid
                record = self._images.get(obsid) if obsid else None
                if record is None:
                    if obsid and job.exit_code == ExitCode.CSC_RESTARTED:
                        self._left_by_restart(obsid, job)
                    return
                unit: Unit | None = record.add_job(job)
            else:
                name, unit = known
                record = self._images.get(name)
                if record is None:
                    return  # forgotten long ago
            if unit is None:
                record.gather_ended(job)
            else:
                record.job_ended(job, unit)
                raw = _raw_of(job)
                if raw is not None and not record.header_asked:
                    record.header_asked = True
                    self._read_header(record, raw)
            self._changed(record)
        except Exception:
            self.log.exception("Image row of job %s not updated", job.job_id)

    def _left_by_restart(self, image_name: str, job: Job) -> None:
        """Count a job an earlier CSC process left unfinished as failed in its image's row (as stored)."""
        instrument = self.instrument

        def update(database: ResultsDatabase) -> None:
            row = database.image_row(instrument, image_name)
            if row is None or row["state"] != "processing":
                return
            counts = {key: int(row[key] or 0) for key in ("n_expected", "n_done", "n_failed", "n_dropped")}
            counts["n_failed"] += 1
            pending = counts["n_expected"] - counts["n_done"] - counts["n_failed"] - counts["n_dropped"]
            note = "the CSC restarted before some of its jobs ended (exit 5)"
            reason = row["reason"] or ""
            if note not in reason:
                reason = f"{reason}; {note}" if reason else note
            state = ImageRecord.state_of(counts["n_expected"], counts["n_done"], counts["n_failed"], pending)
            database.record_image(instrument, image_name, n_failed=counts["n_failed"], state=state, reason=reason)

        self._write_call(update, "image row of a job left by a restart")

    def _write_call(self, write: Callable[[ResultsDatabase], Any], what: str) -> None:
        """As `_write`, for a function of the database."""
        if self.writer is None:
            return
        try:
            future = self.writer.write(write)
        except RuntimeError as e:  # closed
            self.log.error("Results database write (%s) not done: %s", what, e)
            return
        future.add_done_callback(self._write_done)

    def _read_header(self, record: ImageRecord, raw: str) -> None:
        """Fill in what the image's raw header says (type, filter, exposure time), read in a thread."""
        future = asyncio.get_running_loop().run_in_executor(None, _header_cards, raw)

        def done(future: asyncio.Future) -> None:
            if future.cancelled():
                return
            if future.exception() is not None:
                self.log.debug("Image %s: header of %s unreadable: %s", record.image_name, raw, future.exception())
                return
            record.header(future.result())
            self._changed(record)

        future.add_done_callback(done)

    def _changed(self, record: ImageRecord) -> None:
        """Write the image's row soon (once for all its changes until then)."""
        self._dirty.add(record.image_name)
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(IMAGE_WRITE_DELAY, self._flush_images)

    def _flush_images(self) -> None:
        """Write the rows of the images that changed (made here, on the loop; written in the writer's thread)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        names, self._dirty = self._dirty, set()
        for name in sorted(names):
            record = self._images.get(name)
            if record is not None:
                self._write("record_image", **record.row())

    def started(self, job: Job) -> None:
        """The job's row says ``running``, and since when, once it is handed to the pool."""
        self._write("record_job", job_id=job.job_id, state=job.state.value, start_time=job.start_time)

    def _write(self, method: str, **kwargs: Any) -> None:
        """Write in the database's thread; a failure is logged, never lost silently."""
        if self.writer is None:
            return
        try:
            future = self.writer.write(lambda database: getattr(database, method)(**kwargs))
        except RuntimeError as e:  # closed
            self.log.error("Results database write %s not done: %s", method, e)
            return
        future.add_done_callback(self._write_done)

    def _write_done(self, future: asyncio.Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.log.error("Results database write failed: %r", future.exception())

    # -- after a crash --

    async def jobs_left_unfinished(self, now: float) -> list[Job]:
        """The jobs an earlier CSC process left queued or running, each ended at ``now`` with exit code 5.

        The rule: they are not re-run. Each ends with exit code 5 (`ExitCode.CSC_RESTARTED`); the
        caller publishes its jobResult and final row, which say so; whoever wanted it asks again.
        (A re-run would come long after it was asked for, on data the requester may no longer
        want, and its requester, a script, is gone with its command's ack.) A database that
        cannot be read is logged, and gives none.
        """
        assert self.writer is not None
        instrument = self.instrument
        try:
            rows = await self.writer.write(lambda database: database.unfinished_jobs(instrument))
        except Exception as e:
            self.log.error("Could not look for jobs an earlier CSC process left unfinished: %r", e)
            return []
        if rows:
            ids = [str(row["job_id"]) for row in rows]
            more = f" and {len(ids) - _MAX_IDS_LOGGED} more" if len(ids) > _MAX_IDS_LOGGED else ""
            self.log.warning(
                "%d job(s) were left queued or running by an earlier CSC process that ended before them; they "
                "end now with exit code %d (not re-run): %s",
                len(rows),
                ExitCode.CSC_RESTARTED,
                ", ".join(ids[:_MAX_IDS_LOGGED]) + more,
            )
        return [self._left_unfinished(row, now) for row in rows]

    def _left_unfinished(self, row: dict[str, Any], now: float) -> Job:
        """The `Job` of a database row left queued or running, ended now with exit code 5.

        The row is read defensively: it was written by another process, perhaps another version.
        """

        def text(value: Any) -> str:
            return value if isinstance(value, str) else ""

        stored = row.get("data_id")
        stored = stored if isinstance(stored, dict) else {}
        detectors = stored.get("detectors")
        data_id = DataId(
            instrument=self.instrument,
            obsid=stored.get("obsid") or text(row.get("image_name")) or None,
            group_id=stored.get("groupId"),
            day_obs=stored.get("dayObs"),
            seq_num=stored.get("seqNum"),
            detectors=tuple(detectors) if isinstance(detectors, list) else None,
        )
        try:
            trigger = Trigger(str(row.get("trigger")))
        except ValueError:
            trigger = Trigger.COMMAND
        state = text(row.get("state")) or "queued"
        start_time = finite_or_zero(row.get("start_time"))
        since = f" since {time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(start_time))} TAI" if start_time else ""
        config = row.get("config")
        return Job(
            job_id=str(row["job_id"]),
            pipeline=text(row.get("pipeline")),
            data_id=data_id,
            config=config if isinstance(config, dict) else {},
            trigger=trigger,
            time_limit=0.0,
            submit_time=finite_or_zero(row.get("submit_time")),
            state=JobState.FAILED,
            start_time=start_time,
            end_time=now,
            exit_code=int(ExitCode.CSC_RESTARTED),
            error_report=(
                f"the CSC restarted before the job ended: it was {state}{since} when the CSC process that "
                "accepted it ended; not re-run (ask for it again)"
            ),
        )
