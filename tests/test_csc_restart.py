"""A CSC killed with SIGKILL mid-job, and a new CSC on the same results database.

Real parts: the first CSC is ``run_rapid_analysis`` in its own process (with its own Dask pool),
commanded over DDS and killed with SIGKILL while jobs are running and queued; the second is a CSC
in this process, on the same results database. Rule under test: jobs an earlier CSC process left
unfinished are not re-run; each ends when the new CSC starts, with exit code 5 and one jobResult.
"""

from __future__ import annotations

import asyncio
import json
import signal
import unittest

import psutil

from lsst.ts.rapidanalysis.dispatch.jobs import ExitCode
from lsst.ts.rapidanalysis.results.database import open_results
from lsst.ts.rapidanalysis.sal import Domain, Remote, SalRetCode, State
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from test_csc import BIN_DIR, LATISS_OBSID, STD_TIMEOUT, TEST_CONFIG_DIR, RapidAnalysisTestMixin, wait_until


class CscRestartTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    def job_states(self) -> dict[str, str]:
        """Job id → state, as the results database holds them now (empty before it exists)."""
        if not self.database_path.exists():
            return {}
        with open_results(self.database_path) as db:
            return {str(row["job_id"]): str(row["state"]) for row in db.jobs()}

    async def run_and_kill_csc(self) -> tuple[list[str], list[str]]:
        """Run a CSC process, give it 2 running and 2 queued jobs, SIGKILL it; return their ids."""
        command = [
            str(BIN_DIR / "run_rapid_analysis"),
            "1",
            "--simulate",
            "--state",
            "enabled",
            "--override",
            "long_jobs.yaml",
            "--configdir",
            str(TEST_CONFIG_DIR),
        ]
        with open(self.root / "killed_csc.log", "wb") as log:  # noqa: ASYNC230 (opening a file)
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )
        children: list[psutil.Process] = []
        try:
            async with Domain() as domain, Remote(domain=domain, name="RapidAnalysis", index=1) as remote:
                for state in (State.STANDBY, State.DISABLED, State.ENABLED):
                    await self.assert_next_summary_state(state, remote=remote, timeout=60)

                async def process_data(pipeline: str, config: dict) -> str:
                    ackcmd = await remote.cmd_processData.set_start(
                        dataId=json.dumps({"obsid": LATISS_OBSID}),
                        pipeline=pipeline,
                        config=json.dumps(config),
                        timeout=STD_TIMEOUT,
                    )
                    assert ackcmd.ack == SalRetCode.CMD_COMPLETE, ackcmd
                    return json.loads(ackcmd.result)["jobId"]

                running = [await process_data("test.sleep", {"duration": 30}) for _ in range(2)]
                queued = [await process_data("test.succeed", {}) for _ in range(2)]
                expected = {**{j: "running" for j in running}, **{j: "queued" for j in queued}}
                what = "2 running and 2 queued jobs in the database"
                await wait_until(lambda: self.job_states() == expected, 60, what)
                assert remote.evt_jobResult.nqueued == 0
                children = psutil.Process(process.pid).children(recursive=True)
                process.send_signal(signal.SIGKILL)
                assert await asyncio.wait_for(process.wait(), STD_TIMEOUT) == -signal.SIGKILL
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            # Its Dask workers outlive it (their nanny was in the killed process).
            for child in children:
                if child.is_running():
                    child.kill()
            await asyncio.to_thread(psutil.wait_procs, children, timeout=10)
        assert self.job_states() == expected  # nothing ended them
        return running, queued

    async def test_jobs_of_a_killed_csc_end_at_the_next_start(self) -> None:
        running, queued = await self.run_and_kill_csc()
        async with self.make_csc(initial_state=State.STANDBY, simulation_mode=1):
            await self.assert_next_summary_state(State.STANDBY)
            assert self.remote.evt_jobResult.nqueued == 0
            await self.remote.cmd_start.set_start(configurationOverride="long_jobs.yaml", timeout=60)
            await self.assert_next_summary_state(State.DISABLED)

            # Each job of the killed CSC: one jobResult, exit code 5, saying it was not re-run.
            results = {data.jobId: data for data in await self.job_results(running + queued)}
            for job_id, state in [(j, "running") for j in running] + [(j, "queued") for j in queued]:
                data = results[job_id]
                assert not data.success and data.exitCode == ExitCode.CSC_RESTARTED == 5, data
                assert data.errorReport.startswith("the CSC restarted before the job ended"), data.errorReport
                assert f"it was {state}" in data.errorReport and "not re-run" in data.errorReport, data.errorReport
                assert data.imageName == LATISS_OBSID and data.trigger == "command", data
                assert data.pipeline == ("test.sleep" if state == "running" else "test.succeed"), data
                assert (data.startTime > 0) == (state == "running"), data
                assert data.endTime >= data.startTime, data
            with open_results(self.database_path) as db:
                for job_id, data in results.items():
                    row = db.job(job_id)
                    assert row["state"] == "failed" and row["exit_code"] == 5 and row["success"] is False, row
                    assert row["error_report"] == data.errorReport and row["end_time"] == data.endTime, row
                assert db.unfinished_jobs("LATISS") == []
            messages = []
            while self.remote.evt_logMessage.nqueued:
                messages.append(self.remote.evt_logMessage.get_oldest().message)
            text = "\n".join(messages)
            assert "4 job(s) were left queued or running by an earlier CSC process" in text, text
            assert "not re-run" in text and all(job_id in text for job_id in running + queued), text

            # The new CSC works, and ends nothing twice: a job, then a standby/start cycle.
            await self.remote.cmd_enable.start(timeout=STD_TIMEOUT)
            await self.assert_next_summary_state(State.ENABLED)
            job_id = await self.process()
            assert (await self.next_job_result(job_id)).success
            await self.remote.cmd_disable.start(timeout=STD_TIMEOUT)
            await self.remote.cmd_standby.start(timeout=STD_TIMEOUT)
            await self.remote.cmd_start.start(timeout=60)
            await self.assert_no_more_job_results(wait=1.0)
            assert self.job_states()[job_id] == "succeeded"


if __name__ == "__main__":
    unittest.main()
