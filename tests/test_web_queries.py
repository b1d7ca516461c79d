"""The page's reads (`web.queries`) on real SQLite files and on a PostgreSQL server of the tests' own."""

from __future__ import annotations

import json
import sqlite3

import pytest
import sqlalchemy as sa

from lsst.ts.rapidanalysis.results.database import ResultsDatabase, open_results
from lsst.ts.rapidanalysis.web.queries import HEADLINE_METRICS, ImagePage, NightRow, PageQueries

T0 = 1_763_000_000.0
DAY = 20251115
V1, V2, CMD = "MC_O_20251115_000001", "MC_O_20251115_000002", "MC_O_20251115_000003"


def add_job(db: ResultsDatabase, job_id: str, image: str, pipeline: str, detector: int | None = None, **kw) -> None:
    data_id: dict = {"obsid": image, "dayObs": DAY, "seqNum": int(image[-6:])} if image[-6:].isdigit() else {}
    if detector is not None:
        data_id["detectors"] = [detector]
    fields = dict(
        instrument="LSSTCam",
        pipeline=pipeline,
        image_name=image,
        data_id=data_id,
        trigger="autonomous",
        state="succeeded",
        success=True,
        exit_code=0,
        submit_time=T0,
        start_time=T0 + 1,
        end_time=T0 + 5,
        duration=4.0,
    )
    fields.update(kw)
    db.record_job(job_id, **fields)


def visit(db: ResultsDatabase, image: str, t: float, fwhm: float, n_detectors: int = 3) -> None:
    """An autonomous visit as the CSC records it: sfm per detector, its gather, mount_torque."""
    db.record_image(
        "LSSTCam",
        image,
        day_obs=DAY,
        seq_num=int(image[-6:]),
        image_type="OBJECT",
        filter="r_57",
        exposure_time=30.0,
        obs_time=t,
        trigger="autonomous",
        end_readout_time=t + 0.5,
        first_detector_time=t + 20.5,
        visit_metrics_time=t + 30.5,
        n_expected=n_detectors + 1,
        n_done=n_detectors + 1,
        n_failed=0,
        n_dropped=0,
        state="complete",
    )
    for d in range(n_detectors):
        job_id = f"{image}-sfm-{d}"
        add_job(db, job_id, image, "sfm", d, end_time=t + 20 + d)
        row = {"psfFwhm": fwhm + 0.1 * d, "skyBg": 100.0 + d, "e1": 0.01}
        # As sfm records them: the detector's row, and the same values as the job's own metrics.
        db.record_metrics(job_id, image, row, [{"detector": d, **row}])
    add_job(db, f"{image}-gather", image, "sfm_gather", end_time=t + 30)
    db.record_metrics(
        f"{image}-gather", image, {"psfFwhmMean": fwhm + 0.1, "skyBgMedian": 101.0, "ellipticityMedian": 0.05}
    )
    db.record_product(f"{image}-gather", image, f"/out/{image}/fwhm.png", url="fwhm.png", mime_type="image/png")
    add_job(db, f"{image}-mount", image, "mount_torque", end_time=t + 25)
    db.record_metrics(f"{image}-mount", image, {"imageImpactRms": 0.12, "azRms": float("nan")})


@pytest.fixture
def night(db: ResultsDatabase) -> PageQueries:
    visit(db, V1, T0, 0.8)
    visit(db, V2, T0 + 60, 0.9)
    # V2 gathered again later: the re-gather's value counts.
    add_job(db, f"{V2}-regather", V2, "sfm_gather", end_time=T0 + 200)
    db.record_metrics(f"{V2}-regather", V2, {"psfFwhmMean": 0.95})
    # A processData that failed: no endReadout, latency from obs_time (when the job was made).
    db.record_image(
        "LSSTCam",
        CMD,
        day_obs=DAY,
        seq_num=3,
        obs_time=T0 + 100,
        trigger="command",
        n_expected=1,
        n_done=0,
        n_failed=1,
        n_dropped=0,
        state="failed",
        reason="1 failed: mount_torque: exit 3: raw not found",
    )
    add_job(db, f"{CMD}-m", CMD, "mount_torque", trigger="command", state="failed", success=False, exit_code=3)
    # Another night, another instrument.
    db.record_image("LSSTCam", "MC_O_20251116_000001", day_obs=20251116, seq_num=1, state="processing")
    db.record_image("LATISS", "AT_O_20251115_000001", day_obs=DAY, seq_num=1, state="complete")
    return PageQueries(db)


def test_instruments_and_days(night: PageQueries) -> None:
    assert night.instruments() == ["LATISS", "LSSTCam"]
    assert night.days("LSSTCam") == [20251116, DAY]
    assert night.days("LATISS") == [DAY]
    assert night.days("LSSTComCam") == []


def test_night_rows(night: PageQueries) -> None:
    rows = night.night("LSSTCam", DAY)
    assert [r.image_name for r in rows] == [CMD, V2, V1]  # newest first
    cmd, v2, v1 = rows
    assert list(v1.metrics) == list(HEADLINE_METRICS)
    assert v1.metrics["FWHM"] == pytest.approx(0.9) and v1.metrics["Mount impact"] == 0.12
    assert v1.metrics["Ellipticity"] == 0.05 and v1.metrics["Sky"] == 101.0
    assert v1.metrics["Continuum"] is None and v1.metrics["t_eff"] is None
    assert v2.metrics["FWHM"] == 0.95  # the later gather
    assert v1.latency_first_detector == pytest.approx(20.0) and v1.latency_visit_metrics == pytest.approx(30.0)
    assert (v1.state, v1.n_expected, v1.n_done, v1.image_type, v1.filter) == ("complete", 4, 4, "OBJECT", "r_57")
    assert cmd.state == "failed" and cmd.reason.startswith("1 failed") and cmd.latency_first_detector is None
    assert all(m is None for m in cmd.metrics.values())
    # JSON-ready: no NaN anywhere.
    json.dumps([r.as_dict() for r in rows], allow_nan=False)
    assert v1.as_dict()["metrics"]["FWHM"] == pytest.approx(0.9)
    assert night.night("LSSTCam", 20251117) == []


def test_night_row(night: PageQueries) -> None:
    row = night.night_row("LSSTCam", V1)
    assert isinstance(row, NightRow) and row == night.night("LSSTCam", DAY)[2]
    assert night.night_row("LSSTCam", "MC_O_20251115_000099") is None
    assert night.night_row("LSSTCam", "not-an-obsid") is None


def test_image_page(night: PageQueries) -> None:
    page = night.image("LSSTCam", V1)
    assert isinstance(page, ImagePage) and page.row.image_name == V1
    # Per-image metrics of jobs on the whole image; sfm's per-detector values are not visit metrics.
    assert page.visit_metrics == {
        "azRms": None,
        "ellipticityMedian": 0.05,
        "imageImpactRms": 0.12,
        "psfFwhmMean": pytest.approx(0.9),
        "skyBgMedian": 101.0,
    }
    assert sorted(page.detector_metrics) == [0, 1, 2]
    assert page.detector_metrics[2] == {"e1": 0.01, "psfFwhm": pytest.approx(1.0), "skyBg": 102.0}
    assert [(j["pipeline"], j["detector"]) for j in page.jobs] == [
        ("mount_torque", None),
        ("sfm", 0),
        ("sfm", 1),
        ("sfm", 2),
        ("sfm_gather", None),
    ]
    gather = page.jobs[-1]
    assert gather["state"] == "succeeded" and gather["exit_code"] == 0 and gather["duration"] == 4.0
    assert gather["end_time"] == T0 + 30 and gather["trigger"] == "autonomous"
    (product,) = page.products
    assert product["path"] == f"/out/{V1}/fwhm.png" and product["mime_type"] == "image/png"
    assert product["job_id"] == f"{V1}-gather" and product["url"] == "fwhm.png"
    failed = night.image("LSSTCam", CMD)
    assert failed is not None and failed.jobs[0]["exit_code"] == 3 and failed.visit_metrics == {}
    assert night.image("LSSTCam", "MC_O_20251115_000099") is None


def test_trends(night: PageQueries) -> None:
    names = night.metric_names("LSSTCam", DAY)
    assert names == ["azRms", "ellipticityMedian", "imageImpactRms", "psfFwhmMean", "skyBgMedian"]
    assert night.trend("LSSTCam", DAY, "psfFwhmMean") == [
        (T0, pytest.approx(0.9), V1),
        (T0 + 60, 0.95, V2),
    ]
    assert night.trend("LSSTCam", DAY, "psfFwhm") == []  # a per-detector metric: not a trend of the night
    assert night.trend("LSSTCam", DAY, "azRms") == []  # NaN: left out
    assert night.trend("LSSTCam", 20251117, "psfFwhmMean") == []
    assert night.metric_names("LSSTCam", 20251117) == []
    values = night.detector_values("LSSTCam", V2, "psfFwhm")
    assert values == {0: pytest.approx(0.9), 1: pytest.approx(1.0), 2: pytest.approx(1.1)}
    assert night.detector_values("LSSTCam", V2, "nothing") == {}


def _version_1_night(path) -> None:
    """A database written at schema version 1 (no image rows): two images known only from their jobs."""
    with ResultsDatabase(path) as db:
        for d in range(2):
            add_job(db, f"old-{d}", V1, "sfm", d, end_time=T0 + 10 + d)
        add_job(db, "old-g", V1, "sfm_gather", end_time=T0 + 20)
        db.record_metrics("old-g", V1, {"psfFwhmMean": 0.7})
        add_job(db, "old-f", V2, "sfm", 0, submit_time=T0 + 50, state="failed", success=False, exit_code=3)
        add_job(db, "old-grp", "2025-11-15T01:02:03", "sfm", 0)  # a group id: not an image of the night
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE ra_image")
        conn.execute("UPDATE ra_meta SET value = '1' WHERE key = 'schema_version'")


def _check_old_rows(queries: PageQueries) -> None:
    assert queries.instruments() == ["LSSTCam"] and DAY in queries.days("LSSTCam")
    rows = {r.image_name: r for r in queries.night("LSSTCam", DAY)}
    old, failed = rows[V1], rows[V2]
    assert (old.state, old.n_expected, old.n_done, old.seq_num) == ("complete", 3, 3, 1)
    assert old.metrics["FWHM"] == 0.7 and old.obs_time == T0 and old.latency_first_detector == 10.0
    assert old.latency_visit_metrics is None and old.image_type is None
    assert failed.state == "failed" and failed.n_failed == 1 and failed.reason
    assert queries.night_row("LSSTCam", V1) == old
    page = queries.image("LSSTCam", V1)
    assert page is not None and page.visit_metrics == {"psfFwhmMean": 0.7} and len(page.jobs) == 3
    assert queries.trend("LSSTCam", DAY, "psfFwhmMean") == [(T0, 0.7, V1)]


def test_version_1_database_read_as_it_is(tmp_path) -> None:
    """The page on a file from before the image record (opened without create): its images from their jobs."""
    path = tmp_path / "ra.sqlite3"
    _version_1_night(path)
    with open_results(path) as db:
        assert not db.has_images
        _check_old_rows(PageQueries(db))


def test_version_1_database_upgraded(tmp_path) -> None:
    """Upgraded by a CSC: the old images from their jobs, the new ones from their rows, side by side."""
    path = tmp_path / "ra.sqlite3"
    _version_1_night(path)
    with ResultsDatabase(path) as db:
        assert db.has_images
        queries = PageQueries(db)
        _check_old_rows(queries)
        visit(db, CMD, T0 + 100, 0.8)  # a new image, after the upgrade
        # (the old images are kept once read: they cannot change)
        rows = PageQueries(db).night("LSSTCam", DAY)
        assert [r.image_name for r in rows] == [CMD, V2, V1] and rows[0].n_expected == 4


def test_query_plans_use_the_indexes(db: ResultsDatabase, night: PageQueries) -> None:
    """The night's and an image's queries read ranges of indexes, not whole tables (SQLite's plans)."""
    if not db.is_sqlite:
        pytest.skip("PostgreSQL plans on a few rows are sequential scans by design; bench/page.py --explain shows them")
    with db._read() as conn:

        def plan(sql: str, *params: object) -> str:
            return " | ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))

        night_plan = plan(
            "SELECT image_name, name, value FROM ra_metric WHERE image_name IN "
            "(SELECT image_name FROM ra_image WHERE instrument = ? AND day_obs = ?) "
            "AND detector IS NULL AND name IN ('psfFwhmMean', 'imageImpactRms') ORDER BY id",
            "LSSTCam",
            DAY,
        )
        assert "ix_ra_metric_image_detector_name" in night_plan, night_plan
        assert "ix_ra_image_instrument_day_obs" in night_plan, night_plan
        image_plan = plan("SELECT job_id, detector, name, value FROM ra_metric WHERE image_name = ? ORDER BY id", V1)
        assert "USING INDEX ix_ra_metric_image" in image_plan, image_plan
        jobs_plan = plan("SELECT job_id FROM ra_job WHERE image_name = ? AND instrument = ?", V1, "LSSTCam")
        assert "USING INDEX ix_ra_job_image" in jobs_plan, jobs_plan


def test_the_focal_plane_query_reads_the_image_s_rows_not_the_night_s(db: ResultsDatabase, night: PageQueries) -> None:
    """`detector_values` as it runs: SQLite without statistics took the name index (every image's rows)."""
    if not db.is_sqlite:
        pytest.skip("PostgreSQL plans with its statistics (ANALYZE); bench/page.py --explain shows them")
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if "ra_metric" in statement and "detector IS NOT NULL" in statement:
            statements.append((statement, parameters))

    engine = db._engine
    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        values = night.detector_values("LSSTCam", V1, "psfFwhm")
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    assert values and len(statements) == 1, (values, statements)
    statement, parameters = statements[0]
    with db._read() as conn:
        plan = " | ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))
    assert "ix_ra_metric_image" in plan and "ix_ra_metric_name" not in plan, plan
