"""The CSC on a Dask cluster of separate processes, as at the summit: a ``dask scheduler`` and
``dask worker`` processes, each with its own working directory and temporary directory, seeing
the raw store and the output root at other paths than the CSC (the path map).

Real parts: the scheduler and workers as processes started here, killed with SIGKILL and started
again as Kubernetes would; the CSC and the ComCam camera simulator on DDS; raws on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import pathlib
import re
import signal
import socket
import unittest
from collections.abc import AsyncIterator
from typing import Any

import yaml
from distributed.core import rpc

from lsst.ts.rapidanalysis.dispatch.affinity import home_worker
from lsst.ts.rapidanalysis.results.database import open_results
from lsst.ts.rapidanalysis.sal import Remote, SalRetCode, State
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from lsst.ts.rapidanalysis.sim.camera_sim import CameraSimulator
from lsst.ts.rapidanalysis.sim.stream import StreamWriter
from test_csc import BIN_DIR, STD_TIMEOUT, RapidAnalysisTestMixin, wait_until

OBSID = "CC_O_20251115_000042"
#: Makes a worker claim another version of the package (a worker left behind by a roll-out).
OLD_VERSION_PRELOAD = """
import lsst.ts.rapidanalysis

lsst.ts.rapidanalysis.__version__ = "0.0.1-old"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A scheduler and named workers as processes, each in its own directory; killed and restarted at will."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler: asyncio.subprocess.Process | None = None
        self.workers: dict[str, asyncio.subprocess.Process] = {}
        self._preloads: dict[str, list[str]] = {}

    async def _spawn(self, name: str, *args: str) -> asyncio.subprocess.Process:
        home = self.root / name
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, TMPDIR=str(home / "tmp"))
        with (home / "log.txt").open("ab") as log:
            return await asyncio.create_subprocess_exec(
                str(BIN_DIR / "dask"),
                *args,
                cwd=home,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    async def start_scheduler(self) -> None:
        log = self.root / "scheduler" / "log.txt"
        before = log.read_text() if log.exists() else ""
        self.scheduler = await self._spawn(
            "scheduler",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-dashboard",
            # As deployed: adaptive_target counts the CSCs' demand.
            "--preload",
            "lsst.ts.rapidanalysis.dispatch.scheduler_setup",
        )
        await wait_until(
            lambda: "Scheduler at:" in log.read_text()[len(before) :], STD_TIMEOUT, "the scheduler to listen"
        )

    async def start_worker(self, name: str, preloads: list[str] | None = None, threads: int = 1) -> None:
        """A worker with ``threads`` threads and no nanny (its supervisor here is the test)."""
        self._preloads[name] = preloads if preloads is not None else self._preloads.get(name, [])
        args = ["worker", self.address, "--name", name, "--host", "127.0.0.1", "--nthreads", str(threads)]
        args += ["--no-nanny"]
        args += ["--no-dashboard", "--memory-limit", "1GB"]
        for preload in ["lsst.ts.rapidanalysis.dispatch.worker_task", *self._preloads[name]]:
            args += ["--preload", preload]
        self.workers[name] = await self._spawn(name, *args)

    async def kill(self, process: asyncio.subprocess.Process | None) -> None:
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()

    async def close(self) -> None:
        for process in [*self.workers.values(), self.scheduler]:
            await self.kill(process)


class ScaleOutTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    csc_index = 2  # LSSTComCam: 9 detectors

    @contextlib.asynccontextmanager
    async def cluster(self, workers: dict[str, list[str]] | None = None, threads: int = 1) -> AsyncIterator[Cluster]:
        """A running cluster of named workers (name → extra preloads); ``$RA_TEST_SCHEDULER_ADDRESS`` set."""
        cluster = Cluster(self.root / "cluster")
        try:
            await cluster.start_scheduler()
            for name, preloads in (workers or {"w1": [], "w2": []}).items():
                await cluster.start_worker(name, preloads, threads)
            self.monkeypatch.setenv("RA_TEST_SCHEDULER_ADDRESS", cluster.address)
            yield cluster
        finally:
            await cluster.close()

    def write_config(self, worker_view: pathlib.Path | None = None, **settings: Any) -> pathlib.Path:
        """A configuration directory: the CSC sees ``root/csc_view``; the workers ``worker_view``.

        ``root/storage`` holds the raws and the products; ``root/csc_view`` and
        ``root/worker_view`` are two names for it, as two hosts would mount one filesystem.
        """
        storage = self.root / "storage"
        (storage / "raw").mkdir(parents=True, exist_ok=True)
        (storage / "out").mkdir(parents=True, exist_ok=True)
        for view in ("csc_view", "worker_view"):
            if not (self.root / view).exists():
                (self.root / view).symlink_to(storage)
        worker_view = worker_view or self.root / "worker_view"
        config = {
            "data_roots": {"LSSTComCam": str(self.root / "csc_view" / "raw")},
            "output_root": str(self.root / "csc_view" / "out"),
            "scheduler_address": "$RA_TEST_SCHEDULER_ADDRESS",
            "path_map": [{"csc": str(self.root / "csc_view"), "worker": str(worker_view)}],
            "raw_wait_timeout": 5.0,
            "max_queue_length": 50,
            "default_time_limit": 60.0,
            "gather_timeout": 30.0,
            "regather_timeout": 60.0,
            **settings,
        }
        config_dir = self.root / "config"
        config_dir.mkdir(exist_ok=True)
        (config_dir / "_init.yaml").write_text(yaml.safe_dump(config))
        return config_dir

    @contextlib.asynccontextmanager
    async def csc_on(self, config_dir: pathlib.Path) -> AsyncIterator[None]:
        async with self.make_csc(initial_state=State.ENABLED, simulation_mode=1, config_dir=config_dir):
            await self.assert_next_summary_state(State.ENABLED)
            yield

    async def raws(self, detectors: tuple[int, ...]) -> None:
        """Small ComCam raws of OBSID, written under the CSC's view of the raw store."""
        writer = StreamWriter(
            "LSSTComCam", self.root / "csc_view" / "raw", detectors=detectors, scale=0.2, n_templates=1
        )
        await asyncio.to_thread(functools.partial(writer.write_exposure, OBSID, exp_time=0.0, img_type="BIAS"))

    def job(self, job_id: str) -> Any:
        return self.csc.job_manager.jobs[job_id]

    async def test_process_data_and_autonomous_images_run_on_workers_with_their_own_paths(self) -> None:
        # Room for a whole image on each worker: every detector can run at its home.
        async with self.cluster(threads=9) as cluster:
            config_dir = self.write_config(
                autonomous={
                    "enabled": True,
                    "pattern": "all",
                    "automatic": False,
                    "science_pipelines": ["image_stats"],
                    "calibration_pipelines": ["image_stats"],
                    "catchup_idle_seconds": 0,
                }
            )
            writer = StreamWriter("LSSTComCam", self.root / "csc_view" / "raw", scale=0.2, n_templates=1)
            camera = CameraSimulator(
                "LSSTComCam", writer=writer.write_exposure, time_scale=0.1, initial_state=State.ENABLED
            )
            try:
                await asyncio.wait_for(camera.start_task, STD_TIMEOUT)
                camera_remote = Remote(camera.salinfo.domain, "CCCamera", include=[])
                await asyncio.wait_for(camera_remote.start_task, STD_TIMEOUT)
                async with self.csc_on(config_dir):
                    pool = await self.remote.evt_workerPool.aget(timeout=STD_TIMEOUT)
                    await wait_until(lambda: self.csc.pool.info.n_workers == 2, STD_TIMEOUT, "both workers")
                    assert pool.schedulerAddress == cluster.address and pool.schedulerConnected, pool

                    # An autonomous image: image_stats on its 9 detectors, on both workers.
                    await camera_remote.cmd_takeImages.set_start(
                        numImages=1, expTime=2.0, shutter=True, keyValueMap="", timeout=STD_TIMEOUT
                    )
                    results = [await self.next_job_result(timeout=90) for _ in range(9)]
                    assert all(r.success and r.trigger == "autonomous" for r in results), [
                        r.errorReport for r in results
                    ]
                    # Each detector ran at its home worker, on whichever of the two that is.
                    addresses = [w.address for w in self.csc.pool.info.workers]
                    assert {w.name for w in self.csc.pool.info.workers} == {"w1", "w2"}

                    def where(result: Any) -> tuple[str, str]:
                        detector = json.loads(result.dataId)["detectors"][0]
                        home = home_worker(f"LSSTComCam:{detector}", addresses)
                        return self.job(result.jobId).outcome.worker.split()[-1], str(home)

                    assert all(ran == home for ran, home in map(where, results)), list(map(where, results))

                    # processData with a product: written by the worker under its own view,
                    # reported (URL, database) under the CSC's.
                    job_id = await self.process("test.succeed", {"obsid": OBSID}, config={"write_product": True})
                    data = await self.next_job_result(job_id)
                    assert data.success, data.errorReport
                    (product,) = json.loads(data.result)["products"]
                    assert product.startswith(str(self.root / "csc_view" / "out")), product
                    with open_results(f"sqlite:///{self.root / 'csc_view' / 'out' / 'results.sqlite3'}") as db:
                        (row,) = db.products(job_id=job_id)
                    assert row["path"] == product and await asyncio.to_thread(pathlib.Path(product).exists)

                    # The next image: each detector again where it ran.
                    await camera_remote.cmd_takeImages.set_start(
                        numImages=1, expTime=2.0, shutter=True, keyValueMap="", timeout=STD_TIMEOUT
                    )
                    again = [await self.next_job_result(timeout=90) for _ in range(9)]
                    assert all(r.success for r in again) and all(ran == home for ran, home in map(where, again))
                    self.assert_enabled()
            finally:
                await camera.close()

    async def test_a_lost_worker_costs_one_re_run_then_the_job_is_reported(self) -> None:
        async with self.cluster() as cluster:
            async with self.csc_on(self.write_config()):
                await wait_until(lambda: self.csc.pool.info.n_workers == 2, STD_TIMEOUT, "both workers")
                job_id = await self.process("test.sleep", {"obsid": OBSID}, config={"duration": 4.0})
                await self.wait_running(1)
                await wait_until(lambda: bool(self.csc.job_manager.worker_of(job_id)), STD_TIMEOUT, "placement")
                names = {w.address: w.name for w in self.csc.pool.info.workers}
                first = names[self.csc.job_manager.worker_of(job_id)]
                await asyncio.sleep(1.0)  # it runs there
                await cluster.kill(cluster.workers[first])
                # Re-run once on the other worker, and it succeeds there.
                data = await self.next_job_result(job_id, timeout=60)
                assert data.success, data.errorReport
                assert self.job(job_id).reruns == 1
                other = next(n for n in ("w1", "w2") if n != first)
                assert self.job(job_id).outcome.worker.split()[-1] != first and other

                # Lost twice: reported, exit code 5, saying so.
                await cluster.start_worker(first)
                await wait_until(lambda: self.csc.pool.info.n_workers == 2, STD_TIMEOUT, "the worker back")
                job_id = await self.process("test.sleep", {"obsid": OBSID}, config={"duration": 6.0})
                await wait_until(lambda: bool(self.csc.job_manager.worker_of(job_id)), STD_TIMEOUT, "placement")
                await asyncio.sleep(1.0)
                names = {w.address: w.name for w in self.csc.pool.info.workers}
                await cluster.kill(cluster.workers[names[self.csc.job_manager.worker_of(job_id)]])
                await wait_until(lambda: self.job(job_id).reruns == 1, STD_TIMEOUT, "the first loss seen")
                await wait_until(lambda: bool(self.csc.job_manager.worker_of(job_id)), STD_TIMEOUT, "relocation")
                await asyncio.sleep(1.0)
                names = {w.address: w.name for w in self.csc.pool.info.workers}
                await cluster.kill(cluster.workers[names[self.csc.job_manager.worker_of(job_id)]])
                data = await self.next_job_result(job_id, timeout=60)
                assert not data.success and data.exitCode == 5, data
                assert "left the pool while it ran, after 1 re-run(s)" in data.errorReport, data.errorReport
                self.assert_enabled()

    async def test_a_restarted_scheduler_is_reconnected_to_and_its_lost_jobs_reported(self) -> None:
        async with self.cluster() as cluster:
            async with self.csc_on(self.write_config(scheduler_reconnect_timeout=60.0)):
                await wait_until(lambda: self.csc.pool.info.n_workers == 2, STD_TIMEOUT, "both workers")
                running = await self.process("test.sleep", {"obsid": OBSID}, config={"duration": 20.0})
                await self.wait_running(1)
                self.remote.evt_workerPool.flush()

                # The scheduler dies; its workers end with it (as pods do, until restarted).
                await cluster.kill(cluster.scheduler)
                data = await self.next_job_result(running, timeout=30)
                assert not data.success and data.exitCode == 5, data
                assert "scheduler was lost" in data.errorReport and cluster.address in data.errorReport, data
                pool = await self.remote.evt_workerPool.next(flush=False, timeout=STD_TIMEOUT)
                assert not pool.schedulerConnected, pool
                queued = await self.process("test.succeed", {"obsid": OBSID})  # waits for the pool
                await asyncio.sleep(1.0)
                assert self.job(queued).state.value == "queued"

                # Restarted by its supervisor, on the same address, with its workers.
                for process in cluster.workers.values():
                    await cluster.kill(process)
                await cluster.start_scheduler()
                for name in list(cluster.workers):
                    await cluster.start_worker(name)
                data = await self.next_job_result(queued, timeout=60)
                assert data.success, data.errorReport
                await wait_until(lambda: self.csc.pool.info.connected, STD_TIMEOUT, "reconnected")
                self.assert_enabled()  # never cycled through STANDBY
                job_id = await self.process("test.succeed", {"obsid": OBSID})
                assert (await self.next_job_result(job_id)).success

    async def test_a_worker_of_another_version_gets_no_jobs(self) -> None:
        preload = self.root / "old_version.py"
        preload.write_text(OLD_VERSION_PRELOAD)
        async with self.cluster({"good": [], "old": [str(preload)]}):
            async with self.csc_on(self.write_config()):
                await wait_until(lambda: len(self.csc.pool.info.workers) == 2, STD_TIMEOUT, "both workers")
                await wait_until(lambda: self.csc.pool.info.excluded != "", STD_TIMEOUT, "the old worker excluded")
                info = self.csc.pool.info
                assert info.n_workers == 1 and info.n_threads == 1, info
                pool = await self.remote.evt_workerPool.aget(timeout=STD_TIMEOUT)
                await wait_until(
                    lambda: "0.0.1-old" in (self.remote.evt_workerPool.get() or pool).excludedWorkers,
                    STD_TIMEOUT,
                    "workerPool naming the old worker",
                )
                excluded = self.remote.evt_workerPool.get().excludedWorkers
                assert re.search(
                    r"old \(tcp://127\.0\.0\.1:\d+.*\): it has lsst-ts-rapidanalysis 0\.0\.1-old", excluded
                )
                ids = [await self.process("test.sleep", {"obsid": OBSID}, config={"duration": 0.2}) for _ in range(4)]
                results = await self.job_results(ids, timeout=60)
                assert all(r.success for r in results)
                good = next(w.address for w in self.csc.pool.info.workers if w.name == "good")
                assert {self.job(i).outcome.worker.split()[-1] for i in ids} == {good}

    async def test_paths_the_workers_cannot_see_are_clear_errors(self) -> None:
        async with self.cluster({"w1": []}):
            # A path map that maps nothing of the CSC's roots: start fails, naming the root.
            config_dir = self.write_config()
            config = yaml.safe_load((config_dir / "_init.yaml").read_text())
            config["path_map"] = [{"csc": "/somewhere/else", "worker": "/mnt/else"}]
            (config_dir / "_init.yaml").write_text(yaml.safe_dump(config))
            async with self.make_csc(initial_state=State.STANDBY, simulation_mode=1, config_dir=config_dir):
                await self.assert_next_summary_state(State.STANDBY)
                with self.assertRaises(Exception) as info:
                    await self.remote.cmd_start.set_start(timeout=STD_TIMEOUT)
                message = info.exception.ackcmd.result
                assert info.exception.ackcmd.ack == SalRetCode.CMD_FAILED
                assert "path_map maps nothing for data_roots" in message and "/somewhere/else" in message, message

            # A worker view that does not exist on the worker: the job fails, naming path and worker.
            config_dir = self.write_config(worker_view=self.root / "not_mounted")
            await self.raws((0,))
            async with self.csc_on(config_dir):
                await wait_until(lambda: self.csc.pool.info.n_workers == 1, STD_TIMEOUT, "the worker")
                job_id = await self.process("image_stats", {"obsid": OBSID, "detectors": [0]})
                data = await self.next_job_result(job_id, timeout=60)
                assert not data.success and data.exitCode == 3, data
                assert str(self.root / "not_mounted" / "raw") in data.errorReport, data.errorReport
                assert "[on worker " in data.errorReport and "127.0.0.1" in data.errorReport, data.errorReport
                self.assert_enabled()

    async def test_workers_that_join_and_leave_change_what_runs_at_once(self) -> None:
        """An elastic cluster: the slots (which automatic down-selection also follows) are the live workers'."""
        async with self.cluster({"w1": []}) as cluster:
            async with self.csc_on(self.write_config()):
                await wait_until(lambda: self.csc.job_manager.slots == 1, STD_TIMEOUT, "one slot")
                ids = [await self.process("test.sleep", {"obsid": OBSID}, config={"duration": 3.0}) for _ in range(2)]
                await self.wait_running(1)
                assert self.csc.job_manager.n_queued == 1
                await cluster.start_worker("w2")  # autoscaling adds a worker: the queued job starts at once
                await wait_until(lambda: self.csc.job_manager.n_running == 2, STD_TIMEOUT, "both jobs running")
                assert self.csc.job_manager.slots == 2
                assert all(r.success for r in await self.job_results(ids, timeout=60))
                await cluster.kill(cluster.workers["w2"])  # and takes it away
                await wait_until(lambda: self.csc.job_manager.slots == 1, STD_TIMEOUT, "back to one slot")
                self.assert_enabled()

    async def test_the_scheduler_s_autoscaling_target_counts_the_csc_s_queue(self) -> None:
        # One worker of one thread and five jobs: Dask sees one task, the CSC holds the others.
        async with self.cluster({"w1": []}) as cluster:
            async with self.csc_on(self.write_config(demand_hold=3.0)):
                await wait_until(lambda: self.csc.pool.info.n_workers == 1, STD_TIMEOUT, "the worker")

                async def target() -> int:
                    async with rpc(cluster.address) as scheduler:
                        return int(await scheduler.adaptive_target())

                assert await target() <= 1
                job_ids = [
                    await self.process("test.sleep", {"obsid": OBSID}, config={"duration": 1.0}) for _ in range(5)
                ]
                # The operator's autoscaler would now ask for five workers, though the scheduler
                # never holds more than the one task its one thread runs (the rest queue in the CSC).
                deadline = asyncio.get_running_loop().time() + STD_TIMEOUT
                while await target() < 5:
                    assert asyncio.get_running_loop().time() < deadline, "the target never counted the queue"
                    await asyncio.sleep(0.2)
                results = [await self.next_job_result(timeout=60) for _ in job_ids]
                assert {r.jobId for r in results} == set(job_ids) and all(r.success for r in results)
                # Done: after demand_hold the demand falls back, so the cluster may shrink again.
                deadline = asyncio.get_running_loop().time() + STD_TIMEOUT
                while await target() > 1:
                    assert asyncio.get_running_loop().time() < deadline, "the target never fell back"
                    await asyncio.sleep(0.2)
                self.assert_enabled()
