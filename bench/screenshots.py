"""Screenshots of the page (Now, Night, Image, Trends) for the documentation: ``doc/images/page_*.png``.

A generated LSSTComCam night (16 visits, focal-plane maps of the last four) in a fresh results
database, a real RapidAnalysis CSC (LSSTComCam, simulation mode, a Dask pool of 2) writing into
it, the page served in this process and following that CSC, and three ``processData`` jobs sent
while the page is open, so that Now shows real events. Debian's headless Chromium takes the
pictures.

    python bench/screenshots.py [--out doc/images] [--workdir DIR]
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
from lsst.ts.rapidanalysis.web.sample_night import make_sample_night
from lsst.ts.rapidanalysis.web.server import start_server_in_background

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTRUMENT = "LSSTComCam"
INDEX = 2
DAY_OBS = 20251115
N_VISITS = 16


async def take(out: pathlib.Path, workdir: pathlib.Path) -> None:
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
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(f"{url}/night/{INSTRUMENT}/{DAY_OBS}")
            # Three jobs while the page is open: their rows come in live; the Now page lists them.
            for seq in (N_VISITS + 1, N_VISITS + 2, N_VISITS + 3):
                await remote.cmd_processData.set_start(
                    dataId=json.dumps({"obsid": f"CC_O_{DAY_OBS}_{seq:06d}"}), pipeline="test.succeed", timeout=60
                )
                await remote.evt_jobResult.next(flush=False, timeout=60)
            await page.wait_for_timeout(2500)  # the rows' rechecks, and the "updated" highlight fading
            shots = [
                ("night", f"/night/{INSTRUMENT}/{DAY_OBS}"),
                ("now", "/"),
                ("image", f"/image/{INSTRUMENT}/{names[-1]}"),
                ("trends", f"/trends/{INSTRUMENT}/{DAY_OBS}?image={names[-1]}"),
            ]
            for name, path in shots:
                # The night table is wide (every column shown): a wide window for it.
                await page.set_viewport_size({"width": 1750 if name == "night" else 1400, "height": 900})
                await page.goto(url + path)
                await page.wait_for_timeout(1500)  # images drawn, the live feed connected
                target = out / f"page_{name}.png"
                await page.screenshot(path=str(target), full_page=name in ("image", "trends"))
                print(f"wrote {target}")
            await browser.close()
    finally:
        await asyncio.to_thread(stop)
        await remote.close()
        await csc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("doc/images"), help="where the PNGs go")
    parser.add_argument("--workdir", type=pathlib.Path, default=None, help="keep the night here (default: temporary)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    # A partition of our own: nothing else on the machine sees this CSC.
    os.environ["LSST_DDS_PARTITION_PREFIX"] = "screenshots_" + secrets.token_hex(6)
    os.environ.setdefault("LSST_SITE", "test")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        asyncio.run(take(args.out.absolute(), args.workdir.absolute()))
    else:
        with tempfile.TemporaryDirectory() as workdir:
            asyncio.run(take(args.out.absolute(), pathlib.Path(workdir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
