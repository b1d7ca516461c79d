"""Keeping up with a simulated LSSTCam stream: automatic focal-plane mode against fixed ``all``.

Issue 7 ("Measure"). In one run, for each mode in ``--modes`` (default ``automatic fixed-all``),
with a fresh CSC process, raw root and results database each:

* the Rapid Analysis CSC for LSSTCam (``run_rapid_analysis 3``, index 3) in its own process, its
  own LocalCluster of 2 worker processes, autonomous processing on with ``science_pipelines:
  [sfm]``, ``worker_mode`` 1 (consuming), ``backlog_max_images: 3``;

  - ``automatic``: pattern ``all``, ``automatic: true`` (the ladder 189 → 108 → 96 → 45 → 17),
    ``catchup_idle_seconds: 0``;
  - ``automatic-catchup``: as ``automatic``, with ``catchup_idle_seconds: 2``: the detectors the
    ladder leaves out are caught up while no image has work (column ``cu``); raws are then kept
    until the disk needs the room, since catch-up reads them later;
  - ``fixed-all``: pattern ``all``, ``automatic: false``, ``catchup_idle_seconds: 0``;

* an MTCamera simulator in this process writing full-size raws of the 189 imaging detectors of
  every visit (`StreamWriter`, templates rendered once before timing; 189 × 75.6 MB = 14.3 GB a
  visit), one OBJECT image (30 s) per cadence slot, slots measured from start to start;
* Remotes here watching ``MTCamera.endReadout`` and the CSC's ``focalPlaneMode``,
  ``visitGathered``, ``sfmVisitMetrics``, ``poolStatus`` and ``jobResult``.

There is no mount simulator in this bench: ``mount_torque`` is not run (it is not in
``science_pipelines``), so the pool spends its time on ``sfm`` and ``sfm_gather`` only.

The camera's exposure and readout are compressed (``--camera-time-scale``, default 0.05: a 30 s
exposure takes 1.5 s of wall time) because on this machine writing a visit's 14.3 GB takes
20–35 s by itself (the simulator writes the files during readout and publishes ``endReadout``
once they are on disk); at time scale 1 an image would take 30 s + the write, ~55–65 s, and the
34 s cadence could not be kept. The header still says ``EXPTIME = 30``. Writing the raws costs
about one core for most of each cadence (kernel copies): on a 2-core machine the pool does not
get the whole machine, and the CSC's measured cost per detector includes that contention.

Per visit: latency from ``endReadout`` (the camera's ``private_sndStamp``) to the first and the
final ``sfmVisitMetrics`` of that image, the pattern and number of detectors in force, the first
gather's nProcessed/nExpected, the detectors processed by the end of the run (successful
``sfm`` jobResults), jobs dropped from the backlog, and ``poolStatus.nQueued`` at that visit's
``endReadout`` and its maximum until the next one.

Disk: a visit's raw directory is deleted, in the background, once every sfm job of it has ended;
and, oldest first, when the next visit would otherwise leave less than 15 GB free (never the
newest visit). With ~80 GB free that is at most four visits (57 GB) on disk while one is written,
one fewer than fixed ``all`` keeps in its backlog (the newest and ``backlog_max_images: 3`` older):
the oldest backlog image's jobs then fail on missing raws instead of being dropped (column
``raws``: ``room!n``, n its jobs still pending). The run stops cleanly if the free space would drop
below 15 GB.

Usage::

    python bench/keepup.py                      # 20 visits × 34 s × 2 modes, ~30 min
    python bench/keepup.py --accelerated        # cadence / 4, camera time scale / 4
    python bench/keepup.py --quick              # 3 visits, accelerated (a smoke run)
    python bench/keepup.py --modes automatic --visits 10 --keep --workdir /tmp/ku
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import re
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from typing import Any

from benchlib import Interrupts, StopRun, check_alive, median, say, shutdown_csc
from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.sal.testutils import set_random_lsst_dds_partition_prefix
from lsst.ts.rapidanalysis.sim.camera_sim import CameraSimulator
from lsst.ts.rapidanalysis.sim.csc_process import start_rapid_analysis
from lsst.ts.rapidanalysis.sim.stream import StreamWriter
from stream_rig import await_autonomous, make_remotes, start_camera, take_visit

INSTRUMENT = get_instrument("LSSTCam")
SAL_INDEX = 3
EXP_TIME = 30.0
GB = 1e9
VISIT_BYTES = 189 * 75.6e6
MIN_FREE_BYTES = 15 * GB
GATHER_TIMEOUT = 5.0
REGATHER_TIMEOUT = 45.0

MODES: dict[str, dict[str, Any]] = {
    "automatic": {"pattern": "all", "automatic": True, "worker_mode": 1, "catchup_idle_seconds": 0.0},
    "automatic-catchup": {"pattern": "all", "automatic": True, "worker_mode": 1, "catchup_idle_seconds": 2.0},
    "fixed-all": {"pattern": "all", "automatic": False, "worker_mode": 1, "catchup_idle_seconds": 0.0},
}

CONFIG = """\
# Written by bench/keepup.py ({mode}).
data_roots: {{LATISS: {raw}, LSSTComCam: {raw}, LSSTCam: {raw}}}
raw_wait_timeout: 30.0
scheduler_address: ""
n_workers: 2
threads_per_worker: 1
worker_memory_limit: auto
processing_mode: asynchronous
max_queue_length: 2000
default_time_limit: 300.0
lag_threshold: 60.0
gather_timeout: {gather_timeout}
regather_timeout: {regather_timeout}
mount_buffer_seconds: 600.0
mount_telemetry_wait: 5.0
autonomous:
  enabled: true
  generators: []
  pattern: {pattern}
  automatic: {automatic}
  worker_mode: {worker_mode}
  science_pipelines: [sfm]
  dispersed_pipelines: [spectrum_examiner]
  calibration_pipelines: [image_stats]
  backlog_max_images: 3
  backlog_max_age: 300.0
  catchup_idle_seconds: {catchup_idle_seconds}
pipelines: {{}}
database_url: ""
output_root: {products}
output_url_root: ""
"""


@dataclasses.dataclass
class Visit:
    number: int
    image_name: str
    end_tai: float
    end_mono: float
    take_seconds: float = 0.0
    late_seconds: float = 0.0
    pattern: str = ""
    n_selected: int = 0
    decided_by: str = ""
    first_metrics_tai: float | None = None
    final_metrics_tai: float | None = None
    n_metrics: int = 0
    gathers: list[tuple[int, int, bool, bool, float]] = dataclasses.field(default_factory=list)
    sfm_ok: int = 0
    catchup_ok: int = 0  # of sfm_ok, caught up after the visit's own work
    catchup_put_off: int = 0  # catch-up jobs abandoned or put off for a newer image (not lost)
    sfm_failed: int = 0
    sfm_dropped: int = 0
    sfm_seconds: list[float] = dataclasses.field(default_factory=list)
    queued_at_end: int | None = None
    max_queued: int = 0
    load1: float = 0.0
    free_gb: float = 0.0
    deleted: str = ""
    pending_at_delete: int | None = None
    failures: list[str] = dataclasses.field(default_factory=list)
    affordable: int | None = None  # the automatic choice's affordable count (from the CSC log)

    @property
    def latency(self) -> float | None:
        return None if self.first_metrics_tai is None else self.first_metrics_tai - self.end_tai

    @property
    def final_latency(self) -> float | None:
        return None if self.final_metrics_tai is None else self.final_metrics_tai - self.end_tai

    @property
    def n_expected(self) -> int | None:
        return self.gathers[0][1] if self.gathers else None

    @property
    def sfm_ended(self) -> int:
        return self.sfm_ok + self.sfm_failed + self.sfm_dropped

    @property
    def final_gathered(self) -> bool:
        return any((not partial) or regather for _, _, partial, regather, _ in self.gathers)


class Watcher:
    """Collects what the camera and the CSC publish, per image."""

    def __init__(self) -> None:
        self.visits: list[Visit] = []
        self.by_name: dict[str, Visit] = {}
        self.orphans: dict[str, int] = {}
        self.pool: Any = None
        self.mode_history: list[dict[str, Any]] = []
        self.mode: Any = None
        self.gather_seconds: list[float] = []
        self.gather_failed: list[str] = []
        self.n_pool_samples = 0
        self.max_queued = 0
        self.new_visit = asyncio.Event()
        self.mode_seen = asyncio.Event()
        self.closing = False  # set when the measurement ends: what comes later is the shutdown's
        self.stage_seconds: dict[str, list[float]] = {}  # sfm's own timings (isr includes reading the raw)
        # jobResult written − the worker's end time: how long the CSC holds a finished job's slot to publish it.
        self.publish_delays: list[float] = []
        self.busy_seconds = 0.0  # worker seconds of sfm and sfm_gather jobs that ran during the measurement
        self.close_tai: float | None = None
        self.after_close: dict[str, int] = {}

    # -- camera --

    def on_end_readout(self, data: Any) -> None:
        if data.imageName in self.by_name:
            return
        visit = Visit(len(self.visits) + 1, data.imageName, data.private_sndStamp, time.monotonic())
        if self.mode is not None:
            visit.pattern, visit.n_selected, visit.decided_by = (
                self.mode.pattern,
                self.mode.nSelected,
                self.mode.decidedBy,
            )
        if self.pool is not None:
            visit.queued_at_end = self.pool.nQueued
            visit.max_queued = self.pool.nQueued
        self.visits.append(visit)
        self.by_name[visit.image_name] = visit
        self.new_visit.set()

    # -- the CSC --

    def on_focal_plane_mode(self, data: Any) -> None:
        self.mode = data
        self.mode_seen.set()
        self.mode_history.append(
            {
                "tai": data.private_sndStamp,
                "after_visit": len(self.visits),
                "pattern": data.pattern,
                "nSelected": data.nSelected,
                "automatic": data.automatic,
                "decidedBy": data.decidedBy,
                "reason": data.reason,
            }
        )
        # Published (on a change only) as the CSC dispatches an image: it belongs to the newest one.
        if self.visits:
            visit = self.visits[-1]
            visit.pattern, visit.n_selected, visit.decided_by = data.pattern, data.nSelected, data.decidedBy

    def on_visit_gathered(self, data: Any) -> None:
        if self.closing:
            return
        visit = self.by_name.get(data.imageName)
        if visit is not None:
            visit.gathers.append((data.nProcessed, data.nExpected, data.partial, data.regather, data.private_sndStamp))

    def on_visit_metrics(self, data: Any) -> None:
        if self.closing:
            return
        visit = self.by_name.get(data.imageName)
        if visit is None:
            self.orphans[data.imageName] = self.orphans.get(data.imageName, 0) + 1
            return
        stamp = data.private_sndStamp or sal.current_tai()
        if visit.first_metrics_tai is None:
            visit.first_metrics_tai = stamp
        visit.final_metrics_tai = stamp
        visit.n_metrics += 1

    def on_pool_status(self, data: Any) -> None:
        if self.closing:
            return
        self.pool = data
        self.n_pool_samples += 1
        self.max_queued = max(self.max_queued, data.nQueued)
        if self.visits:
            visit = self.visits[-1]
            visit.max_queued = max(visit.max_queued, data.nQueued)

    def on_job_result(self, data: Any) -> None:
        if self.closing:
            key = f"{data.pipeline} {'succeeded' if data.success else data.errorReport[:60]}"
            self.after_close[key] = self.after_close.get(key, 0) + 1
            return
        if data.duration > 0 and data.pipeline in ("sfm", "sfm_gather"):
            self.busy_seconds += data.duration
            if data.endTime > 0:
                self.publish_delays.append(data.private_sndStamp - data.endTime)
        if data.pipeline == "sfm_gather":
            if data.success:
                self.gather_seconds.append(data.duration)
            else:
                self.gather_failed.append(f"{data.imageName}: {data.errorReport[:200]}")
            return
        if data.pipeline != "sfm":
            return
        visit = self.by_name.get(data.imageName)
        if visit is None:
            self.orphans[data.imageName] = self.orphans.get(data.imageName, 0) + 1
            return
        if data.success:
            visit.sfm_ok += 1
            visit.catchup_ok += data.trigger == "catchup"
            visit.sfm_seconds.append(data.duration)
            with contextlib.suppress(ValueError, KeyError, IndexError, TypeError, AttributeError):
                timings = json.loads(data.result)["summary"]["detectors"][0]["timings"]
                for stage, seconds in timings.items():
                    self.stage_seconds.setdefault(stage, []).append(float(seconds))
        elif "to be caught up later" in data.errorReport:
            visit.catchup_put_off += 1
        elif data.errorReport.startswith("dropped"):
            visit.sfm_dropped += 1
        else:
            visit.sfm_failed += 1
            if len(visit.failures) < 3:
                visit.failures.append(data.errorReport[:200])


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _load1() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _log_tail(log_path: pathlib.Path, n: int = 15) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _raw_dir(raw_root: pathlib.Path, image_name: str) -> pathlib.Path:
    day_obs = image_name.split("_")[2]
    return raw_root / INSTRUMENT.name / day_obs / image_name


class RawJanitor:
    """Deletes raw directories in the background, so that the cadence is not held up by it.

    After each endReadout (`tidy`): the visits every sfm job of which has ended (and whose final
    gather came) go; then, oldest first, as many others as needed for the next visit to leave
    ``MIN_FREE_BYTES`` free. Never the newest visit, nor the one being written. Deleting a file
    whose pages are still being written back waits for the disk, so it can take many seconds.
    """

    def __init__(self, raw_root: pathlib.Path, keep_for_catchup: bool = False) -> None:
        self.raw_root = raw_root
        # Catch-up reads a visit's raws after its own jobs have ended: delete only for room.
        self.keep_for_catchup = keep_for_catchup
        self.task: asyncio.Task | None = None
        self.seconds: list[float] = []

    @staticmethod
    def done(visit: Visit) -> bool:
        expected = visit.n_expected
        return expected is not None and visit.sfm_ended >= expected and visit.final_gathered

    def free(self) -> int:
        return shutil.disk_usage(self.raw_root).free

    def tidy(self, visits: list[Visit], newest: int) -> None:
        previous = self.task
        self.task = asyncio.create_task(self._tidy(previous, list(visits), newest))

    async def wait(self) -> None:
        if self.task is not None:
            await self.task

    async def _tidy(self, previous: asyncio.Task | None, visits: list[Visit], newest: int) -> None:
        if previous is not None:
            await previous
        for visit in visits:
            if not self.keep_for_catchup and not visit.deleted and visit.number < newest and self.done(visit):
                await self._delete(visit, "done")
        for visit in visits:
            if self.free() - VISIT_BYTES >= MIN_FREE_BYTES:
                break
            if not visit.deleted and visit.number < newest:
                await self._delete(visit, "room")

    async def _delete(self, visit: Visit, why: str) -> None:
        expected = visit.n_expected
        visit.pending_at_delete = None if expected is None else max(0, expected - visit.sfm_ended)
        visit.deleted = why
        t0 = time.monotonic()
        await asyncio.to_thread(shutil.rmtree, _raw_dir(self.raw_root, visit.image_name), True)
        self.seconds.append(time.monotonic() - t0)


def _write_config(mode: str, mode_dir: pathlib.Path) -> pathlib.Path:
    settings = MODES[mode]
    raw, products, config_dir = mode_dir / "raw", mode_dir / "products", mode_dir / "config"
    for directory in (raw, products, config_dir):
        directory.mkdir(parents=True, exist_ok=True)
    (config_dir / "_init.yaml").write_text(
        CONFIG.format(
            mode=mode,
            raw=raw,
            products=products,
            gather_timeout=GATHER_TIMEOUT,
            regather_timeout=REGATHER_TIMEOUT,
            pattern=settings["pattern"],
            automatic=str(settings["automatic"]).lower(),
            worker_mode=settings["worker_mode"],
            catchup_idle_seconds=settings["catchup_idle_seconds"],
        )
    )
    return config_dir


async def run_mode(mode: str, args: argparse.Namespace, workdir: pathlib.Path) -> dict[str, Any]:
    """One mode: a fresh CSC, camera, raw root and database; ``args.visits`` visits; the results."""
    prefix = set_random_lsst_dds_partition_prefix()
    mode_dir = workdir / mode
    config_dir = _write_config(mode, mode_dir)
    raw_root = mode_dir / "raw"
    log_path = mode_dir / "rapid_analysis.log"
    watcher = Watcher()
    result: dict[str, Any] = {"mode": mode, "settings": MODES[mode], "log": str(log_path), "stopped": ""}
    say(f"\n=== {mode}: {MODES[mode]}; workdir {mode_dir}; DDS partition prefix {prefix}")

    t_wall0 = time.monotonic()
    writer = StreamWriter(
        INSTRUMENT,
        raw_root,
        detectors=[d.id for d in INSTRUMENT.science_detectors],
        n_templates=args.n_templates,
        eager=False,
    )
    render = writer.prepare("OBJECT", EXP_TIME)
    say(f"raw templates (OBJECT, {EXP_TIME:g} s, {args.n_templates} per type) rendered in {render:.1f} s")

    # Its own session: Ctrl-C reaches the bench only, and the bench shuts the CSC down.
    process = await start_rapid_analysis(
        SAL_INDEX, config_dir, log_path=log_path, loglevel=args.csc_loglevel, new_session=True
    )
    camera: CameraSimulator | None = None
    try:
        async with sal.Domain() as domain:
            ra, cam = make_remotes(domain, SAL_INDEX)
            try:
                camera, _ = await start_camera(
                    ra, cam, watcher, writer, raw_root, args.camera_time_scale, INTERRUPTS, write_timeout=300.0
                )
                t0 = time.monotonic()
                await await_autonomous(ra, process, watcher)
                await asyncio.sleep(3.0)  # let the CSC's endReadout reader match the camera's writer
                startup = time.monotonic() - t0
                say(
                    f"CSC ENABLED in {startup:.1f} s; autonomous: {watcher.mode.pattern} ({watcher.mode.nSelected}), "
                    f"automatic={watcher.mode.automatic}, workerMode={watcher.mode.workerMode}; "
                    f"camera time scale {args.camera_time_scale:g}, cadence {args.cadence:g} s, {args.visits} visits"
                )
                result["startup_seconds"] = startup
                await observe(args, watcher, ra, cam, raw_root, process, result)
            except StopRun as e:
                result["stopped"] = str(e)
                say(f"STOPPED: {e}")
            except asyncio.CancelledError:
                result["stopped"] = "interrupted"
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
            except Exception as e:
                result["stopped"] = f"error: {e!r}"
                say(f"STOPPED by an error: {e!r}")
                traceback.print_exc(file=sys.stdout)
            finally:
                watcher.closing = True
                watcher.close_tai = sal.current_tai()
                if camera is not None:
                    with contextlib.suppress(Exception):
                        await camera.close()
                shutdown = await shutdown_csc(ra, process)
                say(f"CSC shut down: {shutdown}")
                result["shutdown"] = shutdown
    finally:
        if process.returncode is None:  # the Domain could not be made: no Remote to command it with
            result["shutdown"] = await shutdown_csc(None, process)
        writer.close()
        await asyncio.to_thread(shutil.rmtree, raw_root, True)  # always: up to 57 GB
    result["wall_seconds"] = time.monotonic() - t_wall0
    result.update(summarize(watcher, log_path))
    print_mode(mode, watcher, result)
    return result


async def observe(
    args: argparse.Namespace,
    watcher: Watcher,
    ra: sal.Remote,
    cam: sal.Remote,
    raw_root: pathlib.Path,
    process: asyncio.subprocess.Process,
    result: dict[str, Any],
) -> None:
    """Take ``args.visits`` images, one per cadence slot (start to start), then let the last ones finish."""
    loop_start = time.monotonic()
    starts: list[float] = []
    janitor = RawJanitor(raw_root, keep_for_catchup=result["settings"]["catchup_idle_seconds"] > 0)
    for i in range(args.visits):
        slot = loop_start + i * args.cadence
        now = time.monotonic()
        if slot > now:
            await asyncio.sleep(slot - now)
        check_alive(ra, process)
        free = janitor.free()
        if free - VISIT_BYTES < MIN_FREE_BYTES:
            t_wait = time.monotonic()
            await janitor.wait()
            free = janitor.free()
            if watcher.visits and free - VISIT_BYTES < MIN_FREE_BYTES:
                janitor.tidy(watcher.visits, len(watcher.visits))
                await janitor.wait()
                free = janitor.free()
            result["waited_for_deletion"] = result.get("waited_for_deletion", 0.0) + time.monotonic() - t_wait
            if free - VISIT_BYTES < MIN_FREE_BYTES:
                raise StopRun(
                    f"free disk {free / GB:.1f} GB: another visit ({VISIT_BYTES / GB:.1f} GB) would leave less than "
                    f"{MIN_FREE_BYTES / GB:.0f} GB; stopping before visit {i + 1}"
                )
        late = max(0.0, time.monotonic() - slot)
        starts.append(time.monotonic())
        visit, take = await take_visit(cam, watcher, EXP_TIME, "bench/keepup.py", timeout=360)
        visit.take_seconds, visit.late_seconds = take, late
        visit.load1 = _load1()
        visit.free_gb = shutil.disk_usage(raw_root).free / GB
        janitor.tidy(watcher.visits, visit.number)
        pool = watcher.pool
        say(
            f"  visit {visit.number:2d} {visit.image_name}  take {take:5.1f} s (late {late:4.1f})  "
            f"nQueued {visit.queued_at_end if visit.queued_at_end is not None else '—'} "
            f"nRunning {pool.nRunning if pool is not None else '—'}  "
            f"mode {visit.pattern}({visit.n_selected}) {visit.decided_by}  "
            f"free {visit.free_gb:.0f} GB  load {visit.load1:.1f}"
        )
    result["start_intervals"] = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    result["delete_seconds"] = janitor.seconds
    # Let the last visits' gathers (and final re-gathers) happen.
    deadline = time.monotonic() + REGATHER_TIMEOUT + 30
    tail = watcher.visits[-min(len(watcher.visits), 4) :]
    while time.monotonic() < deadline:
        check_alive(ra, process)
        if all(v.final_gathered for v in tail) and all(v.first_metrics_tai is not None for v in watcher.visits):
            break
        await asyncio.sleep(1.0)
    await asyncio.sleep(3.0)  # the final sfm_gather's telemetry
    await janitor.wait()
    result["drain_seconds"] = time.monotonic() - (watcher.visits[-1].end_mono if watcher.visits else time.monotonic())


def _halves(values: list[float | None], n: int = 10) -> tuple[list[float | None], list[float | None]]:
    """First and last ``n`` values (halves if there are fewer than 2n)."""
    k = min(n, max(1, len(values) // 2))
    return values[:k], values[-k:]


def summarize(watcher: Watcher, log_path: pathlib.Path) -> dict[str, Any]:
    visits = watcher.visits
    latencies = [v.latency for v in visits]
    first, last = _halves(latencies)
    first_ok = [x for x in first if x is not None]
    last_ok = [x for x in last if x is not None]
    m_first, m_last = median(first_ok), median(last_ok)
    growth = m_last / m_first if m_first and m_last is not None else None
    missing = sum(1 for x in latencies if x is None)
    processed = sum(v.sfm_ok for v in visits)
    costs = [s for v in visits for s in v.sfm_seconds]
    ends = [v.end_tai for v in visits]
    takes = [v.take_seconds for v in visits]
    span = (watcher.close_tai - visits[0].end_tai) if visits and watcher.close_tai else None
    delays = sorted(watcher.publish_delays)
    end_intervals = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    log_text = ""
    with contextlib.suppress(OSError):
        log_text = log_path.read_text(errors="replace")
    log_lines = log_text.splitlines()
    errors = [line for line in log_lines if " ERROR " in line or "Traceback" in line or " CRITICAL " in line]
    warnings = [line for line in log_lines if " WARNING " in line]
    affordable: dict[str, int] = {}
    for line in log_lines:
        match = re.search(
            r"(MC_O_\d{8}_\d{6}) \(science\): \d+ of \d+ detectors \(automatic: .*= (\d+) affordable", line
        )
        if match:
            affordable[match[1]] = int(match[2])
    for visit in visits:
        visit.affordable = affordable.get(visit.image_name)
    last_reason = ""
    for line in reversed(log_lines):
        if "(science):" in line and "affordable" in line:
            last_reason = line.split("detectors (", 1)[-1].rstrip(")")
            break
    categories: dict[str, int] = {}
    for line in errors + warnings:
        if "Traceback" in line:
            continue
        text = line.split(" ", 2)[-1]  # without the date and time
        text = re.sub(r"ra-[0-9a-f]{12}", "ra-…", text)
        text = re.sub(r"MC_O_\d{8}_\d{6}", "MC_O_…", text)
        text = re.sub(r"\d+(\.\d+)?", "N", text)[:150]
        categories[text] = categories.get(text, 0) + 1
    final_mode = watcher.mode_history[-1] if watcher.mode_history else {}
    return {
        "n_visits": len(visits),
        "latency_first_median": m_first,
        "latency_first_max": max(first_ok) if first_ok else None,
        "latency_last_median": m_last,
        "latency_last_max": max(last_ok) if last_ok else None,
        "latency_growth": growth,
        "latency_window": len(first),
        "visits_missing_metrics": missing,
        "final_latency_median": median([v.final_latency for v in visits if v.final_latency is not None]),
        "detectors_processed": processed,
        "detectors_per_visit": processed / len(visits) if visits else 0.0,
        "detectors_caught_up": sum(v.catchup_ok for v in visits),
        "catchup_put_off": sum(v.catchup_put_off for v in visits),
        "sfm_failed": sum(v.sfm_failed for v in visits),
        "sfm_dropped": sum(v.sfm_dropped for v in visits),
        "sfm_cost_median": median(costs),
        "sfm_gather_median": median(watcher.gather_seconds),
        "sfm_stage_medians": {k: round(statistics.median(v), 3) for k, v in watcher.stage_seconds.items() if v},
        "sfm_gather_failed": len(watcher.gather_failed),
        "pool_utilization": watcher.busy_seconds / (2 * span) if span else None,
        "publish_delay_median": median(delays),
        "publish_delay_p90": delays[int(0.9 * (len(delays) - 1))] if delays else None,
        "publish_delay_max": delays[-1] if delays else None,
        "max_queued": watcher.max_queued,
        "cadence_measured": median(end_intervals),
        "cadence_max": max(end_intervals) if end_intervals else None,
        "take_median": median(takes),
        "visits_late": sum(1 for v in visits if v.late_seconds > 1.0),
        "final_pattern": final_mode.get("pattern"),
        "final_n_selected": final_mode.get("nSelected"),
        "final_reason": last_reason or final_mode.get("reason"),
        "affordable": [v.affordable for v in visits],
        "mode_changes": watcher.mode_history,
        "latencies": latencies,
        "per_visit_processed": [v.sfm_ok for v in visits],
        "raws_deleted_with_jobs_pending": sum(1 for v in visits if v.pending_at_delete),
        "log_errors": len(errors),
        "log_warnings": len(warnings),
        "log_error_lines": errors[:8],
        "log_categories": sorted(categories.items(), key=lambda kv: -kv[1])[:8],
        "after_close": dict(watcher.after_close),
        "orphan_images": dict(watcher.orphans),
    }


def print_mode(mode: str, watcher: Watcher, r: dict[str, Any]) -> None:
    say(f"\n--- {mode}: per visit (latency = endReadout → sfmVisitMetrics, s; Q = poolStatus.nQueued)")
    header = (
        f"{'#':>2s} {'image':20s} {'pattern (n) by':26s} {'afford':>6s} {'lat1':>6s} {'latF':>6s} {'gather1':>11s} "
        f"{'final':>9s} {'ok':>4s} {'cu':>3s} {'drop':>4s} {'fail':>4s} {'Q@end':>5s} {'Qmax':>5s} {'take':>5s} "
        f"{'raws':>5s}"
    )
    say(header)
    say("-" * len(header))
    for v in watcher.visits:
        if v.gathers:
            n, e, partial, _, _ = v.gathers[0]
            gather1 = f"{n}/{e}{' P' if partial else '  '}"
            final = [g for g in v.gathers if (not g[2]) or g[3]]
            final_text = f"{final[-1][0]}/{final[-1][1]}{' R' if final[-1][3] else '  '}" if final else "—"
        else:
            gather1, final_text = "—", "—"
        by = {"automatic": "auto", "manual": "man", "guaranteed": "guar"}.get(v.decided_by, v.decided_by)
        deleted = v.deleted or "end"
        if v.pending_at_delete:
            deleted += f"!{v.pending_at_delete}"
        say(
            f"{v.number:2d} {v.image_name:20s} {f'{v.pattern} ({v.n_selected}) {by}':26s} "
            f"{str(v.affordable) if v.affordable is not None else '—':>6s} {_fmt(v.latency):>6s} "
            f"{_fmt(v.final_latency):>6s} {gather1:>11s} {final_text:>9s} {v.sfm_ok:4d} {v.catchup_ok:3d} "
            f"{v.sfm_dropped:4d} "
            f"{v.sfm_failed:4d} {str(v.queued_at_end) if v.queued_at_end is not None else '—':>5s} "
            f"{v.max_queued:5d} {v.take_seconds:5.1f} {deleted:>5s}"
        )
    say(
        "  afford: the automatic choice's affordable detectors (CSC log); lat1/latF: first/final visit metrics; "
        "gather1: nProcessed/nExpected of the first gather (P partial); "
        "final: final gather (R re-gather); ok/drop/fail: sfm jobResults by the end of the run; "
        "cu: of ok, caught up later; "
        "raws: why the raw directory was deleted (done: every sfm job ended; room: for the next visit; "
        "!n: n jobs pending; end: at the end)"
    )
    failures = [f"{v.image_name}: {msg}" for v in watcher.visits for msg in v.failures]
    for line in failures[:5]:
        say(f"  sfm failure: {line}")
    for line in watcher.gather_failed[:3]:
        say(f"  sfm_gather failure: {line}")
    say(f"\n--- {mode}: focalPlaneMode events")
    for change in r["mode_changes"]:
        say(
            f"  after visit {change['after_visit']:2d}: {change['pattern']} ({change['nSelected']}) "
            f"{change['decidedBy']}: {change['reason']}"
        )
    if r["final_reason"]:
        say(f"  last selection reason: {r['final_reason']}")
    w = r["latency_window"]
    say(f"\n--- {mode}: summary")
    say(
        f"  latency first {w} visits: median {_fmt(r['latency_first_median'])} s, max {_fmt(r['latency_first_max'])} s;"
        f" last {w}: median {_fmt(r['latency_last_median'])} s, max {_fmt(r['latency_last_max'])} s;"
        f" growth {_fmt(r['latency_growth'], 2)}x; visits without metrics: {r['visits_missing_metrics']}"
    )
    say(
        f"  detectors processed: {r['detectors_processed']} in {r['n_visits']} visits = "
        f"{r['detectors_per_visit']:.1f} per visit ({r['detectors_caught_up']} caught up; "
        f"{r['catchup_put_off']} catch-up jobs put off for newer images); "
        f"dropped {r['sfm_dropped']}, failed {r['sfm_failed']}; "
        f"max nQueued {r['max_queued']}"
    )
    say(
        f"  sfm cost per detector (median jobResult.duration) {_fmt(r['sfm_cost_median'], 2)} s; "
        f"sfm_gather {_fmt(r['sfm_gather_median'], 2)} s; final pattern {r['final_pattern']} "
        f"({r['final_n_selected']})"
    )
    stages = ", ".join(f"{k} {v:.2f}" for k, v in r["sfm_stage_medians"].items())
    utilization = r["pool_utilization"]
    say(
        f"  pool: {'—' if utilization is None else f'{utilization:.0%}'} of 2 workers × (first endReadout → end) "
        f"busy in sfm/sfm_gather jobs; a finished job's slot is held {_fmt(r['publish_delay_median'], 2)} s "
        f"median (p90 {_fmt(r['publish_delay_p90'], 2)}, max {_fmt(r['publish_delay_max'], 2)}) from the "
        f"worker's endTime to its jobResult"
    )
    say(f"  sfm stage medians (s, the pipeline's own timings; isr includes reading the raw): {stages or '—'}")
    say(
        f"  camera: takeImages median {_fmt(r['take_median'])} s (the 14.3 GB write); endReadout to endReadout "
        f"median {_fmt(r['cadence_measured'])} s, max {_fmt(r['cadence_max'])} s; {r['visits_late']} of "
        f"{r['n_visits']} images started more than 1 s after their slot; raw deletions took "
        f"{_fmt(median(r.get('delete_seconds', [])))} s median (in the background), the loop waited "
        f"{r.get('waited_for_deletion', 0.0):.1f} s for them"
    )
    say(
        f"  CSC log: {r['log_errors']} error lines, {r['log_warnings']} warnings ({r['log']}); "
        f"wall {r['wall_seconds']:.0f} s; {r.get('shutdown', '')}"
        + (f"; STOPPED: {r['stopped']}" if r["stopped"] else "")
    )
    for text, count in r["log_categories"]:
        say(f"    {count:5d} × {text}")
    if r["after_close"]:
        say(f"  jobResults during the shutdown (not counted above): {r['after_close']}")


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    return str(value)


INTERRUPTS = Interrupts("shutting the CSC down")


async def amain(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    INTERRUPTS.task = task
    INTERRUPTS.install()
    interrupted = INTERRUPTS.received

    results: dict[str, dict[str, Any]] = {}
    t0 = time.monotonic()
    owned = args.workdir is None
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="keepup_", dir="/tmp")) if owned else pathlib.Path(args.workdir)
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    say(
        f"bench/keepup.py: LSSTCam, {len(INSTRUMENT.science_detectors)} detectors/visit, {args.visits} visits, "
        f"cadence {args.cadence:g} s{' (accelerated)' if args.accelerated else ''}, camera time scale "
        f"{args.camera_time_scale:g}; modes {', '.join(args.modes)}; {os.cpu_count()} cores; "
        f"free disk {shutil.disk_usage(workdir).free / GB:.0f} GB; load {_load1():.1f}; workdir {workdir}"
    )
    say("No mount simulator: science_pipelines is [sfm] only (mount_torque is not run).")
    try:
        for mode in args.modes:
            results[mode] = await run_mode(mode, args, workdir)
            if interrupted:
                break
    except asyncio.CancelledError:
        say("interrupted")
        task.uncancel()
    finally:
        if owned and not args.keep:
            await asyncio.to_thread(shutil.rmtree, workdir, True)
        elif args.keep:
            say(f"kept {workdir} (logs, configs, products, databases; raws are always deleted)")
    total = time.monotonic() - t0

    say("\n=== Summary")
    header = (
        f"{'mode':17s} {'visits':>6s} {'lat med first':>13s} {'lat med last':>12s} {'max last':>8s} "
        f"{'growth':>6s} {'missing':>7s} {'det/visit':>9s} {'total det':>9s} {'final pattern':>18s}"
    )
    say(header)
    for mode, r in results.items():
        final = f"{r['final_pattern']} ({r['final_n_selected']})"
        say(
            f"{mode:17s} {r['n_visits']:6d} {_fmt(r['latency_first_median']):>13s} "
            f"{_fmt(r['latency_last_median']):>12s} {_fmt(r['latency_last_max']):>8s} "
            f"{_fmt(r['latency_growth'], 2):>6s} {r['visits_missing_metrics']:7d} {r['detectors_per_visit']:9.1f} "
            f"{r['detectors_processed']:9d} {final:>18s}"
        )
    verdict: dict[str, Any] = {}
    for name in ("automatic", "automatic-catchup"):
        auto = results.get(name)
        if auto is None or not auto["n_visits"]:
            continue
        growth = auto["latency_growth"]
        bounded = growth is not None and growth <= 1.5 and auto["visits_missing_metrics"] == 0
        verdict[f"{name.replace('-', '_')}_bounded"] = bounded
        text = (
            f"{name} mode: latency {'stayed bounded' if bounded else 'did NOT stay bounded'} "
            f"(last-{auto['latency_window']} median {_fmt(auto['latency_last_median'])} s vs first-"
            f"{auto['latency_window']} {_fmt(auto['latency_first_median'])} s = {_fmt(growth, 2)}x, limit 1.5x; "
            f"{auto['visits_missing_metrics']} visits without metrics); {auto['detectors_per_visit']:.1f} detectors "
            f"per visit"
        )
        fixed = results.get("fixed-all")
        if fixed is not None and fixed["n_visits"]:
            text += (
                f" vs {fixed['detectors_per_visit']:.1f} with fixed all (latency growth "
                f"{_fmt(fixed['latency_growth'], 2)}x, {fixed['visits_missing_metrics']} visits without metrics)"
            )
        say(text)
    say(f"total wall time {total:.0f} s")
    summary = {
        "visits": args.visits,
        "cadence": args.cadence,
        "accelerated": args.accelerated,
        "camera_time_scale": args.camera_time_scale,
        "wall_seconds": total,
        **verdict,
        "modes": {
            mode: {k: v for k, v in r.items() if k not in ("log_error_lines", "mode_changes", "settings")}
            | {"n_mode_changes": len(r["mode_changes"])}
            for mode, r in results.items()
        },
    }
    say("JSON " + json.dumps(summary, default=_json_default))
    return 130 if interrupted else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visits", type=int, default=20, help="visits per mode (default 20)")
    parser.add_argument("--cadence", type=float, default=None, help="seconds from one image's start to the next (34)")
    parser.add_argument(
        "--accelerated", action="store_true", help="compress time: cadence / 4 and camera time scale / 4"
    )
    parser.add_argument(
        "--camera-time-scale",
        type=float,
        default=None,
        help="camera wall seconds per simulated second (default 0.05; / 4 accelerated): the 30 s exposure and 2 s "
        "readout are compressed, the raw write (20-35 s for 14.3 GB here) is not",
    )
    parser.add_argument("--modes", nargs="+", default=["automatic", "fixed-all"], choices=sorted(MODES))
    parser.add_argument("--workdir", default=None, help="working directory (default a new temporary dir under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir (logs, products; raws are deleted)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 visits, accelerated")
    parser.add_argument("--n-templates", type=int, default=1, help="raw templates per detector type")
    parser.add_argument(
        "--csc-loglevel", type=int, default=None, help="the CSC's --loglevel (10: DEBUG, for diagnosis; slows it)"
    )
    args = parser.parse_args()
    if args.quick:
        args.visits = 3
        args.accelerated = True
    scale = 4.0 if args.accelerated else 1.0
    if args.cadence is None:
        args.cadence = 34.0 / scale
    if args.camera_time_scale is None:
        args.camera_time_scale = 0.05 / scale
    if args.visits < 1:
        parser.error("--visits must be >= 1")
    os.environ["LSST_SITE"] = os.environ.get("LSST_SITE") or "bench"
    sys.exit(asyncio.run(amain(args)))


if __name__ == "__main__":
    main()
