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
from test_spectrum_examiner import CR_SCENE, simulate_small

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

    async def test_starless_dispersed_image_fails_saying_why(self) -> None:
        """A dispersed image with cosmic rays and no star: one jobResult, failed with exit code 2 and
        the reason (no zeroth-order star: the candidates are cosmic rays), and no spectrumMetrics."""
        starless = await asyncio.to_thread(
            simulate_small,
            self.root / "raw",
            62,
            exp_time=30.0,
            # Its brightest round candidate is a cosmic ray 0.34 x 3.57 px across (FWHMs), which
            # min_star_fwhm (3 px) and max_elongation (5) reject; with 0.05 and 1e6 it is the "star".
            seed=7,
            scene=CR_SCENE,
            zeroth_order_rate=0.0,
            continuum_rate=0.0,
        )
        assert starless.truth["spectrum"]["zeroth_order"]["flux_e"] == 0
        assert len(starless.truth["cosmic_rays"]["x0"]) >= 15
        # A good dispersed image examined next: its sample is the first spectrumMetrics the remote sees.
        good = await asyncio.to_thread(simulate_small, self.root / "raw", 63, seed=9)
        async with self.enabled_csc(warm=True):
            job_id = await self.process(
                "spectrum_examiner", data_id={"obsid": starless.truth["obsid"]}, config=BOX, timeout=STD_TIMEOUT
            )
            result = await self.next_job_result(job_id, timeout=60)
            assert not result.success and result.exitCode == 2, result
            report = result.errorReport
            assert f"{starless.path.name}: no zeroth-order star found" in report, report
            # Why: there were candidates, and none is a star (a cosmic ray is sharp).
            assert "none is a star" in report and "narrower than a star (min_star_fwhm 3 px" in report, report
            outcome = json.loads(result.result)
            assert outcome["metrics"] == {} and outcome["products"] == [], result.result  # nor a PNG

            good_id = await self.process("spectrum_examiner", data_id={"obsid": good.truth["obsid"]}, config=BOX)
            assert (await self.next_job_result(good_id, timeout=60)).success  # and no second result for job_id
            sample = await self.remote.tel_spectrumMetrics.next(flush=False, timeout=STD_TIMEOUT)
            assert sample.imageName == good.truth["obsid"], sample
            assert self.remote.tel_spectrumMetrics.nqueued == 0
            lfo = await self.remote.evt_largeFileObjectAvailable.next(flush=False, timeout=STD_TIMEOUT)
            assert lfo.id == good_id and self.remote.evt_largeFileObjectAvailable.nqueued == 0, lfo
