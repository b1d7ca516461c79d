"""An instrument's image rows (``ra_image``) as the CSC makes them: one `ImageRecord` per image, written in batches.

A row is written when the image is heard, when its jobs are queued, when autonomous mode
down-selects its detectors, and when each of its jobs and its gather end; the changes of one image
within ``IMAGE_WRITE_DELAY`` go out as one write (a visit's 189 detector jobs ending together make
one). The raw's header fills in what the camera's events did not say (type, filter, exposure time).
Nothing here may stop a job: a failure is logged, the row is written at its next change.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import math
import pathlib
import time
from collections.abc import Callable, Collection
from typing import Any

from ..data.data_id import OBSID_RE
from ..data.fits_header import primary_header
from ..data.image_listener import ImageArrival
from ..dispatch.jobs import ExitCode, Job
from ..sal.tai import current_tai
from .database import ResultsDatabase
from .image_record import ImageRecord, Unit

__all__ = ["ImageRows", "IMAGE_WRITE_DELAY"]

#: Seconds an image's changes are gathered before its row is written (189 detector jobs ending
#: within it make one write, and the row is computed once, on the event loop).
IMAGE_WRITE_DELAY = 0.05
#: Images remembered: their later jobs (a catch-up, a processData) update the same row.
_IMAGES_REMEMBERED = 2000
#: Header cards an image's row takes from its raw.
_HEADER_CARDS = ("IMGTYPE", "FILTER", "FILTBAND", "EXPTIME", "MJD-END")

#: ``write(function of the database, what)``: run it in the results writer, a failure logged.
Write = Callable[[Callable[[ResultsDatabase], Any], str], None]


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


def _record_image(row: dict[str, Any], database: ResultsDatabase) -> None:
    database.record_image(**row)


class ImageRows:
    """The ``ra_image`` rows of one instrument's images, kept as its jobs come and go.

    Parameters
    ----------
    instrument : `str`
        The instrument.
    write : callable
        ``write(function, what)`` runs ``function(database)`` in the results writer and logs a
        failure, naming ``what`` (`JobRecorder` provides it).
    log : `logging.Logger`
        Where what went wrong with a row is reported.

    Attributes
    ----------
    clock : callable
        TAI now (a test sets its own).
    """

    def __init__(self, instrument: str, write: Write, log: logging.Logger) -> None:
        self.instrument = instrument
        self.log = log
        self._write = write
        # Images (ra_image rows in the making) by name, oldest first; jobs -> (image, unit, None: a gather).
        self._images: collections.OrderedDict[str, ImageRecord] = collections.OrderedDict()
        self._job_units: dict[str, tuple[str, Unit | None]] = {}
        # Images whose row is to be written, and the timer that writes them.
        self._dirty: set[str] = set()
        self._flush_timer: asyncio.TimerHandle | None = None
        self.clock: Callable[[], float] = current_tai

    def job_queued(self, job: Job, *, gathered: bool = False, gather: bool = False) -> None:
        """A job of an image was queued (see `JobRecorder.submitted`)."""
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

    def heard(self, arrival: ImageArrival) -> None:
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

    def down_selected(self, image_name: str, left_out: Collection[int], n_all: int, n_workers: int, why: str) -> None:
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

        self._write(update, "image row of a job left by a restart")

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
            self._flush_timer = asyncio.get_running_loop().call_later(IMAGE_WRITE_DELAY, self.flush)

    def flush(self) -> None:
        """Write the rows of the images that changed (made here, on the loop; written in the writer's thread)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        names, self._dirty = self._dirty, set()
        for name in sorted(names):
            record = self._images.get(name)
            if record is not None:
                self._write(functools.partial(_record_image, record.row()), f"image row of {name}")
