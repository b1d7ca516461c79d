"""The page's reads on a full night: 1,000 LSSTCam visits × 189 detectors, on SQLite and PostgreSQL.

What it models: the results database of a night of LSSTCam autonomous processing, as the CSC
writes it. Per visit: its ``ra_image`` row; 189 ``sfm`` jobs, each with its detector's metrics
(sfm's telemetry fields, `pipelines.sfm_fields`) as per-detector rows and again as the job's own
per-image rows (as sfm records them); an ``sfm_gather`` job with the visit metrics (the headline
ones among them, ~70 values); a ``mount_torque`` job with its metrics; three product files. About
8 million metric rows and 191,000 job rows, loaded in bulk (SQLite ``executemany``, PostgreSQL
``COPY``), the indexes built after the load.

What it measures: `PageQueries.night` (the night's table) and `PageQueries.image` (an image's
page) of visits picked at random, median of repeated calls on a warm connection pool, on a SQLite
file and on a PostgreSQL server started for the run (`tests/postgres_server.py`: Debian's
binaries, a temporary directory, ``ANALYZE`` after the load as autovacuum would). Then the HTTP
round trip of the same pages through the page's app (`web.app.create_app`, Starlette's
TestClient, in process: routing, the query in a thread, the template). Last, `page_live`: a
jobResult's way to an open page (a CSC, ``rapid_analysis serve`` and Chromium, each its own
process). Targets (issue 16): the night table in under 1 s, the image page in under 0.3 s, on
both databases; a jobResult in the open page in under 1 s.

    python bench/page.py [--quick] [--visits 1000] [--detectors 189] [--no-postgres] [--explain] [--keep FILE]
                         [--live N | --no-live]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from benchlib import say
from lsst.ts.rapidanalysis.pipelines.sfm_fields import TELEMETRY_FIELDS
from lsst.ts.rapidanalysis.results.database import (
    ResultsDatabase,
    ra_image,
    ra_job,
    ra_metric,
    ra_product,
)
from lsst.ts.rapidanalysis.web.queries import HEADLINE_METRICS, PageQueries
from page_live import measure_live

# The tests' PostgreSQL server helper, shared rather than copied.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from postgres_server import PostgresUnavailable, running_postgres  # noqa: E402

INSTRUMENT = "LSSTCam"
DAY = 20251115
T0 = 1_763_240_400.0  # 2025-11-15T21:00 TAI: the night's first visit
CADENCE = 34.0  # s between visits (30 s exposure + readout and slew)
SFM_METRICS = [f for f in TELEMETRY_FIELDS if f not in ("detector", "detectorName")]
# The gather's visit metrics: sfm_gather's headline values and min/median/max of each detector metric.
GATHER_METRICS = [
    "nDetectors",
    "psfFwhmMean",
    "psfFwhmMedian",
    "psfFwhmMin",
    "psfFwhmMax",
    "psfFwhmStandardized",
    "psfGradient",
    "e1Median",
    "e2Median",
    "ellipticityMedian",
    "skyBgMedian",
    "zeroPointMedian",
    "nPsfStarTotal",
    "effTimeMedian",
    "zeroPointRealMedian",
    "witnessPsfFwhm",
] + [f"{m}_{how}" for m in SFM_METRICS[:17] for how in ("min", "median", "max")]
MOUNT_METRICS = [
    "azRms",
    "elRms",
    "rotRms",
    "camHexRms",
    "m2HexRms",
    "imageAzRms",
    "imageElRms",
    "imageRotRms",
    "imageImpactRms",
    "imageAzElRms",
    "jitterRms",
    "maxTelemetryGap",
    "expTime",
    "elevation",
    "grade",
]
PAGE_INDEXES = [index for table in (ra_job, ra_metric, ra_product) for index in table.indexes]
# A job's result and configuration as the CSC stores them (JSON text; the page reads neither).
SFM_CONFIG = json.dumps({"n_sigma": 5.0, "min_npix": 5, "psf_stars": 200, "bin_factor": 8, "make_binned": True})


def obsid(seq: int) -> str:
    return f"MC_O_{DAY}_{seq:06d}"


def night_rows(n_visits: int, n_detectors: int, rng: random.Random) -> Iterator[dict[str, list[tuple]]]:
    """The night's rows, one visit at a time: table name -> tuples (columns as in `COLUMNS`)."""
    for seq in range(1, n_visits + 1):
        image = obsid(seq)
        t = T0 + seq * CADENCE
        fwhm = 0.7 + 0.3 * rng.random()
        jobs: list[tuple] = []
        metrics: list[tuple] = []
        products: list[tuple] = []
        first_end = t + 18.0
        for det in range(n_detectors):
            job_id = f"ra-{seq:05d}{det:03d}sfm"
            start, end = t + 2.0 + 0.05 * det, t + 18.0 + 0.05 * det
            data_id = json.dumps({"dayObs": DAY, "detectors": [det], "obsid": image, "seqNum": seq}, sort_keys=True)
            result = json.dumps({"skipped": "", "summary": {"detectors": [{"detector": det}]}, "products": []})
            jobs.append(
                (job_id, INSTRUMENT, "sfm", data_id, image, "autonomous", "succeeded", True, 0, "", t + 0.6, start, end)
                + (end - start, result, SFM_CONFIG)
            )
            values = [rng.gauss(1.0, 0.2) for _ in SFM_METRICS]
            values[SFM_METRICS.index("psfFwhm")] = fwhm + rng.gauss(0, 0.05)
            for name, value in zip(SFM_METRICS, values, strict=True):
                metrics.append((job_id, image, det, name, value))
                metrics.append((job_id, image, None, name, value))  # sfm: one detector's metrics are the job's too
        gather_id, mount_id = f"ra-{seq:05d}gather", f"ra-{seq:05d}mount"
        gather_end, mount_end = t + 26.0, t + 24.0
        image_data_id = json.dumps({"dayObs": DAY, "obsid": image, "seqNum": seq}, sort_keys=True)
        for job_id, pipeline, end in ((gather_id, "sfm_gather", gather_end), (mount_id, "mount_torque", mount_end)):
            jobs.append(
                (job_id, INSTRUMENT, pipeline, image_data_id, image, "autonomous", "succeeded", True, 0, "", t + 1)
                + (end - 3.0, end, 3.0, "{}", "{}")
            )
        for name in GATHER_METRICS:
            value = fwhm if name.startswith("psfFwhm") else rng.gauss(1.0, 0.2)
            metrics.append((gather_id, image, None, name, value))
        for name in MOUNT_METRICS:
            metrics.append((mount_id, image, None, name, rng.gauss(0.1, 0.03)))
        root = f"/data/rapidanalysis/{INSTRUMENT}/{DAY}/{image}"
        for job_id, file_name in (
            (gather_id, "focal_plane.png"),
            (gather_id, "mosaic.png"),
            (mount_id, f"mount_torque_{image}.png"),
        ):
            path = f"{root}/{file_name}"
            products.append((job_id, image, path, f"https://example.org/ra{path}", "image/png", 150_000, "", "", end))
        image_row = (
            INSTRUMENT,
            image,
            DAY,
            seq,
            "SCIENCE",
            rng.choice(["g_6", "r_57", "i_39", "z_20"]),
            30.0,
            t,
            "autonomous",
            t + 0.5,
            first_end,
            gather_end,
            n_detectors + 1,
            n_detectors + 1,
            0,
            0,
            "complete",
            None,
        )
        yield {"ra_image": [image_row], "ra_job": jobs, "ra_metric": metrics, "ra_product": products}


COLUMNS = {
    "ra_image": [c.name for c in ra_image.columns],
    "ra_job": [c.name for c in ra_job.columns],
    "ra_metric": [c.name for c in ra_metric.columns if c.name != "id"],
    "ra_product": [c.name for c in ra_product.columns if c.name != "id"],  # id: the database's
}
ORDER = ("ra_image", "ra_job", "ra_metric", "ra_product")  # jobs before the rows that refer to them


def _drop_page_indexes(engine: sa.Engine) -> None:
    """The indexes are built after the load: a bulk load into indexed tables is several times slower."""
    with engine.begin() as conn:
        for index in PAGE_INDEXES:
            index.drop(conn, checkfirst=True)


def _create_indexes(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for index in PAGE_INDEXES:
            index.create(conn, checkfirst=True)


def load_sqlite(path: pathlib.Path, n_visits: int, n_detectors: int, seed: int) -> dict[str, int]:
    """Make the SQLite file (`ResultsDatabase`'s tables) and fill it with executemany."""
    import sqlite3

    ResultsDatabase(path).close()  # the tables, as the CSC makes them
    engine = sa.create_engine(f"sqlite:///{path}")
    _drop_page_indexes(engine)
    counts = dict.fromkeys(ORDER, 0)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")  # a load, not the CSC: nothing to lose
    with conn:
        for rows in night_rows(n_visits, n_detectors, random.Random(seed)):
            for table in ORDER:
                columns = COLUMNS[table]
                marks = ", ".join("?" * len(columns))
                conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows[table])
                counts[table] += len(rows[table])
    conn.close()
    _create_indexes(engine)
    engine.dispose()
    return counts


def load_postgres(url: str, n_visits: int, n_detectors: int, seed: int) -> dict[str, int]:
    """Make the tables on the server (`ResultsDatabase`) and fill them with COPY; then ANALYZE."""
    import psycopg

    ResultsDatabase(url).close()
    engine = sa.create_engine(url)
    _drop_page_indexes(engine)
    counts = dict.fromkeys(ORDER, 0)
    conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:
        with conn.cursor() as cur:
            for rows in night_rows(n_visits, n_detectors, random.Random(seed)):
                for table in ORDER:
                    with cur.copy(f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN") as copy:
                        for row in rows[table]:
                            copy.write_row(row)
                    counts[table] += len(rows[table])
        conn.commit()
    _create_indexes(engine)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")  # what autovacuum does after a load
    engine.dispose()
    return counts


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """The first call's time, the following calls' times, and the last result."""
    t0 = time.perf_counter()
    result = fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return first, times, result


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def measure(label: str, url: str, n_visits: int, output_root: pathlib.Path, explain: bool) -> dict[str, float]:
    """Time the page's reads on one database; print them; return the medians (s)."""
    figures: dict[str, float] = {}
    rng = random.Random(1)
    images = [obsid(rng.randint(1, n_visits)) for _ in range(20)]
    with ResultsDatabase(url, create=False) as db:
        queries = PageQueries(db)
        first, times, rows = timed(lambda: queries.night(INSTRUMENT, DAY), 5)
        assert len(rows) == n_visits and rows[0].metrics["FWHM"] is not None, rows[:1]
        figures["night"] = statistics.median(times)
        say(f"  {label:10s} night table ({len(rows)} rows):    first {ms(first)}, median {ms(figures['night'])}")
        image_times = []
        first_image = None
        for name in images:
            t0 = time.perf_counter()
            page = queries.image(INSTRUMENT, name)
            elapsed = time.perf_counter() - t0
            if first_image is None:
                first_image = elapsed
            image_times.append(elapsed)
            assert page is not None and len(page.detector_metrics) > 0 and page.visit_metrics, name
        figures["image"] = statistics.median(image_times)
        say(
            f"  {label:10s} image page ({len(page.jobs)} jobs, {len(page.detector_metrics)} detectors): "
            f"first {ms(first_image or 0.0)}, median {ms(figures['image'])}, max {ms(max(image_times))}"
        )
        first, times, _ = timed(lambda: queries.night_row(INSTRUMENT, images[0]), 20)
        figures["night_row"] = statistics.median(times)
        say(f"  {label:10s} night_row (a live update):     median {ms(figures['night_row'])}")
        first, times, names = timed(lambda: queries.metric_names(INSTRUMENT, DAY), 3)
        figures["metric_names"] = statistics.median(times)
        say(f"  {label:10s} metric_names ({len(names)}):         median {ms(figures['metric_names'])}")
        metric = HEADLINE_METRICS["FWHM"]
        first, times, points = timed(lambda: queries.trend(INSTRUMENT, DAY, metric), 3)
        figures["trend"] = statistics.median(times)
        say(f"  {label:10s} trend {metric} ({len(points)} points): median {ms(figures['trend'])}")
        first, times, _ = timed(lambda: queries.detector_values(INSTRUMENT, images[0], "psfFwhm"), 10)
        figures["detector_values"] = statistics.median(times)
        say(f"  {label:10s} detector_values psfFwhm:       median {ms(figures['detector_values'])}")
        if explain:
            _explain(db, images[0])
        try:
            figures.update(_http(label, db, output_root, images))
        except Exception as e:  # the page's app is another part, perhaps being changed: the reads still count
            say(f"  {label:10s} HTTP: not measured: {type(e).__name__}: {e}")
    return figures


def _explain(db: ResultsDatabase, image: str) -> None:
    """The plans of the night's and the image's main queries."""
    night_metrics = (
        "SELECT image_name, name, value FROM ra_metric WHERE image_name IN "
        f"(SELECT image_name FROM ra_image WHERE instrument = '{INSTRUMENT}' AND day_obs = {DAY}) "
        "AND detector IS NULL AND name IN ('psfFwhmMean', 'imageImpactRms', 'effTimeMedian') ORDER BY id"
    )
    image_metrics = f"SELECT job_id, detector, name, value FROM ra_metric WHERE image_name = '{image}' ORDER BY id"
    image_jobs = f"SELECT job_id, data_id FROM ra_job WHERE image_name = '{image}' AND instrument = '{INSTRUMENT}'"
    prefix = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN "
    with db._read() as conn:
        for what, sql in (
            ("night metrics", night_metrics),
            ("image metrics", image_metrics),
            ("image jobs", image_jobs),
        ):
            lines = [str(row[-1]) for row in conn.exec_driver_sql(prefix + sql)]
            say(f"    plan, {what}:")
            for line in lines:
                say(f"      {line}")


def _http(label: str, db: ResultsDatabase, output_root: pathlib.Path, images: list[str]) -> dict[str, float]:
    """The same pages through the page's app (in process), if it is there."""
    try:
        from starlette.testclient import TestClient

        from lsst.ts.rapidanalysis.web.app import create_app
    except ImportError as e:
        say(f"  {label:10s} HTTP: the page's app is not importable ({e}); not measured")
        return {}
    figures = {}
    app = create_app(db, output_root)
    with TestClient(app) as client:
        for what, paths in (
            ("night", [f"/night/{INSTRUMENT}/{DAY}"] * 6),
            ("image", [f"/image/{INSTRUMENT}/{name}" for name in images]),
        ):
            times = []
            size = 0
            for path in paths:
                t0 = time.perf_counter()
                response = client.get(path)
                times.append(time.perf_counter() - t0)
                assert response.status_code == 200, (path, response.status_code, response.text[:300])
                size = len(response.content)
            figures[f"http_{what}"] = statistics.median(times[1:])
            say(
                f"  {label:10s} HTTP GET {paths[0].rsplit('/', 1)[0]}/…: first {ms(times[0])}, "
                f"median {ms(figures[f'http_{what}'])} ({size / 1024:.0f} KiB)"
            )
    return figures


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small night (50 visits) to check the script")
    parser.add_argument("--visits", type=int, default=1000)
    parser.add_argument("--detectors", type=int, default=189)
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--explain", action="store_true", help="print the query plans")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--keep", type=pathlib.Path, help="write the SQLite night to this file and keep it")
    parser.add_argument("--live", type=int, default=20, metavar="N", help="images in the live measurement (20)")
    parser.add_argument("--no-live", action="store_true", help="skip the live measurement (CSC, server, browser)")
    args = parser.parse_args()
    n_visits = 50 if args.quick else args.visits
    results: dict[str, dict[str, float]] = {}
    say(f"page.py: {n_visits} {INSTRUMENT} visits × {args.detectors} detectors; {machine()}")
    with contextlib.ExitStack() as stack:
        work = pathlib.Path(tempfile.mkdtemp(prefix="ra-page-bench-"))
        stack.callback(shutil.rmtree, work, True)
        output_root = work / "products"
        output_root.mkdir()

        path = args.keep if args.keep is not None else work / "results.sqlite3"
        if path.exists():
            path.unlink()
        t0 = time.perf_counter()
        counts = load_sqlite(path, n_visits, args.detectors, args.seed)
        say(
            f"SQLite: loaded {counts['ra_job']:,} jobs, {counts['ra_metric']:,} metric rows, "
            f"{counts['ra_product']:,} products in {time.perf_counter() - t0:.1f} s "
            f"({path.stat().st_size / 2**20:.0f} MiB)"
        )
        results["SQLite"] = measure("SQLite", f"sqlite:///{path}", n_visits, output_root, args.explain)
        if args.keep is None:
            path.unlink()

        if not args.no_postgres:
            try:
                server = stack.enter_context(running_postgres("ra_page"))
            except PostgresUnavailable as e:
                say(f"PostgreSQL: not measured: {e}")
            else:
                url = server.url("ra_page")
                t0 = time.perf_counter()
                counts = load_postgres(url, n_visits, args.detectors, args.seed)
                say(
                    f"PostgreSQL 15: loaded the same in {time.perf_counter() - t0:.1f} s (server started in "
                    f"{server.startup_seconds:.1f} s)"
                )
                results["PostgreSQL"] = measure("PostgreSQL", url, n_visits, output_root, args.explain)
    live = None if args.no_live else measure_live(5 if args.quick else args.live)
    say()
    say(f"Summary ({n_visits} visits × {args.detectors} detectors; targets: night < 1000 ms, image < 300 ms):")
    for label, figures in results.items():
        night_ok = "ok" if figures["night"] < 1.0 else "OVER"
        image_ok = "ok" if figures["image"] < 0.3 else "OVER"
        http = ""
        if "http_night" in figures:
            http = f"; HTTP night {ms(figures['http_night'])}, image {ms(figures['http_image'])}"
        say(f"  {label:10s} night {ms(figures['night'])} ({night_ok}), image {ms(figures['image'])} ({image_ok}){http}")
    if live is not None:
        live_ok = "ok" if live["max"] < 1.0 else "OVER"
        say(f"  live       jobResult → open page p50 {ms(live['p50'])}, max {ms(live['max'])} ({live_ok}; < 1000 ms)")
    say(f"Machine after: {machine()}")


if __name__ == "__main__":
    main()
