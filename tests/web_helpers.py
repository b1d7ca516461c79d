"""Helpers of the page's tests (tests/test_web_*.py): the browser, raw HTTP, a night; not a test module."""

from __future__ import annotations

import pathlib
import socket
import urllib.parse

#: The night the tests fill (a LSSTComCam night: 9 detectors, quick to write).
INSTRUMENT = "LSSTComCam"
DAY_OBS = 20251115
PREVIOUS_DAY_OBS = 20251114
#: An image name, a failure reason and a log message with markup in them: shown as text, never run.
HOSTILE = "<script>alert('x')</script>"


def raw_get(url: str, raw_path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET ``raw_path`` exactly as given (no client normalises ``..`` or decodes anything); (status, body)."""
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        request = f"GET {raw_path} HTTP/1.1\r\nHost: {parts.hostname}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode("latin-1"))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


def fill_night(root: pathlib.Path, database_url: str | None = None) -> dict[str, str]:
    """A night under ``root`` (``root/results.sqlite3``, products beside it), hostile strings included.

    ``database_url``: another results database to fill instead (a PostgreSQL server's).

    Returns
    -------
    names : `dict` [`str`, `str`]
        ``plotted`` (an image with a PNG plot), ``hostile`` (the image named with markup),
        ``database`` (its path), ``product`` (a product's path relative to ``root``).
    """
    from lsst.ts.rapidanalysis.results.database import ResultsDatabase
    from lsst.ts.rapidanalysis.web.sample_night import day_obs_start_tai, make_sample_night

    root.mkdir(parents=True, exist_ok=True)
    database = database_url or str(root / "results.sqlite3")
    with ResultsDatabase(database) as db:
        images = make_sample_night(db, root, instrument=INSTRUMENT, day_obs=DAY_OBS, n_visits=8, n_plots=1)
        # The night before, for the previous/next links.
        make_sample_night(db, root, instrument=INSTRUMENT, day_obs=PREVIOUS_DAY_OBS, n_visits=2, n_plots=0)
        hostile = f"CC_O_{DAY_OBS}_000099{HOSTILE}"
        db.record_image(
            INSTRUMENT,
            hostile,
            day_obs=DAY_OBS,
            seq_num=99,
            image_type="ENGTEST",
            filter=HOSTILE,
            exposure_time=1.0,
            obs_time=day_obs_start_tai(DAY_OBS) + 3600,
            trigger="command",
            n_expected=1,
            n_done=0,
            n_failed=1,
            n_dropped=0,
            state="failed",
            reason=f"=HYPERLINK(1) {HOSTILE}",
        )
        db.record_job(
            "hostile-job",
            instrument=INSTRUMENT,
            pipeline="test.fail",
            image_name=hostile,
            state="failed",
            success=False,
            exit_code=3,
            error_report=HOSTILE,
            trigger="command",
        )
        products = db.products(image_name=images[-1])
        product = pathlib.Path(str(products["path"][0])).relative_to(root)
    return {"plotted": images[-1], "hostile": hostile, "database": database, "product": str(product)}
