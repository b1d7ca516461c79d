"""``rapid_analysis demo``: a simulated observatory, end to end, on one machine.

It starts a camera simulator (a CSC on DDS that writes raws in the camera's own format), the
mount telemetry simulator, and the Rapid Analysis CSC in its own process with its own Dask
pool, in autonomous mode; then it observes as a ScriptQueue script would — a bias and science
images — while Rapid Analysis processes each image by itself as the camera reads it out
(``image_stats`` on the bias; ``sfm`` on every detector, gathered into visit metrics, and
``mount_torque`` on the science images). Then it asks for a focus sweep as ``OCPS:101`` would:
``--focus-sweep`` visits at 0.1 mm steps of ``FOCUSZ`` around a true best focus, written straight
into the raw store (`lsst.ts.rapidanalysis.sim.focus`: the camera simulator does not move focus),
and one ``processData(pipeline="focus_sweep")`` on them. It prints what came back per image, the
best focus against the truth, and where the products and the results database are. The page
(``rapid_analysis serve``, in a process of its own) serves the night as it happens, at the address
the demo prints first; ``rapid_analysis serve --output-root WORKDIR/products`` shows it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import time
from typing import Any

from ..data.camera import get_instrument
from ..sal import Domain, Remote, State, set_summary_state
from ..sal.testutils import set_random_lsst_dds_partition_prefix
from .csc_process import start_rapid_analysis
from .page_process import check_page, start_page

__all__ = ["add_demo_arguments", "run_demo_command", "DemoObservation"]

_CSC_CONFIG = """\
# Written by rapid_analysis demo.
data_roots: {{LATISS: {raw}, LSSTComCam: {raw}, LSSTCam: {raw}}}
raw_wait_timeout: 20.0
scheduler_address: ""
n_workers: {n_workers}
threads_per_worker: 1
worker_memory_limit: auto
processing_mode: asynchronous
max_queue_length: 500
default_time_limit: 300.0
lag_threshold: 60.0
gather_timeout: 5.0
regather_timeout: 45.0
mount_buffer_seconds: 600.0
mount_telemetry_wait: 5.0
autonomous:
  enabled: true
  pattern: all
  automatic: false
  worker_mode: 1
  science_pipelines: [sfm, mount_torque]
  dispersed_pipelines: [spectrum_examiner, mount_torque]
  calibration_pipelines: [image_stats]
  catchup_idle_seconds: 0
pipelines: {{}}
database_url: ""
output_root: {products}
output_url_root: ""
"""


class DemoObservation:
    """One row of the summary: an image, the per-detector jobs run on it, and what they measured."""

    def __init__(self, obsid: str, img_type: str, exp_time: float) -> None:
        self.obsid = obsid
        self.img_type = img_type
        self.exp_time = exp_time
        self.n_jobs = 0
        self.n_ok = 0
        self.visit: dict[str, float] = {}
        self.mount: dict[str, float] = {}
        self.success = False
        self.duration = 0.0
        self.latency = 0.0
        self.metrics: dict[str, list[float]] = {}
        self.products: list[str] = []
        self.error = ""

    def mean(self, key: str) -> float | None:
        """Mean of a metric over the detectors that reported it."""
        values = [v for v in self.metrics.get(key, []) if isinstance(v, int | float)]
        return sum(values) / len(values) if values else None


async def _collect(ra: Remote, observation: DemoObservation, n_detectors: int, t_readout: float) -> None:
    """Wait for everything Rapid Analysis does with one image by itself, and note what it measured.

    Science: ``sfm`` on each detector, its gather (``sfm_gather``) and ``mount_torque``;
    a bias: ``image_stats`` on each detector.
    """
    expected = n_detectors if observation.img_type == "BIAS" else n_detectors + 2
    observation.n_jobs = expected
    errors = []
    seen = 0
    deadline = time.monotonic() + 300
    while seen < expected:
        result = await ra.evt_jobResult.next(flush=False, timeout=max(1.0, deadline - time.monotonic()))
        if result.imageName != observation.obsid:
            continue
        seen += 1
        observation.duration += result.duration
        if not result.success:
            errors.append(f"{result.pipeline}: {result.errorReport}")
            continue
        observation.n_ok += 1
        details = json.loads(result.result)
        metrics = details.get("metrics", {})
        if result.pipeline == "sfm_gather":
            observation.visit = metrics
        elif result.pipeline == "mount_torque":
            observation.mount = metrics
        else:
            for key, value in metrics.items():
                observation.metrics.setdefault(key, []).append(value)
        observation.products += details.get("products", [])
    observation.latency = time.monotonic() - t_readout
    observation.success = observation.n_ok == observation.n_jobs
    observation.error = "; ".join(errors[:2])


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rapid_analysis demo``."""
    parser.add_argument(
        "--instrument", default="LSSTComCam", choices=["LATISS", "LSSTComCam", "LSSTCam"], help="camera to simulate"
    )
    parser.add_argument("--workdir", default="rapid_analysis_demo", help="where raws, products and the database go")
    parser.add_argument("--images", type=int, default=3, help="science images to take (after one bias)")
    parser.add_argument("--exp-time", type=float, default=15.0, help="exposure time of science images (s)")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=0.1,
        help="wall seconds per simulated second (0.1: a 15 s exposure takes 1.5 s)",
    )
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes of the CSC's pool")
    parser.add_argument(
        "--focus-sweep", type=int, default=5, metavar="N", help="visits of the focus sweep at the end (0: none)"
    )
    parser.add_argument("--no-page", action="store_true", help="do not serve the page while the demo runs")


def _say(message: str) -> None:
    print(message, flush=True)


async def _await_state(remote: Remote, state: State, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        data = await remote.evt_summaryState.next(flush=False, timeout=max(0.1, remaining))
        if data.summaryState == state:
            return
        if data.summaryState == State.FAULT:
            error = remote.evt_errorCode.get()
            raise RuntimeError(f"{remote.salinfo.name_index} went to FAULT: {error.errorReport if error else ''}")


async def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; return the process exit code."""
    from .observatory import make_telescope
    from .stream import StreamWriter

    instrument = get_instrument(args.instrument)
    workdir: pathlib.Path = args.workdir  # made absolute, with its config, by run_demo_command
    raw_root, products, config_dir = workdir / "raw", workdir / "products", workdir / "config"
    _say(
        f"Simulated observatory: {instrument.name} ({len(instrument.science_detectors)} science detectors), "
        f"workdir {workdir}"
    )

    t0 = time.monotonic()
    writer = StreamWriter(instrument, raw_root, detectors=[d.id for d in instrument.science_detectors])
    writer.prepare("BIAS", 0.0)
    writer.prepare("OBJECT", args.exp_time)
    _say(f"1. Raw templates rendered ({time.monotonic() - t0:.1f} s)")
    ra_process = await start_rapid_analysis(
        int(instrument.sal_index), config_dir, log_path=workdir / "rapid_analysis.log"
    )
    observations: list[DemoObservation] = []
    page: asyncio.subprocess.Process | None = None
    try:
        if not args.no_page:
            page, url = await start_page(products, int(instrument.sal_index), workdir / "page.log")
            _say(f"   The page, live while the demo runs: {url}/  (night: {url}/night/{instrument.name})")
        telescope = make_telescope(instrument, writer.write_exposure, time_scale=args.time_scale)
        async with Domain() as domain:
            # Subscribe only to what the script reads (an unread heartbeat queue fills and warns).
            ra = Remote(
                domain,
                "RapidAnalysis",
                int(instrument.sal_index),
                include=["summaryState", "errorCode", "workerPool", "jobResult"],
            )
            cam = Remote(domain, telescope.camera_name, include=["summaryState", "endReadout"])
            await asyncio.gather(ra.start_task, cam.start_task, telescope.start())
            _say(
                f"2. {telescope.camera_name} simulator ENABLED; mount telemetry flowing; "
                f"starting the Rapid Analysis CSC (index {int(instrument.sal_index)}, "
                f"its own Dask pool of {args.workers} workers)"
            )
            await _await_state(ra, State.ENABLED, timeout=120)
            pool = await ra.evt_workerPool.aget(timeout=30)
            _say(
                f"3. RapidAnalysis ENABLED: {pool.nWorkers} workers, scheduler {pool.schedulerAddress}; "
                "autonomous: it processes each image as the camera reads it out"
            )

            plan = [("BIAS", 0.0)] + [("OBJECT", args.exp_time)] * args.images
            for img_type, exp_time in plan:
                cam.evt_endReadout.flush()
                await cam.cmd_takeImages.set_start(
                    numImages=1,
                    expTime=exp_time,
                    shutter=exp_time > 0,
                    sensors="",
                    keyValueMap=f"imageType: {img_type}",
                    obsNote="demo",
                    timeout=60 + exp_time,
                )
                end = await cam.evt_endReadout.next(flush=False, timeout=30)
                t_readout = time.monotonic()
                observation = DemoObservation(end.imageName, img_type, exp_time)
                observations.append(observation)
                await _collect(ra, observation, len(instrument.science_detectors), t_readout)
                status = "ok" if observation.success else f"FAILED: {observation.error}"
                what = (
                    f"image_stats on {len(instrument.science_detectors)} detectors"
                    if img_type == "BIAS"
                    else f"sfm on {len(instrument.science_detectors)} detectors + gather + mount_torque"
                )
                _say(
                    f"   {end.imageName} {img_type:6s} → {what}: {status} "
                    f"({observation.latency:.1f} s from endReadout to the last jobResult)"
                )

            if args.focus_sweep > 0 and observations:
                sweep_ok = await _focus_sweep(ra, instrument, raw_root, observations[-1].obsid, args.focus_sweep)
            else:
                sweep_ok = True

            if page is not None:
                names = [o.obsid for o in observations]
                shown = await asyncio.to_thread(check_page, url, instrument.name, names)
                _say(f"   The page: {shown} ({url}/night/{instrument.name})")
            _say("4. Shutting the Rapid Analysis CSC down (standby → offline)")
            await set_summary_state(ra, State.OFFLINE, timeout=120)
            await ra.close()
            await cam.close()
        await telescope.close()
        code = await asyncio.wait_for(ra_process.wait(), 60)
    finally:
        for process in (ra_process, page):
            if process is not None and process.returncode is None:
                process.terminate()
                await process.wait()

    _print_summary(observations, products)
    return 0 if observations and all(o.success for o in observations) and sweep_ok and code == 0 else 1


async def _focus_sweep(ra: Remote, instrument: Any, raw_root: pathlib.Path, last_obsid: str, n_visits: int) -> bool:
    """Write a focus sweep into the raw store, ask for ``focus_sweep`` on it, print its result against the truth."""
    from .focus import simulate_focus_sweep, sweep_offsets
    from .scene import SceneConfig

    day_obs = int(last_obsid.split("_")[2])
    t0 = time.monotonic()
    sweep = await asyncio.to_thread(
        simulate_focus_sweep,
        raw_root,
        instrument,
        offsets=sweep_offsets(n_visits, 0.1),
        best_focus=0.037,
        scene=SceneConfig(n_stars=150, mag_bright=14.0, mag_faint=20.0, seeing_fwhm=0.8),
        day_obs=day_obs,
        first_seq=90001,
        scale=0.25,
    )
    _say(
        f"   Focus sweep: {n_visits} visits {sweep.obsids[0]}..{sweep.obsids[-1]} at FOCUSZ "
        f"{sweep.offsets[0]:+.2f}..{sweep.offsets[-1]:+.2f} mm, "
        f"true best focus {sweep.truth['best_focus_z_mm']:+.4f} mm "
        f"(written in {time.monotonic() - t0:.1f} s, straight into the raw store)"
    )
    t0 = time.monotonic()
    ack = await ra.cmd_processData.set_start(
        dataId=json.dumps(sweep.data_id),
        pipeline="focus_sweep",
        config=json.dumps({"visits": sweep.visits}),
        timeout=30,
    )
    job_id = json.loads(ack.result)["jobId"]
    deadline = time.monotonic() + 300
    while True:
        result = await ra.evt_jobResult.next(flush=False, timeout=max(1.0, deadline - time.monotonic()))
        if result.jobId == job_id:
            break
    if not result.success:
        _say(f"   focus_sweep FAILED: {result.errorReport}")
        return False
    details = json.loads(result.result)
    metrics = details.get("metrics", {})
    best, err = metrics.get("bestFocus"), metrics.get("bestFocusErr")
    flags = "; ".join(details.get("summary", {}).get("flags", [])) or "none"
    if isinstance(best, int | float) and isinstance(err, int | float):
        truth = sweep.truth["best_focus_z_mm"]
        _say(
            f"   focus_sweep → best focus {best:+.4f} ± {err:.4f} mm (truth {truth:+.4f}: off by "
            f'{abs(best - truth) / 0.1:.1%} of the step), FWHM there {metrics.get("fwhmAtBestFocus", 0):.2f}", '
            f"flags: {flags} ({time.monotonic() - t0:.1f} s from processData to its jobResult)"
        )
        for path in details.get("products", []):
            _say(f"     focus curve: {path}")
        return True
    _say(f"   focus_sweep → no best focus; flags: {flags}")
    return False


def _print_summary(observations: list[DemoObservation], products: pathlib.Path) -> None:
    _say("\nSummary (bias: means over detectors; science: visit medians, mount errors)")
    header = (
        f"{'image':22s} {'type':6s} {'exp s':>5s} {'jobs ok':>7s} {'wall s':>6s}  {'what Rapid Analysis measured':s}"
    )
    _say(header)
    _say("-" * 110)

    def fmt(value: float | None, digits: int = 2) -> str:
        return f"{value:.{digits}f}" if isinstance(value, int | float) else "—"

    for o in observations:
        if o.img_type == "BIAS":
            measured = f"overscan {fmt(o.mean('overscanLevel'), 1)} adu, read noise {fmt(o.mean('meanReadNoise'))} adu"
        else:
            v, m = o.visit, o.mount
            measured = (
                f'FWHM {fmt(v.get("psfFwhmMedian"))}" ({fmt(v.get("psfFwhmMin"))}-{fmt(v.get("psfFwhmMax"))}), '
                f"ZP {fmt(v.get('zeroPointMedian'))}, sky {fmt(v.get('skyBgMedian'), 0)} e-, "
                f"{v.get('nPsfStarTotal', '—')} PSF stars; mount az/el RMS {fmt(m.get('azRms'), 3)}/"
                f'{fmt(m.get("elRms"), 3)}", image impact {fmt(m.get("imageImpactRms"), 3)}"'
            )
        _say(
            f"{o.obsid:22s} {o.img_type:6s} {o.exp_time:5.1f} {f'{o.n_ok}/{o.n_jobs}':>7s} {o.latency:6.1f}  {measured}"
        )
    if any(o.img_type != "BIAS" and not isinstance(o.visit.get("zeroPointMedian"), int | float) for o in observations):
        _say(
            "(ZP —: the demo camera writes its frames from a few pre-rendered templates whose stars are not where\n"
            " each frame's header WCS puts them (sim.stream), so there is no reference catalog to match.)"
        )
    plots = sorted({p for o in observations for p in o.products})
    _say(f"\nProducts: {len(plots)} plots under {products}, e.g.")
    for path in plots[:4]:
        _say(f"  {path}")
    database = products / "results.sqlite3"
    _say(f"Results database: {database}")
    query = f"from lsst.ts.rapidanalysis.results import open_results; print(open_results('{database}').jobs())"
    _say(f'  python -c "{query}"')
    _say(f"The page, afterwards: rapid_analysis serve --output-root {products}")


def run_demo_command(args: argparse.Namespace) -> int:
    """Entry of ``rapid_analysis demo``."""
    if not os.environ.get("LSST_DDS_PARTITION_PREFIX"):
        set_random_lsst_dds_partition_prefix()
    os.environ.setdefault("LSST_SITE", "demo")
    args.workdir = pathlib.Path(args.workdir).resolve()
    raw_root, products, config_dir = args.workdir / "raw", args.workdir / "products", args.workdir / "config"
    for directory in (raw_root, products, config_dir):
        directory.mkdir(parents=True, exist_ok=True)
    (config_dir / "_init.yaml").write_text(_CSC_CONFIG.format(raw=raw_root, products=products, n_workers=args.workers))
    return asyncio.run(run_demo(args))
