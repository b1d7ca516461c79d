"""RapidAnalysisCsc: the standard CSC behaviour, the configuration, and jobs that go well.

Real parts only: the CSC and a Remote on real DDS (BaseCscTestCase), a real Dask LocalCluster
started by the CSC, real files and a real SQLite results database under a temporary directory
(``$RA_TEST_ROOT``, used by the test configuration in ``tests/data/config/RapidAnalysis``).

`RapidAnalysisTestMixin` (and the helpers before it) are shared with ``test_csc_failures.py``
and ``test_csc_config.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import json
import pathlib
import signal
import sys
import unittest
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable
from importlib.metadata import version
from typing import Any

import jsonschema
import psutil
import pytest
import yaml

from lsst.ts import rapidanalysis
from lsst.ts.rapidanalysis import __version__
from lsst.ts.rapidanalysis.csc import CONFIG_SCHEMA, RapidAnalysisCsc
from lsst.ts.rapidanalysis.results.database import open_results
from lsst.ts.rapidanalysis.sal import Domain, Remote, SalRetCode, State, current_tai
from lsst.ts.rapidanalysis.sal.config_validator import DefaultingValidator
from lsst.ts.rapidanalysis.sal.configurable_csc import hierarchical_update
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase

#: Bound on every wait in these tests.
STD_TIMEOUT = 30.0
TEST_CONFIG_DIR = pathlib.Path(__file__).parent / "data" / "config" / "RapidAnalysis"
PACKAGE_DIR = pathlib.Path(rapidanalysis.__file__).parent
SHIPPED_CONFIG_DIR = PACKAGE_DIR / "config" / "RapidAnalysis" / "v1"
SCHEMA_PATH = PACKAGE_DIR / "config" / "schema" / "RapidAnalysis.yaml"
BIN_DIR = pathlib.Path(sys.executable).parent
#: Default test.succeed "value" in tests/data/config/RapidAnalysis/_init.yaml.
CONFIGURED_VALUE = 2.5
LATISS_OBSID = "AT_O_20251115_000001"
LSSTCAM_OBSID = "MC_O_20251115_000226"


def canonical(**data_id: Any) -> str:
    """The canonical JSON of a data id, as jobResult.dataId carries it."""
    return json.dumps(data_id, sort_keys=True)


async def wait_until(predicate: Callable[[], bool], timeout: float = STD_TIMEOUT, what: str = "condition") -> float:
    """Poll ``predicate()`` until it is true; return the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        if loop.time() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
    return loop.time() - start


class RapidAnalysisTestMixin:
    """What every RapidAnalysis CSC test case needs; mix in before `BaseCscTestCase`.

    ``self.root`` is a fresh directory and ``$RA_TEST_ROOT`` points at it.
    """

    #: SAL index of the CSC by default (1 = LATISS).
    csc_index = 1

    @pytest.fixture(autouse=True)
    def _ra_test_root(self, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("RA_TEST_ROOT", str(tmp_path))
        monkeypatch.delenv("TS_CONFIG_OCS_DIR", raising=False)
        self.root = tmp_path
        self.monkeypatch = monkeypatch

    def basic_make_csc(
        self,
        initial_state: State | int | None,
        config_dir: str | pathlib.Path | None,
        simulation_mode: int,
        index: int | None = None,
        override: str = "",
        shipped_config: bool = False,
    ) -> RapidAnalysisCsc:
        if config_dir is None and not shipped_config:
            config_dir = TEST_CONFIG_DIR
        return RapidAnalysisCsc(
            index=index or self.csc_index,
            config_dir=config_dir,
            initial_state=initial_state,
            override=override,
            simulation_mode=simulation_mode,
        )

    @contextlib.asynccontextmanager
    async def enabled_csc(self, warm: bool = False, **kwargs: Any) -> AsyncIterator[None]:
        """An ENABLED CSC in simulation mode (its summaryState ENABLED read).

        With ``warm`` the workers import the job code first. Run from ``run_rapid_analysis``, they
        have it already (spawned workers import the main script, which imports the CSC); under
        pytest they would import it (~1 s on 2 cores) during their first job, counted against
        that job's time limit.
        """
        async with self.make_csc(initial_state=State.ENABLED, simulation_mode=1, **kwargs):
            await self.assert_next_summary_state(State.ENABLED)
            if warm:
                await self.warm_workers()
            yield

    async def warm_workers(self) -> None:
        """Have every worker of the CSC's pool import the job code."""
        await asyncio.wait_for(
            self.csc.pool.client.run(importlib.import_module, "lsst.ts.rapidanalysis.dispatch.worker_task"),
            STD_TIMEOUT,
        )

    @property
    def database_path(self) -> pathlib.Path:
        return self.root / "products" / "results.sqlite3"

    async def process(
        self,
        pipeline: str = "test.succeed",
        data_id: dict | str | None = None,
        config: dict | str = "",
        timeout: float = STD_TIMEOUT,
    ) -> str:
        """Send processData; check the final ack; return the jobId it carries."""
        if data_id is None:
            data_id = {"obsid": LATISS_OBSID if self.csc.instrument.name == "LATISS" else LSSTCAM_OBSID}
        ackcmd = await self.remote.cmd_processData.set_start(
            dataId=data_id if isinstance(data_id, str) else json.dumps(data_id),
            pipeline=pipeline,
            config=config if isinstance(config, str) else json.dumps(config),
            timeout=timeout,
        )
        assert ackcmd.ack == SalRetCode.CMD_COMPLETE, ackcmd
        result = json.loads(ackcmd.result)
        assert isinstance(result["jobId"], str) and result["jobId"], ackcmd.result
        return result["jobId"]

    async def next_job_result(self, job_id: str | None = None, timeout: float = STD_TIMEOUT) -> Any:
        """The next jobResult (which must be for ``job_id`` if given)."""
        data = await self.remote.evt_jobResult.next(flush=False, timeout=timeout)
        if job_id is not None:
            assert data.jobId == job_id, f"jobResult for {data.jobId} ({data.errorReport!r}); expected {job_id}"
        return data

    async def job_results(self, job_ids: Iterable[str], timeout: float = STD_TIMEOUT) -> list[Any]:
        """jobResults for exactly these jobs, one each, in the order they came; none for others."""
        wanted = set(job_ids)
        seen: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(seen) < len(wanted):
            data = await self.remote.evt_jobResult.next(flush=False, timeout=max(0.01, deadline - loop.time()))
            assert data.jobId in wanted, f"unexpected jobResult for {data.jobId}: {data}"
            assert data.jobId not in {d.jobId for d in seen}, f"second jobResult for {data.jobId}"
            seen.append(data)
        return seen

    async def assert_no_more_job_results(self, wait: float = 0.3) -> None:
        """No further jobResult arrives within ``wait`` seconds."""
        with contextlib.suppress(TimeoutError):
            data = await self.remote.evt_jobResult.next(flush=False, timeout=wait)
            raise AssertionError(f"unexpected jobResult {data}")

    async def wait_running(self, n: int, timeout: float = STD_TIMEOUT) -> None:
        """Wait until the CSC has ``n`` jobs running on the pool."""
        await wait_until(lambda: self.csc.job_manager.n_running == n, timeout, f"{n} running jobs")

    def assert_enabled(self) -> None:
        assert self.csc.summary_state == State.ENABLED, f"CSC is {self.csc.summary_state!r}"


class RapidAnalysisCscTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    async def test_standard_state_transitions(self) -> None:
        async with self.make_csc(initial_state=State.STANDBY, simulation_mode=1):
            await self.check_standard_state_transitions(
                enabled_commands=("processData", "abortJob", "setFocalPlaneMode")
            )
            # The pool went away with the state: workerPool says so.
            data = await self.remote.evt_workerPool.aget(timeout=STD_TIMEOUT)
            assert data.nWorkers == 0 and data.schedulerAddress == "", data
            assert self.csc.pool is None and self.csc.job_manager is None

    async def test_start_up_events(self) -> None:
        """softwareVersions, simulationMode and the shipped (default) configuration directory."""
        async with self.make_csc(initial_state=State.STANDBY, simulation_mode=1, shipped_config=True):
            await self.assert_next_summary_state(State.STANDBY)
            assert self.csc.config_dir == SHIPPED_CONFIG_DIR.resolve()
            data = await self.remote.evt_softwareVersions.aget(timeout=STD_TIMEOUT)
            assert data.cscVersion == __version__ == version("lsst-ts-rapidanalysis")
            await self.assert_next_sample(self.remote.evt_simulationMode, mode=1)
            data = await self.remote.evt_configurationsAvailable.aget(timeout=STD_TIMEOUT)
            assert "synchronous.yaml" in data.overrides.split(","), data.overrides
            assert data.schemaVersion == "v1"

    def test_config_schema(self) -> None:
        """The schema is draft 7; the shipped and the test configuration files are valid."""
        schema = yaml.safe_load(SCHEMA_PATH.read_text())
        jsonschema.Draft7Validator.check_schema(schema)
        assert schema == CONFIG_SCHEMA
        validator = jsonschema.Draft7Validator(schema)
        defaulting = DefaultingValidator(schema)
        assert SHIPPED_CONFIG_DIR.is_dir()
        # The shipped _init.yaml sets nothing: every default is the schema's.
        init = yaml.safe_load((SHIPPED_CONFIG_DIR / "_init.yaml").read_text()) or {}
        assert init == {}
        defaulting.validate(init)
        others = sorted(p for p in SHIPPED_CONFIG_DIR.glob("*.yaml") if p.name != "_init.yaml")
        assert {p.name for p in others} >= {"_summit.yaml", "_base.yaml", "_tucson.yaml", "synchronous.yaml"}
        for path in others:
            defaulting.validate(hierarchical_update(init, yaml.safe_load(path.read_text()) or {}))

        # The test configuration: valid, and each invalid_* file is invalid the way it says.
        test_init = yaml.safe_load((TEST_CONFIG_DIR / "_init.yaml").read_text())
        validator.validate(test_init)
        schema_errors = {
            "invalid_extra_key.yaml": "n_wrokers",
            "invalid_wrong_type.yaml": "'two' is not of type 'integer'",
        }
        for path in sorted(TEST_CONFIG_DIR.glob("*.yaml")):
            merged = hierarchical_update(test_init, yaml.safe_load(path.read_text()) or {})
            messages = [e.message for e in validator.iter_errors(merged)]
            if path.name in schema_errors:
                assert any(schema_errors[path.name] in m for m in messages), (path.name, messages)
            else:
                assert messages == [], (path.name, messages)

    async def test_bin_script(self) -> None:
        """run_rapid_analysis starts in STANDBY (test config given with --configdir)."""
        await self.check_bin_script(
            "RapidAnalysis",
            1,
            "run_rapid_analysis",
            cmdline_args=["--simulate", "--configdir", str(TEST_CONFIG_DIR)],
        )

    async def test_bin_script_enabled(self) -> None:
        """run_rapid_analysis 3 --state enabled: the pool starts, a job runs, SIGTERM stops it all."""
        command = [
            str(BIN_DIR / "run_rapid_analysis"),
            "3",
            "--simulate",
            "--state",
            "enabled",
            "--configdir",
            str(TEST_CONFIG_DIR),
        ]
        process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL)
        try:
            async with Domain() as domain, Remote(domain=domain, name="RapidAnalysis", index=3) as remote:
                for state in (State.STANDBY, State.DISABLED, State.ENABLED):
                    await self.assert_next_summary_state(state, remote=remote)
                data = await remote.evt_workerPool.aget(timeout=STD_TIMEOUT)
                assert data.nWorkers == 2 and data.schedulerAddress.startswith("tcp://127.0.0.1:"), data
                ackcmd = await remote.cmd_processData.set_start(
                    dataId=json.dumps({"obsid": LSSTCAM_OBSID}), pipeline="test.succeed", timeout=STD_TIMEOUT
                )
                job_id = json.loads(ackcmd.result)["jobId"]
                data = await remote.evt_jobResult.next(flush=False, timeout=STD_TIMEOUT)
                assert data.jobId == job_id and data.success, data
                assert data.imageName == LSSTCAM_OBSID
                children = psutil.Process(process.pid).children(recursive=True)
                assert len(children) >= 2, f"expected worker processes, found {children}"
                process.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(process.wait(), STD_TIMEOUT)
            assert returncode == 0
            # No worker process outlives the CSC.
            _, alive = await asyncio.to_thread(psutil.wait_procs, children, timeout=10)
            assert not alive, f"worker processes left running: {alive}"
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def test_process_data_succeeds(self) -> None:
        """An asynchronous processData: ack, jobResult, product, database rows, pool status."""
        async with self.enabled_csc():
            workers = await self.assert_next_sample(self.remote.evt_workerPool, nWorkers=2)
            assert workers.schedulerAddress.startswith("tcp://127.0.0.1:"), workers
            assert workers.dashboardUrl.startswith("http://127.0.0.1:"), workers

            t0 = current_tai()
            job_id = await self.process(data_id={"obsid": LATISS_OBSID}, config={"write_product": True})
            data = await self.next_job_result(job_id)
            t1 = current_tai()
            assert data.success and data.exitCode == 0 and data.errorReport == "", data
            assert data.pipeline == "test.succeed"
            assert data.dataId == canonical(obsid=LATISS_OBSID, dayObs=20251115, seqNum=1)
            assert data.imageName == LATISS_OBSID
            assert data.trigger == "command"
            assert t0 <= data.startTime <= data.endTime <= t1, (t0, data.startTime, data.endTime, t1)
            assert data.duration == pytest.approx(data.endTime - data.startTime, abs=1e-6)
            result = json.loads(data.result)
            assert result["metrics"]["value"] == CONFIGURED_VALUE  # the configured default
            assert len(result["products"]) == 1

            # The product file, announced.
            lfo = await self.remote.evt_largeFileObjectAvailable.next(flush=False, timeout=STD_TIMEOUT)
            assert lfo.id == job_id and lfo.mimeType == "text/plain", lfo
            assert lfo.generator == "RapidAnalysis:1"
            url = urllib.parse.urlparse(lfo.url)
            assert url.scheme == "file", lfo.url
            path = pathlib.Path(urllib.parse.unquote(url.path))
            assert path.is_relative_to(self.root / "products"), path
            assert str(path) == result["products"][0]
            content = await asyncio.to_thread(path.read_bytes)
            assert lfo.byteSize == len(content) > 0
            assert lfo.checkSum == hashlib.md5(content).hexdigest()
            assert job_id in content.decode()

            # The results database, as a notebook reads it.
            with open_results(self.database_path) as db:
                row = db.job(job_id)
                assert row is not None and row["state"] == "succeeded" and row["success"], row
                assert row["exit_code"] == 0 and row["pipeline"] == "test.succeed"
                assert row["image_name"] == LATISS_OBSID and row["instrument"] == "LATISS"
                assert row["data_id"] == {"obsid": LATISS_OBSID, "dayObs": 20251115, "seqNum": 1}
                metrics = db.metrics(job_id=job_id, per_detector=False)
                assert len(metrics) == 1 and metrics["value"][0] == CONFIGURED_VALUE
                products = db.products(job_id=job_id)
                assert len(products) == 1
                assert products["path"][0] == str(path) and products["url"][0] == lfo.url
                assert products["checksum"][0] == lfo.checkSum and products["byte_size"][0] == len(content)

            # A request by dayObs+seqNum, with an override, and no product.
            job_id2 = await self.process(data_id={"dayObs": 20251115, "seqNum": 2}, config={"value": 7})
            data = await self.next_job_result(job_id2)
            assert data.success, data
            assert data.imageName == "AT_O_20251115_000002"
            assert data.dataId == canonical(obsid="AT_O_20251115_000002", dayObs=20251115, seqNum=2)
            assert json.loads(data.result)["metrics"]["value"] == 7
            with open_results(self.database_path) as db:
                assert db.metrics(job_id=job_id2)["value"][0] == 7
                assert len(db.products(job_id=job_id2)) == 0
            await self.assert_no_more_job_results()
            assert self.remote.evt_largeFileObjectAvailable.nqueued == 0

            # poolStatus at about 1 Hz.
            samples = [await self.remote.tel_poolStatus.next(flush=True, timeout=STD_TIMEOUT)]
            for _ in range(2):
                samples.append(await self.remote.tel_poolStatus.next(flush=False, timeout=STD_TIMEOUT))
            intervals = [b.private_sndStamp - a.private_sndStamp for a, b in zip(samples, samples[1:], strict=False)]
            assert all(0.8 < dt < 2.0 for dt in intervals), intervals
            last = samples[-1]
            assert last.nWorkers == 2 and last.nQueued == 0 and last.nRunning == 0, last
            assert last.jobsSucceeded == 2 and last.jobsFailed == 0 and last.keepingUp, last

    async def test_metric_telemetry_per_result(self) -> None:
        """Telemetry a pipeline returns is written; a bad sample is reported and the job still succeeds."""
        async with self.enabled_csc():
            fields = {"imageName": LATISS_OBSID, "continuumRate": 1234.5, "nGoodRows": 17}
            job_id = await self.process(config={"telemetry": {"spectrumMetrics": fields}})
            sample = await self.remote.tel_spectrumMetrics.next(flush=False, timeout=STD_TIMEOUT)
            assert (sample.imageName, sample.continuumRate, sample.nGoodRows) == (LATISS_OBSID, 1234.5, 17)
            assert (await self.next_job_result(job_id)).success

            bad = {"noSuchTopic": {"x": 1}, "spectrumMetrics": {"noSuchField": 1.0}}
            job_id = await self.process(config={"telemetry": bad})
            data = await self.next_job_result(job_id)
            assert data.success, data.errorReport
            assert self.remote.tel_spectrumMetrics.nqueued == 0
            messages = []
            while self.remote.evt_logMessage.nqueued:
                messages.append(self.remote.evt_logMessage.get_oldest().message)
            text = " ".join(messages)
            assert "unknown telemetry topic 'noSuchTopic'" in text, text
            assert "spectrumMetrics rejected" in text and "noSuchField" in text, text

    async def test_newest_first(self) -> None:
        """With the workers busy, queued jobs run newest first."""
        self.csc_index = 3
        async with self.enabled_csc(warm=True):
            # Worker 1 frees at 1.0 s; the queued jobs all run there before worker 2 frees at 1.5 s.
            sleeps = [await self.process("test.sleep", config={"duration": d}) for d in (1.0, 1.5)]
            await self.wait_running(2)
            names = {}
            for seq_num in (1, 2, 3):
                job_id = await self.process(
                    data_id={"dayObs": 20251115, "seqNum": seq_num, "detectors": ["R22_S11", 0]}
                )
                names[job_id] = f"MC_O_20251115_00000{seq_num}"
            assert self.csc.job_manager.n_queued == 3
            results = await self.job_results([*sleeps, *names])
            by_id = {data.jobId: data for data in results}
            assert all(data.success for data in results), results
            order = [names[data.jobId] for data in results if data.jobId in names]
            assert order == ["MC_O_20251115_000003", "MC_O_20251115_000002", "MC_O_20251115_000001"], order
            queued = [by_id[job_id] for job_id in reversed(names)]
            starts = [data.startTime for data in queued]
            assert starts == sorted(starts), starts
            # They waited for a worker: none started before the first sleep ended.
            assert min(starts) >= by_id[sleeps[0]].endTime - 0.01
            for data in queued:
                assert data.imageName == names[data.jobId], data
                seq_num = int(data.imageName[-6:])
                assert data.dataId == canonical(
                    obsid=data.imageName, dayObs=20251115, seqNum=seq_num, detectors=[94, 0]
                ), data.dataId

    async def test_queue_full(self) -> None:
        """Past max_queue_length processData fails with "queue full"; the queued jobs still run."""
        async with self.enabled_csc(warm=True):
            sleeps = [await self.process("test.sleep", config={"duration": 1.0}) for _ in range(2)]
            await self.wait_running(2)
            queued = [await self.process(config={"value": i}) for i in range(5)]  # max_queue_length: 5
            async with self.assertRaisesAckError(ack=SalRetCode.CMD_FAILED, result_contains="queue full"):
                await self.process()
            self.assert_enabled()
            results = await self.job_results([*sleeps, *queued])
            assert all(data.success for data in results), results
            values = {data.jobId: json.loads(data.result)["metrics"].get("value") for data in results}
            assert [values[job_id] for job_id in queued] == list(range(5))
            # Once the queue has room, requests are accepted again.
            job_id = await self.process()
            assert (await self.next_job_result(job_id)).success
            await self.assert_no_more_job_results()
            with open_results(self.database_path) as db:
                jobs = db.jobs()
                assert len(jobs) == 8, jobs  # the rejected request is no job
                assert set(jobs["state"]) == {"succeeded"}, list(jobs["state"])


if __name__ == "__main__":
    unittest.main()
