"""Scale-out: the whole LSSTCam focal plane, every visit, on an external Dask cluster of W slots.

Issue 14 ("Measure"). For each W in ``--slots`` (default 16, 64, 190), fresh processes each:

* an external ``dask scheduler`` and ``--worker-processes`` (default 2) ``dask worker`` processes
  sharing W threads (one single-thread slot each), loopback only, each in its own working
  directory, preloading ``lsst.ts.rapidanalysis.dispatch.worker_task``;
* the Rapid Analysis CSC for LSSTCam in its own process (``run_rapid_analysis 3 --simulate``) with
  ``scheduler_address`` set to that scheduler, autonomous processing on, ``science_pipelines:
  [test.cost]``, pattern ``all`` with ``automatic: false`` (all 189 science detectors asked for
  every visit);
* the MTCamera simulator in this process, announcing an OBJECT image of 30 s (real time) every
  ``--cadence`` (34 s, start to start), its raws written before ``endReadout`` by
  `StreamWriter` at ``TINY_SCALE`` (every amp HDU, card and name real, 4 x 4 data pixels per amp:
  56 MB a visit instead of 14.3 GB), so the CSC resolves and checks real raw files.

``test.cost`` holds its slot for each detector as long as ``sfm`` would, scaled to a 1 s median
(log-normal, σ(ln) 0.2, seeded per image and detector: `detector_cost`), and returns ``sfm``'s
result shape; ``sfm_gather`` gathers each visit (``sfmVisitMetrics``, the focal-plane PNG).

Before the visits, one warm-up request (189 zero-cost jobs and their gather, not counted) so that
every worker has imported what the jobs need. Per visit: detectors processed (successful
``test.cost`` jobResults), latency from ``endReadout`` (the camera's send stamp) to the final
``sfmVisitMetrics`` (the CSC's), the slowest detector's cost, the CSC's CPU (psutil, process and
children) from one ``endReadout`` to the next, and the scheduler's and workers' CPU likewise.

Then the dispatch ceiling, with the camera idle: ``--burst-visits`` more visits' raws are written
(default 10: 1,890 detector jobs) and the same zero-cost ``test.cost`` tasks are run twice on the
same cluster: first as a bare Dask ``client.map`` of ``run_job`` from this process (the
reference), then through the CSC as ``processData`` commands sent at once (one per visit, each 189
jobs and a gather). Rate = jobs / (first send → last jobResult); the CSC's CPU during its burst
says whether it was the bottleneck. This bench's own Remote, reading every jobResult, costs more
CPU than the CSC publishing them, on the same 2 cores; so the burst is repeated (on new visits)
with a Remote that reads no jobResult, counting ended jobs from the CSC's 1 Hz ``poolStatus``
(a lower bound on the rate).

Targets (issue 14), printed pass/fail: at W = 190, 189/189 detectors in every visit and final visit
metrics within the visit's slowest detector cost + 2 s of endReadout; the CSC's CPU under 10 % of
a core at LSSTCam's rate (CPU per 34 s visit); a dispatch ceiling of at least 10 x LSSTCam's need
(189 jobs / 34 s = 5.6 jobs/s, so 55.6 jobs/s).

Usage::

    python bench/scale.py                          # W = 16, 64, 190; 20 visits each (~45 min)
    python bench/scale.py --slots 190 --visits 20
    python bench/scale.py --quick                   # W = 16, 3 visits, burst of 2 visits (smoke)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import operator
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil
from distributed import Client

from benchlib import Interrupts, StopRun, check_alive, median, say, shutdown_csc, write_csc_config
from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.dispatch.worker_task import run_job
from lsst.ts.rapidanalysis.pipelines.test_pipelines import COST_MEDIAN, detector_cost
from lsst.ts.rapidanalysis.sal.testutils import set_random_lsst_dds_partition_prefix
from lsst.ts.rapidanalysis.sim.camera_sim import CameraSimulator
from lsst.ts.rapidanalysis.sim.csc_process import start_rapid_analysis
from lsst.ts.rapidanalysis.sim.stream import TINY_SCALE, StreamWriter, make_obsid
from stream_rig import await_autonomous, make_remotes, start_camera, take_visit

INSTRUMENT = get_instrument("LSSTCam")
DETECTORS = [d.id for d in INSTRUMENT.science_detectors]
N_DETECTORS = len(DETECTORS)
SAL_INDEX = 3
EXP_TIME = 30.0
LSSTCAM_CADENCE = 34.0
#: LSSTCam's need: one job per science detector per 34 s visit.
NEED_RATE = N_DETECTORS / LSSTCAM_CADENCE
CEILING_FACTOR = 10.0
CPU_TARGET = 0.10
LATENCY_MARGIN = 2.0
PIPELINE = "test.cost"
#: The warm-up and burst visits: images of controller C (CCS), so that the camera, which numbers
#: its own (controller O) after the highest on disk, keeps counting from 1.
CONTROLLER = "C"
WARMUP_SEQ = 900
BURST_SEQ = 901


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _cpu(process: psutil.Process | None, children: bool = True) -> float:
    """CPU seconds (user + system) of a process and (``children``) its children; 0 once it is gone."""
    if process is None:
        return 0.0
    total = 0.0
    with contextlib.suppress(psutil.Error):
        for p in [process, *(process.children(recursive=True) if children else [])]:
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                total += times.user + times.system
    return total


# -- the cluster --


@dataclasses.dataclass
class Cluster:
    """An external Dask cluster: a scheduler and worker processes (each with its nanny)."""

    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]
    threads: list[int]

    @property
    def scheduler_ps(self) -> psutil.Process:
        return psutil.Process(self.scheduler.pid)

    def workers_cpu(self) -> float:
        return sum(_cpu(psutil.Process(w.pid)) for w in self.workers if w.poll() is None)

    def stop(self) -> None:
        """Workers first (each by its pid: SIGTERM, then SIGKILL), then the scheduler."""
        for group in (self.workers, [self.scheduler]):
            for process in group:
                if process.poll() is None:
                    process.terminate()
            for process in group:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _split(slots: int, n_processes: int) -> list[int]:
    n = max(1, min(n_processes, slots))
    return [slots // n + (1 if i < slots % n else 0) for i in range(n)]


def _spawn(args: list[str], cwd: pathlib.Path, log_name: str) -> subprocess.Popen:
    """A process in its own working directory and session (Ctrl-C reaches only the bench), output to a log."""
    with (cwd / log_name).open("w") as log:
        return subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)


async def start_cluster(workdir: pathlib.Path, slots: int, n_processes: int) -> Cluster:
    """``dask scheduler`` and ``dask worker`` processes with ``slots`` threads in all, on loopback."""
    dask = str(pathlib.Path(sys.executable).parent / "dask")
    sched_dir = workdir / "scheduler"
    sched_dir.mkdir(parents=True, exist_ok=True)
    scheduler_file = sched_dir / "scheduler.json"
    scheduler = _spawn(
        [
            dask,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--dashboard-address",
            "127.0.0.1:0",
            "--scheduler-file",
            str(scheduler_file),
        ],
        sched_dir,
        "scheduler.log",
    )
    deadline = time.monotonic() + 60
    address = ""
    while time.monotonic() < deadline and not address:
        if scheduler.poll() is not None:
            raise StopRun(f"dask scheduler exited with code {scheduler.returncode}; see {sched_dir / 'scheduler.log'}")
        with contextlib.suppress(OSError, ValueError, KeyError):
            address = json.loads(scheduler_file.read_text())["address"]
        await asyncio.sleep(0.2)
    if not address:
        scheduler.kill()
        raise StopRun("dask scheduler wrote no scheduler file within 60 s")
    threads = _split(slots, n_processes)
    workers = []
    for i, n_threads in enumerate(threads):
        worker_dir = workdir / f"worker-{i}"
        worker_dir.mkdir(parents=True, exist_ok=True)
        workers.append(
            _spawn(
                [
                    dask,
                    "worker",
                    address,
                    "--name",
                    f"scale-{i}",
                    "--nthreads",
                    str(n_threads),
                    "--nworkers",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--memory-limit",
                    "0",
                    "--local-directory",
                    str(worker_dir),
                    "--preload",
                    "lsst.ts.rapidanalysis.dispatch.worker_task",
                ],
                worker_dir,
                "worker.log",
            )
        )
    cluster = Cluster(address, scheduler, workers, threads)
    try:
        async with Client(address, asynchronous=True, timeout=30) as client:
            await client.wait_for_workers(len(threads), timeout=120)
            info = client.scheduler_info()
            n_threads = sum(w["nthreads"] for w in info["workers"].values())
        if n_threads != slots:
            raise StopRun(f"the cluster has {n_threads} threads, not {slots}")
    except BaseException:
        cluster.stop()
        raise
    return cluster


# -- what the camera and the CSC publish --


@dataclasses.dataclass
class Visit:
    number: int
    image_name: str
    end_tai: float
    end_mono: float
    csc_cpu: float
    sched_cpu: float
    workers_cpu: float
    late: float = 0.0
    ok: set[int] = dataclasses.field(default_factory=set)
    failed: list[str] = dataclasses.field(default_factory=list)
    last_detector_tai: float | None = None
    gathers: list[tuple[int, int, bool, bool]] = dataclasses.field(default_factory=list)
    final_metrics_tai: float | None = None
    first_metrics_tai: float | None = None
    gather_seconds: float | None = None
    #: Per successful detector job: when it started on its worker, and how long after its end
    #: (worker's clock) the CSC published its jobResult (TAI; one machine, one clock).
    starts: list[float] = dataclasses.field(default_factory=list)
    publish_delays: list[float] = dataclasses.field(default_factory=list)

    @functools.cached_property
    def max_cost(self) -> float:
        return max(detector_cost(self.image_name, d) for d in DETECTORS)

    @property
    def latency(self) -> float | None:
        return None if self.final_metrics_tai is None else self.final_metrics_tai - self.end_tai

    @property
    def detectors_latency(self) -> float | None:
        return None if self.last_detector_tai is None else self.last_detector_tai - self.end_tai


class Watcher:
    """Per image: endReadout, detector jobResults, gathers, visit metrics; and the CPU at each endReadout."""

    def __init__(self, csc: psutil.Process, cluster: Cluster) -> None:
        self.csc = csc
        self.cluster = cluster
        self.counting = False
        self.visits: list[Visit] = []
        self.by_name: dict[str, Visit] = {}
        self.new_visit = asyncio.Event()
        self.mode: Any = None
        self.mode_seen = asyncio.Event()
        self.pool: Any = None
        # Ceiling and warm-up requests: job results and gathers by image.
        self.results: dict[str, list[tuple[float, bool, str]]] = {}
        self.gathered: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.failures: dict[str, int] = {}

    def on_end_readout(self, data: Any) -> None:
        if not self.counting or data.imageName in self.by_name:
            return
        visit = Visit(
            len(self.visits) + 1,
            data.imageName,
            data.private_sndStamp,
            time.monotonic(),
            _cpu(self.csc),
            _cpu(self.cluster.scheduler_ps),
            self.cluster.workers_cpu(),
        )
        self.visits.append(visit)
        self.by_name[visit.image_name] = visit
        self.new_visit.set()

    def on_focal_plane_mode(self, data: Any) -> None:
        self.mode = data
        self.mode_seen.set()

    def on_pool_status(self, data: Any) -> None:
        self.pool = data

    def on_job_result(self, data: Any) -> None:
        stamp = data.private_sndStamp
        if data.pipeline == PIPELINE:
            self.results.setdefault(data.imageName, []).append((stamp, data.success, data.errorReport[:200]))
            visit = self.by_name.get(data.imageName)
            if visit is not None:
                if data.success:
                    with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                        visit.ok.add(int(json.loads(data.dataId)["detectors"][0]))
                    visit.last_detector_tai = max(visit.last_detector_tai or 0.0, stamp)
                    visit.starts.append(data.startTime)
                    visit.publish_delays.append(stamp - data.endTime)
                elif len(visit.failed) < 3:
                    visit.failed.append(data.errorReport[:200])
        elif data.pipeline == "sfm_gather":
            visit = self.by_name.get(data.imageName)
            if visit is not None and data.success:
                visit.gather_seconds = data.duration
        if not data.success:
            key = f"{data.pipeline}: {data.errorReport[:100]}"
            self.failures[key] = self.failures.get(key, 0) + 1
        self.changed.set()

    def on_visit_gathered(self, data: Any) -> None:
        visit = self.by_name.get(data.imageName)
        if visit is not None:
            visit.gathers.append((data.nProcessed, data.nExpected, data.partial, data.regather))

    def on_visit_metrics(self, data: Any) -> None:
        stamp = data.private_sndStamp
        visit = self.by_name.get(data.imageName)
        if visit is not None:
            if visit.first_metrics_tai is None:
                visit.first_metrics_tai = stamp
            if not data.partial or visit.final_metrics_tai is None:
                visit.final_metrics_tai = stamp
        elif not data.partial:
            self.gathered[data.imageName] = stamp
        self.changed.set()


# -- one W --


def csc_settings(run_dir: pathlib.Path, address: str) -> dict[str, Any]:
    raw = str(run_dir / "raw")
    return {
        "data_roots": {"LATISS": raw, "LSSTComCam": raw, "LSSTCam": raw},
        "raw_wait_timeout": 30.0,
        "scheduler_address": address,
        "max_queue_length": 10_000,
        "default_time_limit": 300.0,
        "autonomous": {
            "enabled": True,
            "pattern": "all",
            "automatic": False,
            "science_pipelines": [PIPELINE],
            "dispersed_pipelines": [],
            "calibration_pipelines": [],
        },
        "pipelines": {},
        "output_root": str(run_dir / "products"),
    }


async def _process_data(ra: sal.Remote, obsid: str, config: dict[str, Any]) -> None:
    await ra.cmd_processData.set_start(
        dataId=json.dumps({"obsid": obsid}), pipeline=PIPELINE, config=json.dumps(config), timeout=120
    )


async def _wait_for(watcher: Watcher, done: Any, timeout: float, check: Any) -> bool:
    """Wait until ``done()`` (re-checked whenever the CSC publishes), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not done():
        check()
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        watcher.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher.changed.wait(), min(left, 1.0))
    return True


async def bare_dask_rate(
    cluster: Cluster, raws: dict[str, dict[int, pathlib.Path]], out: pathlib.Path
) -> dict[str, Any]:
    """The reference: the same zero-cost ``test.cost`` tasks as a ``client.map`` of ``run_job``, gathered."""
    tasks = [(obsid, d, str(p)) for obsid, paths in raws.items() for d, p in sorted(paths.items())]
    async with Client(cluster.address, asynchronous=True, timeout=30) as client:
        scheduler = cluster.scheduler_ps
        cpu0, t0 = _cpu(scheduler), time.perf_counter()
        futures = client.map(
            run_job,
            [f"bare-{obsid}-{d}" for obsid, d, _ in tasks],
            [PIPELINE] * len(tasks),
            [[path] for _, _, path in tasks],
            [{"median": 0.0}] * len(tasks),
            [str(out / f"bare-{obsid}-{d}") for obsid, d, _ in tasks],
            [True] * len(tasks),
            pure=False,
        )
        outcomes = await client.gather(futures)
        seconds = time.perf_counter() - t0
        sched_cpu = _cpu(scheduler) - cpu0
        del futures
        # Dask's own rate on this cluster: as many no-op tasks (a builtin, nothing to import).
        await asyncio.sleep(1.0)
        t0 = time.perf_counter()
        await client.gather(client.map(operator.neg, range(len(tasks)), pure=False))
        noop_seconds = time.perf_counter() - t0
    ok = sum(1 for o in outcomes if o.status == "succeeded")
    return {
        "jobs": len(tasks),
        "ok": ok,
        "seconds": seconds,
        "rate": len(tasks) / seconds,
        "sched_cpu": sched_cpu,
        "noop_rate": len(tasks) / noop_seconds,
    }


async def run_w(slots: int, args: argparse.Namespace, workdir: pathlib.Path) -> dict[str, Any]:
    """One W: cluster, CSC, camera; warm-up, ``args.visits`` visits, the dispatch ceiling; the figures."""
    prefix = set_random_lsst_dds_partition_prefix()
    run_dir = workdir / f"W{slots}"
    run_dir.mkdir(parents=True, exist_ok=True)
    raw_root = run_dir / "raw"
    result: dict[str, Any] = {"slots": slots, "stopped": "", "log": str(run_dir / "csc.log")}
    say(f"\n=== W = {slots}: workdir {run_dir}; DDS partition prefix {prefix}")
    t_wall0 = time.monotonic()
    cluster = await start_cluster(run_dir / "cluster", slots, args.worker_processes)
    say(f"cluster: scheduler {cluster.address}, {len(cluster.workers)} worker processes x {cluster.threads} threads")
    writer = StreamWriter(INSTRUMENT, raw_root, detectors=DETECTORS, n_templates=1, scale=TINY_SCALE, eager=False)
    writer.prepare("OBJECT", EXP_TIME)
    config_dir = run_dir / "config"
    write_csc_config(config_dir, csc_settings(run_dir, cluster.address))
    process = await start_rapid_analysis(
        SAL_INDEX, config_dir, simulate=True, log_path=run_dir / "csc.log", new_session=True
    )
    camera: CameraSimulator | None = None
    try:
        csc_ps = psutil.Process(process.pid)
        watcher = Watcher(csc_ps, cluster)
        async with sal.Domain() as domain:
            ra, cam = make_remotes(domain, SAL_INDEX)
            try:
                camera, day_obs = await start_camera(
                    ra, cam, watcher, writer, raw_root, args.camera_time_scale, INTERRUPTS
                )
                t0 = time.monotonic()
                await await_autonomous(ra, process, watcher)
                result["startup_seconds"] = time.monotonic() - t0
                await asyncio.sleep(2.0)  # a poolStatus; and the CSC's endReadout reader matches the camera's writer
                say(
                    f"CSC ENABLED in {result['startup_seconds']:.1f} s: {watcher.mode.pattern} "
                    f"({watcher.mode.nSelected} detectors), automatic={watcher.mode.automatic}; "
                    f"pool {watcher.pool.nWorkers if watcher.pool else '?'} workers"
                )

                def check() -> None:
                    check_alive(ra, process)

                # Warm-up: every worker imports what test.cost and sfm_gather need (not counted).
                warm = make_obsid(INSTRUMENT, day_obs, WARMUP_SEQ, controller=CONTROLLER)
                await asyncio.to_thread(writer.write_exposure, warm, exp_time=EXP_TIME)
                t_warm = time.monotonic()
                await _process_data(ra, warm, {"median": 0.0})
                warmed = await _wait_for(watcher, lambda: warm in watcher.gathered, 120, check)
                say(f"warm-up: 189 zero-cost jobs and their gather in {time.monotonic() - t_warm:.1f} s ({warmed=})")

                await observe(args, watcher, ra, cam, process)
                result["visits"] = watcher.visits
                result["ceiling"] = await ceiling(args, watcher, ra, process, cluster, writer, day_obs, run_dir)
                # The same burst again with this bench listening to no jobResult (a Remote without
                # it): what the CSC sustains when its listeners do not share its 2 cores.
                ra = await quiet_remote(domain, ra, watcher)
                result["ceiling"]["quiet"] = await quiet_ceiling(args, watcher, ra, process, cluster, writer, day_obs)
            except StopRun as e:
                result["stopped"] = str(e)
                say(f"STOPPED: {e}")
            except asyncio.CancelledError:
                result["stopped"] = "interrupted"
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
            finally:
                result.setdefault("visits", watcher.visits)
                result["failures"] = dict(watcher.failures)
                if camera is not None:
                    with contextlib.suppress(Exception):
                        await camera.close()
                result["shutdown"] = await shutdown_csc(ra, process)
                say(f"CSC shut down: {result['shutdown']}")
    finally:
        if process.returncode is None:
            result["shutdown"] = await shutdown_csc(None, process)
        writer.close()
        await asyncio.to_thread(cluster.stop)
        if not args.keep:
            await asyncio.to_thread(shutil.rmtree, raw_root, True)
    result["wall_seconds"] = time.monotonic() - t_wall0
    return result


async def observe(
    args: argparse.Namespace, watcher: Watcher, ra: sal.Remote, cam: sal.Remote, process: asyncio.subprocess.Process
) -> None:
    """``args.visits`` images, one per cadence slot (start to start); then the last visit's gather."""
    watcher.counting = True
    loop_start = time.monotonic()
    for i in range(args.visits):
        slot = loop_start + i * args.cadence
        if slot > time.monotonic():
            await asyncio.sleep(slot - time.monotonic())
        check_alive(ra, process)
        late = max(0.0, time.monotonic() - slot)
        visit, _ = await take_visit(cam, watcher, EXP_TIME, "bench/scale.py", 120 + EXP_TIME * args.camera_time_scale)
        visit.late = late
        previous = watcher.visits[-2] if len(watcher.visits) > 1 else None
        pool = watcher.pool
        say(
            f"  visit {visit.number:2d} {visit.image_name}  late {late:4.1f} s  "
            f"previous: {len(previous.ok) if previous else '—'}/{N_DETECTORS} ok, "
            f"final metrics {_fmt(previous.latency if previous else None)} s  "
            f"nQueued {pool.nQueued if pool else '—'} nRunning {pool.nRunning if pool else '—'}"
        )
    last = watcher.visits[-1]
    await _wait_for(watcher, lambda: last.final_metrics_tai is not None, 90, lambda: check_alive(ra, process))
    watcher.counting = False


async def ceiling(
    args: argparse.Namespace,
    watcher: Watcher,
    ra: sal.Remote,
    process: asyncio.subprocess.Process,
    cluster: Cluster,
    writer: StreamWriter,
    day_obs: str,
    run_dir: pathlib.Path,
) -> dict[str, Any]:
    """Jobs/s through the CSC against a bare ``client.map`` of the same tasks, on the same cluster."""
    obsids = [make_obsid(INSTRUMENT, day_obs, BURST_SEQ + i, controller=CONTROLLER) for i in range(args.burst_visits)]
    raws = {}
    for obsid in obsids:
        raws[obsid] = await asyncio.to_thread(writer.write_exposure, obsid, exp_time=EXP_TIME)
    n_jobs = sum(len(p) for p in raws.values())
    out: dict[str, Any] = {"jobs": n_jobs}
    # A bare warm-up first, not counted: a new client's first map of a new task prefix ran at a
    # fraction of the rate of the next one (46 against 381 jobs/s in a smoke run).
    warm = make_obsid(INSTRUMENT, day_obs, BURST_SEQ - 2, controller=CONTROLLER)
    warm_raws = {warm: await asyncio.to_thread(writer.write_exposure, warm, exp_time=EXP_TIME)}
    await bare_dask_rate(cluster, warm_raws, run_dir / "bare0")
    await asyncio.sleep(1.0)
    bare = await bare_dask_rate(cluster, raws, run_dir / "bare")
    out["bare"] = bare
    say(
        f"  ceiling, bare Dask client.map: {bare['ok']}/{bare['jobs']} in {bare['seconds']:.2f} s = "
        f"{bare['rate']:.0f} jobs/s (scheduler CPU {bare['sched_cpu']:.1f} s); no-op tasks (operator.neg): "
        f"{bare['noop_rate']:.0f}/s"
    )
    await asyncio.sleep(2.0)
    me = psutil.Process()
    psutil.cpu_percent()  # starts the machine-wide interval
    me0 = _cpu(me, children=False)
    workers0 = cluster.workers_cpu()
    cpu0, sched0, t0_tai, t0 = _cpu(watcher.csc), _cpu(cluster.scheduler_ps), sal.current_tai(), time.perf_counter()
    await asyncio.gather(*(_process_data(ra, obsid, {"median": 0.0}) for obsid in obsids))
    sent = time.perf_counter() - t0

    def results() -> int:
        return sum(len(watcher.results.get(o, [])) for o in obsids)

    finished = await _wait_for(watcher, lambda: results() >= n_jobs, 600, lambda: check_alive(ra, process))
    last_tai = max((s for o in obsids for s, _, _ in watcher.results.get(o, [])), default=t0_tai)
    seconds = last_tai - t0_tai
    cpu, sched = _cpu(watcher.csc) - cpu0, _cpu(cluster.scheduler_ps) - sched0
    machine = psutil.cpu_percent() / 100 * (os.cpu_count() or 1)
    bench_cpu = _cpu(me, children=False) - me0
    workers_cpu = cluster.workers_cpu() - workers0
    ok = sum(1 for o in obsids for _, success, _ in watcher.results.get(o, []) if success)
    await _wait_for(watcher, lambda: all(o in watcher.gathered for o in obsids), 60, lambda: None)
    gathered_tai = max((watcher.gathered.get(o, 0.0) for o in obsids), default=0.0)
    out["csc"] = {
        "ok": ok,
        "ended": results(),
        "finished": finished,
        "send_seconds": sent,
        "seconds": seconds,
        "rate": results() / seconds if seconds > 0 else None,
        "csc_cpu": cpu,
        "csc_cpu_fraction": cpu / seconds if seconds > 0 else None,
        "csc_cpu_per_job_ms": 1e3 * cpu / max(1, results()),
        "sched_cpu": sched,
        "machine_cores_busy": machine,
        "bench_cpu": bench_cpu,
        "workers_cpu": workers_cpu,
        "gathered_after": gathered_tai - t0_tai if gathered_tai else None,
    }
    # The reference again, after the CSC's burst: the first map may have paid for a colder cluster.
    await asyncio.sleep(2.0)
    again = await bare_dask_rate(cluster, raws, run_dir / "bare2")
    out["bare_after"] = again
    c = out["csc"]
    say(
        f"  ceiling, through the CSC ({len(obsids)} processData x 189): {ok}/{n_jobs} ok, {c['ended']} ended in "
        f"{seconds:.2f} s = {_fmt(c['rate'], 0)} jobs/s (commands acked in {sent:.2f} s); CSC CPU {cpu:.1f} s "
        f"({_fmt(c['csc_cpu_fraction'], 2)} of a core, {c['csc_cpu_per_job_ms']:.1f} ms/job); scheduler CPU "
        f"{sched:.1f} s; workers {workers_cpu:.1f} s; this bench (receiving every event) {bench_cpu:.1f} s; "
        f"the machine {machine:.2f} of "
        f"{os.cpu_count()} cores busy; last gather {_fmt(c['gathered_after'], 1)} s after the first command"
    )
    say(
        f"  ceiling, bare Dask client.map again (after the CSC's burst): {again['ok']}/{again['jobs']} in "
        f"{again['seconds']:.2f} s = {again['rate']:.0f} jobs/s; no-op tasks {again['noop_rate']:.0f}/s"
    )
    return out


async def quiet_remote(domain: sal.Domain, ra: sal.Remote, watcher: Watcher) -> sal.Remote:
    """Replace ``ra`` by a Remote of the CSC that reads no jobResult (its 1 Hz poolStatus counts jobs)."""
    await ra.close()
    quiet = sal.Remote(
        domain, "RapidAnalysis", SAL_INDEX, include=["summaryState", "errorCode", "poolStatus", "sfmVisitMetrics"]
    )
    await quiet.start_task
    quiet.tel_poolStatus.callback = watcher.on_pool_status
    quiet.tel_sfmVisitMetrics.callback = watcher.on_visit_metrics
    await asyncio.sleep(2.0)
    return quiet


async def quiet_ceiling(
    args: argparse.Namespace,
    watcher: Watcher,
    ra: sal.Remote,
    process: asyncio.subprocess.Process,
    cluster: Cluster,
    writer: StreamWriter,
    day_obs: str,
) -> dict[str, Any]:
    """The CSC's burst with no jobResult listener here: ended jobs counted from poolStatus (1 Hz).

    Rate = (detector jobs + gathers) / (first send → the first poolStatus that counts them all
    ended): the 1 s sampling makes it a lower bound.
    """
    first = BURST_SEQ + args.burst_visits + 10
    obsids = [make_obsid(INSTRUMENT, day_obs, first + i, controller=CONTROLLER) for i in range(args.burst_visits)]
    for obsid in obsids:
        await asyncio.to_thread(writer.write_exposure, obsid, exp_time=EXP_TIME)
    n_jobs = len(obsids) * (N_DETECTORS + 1)
    samples: list[tuple[float, int]] = []
    previous = watcher.on_pool_status

    def on_pool_status(data: Any) -> None:
        previous(data)
        samples.append((data.private_sndStamp, data.jobsSucceeded + data.jobsFailed))
        watcher.changed.set()

    ra.tel_poolStatus.callback = on_pool_status
    await _wait_for(watcher, lambda: bool(samples), 10, lambda: None)
    base = samples[-1][1] if samples else 0
    me = psutil.Process()
    psutil.cpu_percent()
    me0, cpu0, sched0 = _cpu(me, children=False), _cpu(watcher.csc), _cpu(cluster.scheduler_ps)
    workers0 = cluster.workers_cpu()
    t0_tai = sal.current_tai()
    await asyncio.gather(*(_process_data(ra, obsid, {"median": 0.0}) for obsid in obsids))
    finished = await _wait_for(
        watcher, lambda: bool(samples) and samples[-1][1] >= base + n_jobs, 600, lambda: check_alive(ra, process)
    )
    end_tai = next((t for t, n in samples if n >= base + n_jobs), sal.current_tai())
    seconds = end_tai - t0_tai
    out = {
        "jobs": n_jobs,
        "finished": finished,
        "seconds": seconds,
        "rate": n_jobs / seconds if seconds > 0 else None,
        "csc_cpu": _cpu(watcher.csc) - cpu0,
        "sched_cpu": _cpu(cluster.scheduler_ps) - sched0,
        "bench_cpu": _cpu(me, children=False) - me0,
        "workers_cpu": cluster.workers_cpu() - workers0,
        "machine_cores_busy": psutil.cpu_percent() / 100 * (os.cpu_count() or 1),
    }
    out["csc_cpu_fraction"] = out["csc_cpu"] / seconds if seconds > 0 else None
    out["csc_cpu_per_job_ms"] = 1e3 * out["csc_cpu"] / n_jobs
    ra.tel_poolStatus.callback = previous
    say(
        f"  ceiling, through the CSC with no jobResult listener here ({len(obsids)} processData x 189, + gathers): "
        f"{n_jobs} jobs ended in <= {seconds:.2f} s = >= {_fmt(out['rate'], 0)} jobs/s (poolStatus, 1 Hz); CSC CPU "
        f"{out['csc_cpu']:.1f} s ({_fmt(out['csc_cpu_fraction'], 2)} of a core, {out['csc_cpu_per_job_ms']:.1f} "
        f"ms/job); scheduler {out['sched_cpu']:.1f} s; workers {out['workers_cpu']:.1f} s; this bench "
        f"{out['bench_cpu']:.1f} s; the machine "
        f"{out['machine_cores_busy']:.2f} of {os.cpu_count()} cores busy"
    )
    return out


# -- report --


def summarize(r: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    visits: list[Visit] = r.get("visits", [])
    slots = r["slots"]
    say(f"\n--- W = {slots}: per visit (s from endReadout; cost = the slowest detector's test.cost)")
    header = (
        f"{'#':>2s} {'image':20s} {'ok':>7s} {'gathers':>16s} {'start1':>6s} {'startN':>6s} {'pub':>5s} "
        f"{'last det':>8s} {'final':>6s} {'cost':>5s} "
        f"{'margin':>6s} {'gather':>6s} {'CSC cpu':>7s} {'sched':>6s} {'workers':>7s}"
    )
    say(header)
    say("-" * len(header))
    intervals = []
    for i, v in enumerate(visits):
        nxt = visits[i + 1] if i + 1 < len(visits) else None
        if nxt is not None:
            span = nxt.end_mono - v.end_mono
            interval = (span, nxt.csc_cpu - v.csc_cpu, nxt.sched_cpu - v.sched_cpu, nxt.workers_cpu - v.workers_cpu)
            intervals.append(interval)
        else:
            interval = None
        gathers = " ".join(f"{n}/{e}{'P' if p else ''}{'R' if g else ''}" for n, e, p, g in v.gathers) or "—"
        margin = None if v.latency is None else v.max_cost + LATENCY_MARGIN - v.latency
        start1 = min(v.starts) - v.end_tai if v.starts else None
        start_n = max(v.starts) - v.end_tai if v.starts else None
        publish = max(v.publish_delays) if v.publish_delays else None
        say(
            f"{v.number:2d} {v.image_name:20s} {len(v.ok):3d}/{N_DETECTORS} {gathers:>16s} "
            f"{_fmt(start1):>6s} {_fmt(start_n):>6s} {_fmt(publish):>5s} "
            f"{_fmt(v.detectors_latency):>8s} {_fmt(v.latency):>6s} {v.max_cost:5.2f} {_fmt(margin):>6s} "
            f"{_fmt(v.gather_seconds):>6s} "
            + (f"{interval[1]:7.2f} {interval[2]:6.2f} {interval[3]:7.1f}" if interval else f"{'—':>7s}")
        )
        for message in v.failed:
            say(f"     failed: {message}")
    say(
        "  ok: detectors with a successful test.cost jobResult; gathers: nProcessed/nExpected (P partial, "
        "R re-gather); start1/startN: first/last detector job started on a worker; pub: longest worker end → "
        "jobResult; last det: last detector jobResult; final: final sfmVisitMetrics; "
        "margin: cost + 2 s − final (>= 0 passes); "
        "gather: sfm_gather's duration; CPU (s) from this endReadout to the next"
    )
    n_ok = [len(v.ok) for v in visits]
    latencies = [v.latency for v in visits if v.latency is not None]
    margins = [v.max_cost + LATENCY_MARGIN - v.latency for v in visits if v.latency is not None]
    csc_per_visit = [c for _, c, _, _ in intervals]
    spans = [s for s, _, _, _ in intervals]
    csc_visit = median(csc_per_visit)
    csc_fraction_at_lsstcam = None if csc_visit is None else csc_visit / LSSTCAM_CADENCE
    sched_per_visit = [s for _, _, s, _ in intervals]
    workers_per_visit = [w for _, _, _, w in intervals]
    ceiling = r.get("ceiling") or {}
    csc_c, bare = ceiling.get("csc") or {}, ceiling.get("bare") or {}
    bare_after = ceiling.get("bare_after") or {}
    quiet = ceiling.get("quiet") or {}
    jobs_per_visit = N_DETECTORS + 1  # the detectors and the gather
    s = {
        "slots": slots,
        "visits": len(visits),
        "ok_min": min(n_ok) if n_ok else None,
        "ok_median": median([float(n) for n in n_ok]),
        "complete_visits": sum(1 for n in n_ok if n == N_DETECTORS),
        "final_p50": median(latencies),
        "final_max": max(latencies) if latencies else None,
        "max_cost_max": max((v.max_cost for v in visits), default=None),
        "margin_min": min(margins) if margins else None,
        "missing_metrics": sum(1 for v in visits if v.latency is None),
        "start_first_p50": median([min(v.starts) - v.end_tai for v in visits if v.starts]),
        "start_last_p50": median([max(v.starts) - v.end_tai for v in visits if v.starts]),
        "publish_delay_max_p50": median([max(v.publish_delays) for v in visits if v.publish_delays]),
        "gather_p50": median([v.gather_seconds for v in visits if v.gather_seconds is not None]),
        "after_last_detector_p50": median(
            [v.latency - v.detectors_latency for v in visits if v.latency is not None and v.detectors_latency]
        ),
        "csc_cpu_per_visit": csc_visit,
        "csc_cpu_per_job_ms": None if csc_visit is None else 1e3 * csc_visit / jobs_per_visit,
        "csc_cpu_fraction": csc_fraction_at_lsstcam,
        "cadence_measured": median(spans),
        "sched_cpu_per_visit": median(sched_per_visit),
        "workers_cpu_per_visit": median(workers_per_visit),
        "ceiling_csc": csc_c.get("rate"),
        "ceiling_bare": bare.get("rate"),
        "ceiling_bare_after": bare_after.get("rate"),
        "ceiling_quiet": quiet.get("rate"),
        "ceiling_quiet_cpu_fraction": quiet.get("csc_cpu_fraction"),
        "ceiling_quiet_cpu_per_job_ms": quiet.get("csc_cpu_per_job_ms"),
        "ceiling_quiet_machine_cores_busy": quiet.get("machine_cores_busy"),
        "ceiling_noop": bare.get("noop_rate"),
        "ceiling_jobs": ceiling.get("jobs"),
        "ceiling_csc_ok": csc_c.get("ok"),
        "ceiling_csc_cpu_fraction": csc_c.get("csc_cpu_fraction"),
        "ceiling_csc_cpu_per_job_ms": csc_c.get("csc_cpu_per_job_ms"),
        "ceiling_sched_cpu": csc_c.get("sched_cpu"),
        "ceiling_machine_cores_busy": csc_c.get("machine_cores_busy"),
        "ceiling_bare_sched_cpu": bare.get("sched_cpu"),
        "stopped": r.get("stopped", ""),
        "failures": r.get("failures", {}),
        "wall_seconds": r.get("wall_seconds"),
    }
    say(f"\n--- W = {slots}: summary")
    say(
        f"  detectors processed per visit: min {s['ok_min']}, median {_fmt(s['ok_median'], 0)} of {N_DETECTORS}; "
        f"{s['complete_visits']} of {s['visits']} visits complete; visits without final metrics: "
        f"{s['missing_metrics']}"
    )
    say(
        f"  endReadout → final visit metrics: p50 {_fmt(s['final_p50'])} s, max {_fmt(s['final_max'])} s "
        f"(slowest detector cost up to {_fmt(s['max_cost_max'])} s; smallest margin to cost + 2 s: "
        f"{_fmt(s['margin_min'])} s)"
    )
    say(
        f"  where the time goes (p50 over visits, s from endReadout): first job running {_fmt(s['start_first_p50'])}, "
        f"last job running {_fmt(s['start_last_p50'])}; slowest worker end → jobResult "
        f"{_fmt(s['publish_delay_max_p50'])}; last detector jobResult → final metrics "
        f"{_fmt(s['after_last_detector_p50'])} (sfm_gather runs {_fmt(s['gather_p50'])})"
    )
    say(
        f"  CSC CPU per visit {_fmt(s['csc_cpu_per_visit'])} s (median over {len(intervals)} endReadout intervals of "
        f"{_fmt(s['cadence_measured'], 1)} s) = {_fmt(s['csc_cpu_per_job_ms'], 1)} ms per job ({jobs_per_visit} jobs "
        f"a visit) = {_fmt(None if csc_fraction_at_lsstcam is None else 100 * csc_fraction_at_lsstcam, 1)} % "
        f"of a core at LSSTCam's rate"
    )
    say(
        f"  scheduler CPU per visit {_fmt(s['sched_cpu_per_visit'])} s "
        f"({_fmt(None if s['sched_cpu_per_visit'] is None else 100 * s['sched_cpu_per_visit'] / LSSTCAM_CADENCE, 1)}"
        f" % of a core); workers (all processes) {_fmt(s['workers_cpu_per_visit'], 1)} s per visit"
    )
    ratio = s["ceiling_csc"] / s["ceiling_bare"] if s["ceiling_csc"] and s["ceiling_bare"] else None
    s["ceiling_ratio"] = ratio
    say(
        f"  dispatch ceiling ({s['ceiling_jobs']} zero-cost jobs): through the CSC {_fmt(s['ceiling_csc'], 0)} jobs/s, "
        f"bare Dask client.map {_fmt(s['ceiling_bare'], 0)} jobs/s before it and {_fmt(s['ceiling_bare_after'], 0)} "
        f"after (ratio to the first {_fmt(ratio, 3)}; Dask's no-op tasks "
        f"{_fmt(s['ceiling_noop'], 0)}/s); CSC at "
        f"{_fmt(s['ceiling_csc_cpu_fraction'], 2)} of a core during its burst "
        f"({_fmt(s['ceiling_csc_cpu_per_job_ms'], 1)} ms CPU per job); the machine "
        f"{_fmt(s['ceiling_machine_cores_busy'], 2)} of {os.cpu_count()} cores busy"
    )
    say(
        f"  with no jobResult listener in this bench: >= {_fmt(s['ceiling_quiet'], 0)} jobs/s through the CSC, at "
        f"{_fmt(s['ceiling_quiet_cpu_fraction'], 2)} of a core ({_fmt(s['ceiling_quiet_cpu_per_job_ms'], 1)} ms "
        f"CPU per job); the machine {_fmt(s['ceiling_quiet_machine_cores_busy'], 2)} of {os.cpu_count()} cores busy"
    )
    if s["failures"]:
        for key, count in sorted(s["failures"].items(), key=lambda kv: -kv[1])[:6]:
            say(f"    {count:5d} x failed {key}")
    if s["stopped"]:
        say(f"  STOPPED: {s['stopped']}")
    return s


def targets(all_s: list[dict[str, Any]], args: argparse.Namespace) -> list[tuple[str, bool | None, str]]:
    out: list[tuple[str, bool | None, str]] = []
    for s in all_s:
        w = s["slots"]
        if w >= N_DETECTORS:
            full = s["visits"] >= args.visits and s["complete_visits"] == s["visits"] and s["visits"] > 0
            out.append(
                (
                    f"W={w}: 189/189 detectors in every one of {args.visits} visits",
                    full,
                    f"{s['complete_visits']}/{s['visits']} visits complete, min {s['ok_min']}",
                )
            )
            latency_ok = s["margin_min"] is not None and s["margin_min"] >= 0 and s["missing_metrics"] == 0
            out.append(
                (
                    f"W={w}: final visit metrics within the slowest detector's cost + 2 s",
                    latency_ok,
                    f"final p50 {_fmt(s['final_p50'])} s, max {_fmt(s['final_max'])} s; smallest margin "
                    f"{_fmt(s['margin_min'])} s",
                )
            )
        cpu = s["csc_cpu_fraction"]
        out.append(
            (
                f"W={w}: CSC CPU < {CPU_TARGET:.0%} of a core at LSSTCam's rate",
                None if cpu is None else cpu < CPU_TARGET,
                f"{_fmt(None if cpu is None else 100 * cpu, 1)} %",
            )
        )
        rate = s["ceiling_csc"]
        out.append(
            (
                f"W={w}: dispatch ceiling >= {CEILING_FACTOR:g} x {NEED_RATE:.1f} = {CEILING_FACTOR * NEED_RATE:.1f} "
                f"jobs/s",
                None if rate is None else rate >= CEILING_FACTOR * NEED_RATE,
                f"{_fmt(rate, 0)} jobs/s ({_fmt(None if rate is None else rate / NEED_RATE, 1)} x need; bare Dask "
                f"{_fmt(s['ceiling_bare'], 0)}; with no jobResult listener here >= {_fmt(s['ceiling_quiet'], 0)})",
            )
        )
    return out


# -- main --


INTERRUPTS = Interrupts("shutting down")


async def amain(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    INTERRUPTS.task = task
    INTERRUPTS.install()
    owned = args.workdir is None
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="scale_", dir="/tmp")) if owned else pathlib.Path(args.workdir)
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    say(
        f"bench/scale.py: LSSTCam {N_DETECTORS} detectors/visit, W = {', '.join(map(str, args.slots))}, "
        f"{args.visits} visits every {args.cadence:g} s, camera time scale {args.camera_time_scale:g}; "
        f"{PIPELINE} median {COST_MEDIAN:g} s; {args.worker_processes} dask worker processes; "
        f"{os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}; workdir {workdir}"
    )
    summaries = []
    t0 = time.monotonic()
    try:
        for slots in args.slots:
            r = await run_w(slots, args, workdir)
            summaries.append(summarize(r, args))
            if INTERRUPTS.received:
                break
    except asyncio.CancelledError:
        say("interrupted")
        task.uncancel()
    finally:
        if owned and not args.keep:
            await asyncio.to_thread(shutil.rmtree, workdir, True)
        elif args.keep:
            say(f"kept {workdir}")
    say("\n=== Summary")
    header = (
        f"{'W':>4s} {'visits':>6s} {'det min/med':>11s} {'final p50':>9s} {'final max':>9s} {'CSC cpu/visit':>13s} "
        f"{'ms/job':>6s} {'% core':>6s} {'sched cpu/visit':>15s} {'ceiling CSC':>11s} {'bare Dask':>9s}"
    )
    say(header)
    for s in summaries:
        fraction = s["csc_cpu_fraction"]
        detectors = f"{s['ok_min']}/{_fmt(s['ok_median'], 0)}"
        say(
            f"{s['slots']:4d} {s['visits']:6d} {detectors:>11s} "
            f"{_fmt(s['final_p50']):>9s} {_fmt(s['final_max']):>9s} {_fmt(s['csc_cpu_per_visit']):>13s} "
            f"{_fmt(s['csc_cpu_per_job_ms'], 1):>6s} {_fmt(None if fraction is None else 100 * fraction, 1):>6s} "
            f"{_fmt(s['sched_cpu_per_visit']):>15s} {_fmt(s['ceiling_csc'], 0):>11s} {_fmt(s['ceiling_bare'], 0):>9s}"
        )
    say("\nTargets:")
    for name, ok, detail in targets(summaries, args):
        verdict = "n/a " if ok is None else ("PASS" if ok else "FAIL")
        say(f"  [{verdict}] {name}: {detail}")
    say(f"total wall time {time.monotonic() - t0:.0f} s")
    say("JSON " + json.dumps({"args": vars(args) | {"slots": args.slots}, "runs": summaries}, default=str))
    return 130 if INTERRUPTS.received else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slots", default="16,64,190", help="comma list of W, worker slots (default 16,64,190)")
    parser.add_argument("--visits", type=int, default=20, help="visits per W (default 20)")
    parser.add_argument("--cadence", type=float, default=LSSTCAM_CADENCE, help="s from one image's start to the next")
    parser.add_argument(
        "--camera-time-scale", type=float, default=1.0, help="camera wall seconds per simulated second (default 1)"
    )
    parser.add_argument("--worker-processes", type=int, default=2, help="dask worker processes sharing the W slots")
    parser.add_argument(
        "--burst-visits", type=int, default=10, help="visits (189 jobs each) in the dispatch-ceiling burst"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: W=16, 3 visits, a burst of 2 visits")
    parser.add_argument("--workdir", default=None, help="working directory (default a new one under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir (logs, products, raws)")
    args = parser.parse_args()
    if args.quick:
        args.visits = min(args.visits, 3)
        args.burst_visits = min(args.burst_visits, 2)
        if args.slots == parser.get_default("slots"):
            args.slots = "16"
    try:
        args.slots = [int(w) for w in str(args.slots).split(",") if w.strip()]
    except ValueError:
        parser.error(f"--slots must be a comma list of integers, not {args.slots!r}")
    if not args.slots or min(args.slots) < 1 or args.visits < 1 or args.burst_visits < 1:
        parser.error("--slots, --visits and --burst-visits must be >= 1")
    os.environ["LSST_SITE"] = os.environ.get("LSST_SITE") or "bench"
    sys.exit(asyncio.run(amain(args)))


if __name__ == "__main__":
    main()
