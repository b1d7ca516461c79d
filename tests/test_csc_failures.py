"""RapidAnalysisCsc when things go wrong: bad requests, aborts, time limits, synchronous mode,
missing raws, a worker killed mid-job, the Dask scheduler lost or unreachable.

Real parts only (see test_csc.py); the external scheduler of the last tests is a real
``dask scheduler`` process with a real ``dask worker``, started and killed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import signal
import socket
import unittest
from collections.abc import AsyncIterator

import psutil

from lsst.ts.rapidanalysis.csc import ErrorCode
from lsst.ts.rapidanalysis.pipelines.registry import PipelineRegistry
from lsst.ts.rapidanalysis.results.database import open_results
from lsst.ts.rapidanalysis.sal import SalRetCode, State
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from test_csc import (
    BIN_DIR,
    LATISS_OBSID,
    STD_TIMEOUT,
    RapidAnalysisTestMixin,
    canonical,
    wait_until,
)

#: Pipeline used for the missing-raw tests: it must need raws (test pipelines do not).
RAW_PIPELINE = "image_stats"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CscFailuresTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    async def test_bad_requests(self) -> None:
        """Each bad processData fails with a message saying what is wrong; the CSC keeps working."""
        async with self.make_csc(initial_state=State.STANDBY, simulation_mode=1):
            await self.assert_next_summary_state(State.STANDBY)
            async with self.assertRaisesAckError(ack=SalRetCode.CMD_FAILED, result_contains="STANDBY"):
                await self.process()
            await self.remote.cmd_start.start(timeout=STD_TIMEOUT)
            await self.assert_next_summary_state(State.DISABLED)
            async with self.assertRaisesAckError(ack=SalRetCode.CMD_FAILED, result_contains="DISABLED"):
                await self.process()
            async with self.assertRaisesAckError(ack=SalRetCode.CMD_FAILED, result_contains="DISABLED"):
                await self.remote.cmd_abortJob.set_start(jobId="ra-000000000000", timeout=STD_TIMEOUT)
            await self.remote.cmd_enable.start(timeout=STD_TIMEOUT)
            await self.assert_next_summary_state(State.ENABLED)

            good = json.dumps({"obsid": LATISS_OBSID})
            known = ", ".join(PipelineRegistry(simulation_mode=True).names)
            assert "test.fail, test.sleep, test.succeed" in known
            # (dataId, pipeline, config, text the failure must contain)
            cases: list[tuple[str, str, str, str]] = [
                ('{"obsid": ', "test.succeed", "", "dataId is not valid JSON"),
                ("", "test.succeed", "", "dataId is not valid JSON"),
                (f'["{LATISS_OBSID}"]', "test.succeed", "", "must be a JSON object"),
                ('{"obsid": "AT_20251115_1"}', "test.succeed", "", "is not of the form AT_O_YYYYMMDD_NNNNNN"),
                ('{"obsid": 20251115}', "test.succeed", "", "is not of the form"),
                ('{"obsid": "MC_O_20251115_000001"}', "test.succeed", "", "this CSC serves LATISS"),
                ('{"obsid": "../../etc/passwd"}', "test.succeed", "", "'../../etc/passwd' is not of the form"),
                ('{"obsid": "/tmp/x"}', "test.succeed", "", "'/tmp/x' is not of the form"),
                (f'{{"obsid": "{LATISS_OBSID}/../../x"}}', "test.succeed", "", "is not of the form"),
                ('{"groupId": "../../etc"}', "test.succeed", "", "is not an ISO timestamp"),
                (
                    f'{{"obsid": "{LATISS_OBSID}", "path": "/tmp/x"}}',
                    "test.succeed",
                    "",
                    "unknown key(s) path; allowed: obsid, groupId, dayObs, seqNum, detectors",
                ),
                ("{}", "test.succeed", "", "exactly one of"),
                (f'{{"obsid": "{LATISS_OBSID}", "seqNum": 1}}', "test.succeed", "", "exactly one of"),
                ('{"dayObs": 20251332, "seqNum": 1}', "test.succeed", "", "not a real date"),
                ('{"dayObs": 20251115}', "test.succeed", "", "together"),
                ('{"dayObs": 20251115, "seqNum": 0}', "test.succeed", "", "seqNum must be an integer 1–999999"),
                (f'{{"obsid": "{LATISS_OBSID}", "detectors": [5]}}', "test.succeed", "", "LATISS has no detector 5"),
                (
                    f'{{"obsid": "{LATISS_OBSID}", "detectors": ["../x"]}}',
                    "test.succeed",
                    "",
                    "is not of the form Rxy_Sxy",
                ),
                (good, "no.such", "", f"Unknown pipeline 'no.such'; known pipelines: {known}"),
                (good, "../test.succeed", "", "Unknown pipeline '../test.succeed'"),
                (good, "", "", "Unknown pipeline ''"),
                (good, "test.succeed", '{"valu": 3}', "bad configuration for pipeline 'test.succeed': valu:"),
                (good, "test.succeed", '{"value": "abc"}', "test.succeed': value:"),
                (good, "test.sleep", '{"duration": -1}', "duration:"),
                (good, "test.succeed", "value=3", "config is not valid JSON"),
                (good, "test.succeed", "[1, 2]", "config must be a JSON object"),
            ]
            for data_id, pipeline, config, expected in cases:
                try:
                    await self.remote.cmd_processData.set_start(
                        dataId=data_id, pipeline=pipeline, config=config, timeout=STD_TIMEOUT
                    )
                except Exception as e:
                    ackcmd = getattr(e, "ackcmd", None)
                    assert ackcmd is not None, f"{data_id!r} {pipeline!r} {config!r}: {e!r}"
                    assert ackcmd.ack == SalRetCode.CMD_FAILED, ackcmd
                    assert expected in ackcmd.result, f"{data_id!r} {pipeline!r} {config!r}: {ackcmd.result!r}"
                else:
                    raise AssertionError(f"processData({data_id!r}, {pipeline!r}, {config!r}) did not fail")
                self.assert_enabled()

            # Pipelines that fail: still exactly one jobResult each, with the reason.
            crash_id = await self.process("test.fail", config={"crash": True, "message": "kaboom"})
            data = await self.next_job_result(crash_id)
            assert not data.success and data.exitCode == 1, data
            assert "RuntimeError: kaboom" in data.errorReport, data.errorReport
            assert data.dataId == canonical(obsid=LATISS_OBSID, dayObs=20251115, seqNum=1)
            fail_id = await self.process("test.fail", config={"message": "no stars found", "exit_code": 7})
            data = await self.next_job_result(fail_id)
            assert not data.success and data.exitCode == 7 and data.errorReport == "no stars found", data

            # The CSC still works, and none of the rejected requests became a job.
            job_id = await self.process()
            data = await self.next_job_result(job_id)
            assert data.success, data
            await self.assert_no_more_job_results()
            self.assert_enabled()
            with open_results(self.database_path) as db:
                jobs = db.jobs(newest_first=False)
                assert list(jobs["job_id"]) == [crash_id, fail_id, job_id]
                assert list(jobs["state"]) == ["failed", "failed", "succeeded"]
                assert list(jobs["exit_code"]) == [1, 7, 0]

    async def test_abort(self) -> None:
        """abortJob of a queued job, of a running one (whose worker is then free), and bad ids."""
        async with self.enabled_csc(warm=True, override="long_jobs.yaml"):
            long_a = await self.process("test.sleep", config={"duration": 10})
            long_b = await self.process("test.sleep", config={"duration": 10})
            await self.wait_running(2)
            queued = await self.process()
            loop = asyncio.get_running_loop()

            # A queued job.
            t0 = loop.time()
            await self.remote.cmd_abortJob.set_start(jobId=queued, timeout=STD_TIMEOUT)
            data = await self.next_job_result(queued, timeout=5)
            assert loop.time() - t0 < 2, loop.time() - t0
            assert not data.success and data.exitCode == 255, data
            assert "abort" in data.errorReport, data.errorReport
            assert data.startTime == 0 and data.duration == 0, data  # it never ran

            # Ending twice is refused.
            async with self.assertRaisesAckError(
                ack=SalRetCode.CMD_FAILED, result_contains=f"job {queued} already ended (aborted)"
            ):
                await self.remote.cmd_abortJob.set_start(jobId=queued, timeout=STD_TIMEOUT)
            async with self.assertRaisesAckError(
                ack=SalRetCode.CMD_FAILED, result_contains="no queued or running job 'ra-nosuchjob'"
            ):
                await self.remote.cmd_abortJob.set_start(jobId="ra-nosuchjob", timeout=STD_TIMEOUT)

            # A running job: its jobResult comes at once, and its worker is free again.
            await asyncio.sleep(0.5)  # well into its work
            t0 = loop.time()
            await self.remote.cmd_abortJob.set_start(jobId=long_a, timeout=STD_TIMEOUT)
            data = await self.next_job_result(long_a, timeout=5)
            assert loop.time() - t0 < 1.5, loop.time() - t0
            assert not data.success and data.exitCode == 255, data
            assert "aborted by the abortJob command" in data.errorReport, data.errorReport
            # long_b still holds the other worker: this runs only if long_a's worker stopped working.
            t0 = loop.time()
            job_id = await self.process()
            data = await self.next_job_result(job_id, timeout=8)
            assert data.success, data
            assert loop.time() - t0 < 3, f"the aborted job's worker was busy for {loop.time() - t0:.1f} s"
            async with self.assertRaisesAckError(
                ack=SalRetCode.CMD_FAILED, result_contains=f"job {job_id} already ended (succeeded)"
            ):
                await self.remote.cmd_abortJob.set_start(jobId=job_id, timeout=STD_TIMEOUT)

            await self.remote.cmd_abortJob.set_start(jobId=long_b, timeout=STD_TIMEOUT)
            data = await self.next_job_result(long_b, timeout=5)
            assert data.exitCode == 255, data
            self.assert_enabled()
            await self.assert_no_more_job_results()
            with open_results(self.database_path) as db:
                states = {row["job_id"]: row["state"] for row in db.jobs()}
            assert states == {
                long_a: "aborted",
                long_b: "aborted",
                queued: "aborted",
                job_id: "succeeded",
            }, states

    async def test_time_limit(self) -> None:
        """A job past its pipeline's time_limit ends with exit code 124, and stops working."""
        async with self.enabled_csc(warm=True):
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            # Ending jobs on time leaves nothing for asyncio to complain about.
            with self.assertNoLogs("asyncio", level="ERROR"):
                jobs = [await self.process("test.sleep", config={"duration": 5}) for _ in range(2)]
                for data in await self.job_results(jobs, timeout=10):
                    assert not data.success and data.exitCode == 124, data
                    assert "time limit" in data.errorReport and "2 s" in data.errorReport, data.errorReport
                    assert 1.9 <= data.duration <= 3, data.duration
                assert 1.9 <= loop.time() - t0 < 4, loop.time() - t0
                await asyncio.sleep(0.1)
                gc.collect()
            # Both workers are free again (well before the 5 s the jobs asked for).
            t0 = loop.time()
            job_id = await self.process()
            assert (await self.next_job_result(job_id, timeout=8)).success
            assert loop.time() - t0 < 2, f"workers still busy for {loop.time() - t0:.1f} s after the time limit"
            self.assert_enabled()
            with open_results(self.database_path) as db:
                assert set(db.jobs(state="timed_out")["job_id"]) == set(jobs)

    async def test_synchronous_mode(self) -> None:
        """processData completes when the job ends; one job at a time; failures fail the command."""
        async with self.enabled_csc(warm=True, override="synchronous.yaml"):
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            ackcmd = await self.remote.cmd_processData.set_start(
                dataId=json.dumps({"obsid": LATISS_OBSID}),
                pipeline="test.sleep",
                config=json.dumps({"duration": 0.5}),
                timeout=STD_TIMEOUT,
            )
            assert loop.time() - t0 >= 0.5
            assert ackcmd.ack == SalRetCode.CMD_COMPLETE
            result = json.loads(ackcmd.result)
            assert result["state"] == "succeeded", result
            # The jobResult is out by the time the command completes.
            assert self.remote.evt_jobResult.nqueued == 1
            data = await self.next_job_result(result["jobId"], timeout=1)
            assert data.success, data

            # While a job runs, another request is refused.
            first = await self.remote.cmd_processData.set_start(
                dataId=json.dumps({"obsid": LATISS_OBSID}),
                pipeline="test.sleep",
                config=json.dumps({"duration": 1.0}),
                timeout=STD_TIMEOUT,
                wait_done=False,
            )
            assert first.ack == SalRetCode.CMD_INPROGRESS, first
            first_id = json.loads(first.result)["jobId"]
            async with self.assertRaisesAckError(ack=SalRetCode.CMD_FAILED, result_contains="busy"):
                await self.process()
            ackcmd = await self.remote.cmd_processData.next_ackcmd(first, timeout=STD_TIMEOUT)
            assert ackcmd.ack == SalRetCode.CMD_COMPLETE
            assert json.loads(ackcmd.result) == {"jobId": first_id, "state": "succeeded"}
            assert (await self.next_job_result(first_id)).success

            # A failing job fails the command, and still has its jobResult.
            async with self.assertRaisesAckError(ack=SalRetCode.CMD_FAILED, result_contains="no stars"):
                await self.process("test.fail", config={"message": "no stars"})
            data = await self.next_job_result()
            assert not data.success and data.exitCode == 2 and data.errorReport == "no stars", data

            # Aborting the running job fails its command.
            first = await self.remote.cmd_processData.set_start(
                dataId=json.dumps({"obsid": LATISS_OBSID}),
                pipeline="test.sleep",
                config=json.dumps({"duration": 1.5}),
                timeout=STD_TIMEOUT,
                wait_done=False,
            )
            first_id = json.loads(first.result)["jobId"]
            await self.wait_running(1)
            await self.remote.cmd_abortJob.set_start(jobId=first_id, timeout=STD_TIMEOUT)
            async with self.assertRaisesAckError(ack=SalRetCode.CMD_FAILED, result_contains="aborted"):
                await self.remote.cmd_processData.next_ackcmd(first, timeout=STD_TIMEOUT)
            assert (await self.next_job_result(first_id)).exitCode == 255

            # A rejected request does not leave the CSC busy.
            async with self.assertRaisesAckError(ack=SalRetCode.CMD_FAILED, result_contains="bad dataId"):
                await self.process(data_id="{")
            job_id = await self.process()
            assert (await self.next_job_result(job_id)).success
            self.assert_enabled()

    async def test_synchronous_detectors_end_out_of_order(self) -> None:
        """Synchronous sfm on two detectors: the job awaited second ends first; the command completes.

        Before the fix, waiting on a job that had already ended raised KeyError and failed the command.
        """
        from lsst.ts.rapidanalysis.sim.raw_writer import simulate_detector
        from lsst.ts.rapidanalysis.sim.scene import SceneConfig

        self.csc_index = 3  # LSSTCam
        obsid = "MC_O_20251115_000400"
        async with self.enabled_csc(warm=True, override="synchronous_raws.yaml"):
            ackcmd = await self.remote.cmd_processData.set_start(
                dataId=json.dumps({"obsid": obsid, "detectors": [94, 93]}),
                pipeline="sfm",
                config="",
                timeout=STD_TIMEOUT,
                wait_done=False,
            )
            assert ackcmd.ack == SalRetCode.CMD_INPROGRESS, ackcmd
            first, second = json.loads(ackcmd.result)["jobIds"]  # detectors 93 and 94, awaited in this order
            # No raw yet: both wait for theirs. The second ends first (aborted), the first later.
            await self.remote.cmd_abortJob.set_start(jobId=second, timeout=STD_TIMEOUT)
            data = await self.next_job_result(second)
            assert data.exitCode == 255 and "abortJob" in data.errorReport, data
            scene = SceneConfig(seeing_fwhm=0.9, n_stars=150, mag_bright=16.0, mag_faint=21.0)
            await asyncio.to_thread(
                simulate_detector, "LSSTCam", 93, self.root / "raw", obsid, scene=scene, seed=93, scale=0.3
            )
            data = await self.next_job_result(first, timeout=60)
            assert data.success and data.pipeline == "sfm", data.errorReport
            ackcmd = await self.remote.cmd_processData.next_ackcmd(ackcmd, timeout=STD_TIMEOUT)
            assert ackcmd.ack == SalRetCode.CMD_COMPLETE, ackcmd
            result = json.loads(ackcmd.result)
            assert result["jobIds"] == [first, second] and result["state"] == "1/2 succeeded", result
            # The visit's gather follows, on the one detector that landed.
            data = await self.next_job_result(timeout=60)
            assert data.pipeline == "sfm_gather" and data.imageName == obsid, data
            self.assert_enabled()
            # Not busy any more.
            job_id = await self.process("test.succeed")
            assert (await self.next_job_result(job_id)).success

    async def test_missing_raw(self) -> None:
        """A job whose raw never appears fails after raw_wait_timeout; one written late is found."""
        if RAW_PIPELINE not in PipelineRegistry(simulation_mode=True).names:
            self.skipTest(
                f"pipeline {RAW_PIPELINE!r} (needs raws) is not registered in pipelines/registry.py yet; "
                "the test pipelines never wait for raws"
            )
        from fits_factory import write_raw

        async with self.enabled_csc(warm=True):
            loop = asyncio.get_running_loop()
            missing = "AT_O_20251115_000007"
            t0 = loop.time()
            job_id = await self.process(RAW_PIPELINE, data_id={"obsid": missing}, config={"make_plot": False})
            data = await self.next_job_result(job_id)
            waited = loop.time() - t0
            assert 0.9 <= waited < 5, waited  # raw_wait_timeout: 1.0
            assert not data.success and data.exitCode == 3, data
            expected_dir = self.root / "raw" / "LATISS" / "20251115" / missing
            assert str(expected_dir) in data.errorReport, data.errorReport
            self.assert_enabled()

            # Written 0.3 s after the command: the job waits for it and succeeds.
            late = "AT_O_20251115_000008"
            path = self.root / "raw" / "LATISS" / "20251115" / late / f"{late}_RXX_S00.fits"
            job_id = await self.process(RAW_PIPELINE, data_id={"obsid": late}, config={"make_plot": False})
            await asyncio.sleep(0.3)
            path.parent.mkdir(parents=True)
            await asyncio.to_thread(
                write_raw,
                path,
                detector_type="ITL",
                obsid=late,
                raft="RXX",
                sensor="S00",
                instrument="LATISS",
                scale=0.05,
            )
            data = await self.next_job_result(job_id)
            assert data.success and data.exitCode == 0, data
            assert data.imageName == late

    async def test_worker_killed(self) -> None:
        """A worker process killed mid-job: the job ends with one jobResult, the pool recovers."""
        async with self.enabled_csc(warm=True, override="long_jobs.yaml"):
            client = self.csc.pool.client
            job_id = await self.process("test.sleep", config={"duration": 3})
            key = f"test.sleep-{job_id}"

            async def worker_running_it() -> str | None:
                processing = await client.processing()
                return next((worker for worker, keys in processing.items() if key in keys), None)

            loop = asyncio.get_running_loop()
            deadline = loop.time() + STD_TIMEOUT
            while (worker := await worker_running_it()) is None:
                assert loop.time() < deadline, "the job never reached a worker"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # well into its work
            pids = await client.run(os.getpid)
            assert len(pids) == 2, pids
            os.kill(pids[worker], signal.SIGKILL)

            data = await self.next_job_result(job_id, timeout=STD_TIMEOUT)
            assert data.success or data.exitCode == 4, data
            if not data.success:
                assert "worker" in data.errorReport, data.errorReport
            self.assert_enabled()
            # The nanny restarts the worker.
            await wait_until(lambda: self.csc.pool.info.n_workers == 2, 15, "the pool back to 2 workers")
            new_pids = await client.run(os.getpid)
            assert len(new_pids) == 2 and pids[worker] not in new_pids.values(), (pids, new_pids)
            job_id = await self.process()
            assert (await self.next_job_result(job_id, timeout=STD_TIMEOUT)).success
            await self.assert_no_more_job_results()
            self.assert_enabled()

    @contextlib.asynccontextmanager
    async def external_scheduler(self) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
        """A ``dask scheduler`` and one ``dask worker``, as processes; yields (address, scheduler)."""
        processes: list[asyncio.subprocess.Process] = []
        log_path = self.root / "scheduler.log"
        try:
            with await asyncio.to_thread(open, log_path, "wb") as log:
                processes.append(
                    await asyncio.create_subprocess_exec(
                        str(BIN_DIR / "dask"),
                        "scheduler",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        "0",
                        "--no-dashboard",
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                    )
                )
            address = ""

            def find_address() -> bool:
                nonlocal address
                match = re.search(r"Scheduler at:\s+(tcp://127\.0\.0\.1:\d+)", log_path.read_text())
                address = match.group(1) if match else ""
                return bool(address)

            await wait_until(find_address, STD_TIMEOUT, "the scheduler's address in its log")
            with await asyncio.to_thread(open, self.root / "worker.log", "wb") as log:
                processes.append(
                    await asyncio.create_subprocess_exec(
                        str(BIN_DIR / "dask"),
                        "worker",
                        address,
                        "--host",
                        "127.0.0.1",
                        "--no-nanny",
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--memory-limit",
                        "1GB",
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                    )
                )
            self.monkeypatch.setenv("RA_TEST_SCHEDULER_ADDRESS", address)
            yield address, processes[0]
        finally:
            for process in reversed(processes):
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    async def test_scheduler_lost(self) -> None:
        """The scheduler dies and is not waited for: FAULT with POOL_LOST; the running job gets its jobResult."""
        async with self.external_scheduler() as (address, scheduler):
            async with self.enabled_csc(override="external_scheduler_no_reconnect.yaml"):
                workers = await self.remote.evt_workerPool.aget(timeout=STD_TIMEOUT)
                assert workers.schedulerAddress == address, (workers, address)
                await wait_until(lambda: self.csc.pool.info.n_workers == 1, STD_TIMEOUT, "the external worker")
                job_id = await self.process()
                assert (await self.next_job_result(job_id)).success
                running = await self.process("test.sleep", config={"duration": 1.5})
                await self.wait_running(1)

                scheduler.kill()
                await scheduler.wait()
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                await self.assert_next_summary_state(State.FAULT, timeout=15)
                assert loop.time() - t0 < 10, loop.time() - t0
                data = await self.remote.evt_errorCode.aget(timeout=STD_TIMEOUT)
                assert data.errorCode == ErrorCode.POOL_LOST == 1, data
                assert "scheduler" in data.errorReport and address in data.errorReport, data.errorReport
                data = await self.next_job_result(running)
                assert not data.success and data.exitCode == 5, data  # ExitCode.POOL_LOST, not an abort
                assert "scheduler" in data.errorReport, data.errorReport
                await self.assert_no_more_job_results()

                async with self.assertRaisesAckError(ack=SalRetCode.CMD_FAILED, result_contains="FAULT"):
                    await self.process()
                await self.remote.cmd_standby.start(timeout=STD_TIMEOUT)
                await self.assert_next_summary_state(State.STANDBY)
                # A start with the local pool works again.
                await self.remote.cmd_start.set_start(configurationOverride="", timeout=STD_TIMEOUT)
                await self.assert_next_summary_state(State.DISABLED)

    async def test_scheduler_unreachable(self) -> None:
        """start with a scheduler_address where nothing listens fails, naming it; state stays STANDBY."""
        address = f"tcp://127.0.0.1:{free_port()}"
        self.monkeypatch.setenv("RA_TEST_SCHEDULER_ADDRESS", address)
        async with self.make_csc(initial_state=State.STANDBY, simulation_mode=1):
            await self.assert_next_summary_state(State.STANDBY)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            async with self.assertRaisesAckError(ack=SalRetCode.CMD_FAILED, result_contains=address):
                await self.remote.cmd_start.set_start(
                    configurationOverride="external_scheduler.yaml", timeout=STD_TIMEOUT
                )
            # Dask retries the connection for the pool's connect timeout (20 s).
            assert loop.time() - t0 < 25, loop.time() - t0
            assert self.csc.summary_state == State.STANDBY
            assert self.remote.evt_summaryState.nqueued == 0
            # Nothing of the failed start is left open: no pool, no database file.
            assert self.csc.pool is None
            open_files = [f.path for f in psutil.Process().open_files() if f.path.startswith(str(self.root))]
            assert open_files == [], open_files
            await self.remote.cmd_start.set_start(configurationOverride="", timeout=STD_TIMEOUT)
            await self.assert_next_summary_state(State.DISABLED)


if __name__ == "__main__":
    unittest.main()
