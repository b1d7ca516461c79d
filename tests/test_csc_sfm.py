"""sfm under the CSC: one job per detector, the gather and re-gather, visit metrics and plots.

Real parts: the CSC and a Remote on DDS, a LocalCluster, simulated raws with truth on disk, the
SQLite results database.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import unittest

import pytest

from lsst.ts.rapidanalysis.results.database import open_results
from lsst.ts.rapidanalysis.sal import AckError, SalRetCode
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from lsst.ts.rapidanalysis.sim.raw_writer import simulate_detector
from lsst.ts.rapidanalysis.sim.scene import SceneConfig
from lsst.ts.rapidanalysis.sim.truth import read_truth
from test_csc import STD_TIMEOUT, RapidAnalysisTestMixin

OBSID = "MC_O_20251115_000300"
DETECTORS = (93, 94, 95)
SCENE = SceneConfig(seeing_fwhm=0.9, n_stars=250, mag_bright=16.0, mag_faint=22.0)


class SfmCscTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    csc_index = 3  # LSSTCam

    def simulate(self, detector: int, obsid: str = OBSID) -> pathlib.Path:
        return simulate_detector(
            "LSSTCam", detector, self.root / "raw", obsid, scene=SCENE, seed=detector, scale=0.3
        ).path

    async def request_sfm(self, detectors: tuple[int, ...], obsid: str = OBSID) -> dict:
        ackcmd = await self.remote.cmd_processData.set_start(
            dataId=json.dumps({"obsid": obsid, "detectors": list(detectors)}),
            pipeline="sfm",
            config="",
            timeout=STD_TIMEOUT,
        )
        result = json.loads(ackcmd.result)
        assert result["imageName"] == obsid and result["gather"] == "sfm_gather", result
        assert len(result["jobIds"]) == len(detectors)
        return result

    async def test_visit_processed_and_gathered(self) -> None:
        paths = [await asyncio.to_thread(self.simulate, d) for d in DETECTORS]
        truth_fwhm = read_truth(paths[0])["psf"]["fwhm_from_sigma_arcsec"]
        async with self.enabled_csc(warm=True):
            request = await self.request_sfm(DETECTORS)
            results = await self.job_results(request["jobIds"], timeout=60)
            assert all(r.success and r.pipeline == "sfm" for r in results), [r.errorReport for r in results]
            samples = [
                await self.remote.tel_sfmDetectorMetrics.next(flush=False, timeout=STD_TIMEOUT) for _ in DETECTORS
            ]
            assert sorted(s.detector for s in samples) == list(DETECTORS)
            for sample in samples:
                assert sample.imageName == OBSID
                assert sample.psfFwhm == pytest.approx(truth_fwhm, rel=0.03), sample
                assert sample.nPsfStar >= 5 and sample.flags == "", sample

            gathered = await self.assert_next_sample(
                self.remote.evt_visitGathered, imageName=OBSID, nExpected=3, nProcessed=3, partial=False, regather=False
            )
            assert gathered is not None
            gather_result = await self.next_job_result(timeout=60)
            assert gather_result.pipeline == "sfm_gather" and gather_result.success, gather_result.errorReport
            assert gather_result.imageName == OBSID
            visit = await self.remote.tel_sfmVisitMetrics.next(flush=False, timeout=STD_TIMEOUT)
            assert visit.imageName == OBSID and visit.nDetectors == 3 and not visit.partial
            assert visit.psfFwhmMedian == pytest.approx(truth_fwhm, rel=0.03)
            assert visit.psfFwhmMin <= visit.psfFwhmMedian <= visit.psfFwhmMax
            assert visit.nPsfStarTotal == sum(s.nPsfStar for s in samples)

            # The focal-plane map and the mosaic, announced and recorded.
            urls = []
            while len(urls) < 2:
                lfo = await self.remote.evt_largeFileObjectAvailable.next(flush=False, timeout=STD_TIMEOUT)
                if lfo.id == gather_result.jobId:
                    urls.append(lfo.url)
            assert any("sfm_focal_plane" in u for u in urls) and any("sfm_mosaic" in u for u in urls), urls
            with open_results(self.database_path) as db:
                metrics = db.metrics(job_id=gather_result.jobId, per_detector=False)
                assert metrics["psfFwhmMedian"][0] == pytest.approx(visit.psfFwhmMedian)
                assert metrics["nExpected"][0] == 3
                per_detector = db.metrics(image_name=OBSID, per_detector=True)
                assert sorted(set(per_detector["detector"])) == list(DETECTORS)

    async def test_partial_gather_then_regather(self) -> None:
        for detector in DETECTORS[:2]:
            await asyncio.to_thread(self.simulate, detector)
        async with self.enabled_csc(warm=True, override="gather.yaml"):
            await self.request_sfm(DETECTORS)
            first = await self.remote.evt_visitGathered.next(flush=False, timeout=60)
            assert (first.nExpected, first.nProcessed, first.partial, first.regather) == (3, 2, True, False), first
            partial_metrics = await self.remote.tel_sfmVisitMetrics.next(flush=False, timeout=STD_TIMEOUT)
            assert partial_metrics.partial and partial_metrics.nDetectors == 2

            await asyncio.to_thread(self.simulate, DETECTORS[2])  # the late detector lands
            second = await self.remote.evt_visitGathered.next(flush=False, timeout=STD_TIMEOUT)
            assert (second.nProcessed, second.partial, second.regather) == (3, False, True), second
            final = await self.remote.tel_sfmVisitMetrics.next(flush=False, timeout=STD_TIMEOUT)
            assert not final.partial and final.nDetectors == 3

    async def test_a_detector_that_never_comes_does_not_stall_the_visit(self) -> None:
        await asyncio.to_thread(self.simulate, DETECTORS[0])
        async with self.enabled_csc(warm=True, override="gather_late.yaml"):
            await self.request_sfm(DETECTORS[:2])
            first = await self.remote.evt_visitGathered.next(flush=False, timeout=60)
            assert (first.nProcessed, first.partial, first.regather) == (1, True, False), first
            # The re-gather comes at regather_timeout (6 s after the first detector) although the
            # second detector's job is still waiting for its raw (raw_wait_timeout 60 s).
            second = await self.remote.evt_visitGathered.next(flush=False, timeout=STD_TIMEOUT)
            assert (second.nProcessed, second.partial, second.regather) == (1, True, True), second
            assert self.csc.job_manager.n_queued >= 1

    async def test_requests_sfm_cannot_serve(self) -> None:
        async with self.enabled_csc():
            with pytest.raises(AckError) as info:
                await self.remote.cmd_processData.set_start(
                    dataId=json.dumps({"obsid": OBSID}), pipeline="sfm_gather", config="", timeout=STD_TIMEOUT
                )
            assert info.value.ackcmd.ack == SalRetCode.CMD_FAILED
            assert "run by the CSC itself" in info.value.ackcmd.result
            with pytest.raises(AckError) as info:
                await self.remote.cmd_processData.set_start(
                    dataId=json.dumps({"groupId": "2025-11-15T03:00:00.000"}),
                    pipeline="sfm",
                    config="",
                    timeout=STD_TIMEOUT,
                )
            assert "not a groupId" in info.value.ackcmd.result
            # Every LSSTCam science detector would be 189 jobs; the test queue holds 5.
            with pytest.raises(AckError) as info:
                await self.remote.cmd_processData.set_start(
                    dataId=json.dumps({"obsid": OBSID}), pipeline="sfm", config="", timeout=STD_TIMEOUT
                )
            assert "queue full: 189 jobs" in info.value.ackcmd.result
            with pytest.raises(AckError) as info:
                await self.remote.cmd_processData.set_start(
                    dataId=json.dumps({"obsid": OBSID}),
                    pipeline="sfm",
                    config='{"detection_threshold": -1}',
                    timeout=STD_TIMEOUT,
                )
            assert "detection_threshold" in info.value.ackcmd.result
            self.assert_enabled()
