"""The page in a real browser: Debian's headless Chromium (Playwright) against a real ``rapid_analysis serve``.

The server is the command line's, in its own process, reading a real SQLite results database
(a generated night) and following RapidAnalysis:1 (LATISS) on DDS in a partition of this module's
own. The live test starts a real RapidAnalysis CSC (Dask pool, database) on that partition,
commands processData and sees the image's row appear in the open night table, without a reload.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import secrets
import selectors
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from lsst.ts.rapidanalysis.web.browser import CHROMIUM, launch_options
from web_helpers import DAY_OBS, HOSTILE, INSTRUMENT, fill_night

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"Debian's Chromium ({CHROMIUM}) is not installed: apt-get install chromium (.ci/run does)",
)

RAPID_ANALYSIS = pathlib.Path(sys.executable).parent / "rapid_analysis"
TEST_CONFIG_DIR = pathlib.Path(__file__).parent / "data" / "config" / "RapidAnalysis"
#: What the live test commands: test.succeed on a LATISS image (no raw needed).
LATISS_OBSID = "AT_O_20251115_000001"
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``rapid_analysis serve`` on a free loopback port, over a generated night, following LATISS live."""
    base = tmp_path_factory.mktemp("page")
    root = base / "products"  # where the test configuration puts the CSC's products and database
    names: dict[str, Any] = fill_night(root)
    prefix = "test_page_" + secrets.token_hex(8)
    env = dict(os.environ, LSST_DDS_PARTITION_PREFIX=prefix, LSST_SITE="test")
    command = [str(RAPID_ANALYSIS), "serve", "--output-root", str(root), "--index", "1", "--port", "0"]
    log = (base / "serve.log").open("w")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env, text=True)
    try:
        selector = selectors.DefaultSelector()
        assert process.stdout is not None
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(TIMEOUT):
            raise AssertionError(f"rapid_analysis serve printed nothing in {TIMEOUT} s")
        line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        assert match, f"no address in {line!r}; its log: {(base / 'serve.log').read_text()}"
        yield {**names, "url": match[1], "root": root, "base": base, "prefix": prefix}
    finally:
        process.terminate()
        try:
            process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**launch_options())
        yield browser
        browser.close()


class Tab:
    """A page in a fresh browser context (its own localStorage) that records console errors."""

    def __init__(self, browser: Any, url: str) -> None:
        self.url = url
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT * 1000)
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.dialogs: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def goto(self, path: str) -> Any:
        response = self.page.goto(self.url + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        return response

    def image_names(self) -> list[str]:
        return self.page.eval_on_selector_all("#night tbody tr:not([hidden])", "rows => rows.map(r => r.dataset.image)")


@pytest.fixture
def tab(browser: Any, site: dict[str, Any]) -> Iterator[Tab]:
    tab = Tab(browser, site["url"])
    yield tab
    tab.context.close()


def test_pages_load_without_errors(tab: Tab, site: dict[str, Any]) -> None:
    """Now, Night, Image and Trends load with no console error; the live feed connects."""
    plotted = site["plotted"]
    hostile = urllib.parse.quote(site["hostile"], safe="")
    for path in (
        "/",
        f"/night/{INSTRUMENT}/{DAY_OBS}",
        f"/image/{INSTRUMENT}/{plotted}",
        f"/image/{INSTRUMENT}/{hostile}",
        f"/trends/{INSTRUMENT}/{DAY_OBS}",
    ):
        tab.goto(path)
        if path.startswith(("/trends", "/image")):  # no event stream there: the network goes idle
            tab.page.wait_for_load_state("networkidle")
        assert tab.errors == [], (path, tab.errors)
    tab.goto("/")
    tab.page.wait_for_function("document.getElementById('live-status').textContent.includes('live')")
    assert tab.page.locator("section.card[data-instrument='LATISS']").count() == 1
    # The markup in the night's strings is text: no script ran, and it reads as written.
    tab.goto(f"/night/{INSTRUMENT}/{DAY_OBS}")
    assert tab.dialogs == []  # no alert() ran
    text = tab.page.evaluate(
        "name => [...document.querySelectorAll('#night tbody tr')].find(r => r.dataset.image === name).innerText",
        site["hostile"],
    )
    assert HOSTILE in text
    assert tab.errors == []


def test_sort_and_filter(tab: Tab) -> None:
    """Clicking a header sorts by it (again: the other way); the filter and the state choice hide rows."""
    tab.goto(f"/night/{INSTRUMENT}/{DAY_OBS}")
    names = tab.image_names()
    assert len(names) == 9
    seq = tab.page.locator("#night th[data-col='seq_num']")
    seq.click()
    ascending = tab.image_names()
    assert ascending == sorted(names) and ascending[0].endswith("000001")
    seq.click()
    assert tab.image_names() == sorted(names, reverse=True)
    tab.page.locator("#night th[data-col='exposure_time']").click()
    assert tab.image_names()[0].endswith("000001")  # the bias: 0 s

    tab.page.fill("#filter", "partial")
    assert tab.image_names() == [n for n in names if n.endswith("000005")]
    assert tab.page.inner_text("#row-count") == "1 of 9 images"
    tab.page.fill("#filter", "")
    tab.page.select_option("#state-filter", "failed")
    assert sorted(tab.image_names()) == sorted(n for n in names if "000004" in n or "000099" in n)
    tab.page.select_option("#state-filter", "")
    assert len(tab.image_names()) == 9
    assert tab.errors == []


def test_columns_remembered(tab: Tab) -> None:
    """Columns chosen stay chosen after a reload (localStorage)."""
    tab.goto(f"/night/{INSTRUMENT}/{DAY_OBS}")
    header = tab.page.locator("#night th[data-col='filter']")
    detectors = tab.page.locator("#night th[data-col='detectors']")
    assert header.is_visible() and not detectors.is_visible()
    tab.page.click("details.columns-chooser summary")
    tab.page.uncheck("#column-choices input[data-col='filter']")
    tab.page.check("#column-choices input[data-col='detectors']")
    assert not header.is_visible() and detectors.is_visible()
    tab.page.reload()
    assert not header.is_visible() and detectors.is_visible()
    assert tab.page.locator("#night td[data-col='filter']:visible").count() == 0
    assert tab.page.locator("#night td[data-col='detectors']:visible").count() == 9
    assert tab.errors == []


def test_image_page_shows_its_plots(tab: Tab, site: dict[str, Any]) -> None:
    """The image page's PNG plots and the Trends page's plots are drawn (naturalWidth > 0)."""
    tab.goto(f"/image/{INSTRUMENT}/{site['plotted']}")
    plots = tab.page.locator(".plots img")
    assert plots.count() == 1
    tab.page.wait_for_function("[...document.querySelectorAll('.plots img')].every(i => i.complete)")
    assert all(w > 0 for w in tab.page.eval_on_selector_all(".plots img", "imgs => imgs.map(i => i.naturalWidth)"))
    tab.goto(f"/trends/{INSTRUMENT}/{DAY_OBS}?image={site['plotted']}")
    tab.page.wait_for_function("[...document.querySelectorAll('figure.plot img')].every(i => i.complete)")
    widths = tab.page.eval_on_selector_all("figure.plot img", "imgs => imgs.map(i => i.naturalWidth)")
    assert len(widths) == 2 and all(w > 0 for w in widths), widths
    # Choosing another metric redraws (the form submits itself).
    tab.page.select_option("#metric", "skyBgMedian")
    tab.page.wait_for_url(re.compile(r".*metric=skyBgMedian.*"))
    assert tab.errors == []


class CscThread:
    """A RapidAnalysis CSC (ENABLED, its Dask pool up) and a Remote of it, on an event loop in a thread."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="csc", daemon=True)
        self.csc: Any = None
        self.remote: Any = None
        self.job_results: list[tuple[float, Any]] = []

    def run(self, coroutine: Any, timeout: float = TIMEOUT) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start(), timeout=2 * TIMEOUT)

    async def _start(self) -> None:
        from lsst.ts.rapidanalysis.csc import RapidAnalysisCsc
        from lsst.ts.rapidanalysis.sal import Remote, State

        self.csc = RapidAnalysisCsc(
            index=self.index, config_dir=TEST_CONFIG_DIR, initial_state=State.ENABLED, simulation_mode=1
        )
        self.remote = Remote(self.csc.domain, "RapidAnalysis", self.index, include=["summaryState", "jobResult"])
        await asyncio.wait_for(asyncio.gather(self.csc.start_task, self.remote.start_task), TIMEOUT)
        while True:
            data = await self.remote.evt_summaryState.next(flush=False, timeout=TIMEOUT)
            if data.summaryState == State.ENABLED:
                break
        self.remote.evt_jobResult.callback = lambda data: self.job_results.append((time.time(), data))

    def process(self, pipeline: str, data_id: dict[str, Any]) -> str:
        ackcmd = self.run(
            self.remote.cmd_processData.set_start(dataId=json.dumps(data_id), pipeline=pipeline, timeout=TIMEOUT)
        )
        return str(json.loads(ackcmd.result)["jobId"])

    def stop(self) -> None:
        async def close() -> None:
            if self.remote is not None:
                await self.remote.close()
            if self.csc is not None:
                await asyncio.wait_for(self.csc.close(), TIMEOUT)

        try:
            self.run(close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(TIMEOUT)
            self.loop.close()


def test_process_data_appears_live(
    tab: Tab, site: dict[str, Any], monkeypatch: pytest.MonkeyPatch, record_property: Any
) -> None:
    """processData of a LATISS image: its row appears in the open night table without a reload."""
    # The CSC joins the server's partition and writes into the database the server reads.
    monkeypatch.setenv("LSST_DDS_PARTITION_PREFIX", site["prefix"])
    monkeypatch.setenv("RA_TEST_ROOT", str(site["base"]))
    monkeypatch.delenv("TS_CONFIG_OCS_DIR", raising=False)
    tab.goto(f"/night/LATISS/{DAY_OBS}")
    tab.page.wait_for_function("document.getElementById('live-status').textContent.includes('live')")
    assert tab.image_names() == []
    tab.page.evaluate("window.notReloaded = true")
    # When the row appears, by the browser's clock (the same machine's as the test's).
    tab.page.evaluate(
        """image => new MutationObserver((_, observer) => {
            const row = [...document.querySelectorAll('#night tbody tr')].find(r => r.dataset.image === image);
            if (row && window.rowSeen === undefined) window.rowSeen = Date.now() / 1000;
            if (row && row.dataset.state === 'complete') {
                window.rowComplete = Date.now() / 1000; observer.disconnect();
            }
        }).observe(document.querySelector('#night tbody'), {childList: true, subtree: true})""",
        LATISS_OBSID,
    )
    # The night before, open too: told that a newer night has begun, and where.
    before = tab.context.new_page()
    before.goto(f"{site['url']}/night/LATISS/{DAY_OBS - 1}")
    before.wait_for_function("document.getElementById('live-status').textContent.includes('live')")
    assert before.locator("#newer-night").is_hidden()
    csc = CscThread(index=1)
    try:
        csc.start()
        job_id = csc.process("test.succeed", {"obsid": LATISS_OBSID})
        row = tab.page.locator(f"#night tr[data-image='{LATISS_OBSID}']")
        row.wait_for(timeout=TIMEOUT * 1000)
        tab.page.wait_for_function(
            "image => [...document.querySelectorAll('#night tr')].some("
            "r => r.dataset.image === image && r.dataset.state === 'complete')",
            arg=LATISS_OBSID,
        )
        assert tab.page.evaluate("window.notReloaded") is True
        before.locator("#newer-night").wait_for()
        assert before.locator("#newer-night a").get_attribute("href") == f"/night/LATISS/{DAY_OBS}"
        assert before.locator("#night tbody tr").count() == 0
        before.close()
        assert row.locator("td[data-col='state']").inner_text().startswith("complete")
        assert row.locator("a").get_attribute("href") == f"/image/LATISS/{LATISS_OBSID}"
        results = [(t, d) for t, d in csc.job_results if d.jobId == job_id]
        assert results and results[0][1].success, csc.job_results
        latency = tab.page.evaluate("window.rowSeen") - results[0][0]
        complete = tab.page.evaluate("window.rowComplete") - results[0][0]
        record_property("job_result_to_row_s", latency)
        record_property("job_result_to_complete_row_s", complete)
        print(f"jobResult -> its row in the open page {latency:.3f} s, showing 'complete' {complete:.3f} s")
        # The figure to meet is 1 s (issue 16; measured 0.01 s to the row, 0.2 s to its final state);
        # the bound here is looser, so that a loaded CI machine does not fail it for nothing.
        assert latency < 3.0, latency
        assert tab.errors == []

        # The Now page: the CSC's state, its heartbeat ageing, its pool, the job that just ran.
        tab.goto("/")
        card = tab.page.locator("section.card[data-instrument='LATISS']")
        card.locator("[data-field='state']").filter(has_text="ENABLED").wait_for()
        tab.page.wait_for_function(
            "() => /^[0-9]+ s ago$/.test(document.querySelector(\"section.card[data-instrument='LATISS'] "
            '[data-heartbeat]").textContent)'
        )
        assert card.locator("[data-field='pool']").inner_text().startswith("2 workers")
        assert LATISS_OBSID in card.locator("[data-field='jobs']").inner_text()
        assert tab.errors == []
    finally:
        csc.stop()
