"""Screenshots of the page (Now, Night, Image, Trends) for the documentation: ``doc/images/page_*.png``.

A generated LSSTComCam night (16 visits, focal-plane maps of the last four) in a fresh results
database, a real RapidAnalysis CSC (LSSTComCam, simulation mode, a Dask pool of 2) writing into
it, the page served in this process and following that CSC, and three ``processData`` jobs sent
while the page is open, so that Now shows real events. Debian's headless Chromium takes the
pictures.

With ``--demo-output DIR`` (the ``products`` directory a ``rapid_analysis demo`` left), the Image
page is that output's newest image instead: the real pipelines' plots (focal-plane map, mosaic,
mount tracking) and metrics.

    python bench/screenshots.py [--out doc/images] [--workdir DIR] [--demo-output DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import secrets
import sys
import tempfile

from benchlib import wait_enabled, write_csc_config
from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.csc import RapidAnalysisCsc
from lsst.ts.rapidanalysis.results.database import ResultsDatabase
from lsst.ts.rapidanalysis.web.browser import launch_options
from lsst.ts.rapidanalysis.web.sample_night import make_sample_night
from lsst.ts.rapidanalysis.web.server import start_server_in_background

INSTRUMENT = "LSSTComCam"
INDEX = 2
DAY_OBS = 20251115
N_VISITS = 16


async def take(out: pathlib.Path, workdir: pathlib.Path, demo_output: pathlib.Path | None) -> None:
    from playwright.async_api import async_playwright

    root = workdir / "products"
    database = root / "results.sqlite3"
    with ResultsDatabase(database) as db:
        names = make_sample_night(db, root, instrument=INSTRUMENT, day_obs=DAY_OBS, n_visits=N_VISITS, n_plots=4)
    config_dir = workdir / "config"
    write_csc_config(config_dir, {"output_root": str(root), "n_workers": 2, "threads_per_worker": 1})
    csc = RapidAnalysisCsc(index=INDEX, config_dir=config_dir, initial_state=sal.State.ENABLED, simulation_mode=1)
    remote = sal.Remote(csc.domain, "RapidAnalysis", INDEX, include=["summaryState", "jobResult"])
    await asyncio.gather(csc.start_task, remote.start_task)
    await wait_enabled(remote)
    url, stop = await asyncio.to_thread(start_server_in_background, str(database), root, follow=[INDEX])
    print(f"page at {url}")
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(**launch_options())
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(f"{url}/night/{INSTRUMENT}/{DAY_OBS}")
            # A focal-plane mode chosen by hand, so that Now shows one and why.
            await remote.cmd_setFocalPlaneMode.set_start(
                pattern="ccd_checkerboard", automatic=True, workerMode=1, timeout=30
            )
            # Three jobs while the page is open: their rows come in live; the Now page lists them.
            for seq in (N_VISITS + 1, N_VISITS + 2, N_VISITS + 3):
                await remote.cmd_processData.set_start(
                    dataId=json.dumps({"obsid": f"CC_O_{DAY_OBS}_{seq:06d}"}), pipeline="test.succeed", timeout=60
                )
                await remote.evt_jobResult.next(flush=False, timeout=60)
            await page.wait_for_timeout(2500)  # the rows' rechecks, and the "updated" highlight fading
            shots = [
                ("night", url, f"/night/{INSTRUMENT}/{DAY_OBS}"),
                ("now", url, "/"),
                ("image", url, f"/image/{INSTRUMENT}/{names[-1]}"),
                ("trends", url, f"/trends/{INSTRUMENT}/{DAY_OBS}?image={names[-1]}"),
            ]
            stop_demo = None
            if demo_output is not None:
                demo_url, stop_demo = await asyncio.to_thread(
                    start_server_in_background, str(demo_output / "results.sqlite3"), demo_output
                )
                shots[2] = ("image", demo_url, await asyncio.to_thread(_newest_image, demo_output))
            for name, base, path in shots:
                # The night table is wide (every column shown): a wide window for it.
                await page.set_viewport_size({"width": 1750 if name == "night" else 1400, "height": 900})
                await page.goto(base + path)
                await page.wait_for_timeout(1500)  # images drawn, the live feed connected
                target = out / f"page_{name}.png"
                await page.screenshot(path=str(target), full_page=name in ("image", "trends"))
                print(f"wrote {target}")
            await browser.close()
            if stop_demo is not None:
                await asyncio.to_thread(stop_demo)
    finally:
        await asyncio.to_thread(stop)
        await remote.close()
        await csc.close()


def _newest_image(output_root: pathlib.Path) -> str:
    """The Image page's path of the newest image with products under ``output_root``."""
    from urllib.parse import quote

    from lsst.ts.rapidanalysis.results.database import open_results

    with open_results(output_root / "results.sqlite3") as db:
        jobs = db.jobs(limit=200)
        instrument, image = next(
            (str(j["instrument"]), str(j["image_name"]))
            for j in jobs
            if j["image_name"] and len(db.products(image_name=str(j["image_name"]))) > 1
        )
    return f"/image/{quote(instrument)}/{quote(image)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("doc/images"), help="where the PNGs go")
    parser.add_argument("--workdir", type=pathlib.Path, default=None, help="keep the night here (default: temporary)")
    parser.add_argument(
        "--demo-output", type=pathlib.Path, default=None, help="a demo's products directory: its newest image's page"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    # A partition of our own: nothing else on the machine sees this CSC.
    os.environ["LSST_DDS_PARTITION_PREFIX"] = "screenshots_" + secrets.token_hex(6)
    os.environ.setdefault("LSST_SITE", "test")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        asyncio.run(take(args.out.absolute(), args.workdir.absolute(), args.demo_output))
    else:
        with tempfile.TemporaryDirectory() as workdir:
            asyncio.run(take(args.out.absolute(), pathlib.Path(workdir), args.demo_output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
