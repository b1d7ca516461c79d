"""The results database's image record (``ra_image``), on SQLite files and on a PostgreSQL server of the tests' own."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from lsst.ts.rapidanalysis.results import IMAGE_STATES, IMAGE_TRIGGERS, SCHEMA_VERSION, ResultsDatabase, open_results
from lsst.ts.rapidanalysis.results import database as results_database

T0 = 1_763_000_000.0  # a TAI unix time in November 2025
IMAGE_COLUMNS = [
    "instrument",
    "image_name",
    "day_obs",
    "seq_num",
    "image_type",
    "filter",
    "exposure_time",
    "obs_time",
    "trigger",
    "end_readout_time",
    "first_detector_time",
    "visit_metrics_time",
    "n_expected",
    "n_done",
    "n_failed",
    "n_dropped",
    "state",
    "reason",
]


def heard(db: ResultsDatabase, name: str = "MC_O_20251115_000001", **fields) -> None:
    values = dict(
        day_obs=20251115,
        seq_num=int(name[-6:]),
        image_type="SCIENCE",
        filter="r_57",
        exposure_time=30.0,
        obs_time=T0,
        trigger="autonomous",
        end_readout_time=T0 + 0.5,
        n_expected=189,
        n_done=0,
        n_failed=0,
        n_dropped=0,
        state="processing",
    )
    values.update(fields)
    db.record_image("LSSTCam", name, **values)


def test_columns(db):
    assert [c.name for c in results_database.ra_image.columns] == IMAGE_COLUMNS
    with db._read() as conn:
        inspector = sa.inspect(conn)
        assert [c["name"] for c in inspector.get_columns("ra_image")] == IMAGE_COLUMNS
        assert inspector.get_pk_constraint("ra_image")["constrained_columns"] == ["instrument", "image_name"]
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("ra_image")}
        assert indexes["ix_ra_image_instrument_day_obs"] == ["instrument", "day_obs"]
        metric_indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("ra_metric")}
        assert metric_indexes["ix_ra_metric_image_detector_name"] == ["image_name", "detector", "name"]
    assert db.schema_version == SCHEMA_VERSION == 2
    assert IMAGE_STATES == ("processing", "complete", "partial", "failed", "dropped")
    assert IMAGE_TRIGGERS == ("autonomous", "command")


def test_record_image_insert_then_update(db):
    assert db.image_row("LSSTCam", "MC_O_20251115_000001") is None
    heard(db)
    row = db.image_row("LSSTCam", "MC_O_20251115_000001")
    assert row is not None and list(row) == IMAGE_COLUMNS
    assert row["state"] == "processing" and row["first_detector_time"] is None and row["reason"] is None
    assert row["obs_time"] == T0  # a Double: TAI seconds keep their microseconds
    # Only the fields given change.
    db.record_image(
        "LSSTCam",
        "MC_O_20251115_000001",
        first_detector_time=T0 + 20.123456,
        n_done=17,
        n_dropped=172,
        state="partial",
        reason="down-selected: 172 of 189 detectors dropped, pool of 17 workers",
    )
    row = db.image_row("LSSTCam", "MC_O_20251115_000001")
    assert row["first_detector_time"] == T0 + 20.123456
    assert (row["n_expected"], row["n_done"], row["n_failed"], row["n_dropped"]) == (189, 17, 0, 172)
    assert row["state"] == "partial" and row["reason"].startswith("down-selected")
    assert row["filter"] == "r_57" and row["end_readout_time"] == T0 + 0.5
    # Another instrument's image of the same name is another row.
    db.record_image("LATISS", "MC_O_20251115_000001", state="failed", reason="exit 3: raw not found")
    assert db.image_row("LATISS", "MC_O_20251115_000001")["state"] == "failed"
    assert db.image_row("LSSTCam", "MC_O_20251115_000001")["state"] == "partial"
    # No field at all: the row exists (inserted once).
    db.record_image("LSSTCam", "MC_O_20251115_000009")
    db.record_image("LSSTCam", "MC_O_20251115_000009")
    assert db.image_row("LSSTCam", "MC_O_20251115_000009")["state"] is None


def test_record_image_checks_fields(db):
    with pytest.raises(ValueError, match=r"unknown image fields \['colour'\]; allowed: day_obs"):
        db.record_image("LSSTCam", "MC_O_20251115_000001", colour="red")
    with pytest.raises(ValueError, match="state='done' is not one of processing, complete, partial, failed, dropped"):
        db.record_image("LSSTCam", "MC_O_20251115_000001", state="done")
    with pytest.raises(ValueError, match="trigger='catchup' is not one of autonomous, command"):
        db.record_image("LSSTCam", "MC_O_20251115_000001", trigger="catchup")
    assert db.image_row("LSSTCam", "MC_O_20251115_000001") is None


def test_images_of_a_night(db):
    for seq in (3, 1, 2):
        heard(db, f"MC_O_20251115_{seq:06d}")
    heard(db, "MC_O_20251116_000001", day_obs=20251116)
    db.record_image("LATISS", "AT_O_20251115_000001", day_obs=20251115, seq_num=1)
    night = db.images("LSSTCam", 20251115)
    assert [row["image_name"] for row in night] == [f"MC_O_20251115_{s:06d}" for s in (1, 2, 3)]
    assert [row["image_name"] for row in db.images("LSSTCam", 20251116)] == ["MC_O_20251116_000001"]
    assert db.images("LSSTCam", 20251117) == []
    assert [row["instrument"] for row in db.images("LATISS", 20251115)] == ["LATISS"]


def test_in_a_batch_with_jobs(db):
    """The CSC's writer puts image rows in the same transactions as job rows."""
    with db.batch():
        db.record_job("j1", instrument="LSSTCam", image_name="MC_O_20251115_000001", state="queued")
        heard(db)
    assert db.image_row("LSSTCam", "MC_O_20251115_000001") is not None
    with pytest.raises(ValueError), db.batch():
        heard(db, "MC_O_20251115_000002")
        db.record_image("LSSTCam", "MC_O_20251115_000002", state="bad")
    assert db.image_row("LSSTCam", "MC_O_20251115_000002") is None  # rolled back together
    # Reads inside a batch see its writes (a read-modify-write in the CSC's writer thread).
    with db.batch():
        heard(db, "MC_O_20251115_000003", n_failed=1)
        row = db.image_row("LSSTCam", "MC_O_20251115_000003")
        assert row is not None and row["n_failed"] == 1
        db.record_image("LSSTCam", "MC_O_20251115_000003", n_failed=row["n_failed"] + 1)
    assert db.image_row("LSSTCam", "MC_O_20251115_000003")["n_failed"] == 2


def _make_version_1(path) -> None:
    """A database as schema version 1 wrote it: no ra_image, no page indexes, version 1."""
    ResultsDatabase(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE ra_image")
        for index in ("ix_ra_job_image_pipeline", "ix_ra_metric_image_detector_name", "ix_ra_metric_job_detector"):
            conn.execute(f"DROP INDEX {index}")
        conn.execute("UPDATE ra_meta SET value = '1' WHERE key = 'schema_version'")
        conn.execute(
            "INSERT INTO ra_job (job_id, instrument, image_name, state) VALUES ('old', 'LSSTCam', 'img', 'succeeded')"
        )


def test_version_1_read_as_it_is(tmp_path):
    """Opened without create (a page, a notebook): read, not upgraded; no image rows, writing them says why."""
    path = tmp_path / "ra.sqlite3"
    _make_version_1(path)
    with open_results(path) as db:
        assert db.schema_version == 1 and not db.has_images
        assert db.job("old")["state"] == "succeeded"
        assert db.image_row("LSSTCam", "img") is None
        assert db.images("LSSTCam", 20251115) == []
        assert db.images_since() == float("inf")
        with pytest.raises(RuntimeError, match="schema version 1, without ra_image: open it with create=True"):
            heard(db)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM ra_meta WHERE key = 'schema_version'").fetchone()[0] == "1"


def test_version_1_upgraded_on_open(tmp_path):
    """Opened with create (the CSC): ra_image and the indexes are added, the jobs kept, the time noted."""
    path = tmp_path / "ra.sqlite3"
    _make_version_1(path)
    with ResultsDatabase(path) as db:
        assert db.schema_version == 2 and db.has_images
        assert db.job("old")["state"] == "succeeded"
        since = db.images_since()
        assert since is not None and since > T0
        heard(db)
        assert db.image_row("LSSTCam", "MC_O_20251115_000001")["n_expected"] == 189
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM ra_meta WHERE key = 'schema_version'").fetchone()[0] == "2"
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(ra_metric)")}
        assert {"ix_ra_metric_image_detector_name", "ix_ra_metric_job_detector"} <= indexes
    # Opened again: nothing more to do, the time of the upgrade kept.
    with ResultsDatabase(path) as db:
        assert db.images_since() == since
    # A database made at version 2 has images for all its jobs.
    with ResultsDatabase(tmp_path / "new.sqlite3") as db:
        assert db.images_since() is None


def test_unknown_version_still_refused(tmp_path):
    path = tmp_path / "ra.sqlite3"
    ResultsDatabase(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE ra_meta SET value = '7' WHERE key = 'schema_version'")
    with pytest.raises(RuntimeError, match=r"schema version 7; this code uses 2 \(and opens versions 1, 2\)"):
        ResultsDatabase(path)


def test_defaults_fill_only_what_is_unknown(db):
    """A guess (processData's image time) never replaces what is stored; it fills a gap or a new row."""
    db.record_image("LSSTCam", "MC_O_20251115_000001", defaults={"obs_time": T0 + 99}, state="processing")
    assert db.image_row("LSSTCam", "MC_O_20251115_000001")["obs_time"] == T0 + 99  # a new row: the guess
    db.record_image("LSSTCam", "MC_O_20251115_000001", obs_time=T0)
    db.record_image("LSSTCam", "MC_O_20251115_000001", defaults={"obs_time": T0 + 500}, n_done=1)
    row = db.image_row("LSSTCam", "MC_O_20251115_000001")
    assert row["obs_time"] == T0 and row["n_done"] == 1
    with pytest.raises(ValueError, match="unknown image fields"):
        db.record_image("LSSTCam", "MC_O_20251115_000001", defaults={"colour": "red"})
