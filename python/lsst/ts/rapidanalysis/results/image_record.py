"""What the CSC knows of one image, as its ``ra_image`` row says it: pure bookkeeping, no I/O.

An image's *units* are the work it should get: one per (pipeline, detector) of a per-detector
job, one per (pipeline, None) of a job on the whole image. Each unit is pending, done, failed or
dropped; the last job of a unit decides (a requeued or caught-up job replaces the one before it).
Detectors autonomous mode left out by down-selection are dropped units until a catch-up job takes
them. A visit's gather job is no unit: it sets ``visit_metrics_time``.

The image's state follows (`ImageRecord.state`): ``processing`` while a unit is pending (or no unit
is known yet), else ``complete`` when every unit is done, ``partial`` when some are done and others
failed or were dropped, ``failed`` when none is done and some failed, ``dropped`` when none ran.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..dispatch.jobs import Job, JobState, Trigger

__all__ = ["ImageRecord", "Unit", "unit_of", "REASON_MAX"]

#: Longest ``reason`` written (the column is Text; a page shows one line of it).
REASON_MAX = 2000
#: Distinct failure reasons named in ``reason``; the others are counted.
_REASONS_NAMED = 3

#: (pipeline, detector or None for a job on the whole image).
Unit = tuple[str, int | None]

_PENDING, _DONE, _FAILED, _DROPPED = "pending", "done", "failed", "dropped"


def unit_of(job: Job) -> Unit:
    """The unit of work a job does for its image."""
    detectors = job.data_id.detectors
    return (job.pipeline, detectors[0] if detectors is not None and len(detectors) == 1 else None)


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())  # one line
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclasses.dataclass
class ImageRecord:
    """One image's row in the making (the columns of ``ra_image`` and what they are computed from)."""

    instrument: str
    image_name: str
    day_obs: int | None = None
    seq_num: int | None = None
    trigger: str = "command"
    image_type: str | None = None
    filter: str | None = None
    exposure_time: float | None = None
    obs_time: float | None = None
    #: Whether obs_time is only the time the first job was made (a header may say better).
    obs_time_guessed: bool = True
    end_readout_time: float | None = None
    first_detector_time: float | None = None
    visit_metrics_time: float | None = None
    #: Whether a gather job will give the visit metrics (else they are the jobs' own).
    gathered: bool = False
    #: Whether the raw's header has been asked for (once per image).
    header_asked: bool = False
    units: dict[Unit, str] = dataclasses.field(default_factory=dict)
    #: Why each failed or dropped unit is so.
    why: dict[Unit, str] = dataclasses.field(default_factory=dict)
    #: Down-selection: (detectors left out, detectors in all, pool size, the selector's reason).
    down_selection: tuple[int, int, int, str] | None = None
    gather_failure: str = ""
    last_end: float | None = None

    # -- events --

    def add_job(self, job: Job) -> Unit:
        """A job of the image was queued: its unit is pending (taken back from the dropped, for a catch-up)."""
        unit = unit_of(job)
        if unit not in self.units and unit[1] is not None:
            # A catch-up of a down-selected detector: it was counted as dropped under no pipeline.
            self.units.pop(("", unit[1]), None)
            self.why.pop(("", unit[1]), None)
        self.units[unit] = _PENDING
        self.why.pop(unit, None)
        return unit

    def left_out(self, detectors: set[int] | frozenset[int], n_all: int, n_workers: int, why: str) -> None:
        """Autonomous mode's down-selection left these detectors out: dropped units until caught up."""
        pipelines = {p for (p, d) in self.units if d is not None} or {""}
        for detector in detectors:
            for pipeline in pipelines:
                unit = (pipeline, detector)
                if unit not in self.units:
                    self.units[unit] = _DROPPED
        self.down_selection = (len(detectors), n_all, n_workers, why)

    def job_ended(self, job: Job, unit: Unit) -> None:
        """A job of the image ended: its unit is done, failed or dropped (never ran)."""
        end = job.end_time or None
        if job.state == JobState.SUCCEEDED:
            self.units[unit] = _DONE
            self.why.pop(unit, None)
            if end is not None and (self.first_detector_time is None or end < self.first_detector_time):
                self.first_detector_time = end
        else:
            # Aborted before it ran: dropped (autonomous mode's worker mode or backlog bound, or abortJob).
            never_ran = job.state == JobState.ABORTED and not job.start_time
            self.units[unit] = _DROPPED if never_ran else _FAILED
            report = job.error_report or job.state.value
            self.why[unit] = report if never_ran else f"exit {job.exit_code}: {report}"
        if end is not None:
            self.last_end = end if self.last_end is None else max(self.last_end, end)
        if not self.gathered and not self.pending and self.n_done and self.last_end is not None:
            # No gather: the image's metrics are its jobs', all in by the last one's end.
            self.visit_metrics_time = self.last_end

    def gather_ended(self, job: Job) -> None:
        """The visit's gather job ended: its visit metrics are out (the first gather's time is kept)."""
        if job.state == JobState.SUCCEEDED:
            if job.end_time and self.visit_metrics_time is None:
                self.visit_metrics_time = job.end_time
            self.gather_failure = ""
        elif self.visit_metrics_time is None:
            self.gather_failure = f"visit gather {job.state.value}: exit {job.exit_code}: {job.error_report}"

    def header(self, cards: dict[str, Any]) -> None:
        """What the raw's primary header says of the image, where nothing better is known."""
        img_type = str(cards.get("IMGTYPE") or "").strip().upper()
        if img_type and not self.image_type:
            self.image_type = img_type
        band = str(cards.get("FILTER") or cards.get("FILTBAND") or "").strip()
        if band and not self.filter:
            self.filter = band
        exp_time = cards.get("EXPTIME")
        if isinstance(exp_time, int | float) and math.isfinite(exp_time) and self.exposure_time is None:
            self.exposure_time = float(exp_time)
        mjd_end = cards.get("MJD-END")
        if self.obs_time_guessed and isinstance(mjd_end, int | float) and math.isfinite(mjd_end) and mjd_end > 0:
            self.obs_time = (float(mjd_end) - 40587.0) * 86400.0  # MJD (TAI) to TAI unix seconds
            self.obs_time_guessed = False

    # -- what the row says --

    def _count(self, status: str) -> int:
        return sum(1 for s in self.units.values() if s == status)

    @property
    def pending(self) -> int:
        """Units whose job has not ended."""
        return self._count(_PENDING)

    @property
    def n_done(self) -> int:
        """Units whose job succeeded."""
        return self._count(_DONE)

    @property
    def state(self) -> str:
        """One of `IMAGE_STATES` (see the module docstring)."""
        return self.state_of(len(self.units), self.n_done, self._count(_FAILED), self.pending)

    @staticmethod
    def state_of(n_expected: int, n_done: int, n_failed: int, n_pending: int) -> str:
        """The state rule (see the module docstring) on counts."""
        if n_expected <= 0 or n_pending > 0:
            return "processing"
        if n_done >= n_expected:
            return "complete"
        if n_done:
            return "partial"
        return "failed" if n_failed else "dropped"

    @property
    def reason(self) -> str | None:
        """Why the image is partial, failed or dropped (and a failed gather), in one line; None if nothing is wrong."""
        parts: list[str] = []
        # Dropped units no job took: the detectors down-selection left out (and not caught up).
        untaken = {d for (p, d), s in self.units.items() if s == _DROPPED and (p, d) not in self.why and d is not None}
        if untaken and self.down_selection is not None:
            _, n_all, n_workers, why = self.down_selection
            parts.append(
                f"down-selected: {len(untaken)} of {n_all} detectors dropped, pool of {n_workers} workers"
                + (f" ({why})" if why else "")
            )
        for status, verb in ((_FAILED, "failed"), (_DROPPED, "dropped")):
            reasons: dict[str, list[Unit]] = {}
            for unit, s in self.units.items():
                if s == status and unit in self.why:
                    reasons.setdefault(self.why[unit], []).append(unit)
            if not reasons:
                continue
            n = sum(len(units) for units in reasons.values())
            named = sorted(reasons.items(), key=lambda item: -len(item[1]))[:_REASONS_NAMED]
            text = "; ".join(f"{self._units_text(units)}: {_shorten(why, 400)}" for why, units in named)
            more = len(reasons) - len(named)
            parts.append(f"{n} {verb}: {text}" + (f"; and {more} other reason(s)" if more else ""))
        if self.gather_failure:
            parts.append(_shorten(self.gather_failure, 400))
        return _shorten("; ".join(parts), REASON_MAX) if parts else None

    @staticmethod
    def _units_text(units: list[Unit]) -> str:
        pipelines = sorted({p for p, _ in units})
        detectors = sorted(d for _, d in units if d is not None)
        text = ", ".join(pipelines)
        if detectors:
            shown = ", ".join(str(d) for d in detectors[:10]) + (", …" if len(detectors) > 10 else "")
            text += f" detector{'s' if len(detectors) > 1 else ''} {shown}"
        return text

    def row(self) -> dict[str, Any]:
        """The ``ra_image`` columns (for `ResultsDatabase.record_image`, with instrument and image_name).

        What is not known (None) is left out, so a record made again (an image forgotten, or
        processed by command after an earlier CSC process recorded it) does not blank what was
        stored; a guessed ``obs_time`` goes in ``defaults`` (kept only where none is stored). The
        counts, the state and the reason are this record's.
        """
        known = dict(
            day_obs=self.day_obs,
            seq_num=self.seq_num,
            image_type=self.image_type,
            filter=self.filter,
            exposure_time=self.exposure_time,
            trigger=self.trigger,
            end_readout_time=self.end_readout_time,
            first_detector_time=self.first_detector_time,
            visit_metrics_time=self.visit_metrics_time,
        )
        row: dict[str, Any] = dict(
            instrument=self.instrument,
            image_name=self.image_name,
            **{name: value for name, value in known.items() if value is not None},
            n_expected=len(self.units),
            n_done=self.n_done,
            n_failed=self._count(_FAILED),
            n_dropped=self._count(_DROPPED),
            state=self.state,
            reason=self.reason,
        )
        if self.obs_time is not None:
            if self.obs_time_guessed:
                row["defaults"] = {"obs_time": self.obs_time}
            else:
                row["obs_time"] = self.obs_time
        return row

    @staticmethod
    def trigger_of(job: Job) -> str:
        """``command`` for processData, ``autonomous`` for autonomous work and its catch-up."""
        return "command" if job.trigger == Trigger.COMMAND else "autonomous"
