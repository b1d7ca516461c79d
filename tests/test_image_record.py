"""An image's ``ra_image`` row as the CSC writes it: `ImageRecord`'s rules and `ImageRows`' writes.

Against a real SQLite file; no DDS, no Dask (the CSC's own writes are in test_image_record_csc.py).
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import time

import pytest

from fits_factory import write_raw
from lsst.ts.rapidanalysis.data.data_id import DataId
from lsst.ts.rapidanalysis.data.image_listener import ImageArrival
from lsst.ts.rapidanalysis.dispatch.jobs import ExitCode, Job, JobState, Trigger
from lsst.ts.rapidanalysis.results.database import ResultsDatabase
from lsst.ts.rapidanalysis.results.image_record import ImageRecord
from lsst.ts.rapidanalysis.results.image_rows import IMAGE_WRITE_DELAY
from lsst.ts.rapidanalysis.results.recorder import JobRecorder

OBSID = "CC_O_20251115_000042"
T0 = 1_763_000_000.0
_ids = iter(range(1_000_000))


def job(pipeline: str = "sfm", detector: int | None = 4, trigger: Trigger = Trigger.AUTONOMOUS, **kw: object) -> Job:
    fields: dict = dict(
        job_id=f"j{next(_ids)}",
        pipeline=pipeline,
        data_id=DataId(
            "LSSTComCam",
            obsid=OBSID,
            day_obs=20251115,
            seq_num=42,
            detectors=None if detector is None else (detector,),
        ),
        config={},
        trigger=trigger,
        time_limit=60.0,
        submit_time=T0 + 1,
    )
    fields.update(kw)
    return Job(**fields)


def end(j: Job, state: JobState = JobState.SUCCEEDED, at: float = T0 + 10, **kw: object) -> Job:
    j.state, j.end_time = state, at
    j.start_time = kw.pop("start_time", at - 2)  # type: ignore[assignment]
    for key, value in kw.items():
        setattr(j, key, value)
    return j


# -- the rules --


def test_complete_partial_failed_dropped() -> None:
    record = ImageRecord("LSSTComCam", OBSID)
    assert record.state == "processing"  # nothing known yet
    jobs = [job(detector=d) for d in range(3)]
    units = [record.add_job(j) for j in jobs]
    assert record.state == "processing" and record.row()["n_expected"] == 3
    record.job_ended(end(jobs[0], at=T0 + 12), units[0])
    record.job_ended(end(jobs[1], at=T0 + 11), units[1])
    assert record.state == "processing" and record.first_detector_time == T0 + 11
    record.job_ended(end(jobs[2], at=T0 + 13), units[2])
    assert record.state == "complete" and record.reason is None
    assert record.visit_metrics_time == T0 + 13  # no gather: when the last job's metrics landed

    partial = ImageRecord("LSSTComCam", OBSID, gathered=True)
    a, b, c = job(detector=0), job(detector=1), job(detector=2)
    ua, ub, uc = (partial.add_job(j) for j in (a, b, c))
    partial.job_ended(end(a), ua)
    partial.job_ended(end(b, JobState.FAILED, exit_code=3, error_report="raw not found"), ub)
    partial.job_ended(end(c, JobState.ABORTED, start_time=0.0, exit_code=255, error_report="dropped: stale"), uc)
    row = partial.row()
    assert (row["n_expected"], row["n_done"], row["n_failed"], row["n_dropped"]) == (3, 1, 1, 1)
    assert row["state"] == "partial" and "visit_metrics_time" not in row  # the gather has not run
    assert row["reason"] == "1 failed: sfm detector 1: exit 3: raw not found; 1 dropped: sfm detector 2: dropped: stale"

    failed = ImageRecord("LSSTComCam", OBSID)
    f = job(pipeline="mount_torque", detector=None)
    failed.job_ended(end(f, JobState.FAILED, exit_code=3, error_report="no telemetry"), failed.add_job(f))
    assert failed.state == "failed" and failed.reason == "1 failed: mount_torque: exit 3: no telemetry"

    dropped = ImageRecord("LSSTComCam", OBSID)
    d = job()
    dropped.job_ended(
        end(d, JobState.ABORTED, start_time=0.0, error_report="dropped: a newer image arrived"), dropped.add_job(d)
    )
    assert dropped.state == "dropped" and dropped.first_detector_time is None


def test_down_selection_catch_up_and_requeue() -> None:
    record = ImageRecord("LSSTComCam", OBSID, gathered=True)
    selected = [job(detector=d) for d in (1, 3)]
    units = [record.add_job(j) for j in selected]
    record.left_out(frozenset({0, 2, 4}), 9, 2, "checkerboard")
    row = record.row()
    assert (row["n_expected"], row["n_dropped"], row["state"]) == (5, 3, "processing")
    for j, u in zip(selected, units, strict=True):
        record.job_ended(end(j), u)
    assert record.state == "partial"
    assert record.reason == "down-selected: 3 of 9 detectors dropped, pool of 2 workers (checkerboard)"
    # Catch-up of detectors 0 and 2: no longer dropped.
    catch = [job(detector=d, trigger=Trigger.CATCHUP) for d in (0, 2)]
    catch_units = [record.add_job(j) for j in catch]
    assert record.row()["n_dropped"] == 1 and record.state == "processing"
    for j, u in zip(catch, catch_units, strict=True):
        record.job_ended(end(j), u)
    assert record.row()["n_done"] == 4 and record.state == "partial"
    assert record.reason.startswith("down-selected: 1 of 9 detectors dropped")
    # The gather's end is when the visit metrics came; a failed gather before it is said.
    gather = job(pipeline="sfm_gather", detector=None)
    record.gather_ended(end(gather, JobState.FAILED, exit_code=1, error_report="boom"))
    assert "visit gather failed: exit 1: boom" in record.reason and record.visit_metrics_time is None
    record.gather_ended(end(job(pipeline="sfm_gather", detector=None), at=T0 + 30))
    assert record.visit_metrics_time == T0 + 30 and "gather" not in record.reason


def test_requeued_unit_counts_once() -> None:
    record = ImageRecord("LSSTComCam", OBSID)
    first = job(detector=5)
    unit = record.add_job(first)
    record.job_ended(end(first, JobState.ABORTED, exit_code=255, error_report="abandoned; requeued"), unit)
    again = job(detector=5)
    record.job_ended(end(again), record.add_job(again))
    row = record.row()
    assert (row["n_expected"], row["n_done"], row["n_failed"], row["state"]) == (1, 1, 0, "complete")


def test_header_fills_what_is_unknown() -> None:
    record = ImageRecord("LSSTComCam", OBSID, image_type="OBJECT", obs_time=T0)
    record.header({"IMGTYPE": "bias", "FILTER": "r_03", "EXPTIME": 15.0, "MJD-END": 60994.5})
    assert record.image_type == "OBJECT"  # as announced
    assert record.filter == "r_03" and record.exposure_time == 15.0
    assert record.obs_time == pytest.approx((60994.5 - 40587.0) * 86400.0)  # only the job's making was known


def test_long_reasons_are_one_bounded_line() -> None:
    record = ImageRecord("LSSTComCam", OBSID)
    for d in range(200):
        j = job(detector=d)
        record.job_ended(
            end(j, JobState.FAILED, exit_code=3, error_report=f"reason\n{d % 7} " + "x" * 600), record.add_job(j)
        )
    reason = record.reason
    assert reason is not None and "\n" not in reason and len(reason) <= 2000
    assert reason.startswith("200 failed:") and "and 4 other reason(s)" in reason


# -- the recorder's writes --


@pytest.fixture
async def recorder(tmp_path: pathlib.Path):
    rec = JobRecorder("LSSTComCam", tmp_path / "out", "", log=logging.getLogger("test"))
    await rec.open(f"sqlite:///{tmp_path / 'results.sqlite3'}")
    yield rec
    await rec.close()


async def settle(rec: JobRecorder) -> None:
    await asyncio.sleep(IMAGE_WRITE_DELAY * 2)
    assert rec.writer is not None
    await rec.writer.flush()


def row_of(tmp_path: pathlib.Path, name: str = OBSID) -> dict:
    with ResultsDatabase(tmp_path / "results.sqlite3") as db:
        row = db.image_row("LSSTComCam", name)
    assert row is not None
    return row


async def test_autonomous_image_rows(recorder: JobRecorder, tmp_path: pathlib.Path) -> None:
    # Heard 0.25 s ago; the camera's readout ended at T0.
    recorder.images.clock = lambda: T0 + 1.0
    arrival = ImageArrival(
        OBSID,
        img_type="ENGTEST",
        arrived=time.monotonic() - 0.25,
        sent_tai=T0 + 0.1,
        exposure_time=15.0,
        readout_tai=T0,
    )
    recorder.image_heard(arrival)
    await settle(recorder)
    row = row_of(tmp_path)
    assert row["state"] == "processing" and row["trigger"] == "autonomous" and row["image_type"] == "ENGTEST"
    assert (row["day_obs"], row["seq_num"], row["exposure_time"], row["obs_time"]) == (20251115, 42, 15.0, T0)
    assert row["end_readout_time"] == pytest.approx(T0 + 0.75, abs=0.05)
    jobs = [job(detector=d) for d in (0, 1)]
    for j in jobs:
        recorder.submitted(j, gathered=True)
    recorder.image_down_selected(OBSID, frozenset(range(2, 9)), 9, 2, "automatic")
    gather = job(pipeline="sfm_gather", detector=None)
    for j in jobs:
        recorder.job_ended(end(j, at=T0 + 20))
    recorder.submitted(gather, gather=True)
    recorder.job_ended(end(gather, at=T0 + 25))
    await settle(recorder)
    row = row_of(tmp_path)
    assert (row["n_expected"], row["n_done"], row["n_failed"], row["n_dropped"]) == (9, 2, 0, 7)
    assert row["state"] == "partial" and row["reason"].startswith("down-selected: 7 of 9 detectors dropped")
    assert (row["first_detector_time"], row["visit_metrics_time"]) == (T0 + 20, T0 + 25)
    with ResultsDatabase(tmp_path / "results.sqlite3") as db:
        assert len(db.jobs(image_name=OBSID)) == 3  # the job rows are written as before


async def test_command_image_takes_the_raw_header(recorder: JobRecorder, tmp_path: pathlib.Path) -> None:
    raw = tmp_path / f"{OBSID}_R22_S11.fits"
    write_raw(raw, obsid=OBSID, imgtype="ENGTEST", exptime=15.0)
    j = job(trigger=Trigger.COMMAND, inputs=[str(raw)])
    recorder.submitted(j, gathered=False)
    await settle(recorder)
    row = row_of(tmp_path)
    assert row["trigger"] == "command" and row["obs_time"] == T0 + 1 and row["end_readout_time"] is None
    recorder.job_ended(end(j, at=T0 + 5))
    await asyncio.sleep(0.2)  # the header is read in a thread
    await settle(recorder)
    row = row_of(tmp_path)
    assert row["state"] == "complete" and row["visit_metrics_time"] == T0 + 5
    assert (row["image_type"], row["filter"], row["exposure_time"]) == ("ENGTEST", "r_57", 15.0)
    assert row["obs_time"] == T0 + 1  # no MJD-END in this header: when the job was made


async def test_image_that_got_no_job_and_jobs_of_no_image(recorder: JobRecorder, tmp_path: pathlib.Path) -> None:
    # The undispatched image's one job, published without being queued (the image was heard first).
    recorder.image_heard(ImageArrival(OBSID))
    failed = end(
        job(pipeline="image_kind", detector=None), JobState.FAILED, exit_code=ExitCode.NO_INPUT, error_report="no raw"
    )
    recorder.job_ended(failed)
    # A group's job and a generator file's job have no image row.
    group = job(detector=None, data_id=DataId("LSSTComCam", group_id="2025-11-15T01:02:03"))
    recorder.submitted(group)
    recorder.job_ended(end(group))
    file_job = job(detector=None, data_id=DataId("LSSTComCam", obsid="GC101_frame_1"))
    recorder.submitted(file_job)
    await settle(recorder)
    row = row_of(tmp_path)
    assert row["state"] == "failed" and row["reason"] == "1 failed: image_kind: exit 3: no raw"
    with ResultsDatabase(tmp_path / "results.sqlite3") as db:
        assert [r["image_name"] for r in db.images("LSSTComCam", 20251115)] == [OBSID]


async def test_image_rows_waiting_are_written_at_close(tmp_path: pathlib.Path) -> None:
    rec = JobRecorder("LSSTComCam", tmp_path / "out", "", log=logging.getLogger("test"))
    await rec.open(f"sqlite:///{tmp_path / 'results.sqlite3'}")
    rec.submitted(job())
    await rec.close()  # before the write delay
    assert row_of(tmp_path)["n_expected"] == 1


async def test_a_failed_image_write_is_logged(
    recorder: JobRecorder, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = recorder.images._image_of_job(job())
    assert record is not None
    record.trigger = "sometimes"  # not an image trigger: the database refuses the row
    recorder.images._changed(record)
    await settle(recorder)
    assert any(
        "Results database write failed" in r.getMessage() and "sometimes" in r.getMessage() for r in caplog.records
    )


async def test_jobs_left_by_a_restart_end_in_the_stored_row(recorder: JobRecorder, tmp_path: pathlib.Path) -> None:
    """The earlier process wrote the row; this one ends its jobs left queued (exit 5) in it."""
    assert recorder.writer is not None
    await recorder.writer.write(
        lambda db: db.record_image(
            "LSSTComCam", OBSID, n_expected=3, n_done=1, n_failed=0, n_dropped=0, state="processing"
        )
    )
    for _ in range(2):
        left = end(job(), JobState.FAILED, exit_code=ExitCode.CSC_RESTARTED, error_report="the CSC restarted")
        recorder.job_ended(left)
    await settle(recorder)
    row = row_of(tmp_path)
    assert (row["n_expected"], row["n_done"], row["n_failed"], row["state"]) == (3, 1, 2, "partial")
    assert row["reason"] == "the CSC restarted before some of its jobs ended (exit 5)"
    # A job of an image nobody heard of, ending for another reason: no row is made up.
    recorder.job_ended(end(job(data_id=DataId("LSSTComCam", obsid="CC_O_20251115_000099", day_obs=20251115))))
    await settle(recorder)
    with ResultsDatabase(tmp_path / "results.sqlite3") as db:
        assert db.image_row("LSSTComCam", "CC_O_20251115_000099") is None


async def test_a_command_on_an_image_recorded_before_keeps_what_was_known(
    recorder: JobRecorder, tmp_path: pathlib.Path
) -> None:
    """processData on an image an earlier process recorded: counts anew, the camera's times and type kept."""
    assert recorder.writer is not None
    await recorder.writer.write(
        lambda db: db.record_image(
            "LSSTComCam",
            OBSID,
            image_type="OBJECT",
            obs_time=T0,
            end_readout_time=T0 + 0.5,
            trigger="autonomous",
            visit_metrics_time=T0 + 30,
            n_expected=9,
            n_done=9,
            state="complete",
        )
    )
    j = job(pipeline="mount_torque", detector=None, trigger=Trigger.COMMAND, submit_time=T0 + 3600)
    recorder.submitted(j)
    recorder.job_ended(end(j, JobState.FAILED, at=T0 + 3605, exit_code=3, error_report="no telemetry"))
    await settle(recorder)
    row = row_of(tmp_path)
    assert (row["image_type"], row["obs_time"], row["end_readout_time"]) == ("OBJECT", T0, T0 + 0.5)
    assert (row["n_expected"], row["n_failed"], row["state"], row["trigger"]) == (1, 1, "failed", "command")
    assert row["visit_metrics_time"] == T0 + 30 and row["reason"] == "1 failed: mount_torque: exit 3: no telemetry"
