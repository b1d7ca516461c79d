"""Autonomous mode: the CSC hears the camera's endReadout and processes each image by itself.

Real parts: the CSC and the ComCam camera simulator (CCCamera) on DDS, the simulator's stream
writer putting small raws on disk before endReadout, a LocalCluster, the results database.
"""

from __future__ import annotations

import asyncio
import json
import unittest
from collections.abc import Callable
from typing import Any

import pytest

from lsst.ts.rapidanalysis.sal import AckError, Remote, SalRetCode, State
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from lsst.ts.rapidanalysis.sim.camera_sim import CameraSimulator
from lsst.ts.rapidanalysis.sim.stream import StreamWriter
from test_csc import STD_TIMEOUT, RapidAnalysisTestMixin


class AutonomousCscTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    csc_index = 2  # LSSTComCam: 9 detectors

    async def camera(self) -> tuple[CameraSimulator, Remote]:
        writer = StreamWriter("LSSTComCam", self.root / "raw", scale=0.2, n_templates=1)
        camera = CameraSimulator(
            "LSSTComCam", writer=writer.write_exposure, time_scale=0.1, initial_state=State.ENABLED
        )
        await asyncio.wait_for(camera.start_task, STD_TIMEOUT)
        remote = Remote(camera.salinfo.domain, "CCCamera", include=[])
        await asyncio.wait_for(remote.start_task, STD_TIMEOUT)
        return camera, remote

    async def job_results_until(self, done: Callable[[list[Any]], bool], timeout: float) -> list[Any]:
        """jobResults, in order, until ``done(results)``; fails (showing them) after ``timeout`` s."""
        results: list[Any] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while not done(results):
            assert asyncio.get_running_loop().time() < deadline, [(r.imageName, r.trigger) for r in results]
            results.append(await self.next_job_result(timeout=60))
        return results

    async def take(self, remote: Remote, exp_time: float = 2.0, n: int = 1) -> None:
        await remote.cmd_takeImages.set_start(
            numImages=n, expTime=exp_time, shutter=exp_time > 0, keyValueMap="", timeout=STD_TIMEOUT
        )

    async def test_images_processed_as_the_focal_plane_mode_says(self) -> None:
        camera, camera_remote = await self.camera()
        try:
            async with self.enabled_csc(warm=True, override="autonomous.yaml"):
                mode = await self.remote.evt_focalPlaneMode.next(flush=False, timeout=STD_TIMEOUT)
                assert mode.pattern == "all" and mode.nSelected == 9 and mode.workerMode == 1, mode

                # A science image: sfm on all 9 detectors, gathered.
                await self.take(camera_remote)
                gathered = await self.remote.evt_visitGathered.next(flush=False, timeout=90)
                assert gathered.nExpected == 9 and gathered.nProcessed == 9 and not gathered.partial, gathered
                results = [await self.next_job_result(timeout=STD_TIMEOUT) for _ in range(9)]
                assert all(r.trigger == "autonomous" and r.pipeline == "sfm" and r.success for r in results), [
                    r.errorReport for r in results
                ]
                visit = await self.remote.tel_sfmVisitMetrics.next(flush=False, timeout=STD_TIMEOUT)
                assert visit.imageName == gathered.imageName and visit.nDetectors == 9

                # The checkerboard: 4 of ComCam's 9 at phase 0, announced before the image is processed.
                self.remote.evt_focalPlaneMode.flush()  # the first image's own announcement
                await self.remote.cmd_setFocalPlaneMode.set_start(
                    pattern="ccd_checkerboard",
                    detectors="",
                    variation=0,
                    automatic=False,
                    workerMode=1,
                    guaranteedExposures="",
                    timeout=STD_TIMEOUT,
                )
                mode = await self.remote.evt_focalPlaneMode.next(flush=False, timeout=STD_TIMEOUT)
                assert mode.pattern == "ccd_checkerboard" and mode.nSelected == 4 and mode.decidedBy == "manual"
                assert sorted(int(d) for d in mode.detectors.split(",")) == [1, 3, 5, 7]
                self.remote.evt_jobResult.flush()
                await self.take(camera_remote)
                gathered = await self.remote.evt_visitGathered.next(flush=False, timeout=90)
                assert gathered.nExpected == 4 and gathered.nProcessed == 4, gathered

                # A bias: ISR statistics on the selected detectors.
                self.remote.evt_jobResult.flush()
                await self.take(camera_remote, exp_time=0.0)
                stats = []
                while len(stats) < 4:  # (the checkerboard image's sfm_gather result may come first)
                    result = await self.next_job_result(timeout=60)
                    if result.pipeline != "sfm_gather":
                        stats.append(result)
                assert {r.pipeline for r in stats} == {"image_stats"} and all(r.success for r in stats), stats
                assert {json.loads(r.dataId)["detectors"][0] for r in stats} == {1, 3, 5, 7}

                # A bad mode changes nothing and says why.
                with pytest.raises(AckError) as info:
                    await self.remote.cmd_setFocalPlaneMode.set_start(
                        pattern="spiral",
                        detectors="",
                        variation=0,
                        automatic=False,
                        workerMode=1,
                        guaranteedExposures="",
                        timeout=STD_TIMEOUT,
                    )
                assert info.value.ackcmd.ack == SalRetCode.CMD_FAILED and "allowed" in info.value.ackcmd.result
                assert self.csc.selector.mode.pattern == "ccd_checkerboard"
        finally:
            await camera_remote.close()
            await camera.close()

    async def test_waiting_mode_drops_older_images_and_says_so(self) -> None:
        camera, camera_remote = await self.camera()
        try:
            async with self.enabled_csc(warm=True, override="autonomous_waiting.yaml"):
                await self.remote.evt_focalPlaneMode.next(flush=False, timeout=STD_TIMEOUT)
                # Four images in quick succession; each job takes 4 s on one of 2 workers.
                await self.take(camera_remote, exp_time=0.5, n=4)
                results = [await self.next_job_result(timeout=60) for _ in range(4)]
                by_image = {r.imageName: r for r in results}
                assert len(by_image) == 4
                dropped = [r for r in results if not r.success]
                assert dropped, "no job was dropped"
                assert all(r.exitCode == 255 and "dropped: a newer image arrived" in r.errorReport for r in dropped)
                newest = max(by_image)
                assert by_image[newest].success  # the newest image is always worked on
        finally:
            await camera_remote.close()
            await camera.close()

    async def test_murderous_mode_abandons_backlog_work_and_bounds_the_backlog(self) -> None:
        camera, camera_remote = await self.camera()
        try:
            async with self.enabled_csc(warm=True, override="autonomous_murderous.yaml"):
                await self.remote.evt_focalPlaneMode.next(flush=False, timeout=STD_TIMEOUT)
                # Five images in quick succession; each job takes 4 s and 2 run at once.
                await self.take(camera_remote, exp_time=0.5, n=5)
                results = []
                deadline = asyncio.get_running_loop().time() + 90
                while asyncio.get_running_loop().time() < deadline:
                    try:
                        results.append(await self.next_job_result(timeout=8))
                    except TimeoutError:
                        break  # nothing more for 8 s: everything has ended
                reasons = [r.errorReport for r in results if not r.success]
                abandoned = [r for r in results if "abandoned for a newer image" in r.errorReport]
                dropped = [r for r in results if "dropped: the backlog is full" in r.errorReport]
                assert abandoned, reasons
                assert dropped, reasons
                # The newest image's job is never abandoned, and it succeeds.
                newest = max(r.imageName for r in results)
                assert any(r.imageName == newest and r.success for r in results)
                assert not any(r.imageName == newest and not r.success for r in results)
                # An abandoned job is put back: the same image succeeds later, unless the backlog
                # bound dropped it meanwhile (then its requeued job says so).
                for job in abandoned:
                    later = [r for r in results if r.imageName == job.imageName and r.jobId != job.jobId]
                    assert later, f"{job.imageName} was abandoned and never requeued"
        finally:
            await camera_remote.close()
            await camera.close()

    async def test_down_selected_detectors_are_caught_up_when_idle(self) -> None:
        camera, camera_remote = await self.camera()
        try:
            async with self.enabled_csc(warm=True, override="autonomous_catchup.yaml"):
                await self.take(camera_remote)
                gathered = await self.remote.evt_visitGathered.next(flush=False, timeout=90)
                assert gathered.nExpected == 4, gathered
                # Then, the pool idle, the other 5 detectors of that image come, as catch-up.
                results = await self.job_results_until(
                    lambda results: sum(r.trigger == "catchup" for r in results) >= 5, timeout=90
                )
                catchup = [r for r in results if r.trigger == "catchup"]
                assert all(r.success and r.imageName == gathered.imageName for r in catchup), catchup
                assert sorted(json.loads(r.dataId)["detectors"][0] for r in catchup) == [0, 2, 4, 6, 8]
        finally:
            await camera_remote.close()
            await camera.close()

    async def test_catch_up_runs_the_science_pipelines_newest_image_first(self) -> None:
        camera, camera_remote = await self.camera()
        try:
            async with self.enabled_csc(warm=True, override="autonomous_catchup_stats.yaml"):
                await self.take(camera_remote, exp_time=0.5, n=2)
                # Each image: 4 checkerboard detectors, then its 5 others as catch-up, all image_stats.
                results = await self.job_results_until(
                    lambda results: sum(r.trigger == "catchup" for r in results) >= 10, timeout=120
                )
                assert all(r.pipeline == "image_stats" and r.success for r in results), [
                    (r.pipeline, r.errorReport) for r in results
                ]
                images = sorted({r.imageName for r in results})
                assert len(images) == 2
                for image in images:
                    own = sorted(
                        json.loads(r.dataId)["detectors"][0]
                        for r in results
                        if r.imageName == image and r.trigger == "autonomous"
                    )
                    caught = sorted(
                        json.loads(r.dataId)["detectors"][0]
                        for r in results
                        if r.imageName == image and r.trigger == "catchup"
                    )
                    assert (own, caught) == ([1, 3, 5, 7], [0, 2, 4, 6, 8]), (image, own, caught)
                # The newest image's left-out detectors are caught up before the older one's.
                order = [r.imageName for r in results if r.trigger == "catchup"]
                assert order.index(images[1]) < order.index(images[0]), order
        finally:
            await camera_remote.close()
            await camera.close()

    async def test_stale_backlog_ages_out(self) -> None:
        camera, camera_remote = await self.camera()
        try:
            async with self.enabled_csc(warm=True, override="autonomous_stale.yaml"):
                await self.remote.evt_focalPlaneMode.next(flush=False, timeout=STD_TIMEOUT)
                # Four images: two 8 s jobs run, the two others wait past backlog_max_age (3 s).
                await self.take(camera_remote, exp_time=0.5, n=4)
                results = [await self.next_job_result(timeout=60) for _ in range(4)]
                stale = [r for r in results if "stale" in r.errorReport]
                assert len(stale) == 2, [r.errorReport for r in results]
                assert all(r.exitCode == 255 and not r.success for r in stale)
                assert sum(r.success for r in results) == 2
        finally:
            await camera_remote.close()
            await camera.close()
