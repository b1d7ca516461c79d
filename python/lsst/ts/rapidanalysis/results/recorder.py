"""Where a job's results are kept: its rows in the results database and its directory of products.

A job's row is written when it is queued (so that a notebook sees queued work), when it starts
running, and when it ends (`JobPublisher`, with its metrics and products); its image's row
(``ra_image``) is kept by `ImageRows`, which the recorder tells of each. A row still queued or
running when a CSC starts was left by an earlier CSC process that ended first (a crash, kill -9):
`JobRecorder.jobs_left_unfinished` ends each with exit code 5 (`ExitCode.CSC_RESTARTED`).

Products go under ``output_root/<instrument>/<dayObs>/<image>/<pipeline>-<jobId>/``; others get
them at ``output_url_root`` + the same relative path, or a ``file://`` URL when that is not set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import time
from collections.abc import Callable, Collection
from typing import Any

from ..data.data_id import DataId
from ..data.image_listener import ImageArrival
from ..dispatch.jobs import ExitCode, Job, JobState, Trigger
from .database import ResultsDatabase
from .image_rows import ImageRows
from .publication import finite_or_zero
from .writer import ResultsWriter

__all__ = ["JobRecorder"]

#: Most job ids one log message lists.
_MAX_IDS_LOGGED = 50


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
        #: The instrument's image rows (``ra_image``), written through this recorder's writer.
        self.images = ImageRows(instrument, self._write_call, log)

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
        self.images.flush()
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
        self.images.job_queued(job, gathered=gathered, gather=gather)

    def image_heard(self, arrival: ImageArrival) -> None:
        """Autonomous mode heard an image (`ImageRows.heard`)."""
        self.images.heard(arrival)

    def image_down_selected(
        self, image_name: str, left_out: Collection[int], n_all: int, n_workers: int, why: str
    ) -> None:
        """Down-selection left detectors of an image out (`ImageRows.down_selected`)."""
        self.images.down_selected(image_name, left_out, n_all, n_workers, why)

    def job_ended(self, job: Job) -> None:
        """A job ended, after its rows were asked for: its image's row (`ImageRows.job_ended`)."""
        self.images.job_ended(job)

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
