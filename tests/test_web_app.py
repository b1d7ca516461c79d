"""The page's web application (``rapid_analysis serve``) with Starlette's TestClient and a real server.

A real SQLite results database filled through `ResultsDatabase`'s public write methods (a
generated night, plus an image whose name, filter, reason and job report carry markup); the
files a traversal might reach are real files outside the output root.
"""

from __future__ import annotations

import asyncio
import csv
import http.client
import io
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

with warnings.catch_warnings():  # Starlette would rather TestClient used httpx2; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from lsst.ts.rapidanalysis.cli import main
from lsst.ts.rapidanalysis.web.app import create_app
from lsst.ts.rapidanalysis.web.live import LiveFeed, Subscription
from lsst.ts.rapidanalysis.web.serve_cli import database_url_problem
from lsst.ts.rapidanalysis.web.server import start_server_in_background
from web_helpers import DAY_OBS, HOSTILE, INSTRUMENT, PREVIOUS_DAY_OBS, fill_night, raw_get

ESCAPED = "&lt;script&gt;"


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A filled night under ``<tmp>/products``, a secret beside it and links that point at it."""
    base = tmp_path_factory.mktemp("web")
    root = base / "products"
    names: dict[str, Any] = fill_night(root)
    (base / "secret.txt").write_text("secret")
    (root / INSTRUMENT / "outside").symlink_to(base)  # a directory link out of the root
    (root / INSTRUMENT / "evil.png").symlink_to(base / "secret.txt")  # a file link out of the root
    (root / INSTRUMENT / "page.html").write_text(f"<html>{HOSTILE}</html>")
    names["root"] = root
    return names


@pytest.fixture(scope="module")
def client(night: dict[str, Any]) -> Iterator[TestClient]:
    # Not entered as a context manager: no lifespan, so no DDS; events are fed by hand.
    app = create_app(night["database"], night["root"], follow=[2])
    app.state.feed.handle_event(
        INSTRUMENT, "logMessage", {"name": "RapidAnalysis", "level": 40, "message": HOSTILE, "traceback": ""}
    )
    app.state.feed.handle_event(
        INSTRUMENT,
        "workerPool",
        {"nWorkers": 4, "nBusy": 1, "nQueued": 0, "keepingUp": True, "dashboardUrl": "javascript:alert(1)"},
    )
    yield TestClient(app)


def test_pages(client: TestClient, night: dict[str, Any]) -> None:
    """Every page is served, with the security headers, and links to the others."""
    plotted = night["plotted"]
    response = client.get(f"/night/{INSTRUMENT}", follow_redirects=False)
    assert response.status_code == 302 and response.headers["location"] == f"/night/{INSTRUMENT}/{DAY_OBS}"
    pages = {
        "/": "RapidAnalysis:2",
        f"/night/{INSTRUMENT}/{DAY_OBS}": plotted,
        f"/image/{INSTRUMENT}/{plotted}": "focal_plane.png",
        f"/trends/{INSTRUMENT}/{DAY_OBS}": "/plot/trend.svg?",
        f"/trends/{INSTRUMENT}/{DAY_OBS}?metric=skyBgMedian&image={plotted}": "/plot/focal_plane.svg?",
    }
    for path, expected in pages.items():
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["content-type"].startswith("text/html")
        assert expected in response.text, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
    night_page = client.get(f"/night/{INSTRUMENT}/{DAY_OBS}").text
    assert night_page.count("<tr data-image=") == 9
    assert f'href="/night/{INSTRUMENT}/{PREVIOUS_DAY_OBS}"' in night_page and 'id="next-day"' not in night_page
    previous = client.get(f"/night/{INSTRUMENT}/{PREVIOUS_DAY_OBS}").text
    assert f'href="/night/{INSTRUMENT}/{DAY_OBS}"' in previous and 'id="previous-day"' not in previous
    assert previous.count("<tr data-image=") == 2
    assert "state-partial" in night_page and "state-failed" in night_page
    for path in ("/static/page.css", "/static/night.js", "/static/now.js", "/static/common.js", "/static/favicon.svg"):
        assert client.get(path).status_code == 200, path
    now = client.get("/").text
    assert f'href="/night/{INSTRUMENT}/{DAY_OBS}"' in now and f'href="/night/{INSTRUMENT}/{PREVIOUS_DAY_OBS}"' in now
    snapshot = client.get("/api/now").json()
    assert snapshot["instruments"][INSTRUMENT]["workerPool"]["nWorkers"] == 4


def test_plots(client: TestClient, night: dict[str, Any]) -> None:
    """The Trends plots are SVG documents drawn from the database; the image's PNG is served as is."""
    trend = client.get(f"/plot/trend.svg?instrument={INSTRUMENT}&day_obs={DAY_OBS}&metric=psfFwhmMean")
    assert trend.status_code == 200 and trend.headers["content-type"].startswith("image/svg+xml")
    assert trend.content.lstrip().startswith(b"<?xml") and b"<svg" in trend.content
    fp = client.get(f"/plot/focal_plane.svg?instrument={INSTRUMENT}&image={night['plotted']}&metric=psfFwhm")
    assert fp.status_code == 200 and b"<svg" in fp.content
    assert client.get("/plot/focal_plane.svg?instrument=HSC&image=x&metric=y").status_code == 404
    assert client.get("/plot/trend.svg?instrument=x&day_obs=tonight&metric=y").status_code == 404
    png = client.get("/files/" + night["product"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content == (night["root"] / night["product"]).read_bytes()


def test_csv(client: TestClient) -> None:
    """The night as CSV: a row per image, the headline metrics, formulas defused."""
    response = client.get(f"/night/{INSTRUMENT}/{DAY_OBS}.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 9
    assert {"image_name", "obs_time_utc", "state", "reason", "latency_first_detector"} <= set(rows[0])
    hostile = next(r for r in rows if r["seq_num"] == "99")
    assert hostile["reason"].startswith("'=HYPERLINK")  # a spreadsheet shows it, does not run it
    assert hostile["state"] == "failed"
    complete = [r for r in rows if r["state"] == "complete" and r["image_type"] == "SCIENCE"]
    assert complete and all(float(r["latency_visit_metrics"]) > 0 for r in complete)


def test_escaping(client: TestClient, night: dict[str, Any]) -> None:
    """An image name, filter, reason, job report and log message with markup are shown as text."""
    hostile_href = f"/image/{INSTRUMENT}/" + urllib.parse.quote(night["hostile"], safe="")
    for path in ("/", f"/night/{INSTRUMENT}/{DAY_OBS}", hostile_href, f"/trends/{INSTRUMENT}/{DAY_OBS}"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "<script>alert" not in response.text, path
        assert ESCAPED in response.text or "\\u003cscript\\u003e" in response.text, path
    now = client.get("/").text
    assert 'href="javascript:' not in now  # only http(s) dashboard links are links
    assert client.get(f"/image/{INSTRUMENT}/{HOSTILE}").status_code == 404
    # An HTML product is sent as text, never as a page of this site.
    page = client.get(f"/files/{INSTRUMENT}/page.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")


def test_not_found(client: TestClient) -> None:
    for path in (
        f"/image/{INSTRUMENT}/CC_O_20991231_000001",
        "/night/HSC",
        "/night/HSC/20251115",
        f"/night/{INSTRUMENT}/123",
        "/night/%3Cscript%3Ealert(1)%3C%2Fscript%3E/20251115",
        "/nothing",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "<script>" not in response.text


def test_read_only(client: TestClient, night: dict[str, Any]) -> None:
    """Only GET and HEAD: anything else is a 405 before any route is looked at."""
    paths = ("/", f"/night/{INSTRUMENT}/{DAY_OBS}", "/events", "/files/" + night["product"], "/static/page.css")
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        for path in paths:
            response = client.request(method, path)
            assert response.status_code == 405, (method, path)
            assert response.headers["allow"] == "GET, HEAD"
    assert client.head(f"/night/{INSTRUMENT}/{DAY_OBS}").status_code == 200


def test_traversal(night: dict[str, Any]) -> None:
    """Files only from under the output root, whatever the encoding: a real server, raw request lines."""
    url, stop = start_server_in_background(night["database"], night["root"])
    try:
        status, body = raw_get(url, "/files/" + night["product"])
        assert status == 200 and body == (night["root"] / night["product"]).read_bytes()
        attempts = [
            "/files/../secret.txt",
            "/files/%2e%2e/secret.txt",
            "/files/%2E%2E/secret.txt",
            "/files/%252e%252e/secret.txt",
            "/files/..%2fsecret.txt",
            "/files/..%252fsecret.txt",
            f"/files/{INSTRUMENT}/../../secret.txt",
            f"/files/{INSTRUMENT}/%2e%2e/%2e%2e/secret.txt",
            f"/files/{INSTRUMENT}%5c..%5c..%5csecret.txt",
            "/files//etc/passwd",
            "/files/%2fetc%2fpasswd",
            "/files/%252fetc%252fpasswd",
            f"/files/{INSTRUMENT}/outside/secret.txt",
            f"/files/{INSTRUMENT}/evil.png",
            f"/files/{night['product']}%00.txt",
            "/files/results.sqlite3",
            "/files/results.sqlite3-wal",
            "/files/",
            "/files/.",
            f"/files/{INSTRUMENT}",
        ]
        for path in attempts:
            status, body = raw_get(url, path)
            assert status == 404, (path, status)
            assert b"secret" not in body and b"root:" not in body, path
        # Loopback only: a page of another site (DNS rebinding) is refused.
        parts = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        connection.request("GET", "/", headers={"Host": "attacker.example"})
        assert connection.getresponse().status == 400
        connection.close()
    finally:
        stop()


def test_database_missing(tmp_path: pathlib.Path) -> None:
    """Before the CSC made its database, the pages say so (503) and the page works once it exists."""
    app = create_app(tmp_path / "results.sqlite3", tmp_path)
    client = TestClient(app)
    response = client.get(f"/night/{INSTRUMENT}/{DAY_OBS}")
    assert response.status_code == 503 and "results.sqlite3" in response.text
    for path in (f"/night/{INSTRUMENT}", f"/night/{INSTRUMENT}/{DAY_OBS}.csv", "/plot/trend.svg?day_obs=1&metric=x"):
        assert client.get(path, follow_redirects=False).status_code == 503, path
    assert client.get("/").status_code == 200
    fill_night(tmp_path)
    assert client.get(f"/night/{INSTRUMENT}/{DAY_OBS}").status_code == 200


def test_bad_database(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad --database: an error that names it and says why; nothing served."""
    assert database_url_problem(str(tmp_path / "not_yet.sqlite3")) is None  # the CSC may make it later
    (tmp_path / "text.sqlite3").write_text("not a database")
    problem = database_url_problem(str(tmp_path / "text.sqlite3"))
    assert problem is not None and "text.sqlite3" in problem
    assert "not a SQLAlchemy URL" in (database_url_problem("bad://x:y:z") or "not a SQLAlchemy URL")
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/results"
    problem = database_url_problem(unreachable)
    assert problem is not None and "127.0.0.1:1" in problem
    assert main(["serve", "--output-root", str(tmp_path), "--database", str(tmp_path), "--no-live"]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["serve", "--output-root", str(tmp_path / "none"), "--no-live"]) == 2
    assert "is not a directory" in capsys.readouterr().err


async def test_live_feed(night: dict[str, Any]) -> None:
    """A jobResult is fanned out as it came and followed by its image's row; a slow browser is told it fell behind."""
    app = create_app(night["database"], night["root"], follow=[2])
    feed: LiveFeed = app.state.feed
    await feed.start_rows()
    try:
        subscription = feed.subscribe()
        messages = subscription.messages(keepalive=10.0)
        assert (await anext(messages)).startswith("event: snapshot\n")
        feed.handle_event(INSTRUMENT, "jobResult", {"jobId": "j1", "imageName": night["plotted"], "result": "{}"})
        event = await asyncio.wait_for(anext(messages), 5)
        assert event.startswith("event: event\n") and '"jobId":"j1"' in event and '"result"' not in event
        row = await asyncio.wait_for(anext(messages), 5)
        assert row.startswith("event: row\n") and night["plotted"] in row and '"cells"' in row
        feed.unsubscribe(subscription)

        # The night table's stream (?only=row): rows, no events.
        rows_only = feed.subscribe({"row"})
        rows_stream = rows_only.messages(keepalive=10.0)
        assert (await anext(rows_stream)).startswith("event: snapshot\n")
        feed.handle_event(INSTRUMENT, "heartbeat", {})
        feed.handle_event(INSTRUMENT, "jobResult", {"jobId": "j2", "imageName": night["hostile"]})
        row = await asyncio.wait_for(anext(rows_stream), 5)
        assert row.startswith("event: row\n") and "CC_O_20251115_000099" in row and "<script>" in row
        feed.unsubscribe(rows_only)

        # A late joiner's heartbeat is as old as it was sent, not as new as it arrived.
        feed.handle_event(INSTRUMENT, "heartbeat", {"sent": time.time() - 100})
        assert feed.snapshot()["instruments"][INSTRUMENT]["heartbeat"] < time.time() - 99

        slow = Subscription(feed, maxlen=20)
        for i in range(50):
            slow.put(f"event: event\ndata: {i}\n\n")
        assert slow.nqueued == 20 and slow.n_dropped == 30
        stream = slow.messages(keepalive=10.0)
        assert (await anext(stream)).startswith("event: snapshot")
        assert (await anext(stream)).startswith("event: overflow")
        assert (await anext(stream)).startswith("event: snapshot")
    finally:
        await feed.close()


def test_serve_help_is_fast() -> None:
    """``rapid_analysis serve --help`` imports no web stack."""
    code = (
        "import sys; from lsst.ts.rapidanalysis.cli import main; main(['serve', '--help']); "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'sqlalchemy', 'cyclonedds') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=True)
    assert out.stdout.strip().endswith("[]"), out.stdout


def test_event_stream_subscriptions(night: dict[str, Any]) -> None:
    """A browser that goes leaves no subscription behind; HEAD makes none."""
    url, stop = start_server_in_background(night["database"], night["root"], follow=[])

    def subscribers() -> int:
        with urllib.request.urlopen(url + "/api/now", timeout=10) as response:
            return int(json.load(response)["subscribers"])

    try:
        parts = urllib.parse.urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            received = b""
            while b"event: snapshot" not in received:
                received += sock.recv(65536)
            assert b"text/event-stream" in received
            assert subscribers() == 1
        deadline = time.monotonic() + 10
        while subscribers() != 0:
            assert time.monotonic() < deadline, "the subscription outlived its browser"
            time.sleep(0.05)
        request = urllib.request.Request(url + "/events", method="HEAD")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200 and response.headers["content-type"].startswith("text/event-stream")
        assert subscribers() == 0
    finally:
        stop()


def test_pages_on_postgresql(postgres_url: str, tmp_path: pathlib.Path) -> None:
    """The same pages from a results database on a real PostgreSQL server."""
    from postgres_server import fresh_database

    night = fill_night(tmp_path, database_url=fresh_database(postgres_url))
    client = TestClient(create_app(night["database"], tmp_path))
    plotted = night["plotted"]
    assert client.get(f"/night/{INSTRUMENT}", follow_redirects=False).headers["location"].endswith(str(DAY_OBS))
    page = client.get(f"/night/{INSTRUMENT}/{DAY_OBS}")
    assert page.status_code == 200 and page.text.count("<tr data-image=") == 9
    assert "<script>alert" not in page.text
    image = client.get(f"/image/{INSTRUMENT}/{plotted}")
    assert image.status_code == 200 and "focal_plane.png" in image.text and "R22_S11" in image.text
    rows = list(csv.DictReader(io.StringIO(client.get(f"/night/{INSTRUMENT}/{DAY_OBS}.csv").text)))
    assert len(rows) == 9
    assert client.get(f"/trends/{INSTRUMENT}/{DAY_OBS}").status_code == 200
    svg = client.get(f"/plot/focal_plane.svg?instrument={INSTRUMENT}&image={plotted}&metric=psfFwhm")
    assert svg.status_code == 200 and b"<svg" in svg.content


def test_product_links(tmp_path: pathlib.Path) -> None:
    """A product is linked where it is under the output root, also when the root moved since it was recorded."""
    from lsst.ts.rapidanalysis.web.files import product_href, resolve_product

    root = tmp_path / "products"
    plot = root / INSTRUMENT / str(DAY_OBS) / "CC_O_x" / "sfm_gather-1" / "focal plane.png"
    plot.parent.mkdir(parents=True)
    plot.write_bytes(b"png")
    href = f"/files/{INSTRUMENT}/{DAY_OBS}/CC_O_x/sfm_gather-1/focal%20plane.png"
    assert product_href(root, plot) == href
    assert product_href(root, plot.relative_to(root)) == href
    moved = pathlib.Path("/data/elsewhere/products") / plot.relative_to(root)
    assert product_href(root, moved) == href
    assert product_href(root, "/etc/passwd") is None
    assert product_href(root, tmp_path / "secret.txt") is None
    assert resolve_product(root, urllib.parse.unquote(href.removeprefix("/files/"))) == plot.resolve()


def test_serve_command(night: dict[str, Any]) -> None:
    """``rapid_analysis serve --no-live --port 0``: prints its address first, serves, stops on SIGTERM."""
    exe = pathlib.Path(sys.executable).parent / "rapid_analysis"
    command = [str(exe), "serve", "--output-root", str(night["root"]), "--no-live", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("rapid_analysis serve: http://127.0.0.1:"), line
        url = line.split()[2].rstrip("/")
        assert "live: nothing (no DDS)" in line and str(night["root"]) in line
        with urllib.request.urlopen(f"{url}/night/{INSTRUMENT}/{DAY_OBS}", timeout=10) as response:
            assert response.status == 200 and night["plotted"] in response.read().decode()
        process.terminate()
        # uvicorn shuts down cleanly, then re-raises the signal: the shell sees "terminated".
        assert process.wait(10) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
