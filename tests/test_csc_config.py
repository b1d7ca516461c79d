"""RapidAnalysisCsc configuration: bad configuration files fail start with a clear message and leave
the CSC in STANDBY; site-style settings (database URL, product URL prefix) take effect.

Uses the test configuration in ``tests/data/config/RapidAnalysis`` (see test_csc.py).
"""

from __future__ import annotations

import json
import unittest

from lsst.ts.rapidanalysis.results.database import open_results
from lsst.ts.rapidanalysis.sal import SalRetCode, State
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from test_csc import LATISS_OBSID, STD_TIMEOUT, RapidAnalysisTestMixin


class CscConfigTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    async def start_fails(self, override: str, *expected: str) -> None:
        """start with ``override`` fails with a message containing each of ``expected``; still STANDBY."""
        async with self.assertRaisesAckError(ack=SalRetCode.CMD_FAILED):
            try:
                await self.remote.cmd_start.set_start(configurationOverride=override, timeout=STD_TIMEOUT)
            except Exception as e:
                result = e.ackcmd.result
                for text in expected:
                    assert text in result, f"{override}: {text!r} not in {result!r}"
                raise
        assert self.csc.summary_state == State.STANDBY, (override, self.csc.summary_state)
        assert self.remote.evt_summaryState.nqueued == 0
        assert self.csc.pool is None

    async def test_invalid_configurations(self) -> None:
        """Each bad configuration: start fails naming the problem, the CSC stays in STANDBY."""
        async with self.make_csc(initial_state=State.STANDBY, simulation_mode=1):
            await self.assert_next_summary_state(State.STANDBY)
            await self.start_fails(
                "invalid_unknown_pipeline.yaml",
                "pipelines.no.such.pipeline",
                "Unknown pipeline 'no.such.pipeline'; known pipelines:",
            )
            await self.start_fails(
                "invalid_bad_pipeline_config.yaml",
                "pipelines.test.succeed",
                "bad configuration for pipeline 'test.succeed': no_such_field",
            )
            await self.start_fails(
                "invalid_extra_key.yaml", "_init.yaml,invalid_extra_key.yaml is not valid", "'n_wrokers' was unexpected"
            )
            await self.start_fails("invalid_wrong_type.yaml", "n_workers: 'two' is not of type 'integer'")
            await self.start_fails("invalid_unset_env.yaml", "output_root", "$RA_TEST_UNDEFINED_VARIABLE is not set")
            await self.start_fails(
                "invalid_autonomous_pipelines.yaml",
                "autonomous.file_pipelines: pipeline 'sfm_gather' is run by the CSC itself",
            )
            await self.start_fails(
                "invalid_autonomous_unknown.yaml",
                "autonomous.science_pipelines: Unknown pipeline 'no.such.pipeline'",
            )
            await self.start_fails(
                "invalid_autonomous_file_root.yaml", "autonomous.file_root", "$RA_TEST_UNDEFINED_VARIABLE is not set"
            )
            await self.start_fails(
                "invalid_min_workers.yaml", "min_workers=3 is more than the local pool's n_workers=2"
            )
            await self.start_fails("no_such_override.yaml", "no_such_override.yaml not found")
            await self.start_fails("../RapidAnalysis/synchronous.yaml", "must be a file name")
            # The variable every path of the test configuration uses.
            self.monkeypatch.delenv("RA_TEST_ROOT")
            await self.start_fails("", "data_roots.LATISS", "$RA_TEST_ROOT is not set")
            self.monkeypatch.setenv("RA_TEST_ROOT", str(self.root))

            # And then a good configuration starts, with the pool.
            await self.remote.cmd_start.set_start(configurationOverride="", timeout=STD_TIMEOUT)
            await self.assert_next_summary_state(State.DISABLED)
            data = await self.remote.evt_configurationApplied.aget(timeout=STD_TIMEOUT)
            assert data.configurations == "_init.yaml", data
            data = await self.remote.evt_workerPool.aget(timeout=STD_TIMEOUT)
            assert data.nWorkers == 2, data
            assert self.csc.config.data_root == self.root / "raw"
            assert self.csc.config.output_root == self.root / "products"
            assert self.database_path.is_file()

    async def test_site_paths(self) -> None:
        """database_url and output_url_root from the configuration are used."""
        async with self.enabled_csc(override="custom_paths.yaml"):
            data = await self.remote.evt_configurationApplied.aget(timeout=STD_TIMEOUT)
            assert data.configurations == "_init.yaml,custom_paths.yaml", data
            ackcmd = await self.remote.cmd_processData.set_start(
                dataId=json.dumps({"obsid": LATISS_OBSID}),
                pipeline="test.succeed",
                config=json.dumps({"write_product": True}),
                timeout=STD_TIMEOUT,
            )
            job_id = json.loads(ackcmd.result)["jobId"]
            assert (await self.next_job_result(job_id)).success
            lfo = await self.remote.evt_largeFileObjectAvailable.next(flush=False, timeout=STD_TIMEOUT)
            assert lfo.url == (
                "https://rapid.example.org/products/LATISS/20251115/"
                f"{LATISS_OBSID}/test.succeed-{job_id}/test_succeed.txt"
            ), lfo.url
            path = self.root / "products" / lfo.url.removeprefix("https://rapid.example.org/products/")
            assert path.is_file() and lfo.byteSize == path.stat().st_size
            with open_results(self.root / "db" / "custom.sqlite3") as db:
                assert db.job(job_id)["state"] == "succeeded"
                assert db.products(job_id=job_id)["url"][0] == lfo.url
            assert not self.database_path.exists()


if __name__ == "__main__":
    unittest.main()
