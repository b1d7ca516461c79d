"""spectrum_examiner under the CSC: a LATISS dispersed raw → spectrumMetrics, jobResult, PNG, database."""

from __future__ import annotations

import asyncio
import json
import unittest

import pytest

from lsst.ts.rapidanalysis.results.database import open_results
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from lsst.ts.rapidanalysis.sim.raw_writer import simulate_detector
from lsst.ts.rapidanalysis.sim.spectrum import SpectrumConfig, simulate_dispersed
from lsst.ts.rapidanalysis.sim.truth import read_truth
from test_csc import STD_TIMEOUT, RapidAnalysisTestMixin

BOX = {"box": {"offset": 100, "length": 1000, "half_width": 60, "background_width": 20}}


class SpectrumCscTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    csc_index = 1  # LATISS

    async def test_dispersed_image_examined_and_undispersed_skipped(self) -> None:
        spectrum = SpectrumConfig(zeroth_order_x=500.0, zeroth_order_y=100.0, offset=100.0, length=800.0)
        raw = await asyncio.to_thread(
            simulate_dispersed, self.root / "raw", "AT_O_20251115_000060", exp_time=20.0, scale=0.25, spectrum=spectrum
        )
        await asyncio.to_thread(simulate_detector, "LATISS", 0, self.root / "raw", "AT_O_20251115_000061", scale=0.1)
        truth = read_truth(raw.path)["spectrum"]
        async with self.enabled_csc(warm=True):
            ack = await self.remote.cmd_processData.set_start(
                dataId=json.dumps({"obsid": "AT_O_20251115_000060"}),
                pipeline="spectrum_examiner",
                config=json.dumps(BOX),
                timeout=STD_TIMEOUT,
            )
            job_id = json.loads(ack.result)["jobId"]
            result = await self.next_job_result(job_id, timeout=60)
            assert result.success, result.errorReport
            sample = await self.remote.tel_spectrumMetrics.next(flush=False, timeout=STD_TIMEOUT)
            assert sample.imageName == "AT_O_20251115_000060"
            assert sample.continuumRate == pytest.approx(truth["continuum_rate_adu"], rel=0.05)
            lfo = await self.remote.evt_largeFileObjectAvailable.next(flush=False, timeout=STD_TIMEOUT)
            assert lfo.id == job_id and lfo.mimeType == "image/png"
            with open_results(self.database_path) as db:
                assert db.metrics(job_id=job_id)["continuumRate"][0] == pytest.approx(sample.continuumRate)

            ack = await self.remote.cmd_processData.set_start(
                dataId=json.dumps({"obsid": "AT_O_20251115_000061"}), pipeline="spectrum_examiner", timeout=STD_TIMEOUT
            )
            skipped = await self.next_job_result(json.loads(ack.result)["jobId"], timeout=60)
            assert skipped.success and json.loads(skipped.result)["skipped"], skipped.result
            assert self.remote.tel_spectrumMetrics.nqueued == 0
