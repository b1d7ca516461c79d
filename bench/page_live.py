"""How long a jobResult takes to reach an open page: the CSC, the page server and a browser, each its own.

Part of ``bench/page.py`` (issue 16: "a jobResult reaches the open page in under 1 s"), runnable
alone. A LATISS Rapid Analysis CSC in its own process (simulation mode, a local pool of one
worker), ``rapid_analysis serve`` in its own process following it over DDS, and Debian's Chromium
(headless, driven by Playwright) with the night table open. ``processData`` of ``test.succeed`` on
one new image after another; for each, the time from this process receiving the job's jobResult
(over DDS, as the page server does) to the browser showing the image's row as ``complete`` (a
MutationObserver, by the browser's clock: the same machine's). The first image's figure includes
the page's first fetch of that night and is reported apart.

    python bench/page_live.py [--jobs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import shutil
import tempfile
import time

from benchlib import await_csc_enabled, percentile, say, shutdown_csc, write_csc_config
from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sal.testutils import set_random_lsst_dds_partition_prefix
from lsst.ts.rapidanalysis.sim.csc_process import start_rapid_analysis
from lsst.ts.rapidanalysis.sim.page_process import start_page
from lsst.ts.rapidanalysis.web.browser import CHROMIUM, launch_options

INDEX = 1  # LATISS: one detector, so one job per image
DAY = 20261202
#: Records, per image, when its row first shows a final state (by the browser's clock, unix s).
OBSERVER = """() => {
    window.rowDone = {};
    new MutationObserver(() => {
        for (const row of document.querySelectorAll('#night tbody tr')) {
            const image = row.dataset.image;
            if (image && !(image in window.rowDone) && row.dataset.state === 'complete') {
                window.rowDone[image] = Date.now() / 1000;
            }
        }
    }).observe(document.querySelector('#night tbody'), {childList: true, subtree: true, attributes: true});
}"""


def measure_live(n_jobs: int) -> dict[str, float] | None:
    """jobResult → the row ``complete`` in the open page, for ``n_jobs`` images; None if no browser."""
    if not CHROMIUM.exists():
        say(f"live: not measured: no {CHROMIUM} (Debian's chromium package)")
        return None
    if not os.environ.get("LSST_DDS_PARTITION_PREFIX"):
        set_random_lsst_dds_partition_prefix()
    os.environ.setdefault("LSST_SITE", "bench")
    return asyncio.run(_measure_live(n_jobs))


async def _measure_live(n_jobs: int) -> dict[str, float]:
    from playwright.async_api import async_playwright

    work = pathlib.Path(tempfile.mkdtemp(prefix="ra-page-live-"))
    products = work / "products"
    products.mkdir()
    config_dir = work / "config"
    write_csc_config(
        config_dir,
        {"data_roots": {"LATISS": str(work / "raw")}, "output_root": str(products), "n_workers": 1},
    )
    csc = await start_rapid_analysis(INDEX, config_dir, simulate=True, log_path=work / "csc.log")
    page_process: asyncio.subprocess.Process | None = None
    ra: sal.Remote | None = None
    try:
        page_process, url = await start_page(products, INDEX, work / "page.log")
        async with sal.Domain() as domain, async_playwright() as playwright:
            ra = sal.Remote(domain, "RapidAnalysis", INDEX, include=["summaryState", "errorCode", "jobResult"])
            await ra.start_task
            await await_csc_enabled(ra, csc, timeout=120)
            loop = asyncio.get_running_loop()
            received: dict[str, asyncio.Future[float]] = {}

            def arrival(job_id: str) -> asyncio.Future[float]:
                return received.setdefault(job_id, loop.create_future())

            ra.evt_jobResult.callback = lambda data: arrival(data.jobId).set_result(time.time())
            browser = await playwright.chromium.launch(**launch_options())
            page = await browser.new_page()
            await page.goto(f"{url}/night/LATISS/{DAY}")
            await page.wait_for_function("document.getElementById('live-status').textContent.includes('live')")
            await page.evaluate(OBSERVER)
            latencies = []
            for seq in range(1, n_jobs + 1):
                obsid = f"AT_O_{DAY}_{seq:06d}"
                ack = await ra.cmd_processData.set_start(
                    dataId=json.dumps({"obsid": obsid}), pipeline="test.succeed", timeout=30
                )
                job_id = json.loads(ack.result)["jobId"]
                await page.wait_for_function("image => image in window.rowDone", arg=obsid, timeout=30_000)
                shown = await page.evaluate("image => window.rowDone[image]", obsid)
                latencies.append(shown - await asyncio.wait_for(arrival(job_id), 10))
                await asyncio.sleep(0.2)  # one job at a time: each figure is one jobResult's
            await browser.close()
    finally:
        await shutdown_csc(ra, csc)
        if page_process is not None and page_process.returncode is None:
            page_process.terminate()
            await page_process.wait()
        shutil.rmtree(work, ignore_errors=True)
    first, rest = latencies[0], latencies[1:] or latencies
    figures = {"first": first, "p50": percentile(rest, 0.5), "max": max(rest)}
    say(
        f"live: jobResult → its row 'complete' in the open page, {len(rest)} images: "
        f"p50 {figures['p50'] * 1e3:.0f} ms, max {figures['max'] * 1e3:.0f} ms "
        f"(the first image, which also fetched the night: {first * 1e3:.0f} ms); target < 1000 ms"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20, help="images, one job each (default 20)")
    args = parser.parse_args()
    measure_live(args.jobs)


if __name__ == "__main__":
    main()
