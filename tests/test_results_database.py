"""Tests of the results database on real SQLite files and on a real PostgreSQL server.

The database-independent tests run on both: the PostgreSQL server is the session's own
(``postgres_url`` in conftest.py, `postgres_server`), each test with a new empty database on it.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import sqlalchemy as sa

from lsst.ts.rapidanalysis.results import SCHEMA_VERSION, ResultsDatabase, open_results

JOB_COLUMNS = [
    "job_id",
    "instrument",
    "pipeline",
    "data_id",
    "image_name",
    "trigger",
    "state",
    "success",
    "exit_code",
    "error_report",
    "submit_time",
    "start_time",
    "end_time",
    "duration",
    "result",
    "config",
]
WIDE_KEY_COLUMNS = ["job_id", "pipeline", "image_name", "detector", "end_time"]
PRODUCT_COLUMNS = [
    "id",
    "job_id",
    "image_name",
    "path",
    "url",
    "mime_type",
    "byte_size",
    "checksum",
    "description",
    "created",
]

T0 = 1_763_000_000.0  # a TAI unix time in November 2025


def sqlite_db(tmp_path, **kwargs) -> ResultsDatabase:
    return ResultsDatabase(tmp_path / "ra.sqlite3", **kwargs)


def add_job(db: ResultsDatabase, job_id: str, *, submit: float, pipeline="sfm", image="MC_O_20251115_000001", **kw):
    """A job that ran and succeeded (unless ``kw`` says otherwise)."""
    fields = dict(
        instrument="LSSTCam",
        pipeline=pipeline,
        image_name=image,
        data_id={"obsid": image},
        trigger="command",
        state="succeeded",
        success=True,
        exit_code=0,
        submit_time=submit,
        start_time=submit + 1,
        end_time=submit + 3,
        duration=2.0,
    )
    fields.update(kw)
    db.record_job(job_id, **fields)


def test_tables_created(tmp_path):
    path = tmp_path / "a" / "b" / "ra.sqlite3"
    with ResultsDatabase(f"sqlite:///{path}") as db:
        assert db.is_sqlite
        assert path.exists()
    names = set(sa.inspect(sa.create_engine(f"sqlite:///{path}")).get_table_names())
    assert {"ra_job", "ra_metric", "ra_product", "ra_meta"} <= names
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = conn.execute("SELECT value FROM ra_meta WHERE key = 'schema_version'").fetchone()[0]
        assert version == str(SCHEMA_VERSION)
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(ra_metric)")}
    assert {"ix_ra_metric_image_name", "ix_ra_metric_job_id", "ix_ra_metric_name"} <= indexes
    # Opening it again finds the tables and the same schema version.
    with ResultsDatabase(path) as db:
        assert len(db.jobs()) == 0


def test_open_results(tmp_path):
    path = tmp_path / "ra.sqlite3"
    with pytest.raises(FileNotFoundError):
        open_results(path)  # a notebook's mistyped path is not a new database
    assert not path.exists()
    with open_results(str(path), create=True) as db:
        add_job(db, "j1", submit=T0)
    with open_results(path) as db:
        assert db.job("j1")["pipeline"] == "sfm"
    with open_results(f"sqlite:///{path}") as db:
        assert len(db.jobs()) == 1


def test_schema_version_mismatch(tmp_path):
    sqlite_db(tmp_path).close()
    with sqlite3.connect(tmp_path / "ra.sqlite3") as conn:
        conn.execute("UPDATE ra_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(RuntimeError, match="schema version 999"):
        sqlite_db(tmp_path)


def test_not_a_results_database(tmp_path):
    path = tmp_path / "other.sqlite3"
    sqlite3.connect(path).close()
    with pytest.raises(RuntimeError, match="no results tables"):
        open_results(path)


def test_close(tmp_path):
    with sqlite_db(tmp_path) as db:
        assert not db.closed
    assert db.closed
    db.close()  # again: nothing
    with pytest.raises(RuntimeError, match="closed"):
        db.jobs()


def test_in_memory():
    with ResultsDatabase("sqlite://") as db:
        add_job(db, "j1", submit=T0)
        db.record_metrics("j1", "img", {"a": 1.0})
        assert list(db.metrics()["a"]) == [1.0]


def test_record_job_insert_then_update(db):
    db.record_job(
        "j1",
        instrument="LSSTCam",
        pipeline="sfm",
        data_id={"obsid": "MC_O_20251115_000226", "detectors": [94]},
        image_name="MC_O_20251115_000226",
        trigger="autonomous",
        state="queued",
        submit_time=T0,
        config={"threshold": 5.0},
    )
    job = db.job("j1")
    assert job["state"] == "queued"
    assert job["success"] is None and job["end_time"] is None

    db.record_job("j1", state="running", start_time=T0 + 0.5)
    db.record_job(
        "j1",
        state="succeeded",
        success=True,
        exit_code=0,
        end_time=T0 + 2.5,
        duration=2.0,
        result='{"nStars": 512}',
    )
    job = db.job("j1")
    # Every field given in any call is there: updates merge, they do not erase.
    assert job == {
        "job_id": "j1",
        "instrument": "LSSTCam",
        "pipeline": "sfm",
        "data_id": {"obsid": "MC_O_20251115_000226", "detectors": [94]},
        "image_name": "MC_O_20251115_000226",
        "trigger": "autonomous",
        "state": "succeeded",
        "success": True,
        "exit_code": 0,
        "error_report": None,
        "submit_time": T0,
        "start_time": T0 + 0.5,
        "end_time": T0 + 2.5,
        "duration": 2.0,
        "result": {"nStars": 512},
        "config": {"threshold": 5.0},
    }
    # Full precision of TAI times (double, not single).
    assert db.jobs()["start_time"][0] == T0 + 0.5

    # A job recorded with no fields exists; recording it again with none changes nothing.
    db.record_job("j2")
    db.record_job("j2")
    assert db.job("j2")["state"] is None
    assert len(db.jobs()) == 2


def test_record_job_rejects_bad_fields(db):
    with pytest.raises(ValueError, match="state='done'"):
        db.record_job("j1", state="done")
    with pytest.raises(ValueError, match="trigger"):
        db.record_job("j1", trigger="manual")
    with pytest.raises(ValueError, match="unknown job fields.*color"):
        db.record_job("j1", color="red")
    assert db.job("j1") is None


def test_unknown_job(db):
    assert db.job("nope") is None
    with pytest.raises(ValueError, match="record_job"):
        db.record_metrics("nope", "img", {"a": 1.0})
    with pytest.raises(ValueError, match="record_job"):
        db.record_product("nope", "img", "/tmp/x.png", created=T0)


def test_metrics_round_trip(db):
    add_job(db, "j1", submit=T0, image="img1")
    n = db.record_metrics(
        "j1",
        "img1",
        metrics={"psfFwhm": 0.71, "nan": float("nan"), "none": None, "flag": True, "n": np.int64(7), "band": "r"},
        detector_metrics=[
            {"detector": 94, "detectorName": "R22_S11", "psfFwhm": 0.70, "nStars": 512, "saturated": False},
            {"detector": np.int32(3), "detectorName": "R00_S10", "psfFwhm": np.float32(0.5), "note": "edge"},
        ],
    )
    assert n == 5 + 3 + 1  # "band", "note" and the detector names skipped

    table = db.metrics()
    assert table.colnames == WIDE_KEY_COLUMNS + ["flag", "n", "nStars", "nan", "none", "psfFwhm", "saturated"]
    assert len(table) == 3
    # The per-image row first, then detectors in order.
    assert list(table["detector"].mask) == [True, False, False]
    assert list(table["detector"][1:]) == [3, 94]
    assert set(table["job_id"]) == {"j1"} and set(table["pipeline"]) == {"sfm"}
    assert set(table["image_name"]) == {"img1"}
    assert list(table["end_time"]) == [T0 + 3] * 3

    image, det3, det94 = table
    assert image["psfFwhm"] == 0.71 and image["flag"] == 1.0 and image["n"] == 7.0
    assert math.isnan(image["nan"]) and math.isnan(image["none"])  # NaN and None stored as NULL
    assert math.isnan(image["nStars"])  # not measured per image
    assert det94["psfFwhm"] == 0.70 and det94["nStars"] == 512 and det94["saturated"] == 0.0
    assert det3["psfFwhm"] == pytest.approx(0.5) and math.isnan(det3["nStars"])
    for name in ("flag", "n", "nStars", "nan", "none", "psfFwhm", "saturated"):
        assert table[name].dtype == np.float64

    # Recording the same result again replaces it rather than adding rows.
    db.record_metrics("j1", "img1", {"psfFwhm": 0.8}, [{"detector": 94, "psfFwhm": 0.9}])
    table = db.metrics(names=["psfFwhm"])
    assert list(table["psfFwhm"]) == [0.8, pytest.approx(0.5), 0.9]
    # Recording only some detectors keeps the others and the per-image row.
    db.record_metrics("j1", "img1", detector_metrics=[{"detector": 3, "psfFwhm": 0.6}])
    assert list(db.metrics(names="psfFwhm")["psfFwhm"]) == [0.8, 0.6, 0.9]


def test_metrics_rejects_rows_without_detector(db):
    add_job(db, "j1", submit=T0)
    with pytest.raises(ValueError, match=r"detector_metrics\[1\]"):
        db.record_metrics("j1", "img", {"a": 1.0}, [{"detector": 1, "a": 1.0}, {"detectorName": "R22_S11"}])
    assert len(db.metrics()) == 0  # nothing of the call was written
    with pytest.raises(ValueError, match="integer 'detector'"):
        db.record_metrics("j1", "img", detector_metrics=[{"detector": "94", "a": 1.0}])
    assert db.record_metrics("j1", "img", {"label": "x"}) == 0  # nothing numeric: nothing to do


def test_metrics_reserved_names_skipped(db):
    add_job(db, "j1", submit=T0)
    db.record_metrics("j1", "img", {"end_time": 5.0, "a": 1.0})
    table = db.metrics()
    assert table.colnames == WIDE_KEY_COLUMNS + ["a"]
    assert table["end_time"][0] == T0 + 3
    with pytest.raises(ValueError, match="end_time"):
        db.metrics(names=["a", "end_time"])


def fill_for_filters(db: ResultsDatabase) -> None:
    """Three jobs: two sfm on two images, one spectrum; per-image and per-detector metrics."""
    add_job(db, "sfm-1", submit=T0, image="img1")
    add_job(db, "sfm-2", submit=T0 + 100, image="img2")
    add_job(db, "spec-1", submit=T0 + 200, image="img2", pipeline="spectrum", state="failed", success=False)
    db.record_metrics(
        "sfm-1", "img1", {"zeroPoint": 31.0}, [{"detector": 1, "fwhm": 0.7}, {"detector": 2, "fwhm": 0.8}]
    )
    db.record_metrics("sfm-2", "img2", {"zeroPoint": 31.5}, [{"detector": 1, "fwhm": 0.9}])
    db.record_metrics("spec-1", "img2", {"lineWidth": 4.0})


def test_metrics_filters(db):
    fill_for_filters(db)
    assert len(db.metrics()) == 6
    by_pipeline = db.metrics(pipeline="spectrum")
    assert list(by_pipeline["job_id"]) == ["spec-1"]
    assert by_pipeline.colnames == WIDE_KEY_COLUMNS + ["lineWidth"]
    assert list(db.metrics(pipeline=["sfm", "spectrum"])["job_id"]) == ["sfm-1"] * 3 + ["sfm-2"] * 2 + ["spec-1"]

    img2 = db.metrics(image_name="img2")
    assert list(img2["job_id"]) == ["sfm-2", "sfm-2", "spec-1"]

    detectors = db.metrics(per_detector=True)
    assert not detectors["detector"].mask.any() and list(detectors["detector"]) == [1, 2, 1]
    assert detectors.colnames == WIDE_KEY_COLUMNS + ["fwhm"]
    images = db.metrics(per_detector=False)
    assert images["detector"].mask.all() and list(images["job_id"]) == ["sfm-1", "sfm-2", "spec-1"]

    # names: only those columns, in that order, also a name with no data.
    named = db.metrics(names=["zeroPoint", "missing"])
    assert named.colnames == WIDE_KEY_COLUMNS + ["zeroPoint", "missing"]
    assert list(named["zeroPoint"]) == [31.0, 31.5] and np.isnan(named["missing"]).all()

    # since/until on the job's submit time, as in jobs().
    assert list(db.metrics(since=T0 + 100, per_detector=False)["job_id"]) == ["sfm-2", "spec-1"]
    assert list(db.metrics(until=T0 + 100, per_detector=False)["job_id"]) == ["sfm-1"]
    assert list(db.metrics(job_id="sfm-2", per_detector=False)["zeroPoint"]) == [31.5]
    assert len(db.metrics(image_name="img3")) == 0


def test_jobs_filters(db):
    fill_for_filters(db)
    db.record_job("queued-1", pipeline="sfm", image_name="img3", state="queued", submit_time=T0 + 300)

    assert list(db.jobs()["job_id"]) == ["queued-1", "spec-1", "sfm-2", "sfm-1"]
    assert list(db.jobs(pipeline="spectrum")["job_id"]) == ["spec-1"]
    assert list(db.jobs(image_name="img2")["job_id"]) == ["spec-1", "sfm-2"]
    assert list(db.jobs(state="failed")["job_id"]) == ["spec-1"]
    assert list(db.jobs(state=["queued", "failed"])["job_id"]) == ["queued-1", "spec-1"]
    assert list(db.jobs(success=True)["job_id"]) == ["sfm-2", "sfm-1"]
    assert list(db.jobs(success=False)["job_id"]) == ["spec-1"]  # not the queued job: it has no outcome yet
    assert list(db.jobs(since=T0 + 100)["job_id"]) == ["queued-1", "spec-1", "sfm-2"]
    assert list(db.jobs(since=T0 + 100, until=T0 + 200)["job_id"]) == ["sfm-2"]
    assert list(db.jobs(pipeline="sfm", state="succeeded", since=T0 + 50)["job_id"]) == ["sfm-2"]

    table = db.jobs(image_name="img3")
    assert table.colnames == JOB_COLUMNS
    row = table[0]
    assert row["state"] == "queued" and row["trigger"] == "" and math.isnan(row["end_time"])
    assert table["success"].mask[0] and table["exit_code"].mask[0]
    failed = db.jobs(state="failed")
    assert failed["success"][0] == np.False_ and failed["exit_code"][0] == 0
    assert failed["data_id"][0] == '{"obsid": "img2"}'


def test_jobs_ordering_and_limit(db):
    # Recorded out of order; one with no submit time, which sorts last either way.
    for i in (3, 0, 4, 1, 2):
        add_job(db, f"j{i}", submit=T0 + i)
    db.record_job("no-time", pipeline="sfm")
    assert list(db.jobs()["job_id"]) == ["j4", "j3", "j2", "j1", "j0", "no-time"]
    assert list(db.jobs(newest_first=False)["job_id"]) == ["j0", "j1", "j2", "j3", "j4", "no-time"]
    assert list(db.jobs(limit=2)["job_id"]) == ["j4", "j3"]
    assert list(db.jobs(limit=2, newest_first=False)["job_id"]) == ["j0", "j1"]
    assert list(db.jobs(pipeline="sfm", limit=3)["job_id"]) == ["j4", "j3", "j2"]


def test_products(db):
    add_job(db, "j1", submit=T0, image="img1")
    add_job(db, "j2", submit=T0 + 10, image="img2")
    first = db.record_product(
        "j1",
        "img1",
        "/data/ra/j1/fwhm.png",
        url="https://summit/ra/j1/fwhm.png",
        mime_type="image/png",
        byte_size=12_345,
        checksum="sha256:abc",
        description="FWHM map",
        created=T0 + 3,
    )
    db.record_product("j2", "img2", "/data/ra/j2/table.ecsv", mime_type="text/plain", created=T0 + 13)
    db.record_product("j1", "img1", "/data/ra/j1/zp.png", created=T0 + 4)

    table = db.products()
    assert table.colnames == PRODUCT_COLUMNS
    assert list(table["path"]) == ["/data/ra/j1/fwhm.png", "/data/ra/j1/zp.png", "/data/ra/j2/table.ecsv"]
    row = table[0]
    assert row["id"] == first and row["job_id"] == "j1" and row["image_name"] == "img1"
    assert row["url"] == "https://summit/ra/j1/fwhm.png" and row["mime_type"] == "image/png"
    assert row["byte_size"] == 12_345 and row["checksum"] == "sha256:abc" and row["description"] == "FWHM map"
    assert row["created"] == T0 + 3
    assert table["byte_size"].mask[1]  # unknown size

    assert list(db.products(image_name="img2")["job_id"]) == ["j2"]
    assert list(db.products(job_id="j1")["path"]) == ["/data/ra/j1/fwhm.png", "/data/ra/j1/zp.png"]
    assert len(db.products(job_id="j1", image_name="img2")) == 0

    # created defaults to now (TAI: 37 s ahead of UTC these days).
    db.record_product("j2", "img2", "/data/ra/j2/now.png")
    assert db.products(job_id="j2")["created"][-1] > T0


def test_empty_database_returns_empty_tables(db):
    jobs = db.jobs()
    assert len(jobs) == 0 and jobs.colnames == JOB_COLUMNS
    metrics = db.metrics()
    assert len(metrics) == 0 and metrics.colnames == WIDE_KEY_COLUMNS
    named = db.metrics(names=["psfFwhm", "zeroPoint"])
    assert len(named) == 0 and named.colnames == WIDE_KEY_COLUMNS + ["psfFwhm", "zeroPoint"]
    products = db.products()
    assert len(products) == 0 and products.colnames == PRODUCT_COLUMNS
    # Empty columns still have their types, so a notebook's code works on them unchanged.
    assert jobs["submit_time"].dtype == np.float64 and named["psfFwhm"].dtype == np.float64
    assert metrics["detector"].dtype == np.int64


def test_second_instance_reads_while_first_writes(tmp_path):
    path = tmp_path / "ra.sqlite3"
    with ResultsDatabase(path, busy_timeout=2.0) as writer:
        add_job(writer, "j1", submit=T0)
        writer.record_metrics("j1", "img", {"a": 1.0})
        with open_results(path) as reader:
            assert list(reader.jobs()["job_id"]) == ["j1"]
            assert list(reader.metrics()["a"]) == [1.0]

            # A notebook in the middle of a read (an open read transaction) does not block the
            # writer, and keeps its snapshot until it ends: that is WAL.
            raw = sqlite3.connect(path, isolation_level=None, timeout=0.1)
            try:
                raw.execute("BEGIN")
                assert raw.execute("SELECT count(*) FROM ra_job").fetchone()[0] == 1
                add_job(writer, "j2", submit=T0 + 1)
                writer.record_metrics("j2", "img", {"a": 2.0})
                assert raw.execute("SELECT count(*) FROM ra_job").fetchone()[0] == 1
                raw.execute("COMMIT")
                assert raw.execute("SELECT count(*) FROM ra_job").fetchone()[0] == 2
            finally:
                raw.close()

            assert list(reader.jobs()["job_id"]) == ["j2", "j1"]
            assert list(reader.metrics()["a"]) == [1.0, 2.0]


def test_concurrent_writes(tmp_path):
    n_jobs, n_threads = 200, 4
    with sqlite_db(tmp_path) as db:
        barrier = threading.Barrier(n_threads)

        def run(thread: int) -> None:
            barrier.wait()  # all threads write at once
            for i in range(thread, n_jobs, n_threads):
                job_id = f"job-{i:03d}"
                db.record_job(job_id, pipeline="sfm", image_name=f"img{i}", state="queued", submit_time=T0 + i)
                db.record_job(job_id, state="running", start_time=T0 + i + 0.1)
                db.record_metrics(job_id, f"img{i}", {"i": i}, [{"detector": d, "fwhm": d + i} for d in range(3)])
                db.record_product(job_id, f"img{i}", f"/data/{job_id}.png", created=T0 + i + 1)
                db.record_job(job_id, state="succeeded", success=True, end_time=T0 + i + 1)

        with ThreadPoolExecutor(n_threads) as pool:
            for future in [pool.submit(run, t) for t in range(n_threads)]:
                future.result()

        jobs = db.jobs(newest_first=False)
        assert list(jobs["job_id"]) == [f"job-{i:03d}" for i in range(n_jobs)]
        assert set(jobs["state"]) == {"succeeded"} and jobs["success"].all()
        assert not np.isnan(jobs["start_time"]).any()  # the update in the middle landed too
        metrics = db.metrics()
        assert len(metrics) == n_jobs * 4  # one per-image and three detector rows each
        per_image = metrics[metrics["detector"].mask]
        assert sorted(per_image["i"]) == list(range(n_jobs))
        detectors = metrics[~metrics["detector"].mask]
        assert list(detectors["fwhm"]) == [d + i for i in range(n_jobs) for d in range(3)]
        assert len(db.products()) == n_jobs


def test_concurrent_record_of_the_same_new_job(tmp_path):
    # Writers racing to insert the same new job: the loser updates instead of failing.
    with sqlite_db(tmp_path) as db:
        fields = ["pipeline", "image_name", "instrument", "error_report"]
        barrier = threading.Barrier(len(fields))

        def run(field: str) -> None:
            barrier.wait()
            db.record_job("shared", **{field: field})

        with ThreadPoolExecutor(len(fields)) as pool:
            list(pool.map(run, fields))
        job = db.job("shared")
        assert {k: job[k] for k in fields} == {k: k for k in fields}
        assert len(db.jobs()) == 1


def test_unfinished_jobs(db):
    """The queued and running jobs of one instrument, oldest first (what a restarted CSC must end)."""
    add_job(db, "done", submit=T0)
    add_job(db, "running", submit=T0 + 2, state="running", success=None, exit_code=None, end_time=None)
    add_job(db, "queued", submit=T0 + 1, state="queued", success=None, exit_code=None, start_time=None)
    add_job(db, "other-instrument", submit=T0, state="queued", instrument="LATISS")
    add_job(db, "failed", submit=T0 + 3, state="failed", success=False, exit_code=2)
    jobs = db.unfinished_jobs("LSSTCam")
    assert [job["job_id"] for job in jobs] == ["queued", "running"]
    assert jobs[0]["state"] == "queued" and jobs[0]["start_time"] is None
    assert jobs[1]["data_id"] == {"obsid": "MC_O_20251115_000001"}  # decoded, as job() gives it
    assert [job["job_id"] for job in db.unfinished_jobs("LATISS")] == ["other-instrument"]
    assert db.unfinished_jobs("LSSTComCam") == []
