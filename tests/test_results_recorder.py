"""results.recorder: a job's rows through its life, its products' place and URL, and jobs left by a crash.

Against a real SQLite file; no DDS, no Dask.
"""

from __future__ import annotations

import logging
import pathlib

import pytest

from lsst.ts.rapidanalysis.data.data_id import DataId
from lsst.ts.rapidanalysis.dispatch.jobs import ExitCode, Job, JobState, Trigger
from lsst.ts.rapidanalysis.results.database import ResultsDatabase
from lsst.ts.rapidanalysis.results.recorder import JobRecorder

OBSID = "CC_O_20251115_000042"


def job(job_id: str = "j1", **kw: object) -> Job:
    fields: dict = dict(
        job_id=job_id,
        pipeline="sfm",
        data_id=DataId("LSSTComCam", obsid=OBSID, day_obs=20251115, detectors=(4,)),
        config={"nSigma": 5},
        trigger=Trigger.COMMAND,
        time_limit=60.0,
        submit_time=1000.0,
    )
    fields.update(kw)
    return Job(**fields)


@pytest.fixture
def recorder(tmp_path: pathlib.Path) -> JobRecorder:
    return JobRecorder("LSSTComCam", tmp_path / "out", "", log=logging.getLogger("test"))


def test_job_dir_is_per_instrument_day_image_and_job(recorder: JobRecorder, tmp_path: pathlib.Path) -> None:
    assert recorder.job_dir(job()) == str(tmp_path / "out" / "LSSTComCam" / "20251115" / OBSID / "sfm-j1")
    group = job(data_id=DataId("LSSTComCam", group_id="2025-11-15T01:02:03.000"))
    assert recorder.job_dir(group) == str(tmp_path / "out" / "LSSTComCam" / "nodate" / "groups" / "sfm-j1")


def test_product_urls(tmp_path: pathlib.Path) -> None:
    inside = tmp_path / "out" / "LSSTComCam" / "a b.png"
    outside = tmp_path / "elsewhere.png"
    plain = JobRecorder("LSSTComCam", tmp_path / "out", "", log=logging.getLogger("test"))
    assert plain.product_url(inside) == inside.resolve().as_uri()  # "a%20b.png"
    served = JobRecorder("LSSTComCam", tmp_path / "out", "https://summit.example/ra/", log=logging.getLogger("test"))
    assert served.product_url(inside) == "https://summit.example/ra/LSSTComCam/a b.png"
    # Not under output_root: not served there, so its file URL.
    assert served.product_url(outside) == outside.resolve().as_uri()


def test_row_has_final_columns_only_once_ended(recorder: JobRecorder) -> None:
    queued = recorder.row(job())
    assert queued["state"] == "queued" and "exit_code" not in queued and "result" not in queued
    assert queued["image_name"] == OBSID and queued["config"] == '{"nSigma": 5}'
    ended = job(state=JobState.FAILED, exit_code=3, error_report="no raw", start_time=1001.0, end_time=1004.5)
    row = recorder.row(ended, image_name="other")
    assert row["success"] is False and row["exit_code"] == 3 and row["error_report"] == "no raw"
    assert row["duration"] == pytest.approx(3.5) and row["image_name"] == "other"


async def test_rows_through_a_jobs_life_and_a_restart(recorder: JobRecorder, tmp_path: pathlib.Path) -> None:
    await recorder.open(f"sqlite:///{tmp_path / 'results.sqlite3'}")
    queued, running, ended = job("q"), job("r"), job("e")
    for j in (queued, running, ended):
        recorder.submitted(j)
    running.state, running.start_time = JobState.RUNNING, 1002.0
    recorder.started(running)
    assert recorder.writer is not None
    ended.state, ended.end_time = JobState.SUCCEEDED, 1003.0
    await recorder.writer.write(lambda database: database.record_job(**recorder.row(ended)))
    await recorder.close()
    assert recorder.writer is None
    await recorder.close()  # twice is harmless

    # The process "crashed": the next one finds the queued and the running job, not the ended one.
    await recorder.open(f"sqlite:///{tmp_path / 'results.sqlite3'}")
    left = await recorder.jobs_left_unfinished(now=2000.0)
    await recorder.close()
    assert sorted(j.job_id for j in left) == ["q", "r"]
    for j in left:
        assert j.state == JobState.FAILED and j.exit_code == ExitCode.CSC_RESTARTED and j.end_time == 2000.0
        assert j.data_id.obsid == OBSID and j.data_id.detectors == (4,) and j.config == {"nSigma": 5}
        assert "not re-run" in j.error_report
    by_id = {j.job_id: j for j in left}
    assert "it was queued when" in by_id["q"].error_report
    assert "it was running since" in by_id["r"].error_report and by_id["r"].start_time == 1002.0


async def test_a_malformed_leftover_row_still_ends(recorder: JobRecorder, tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.sqlite3'}"
    database = ResultsDatabase(url)
    # The least a row can hold (another version, a hand edit): no pipeline, data id or times.
    database.record_job("bare", instrument="LSSTComCam", state="running")
    database.close()
    await recorder.open(url)
    (left,) = await recorder.jobs_left_unfinished(now=5.0)
    await recorder.close()
    assert left.job_id == "bare" and left.pipeline == "" and left.trigger == Trigger.COMMAND
    assert left.data_id.obsid is None and left.exit_code == ExitCode.CSC_RESTARTED
    assert "it was running when" in left.error_report


async def test_writes_after_close_are_logged_not_raised(
    recorder: JobRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    recorder.submitted(job())  # never opened: nothing to write to, nothing raised
    assert caplog.records == []
