"""Autonomous mode when the raws never come: the image still gets one jobResult and a database row.

Real parts: the CSC (index 1, LATISS) and the LATISS camera simulator (ATCamera) on DDS, a
LocalCluster, the results database. The simulator's writer writes nothing for the first image
(its endReadout announces raws that never arrive) and a small raw, under the name the camera
writes (``{obsid}_R00_S00.fits``), for the second.

LATISS's kind (science, dispersed, calibration) is read from the raw's header, so with no raw
no pipeline can be chosen: the image gets one jobResult of pipeline ``image_kind`` (exit code 3,
the reason and the paths looked for) instead of a log line only, and the CSC goes on. An image
still waiting when autonomous processing stops gets an aborted one (exit code 255), tested on the
dispatcher alone.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import unittest
from typing import Any

from lsst.ts.rapidanalysis.data import get_instrument
from lsst.ts.rapidanalysis.data.image_listener import ImageArrival
from lsst.ts.rapidanalysis.dispatch.autonomous import UNDISPATCHED_PIPELINE, AutonomousDispatcher, AutonomousSettings
from lsst.ts.rapidanalysis.dispatch.focal_plane import FocalPlaneSelector
from lsst.ts.rapidanalysis.results.database import open_results
from lsst.ts.rapidanalysis.sal import Remote, State
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from lsst.ts.rapidanalysis.sim.camera_sim import CameraSimulator
from test_csc import STD_TIMEOUT, RapidAnalysisTestMixin
from test_csc_autonomous_latiss import make_latiss_writer

#: raw_wait_timeout of autonomous_latiss_raw_wait.yaml.
RAW_WAIT = 2.0


class _WaitingHost:
    """A dispatcher host whose image_kind waits for a raw that never comes; records image_failed."""

    n_workers = 2

    def __init__(self) -> None:
        self.failed: list[tuple[str, int, str]] = []
        self.waiting = asyncio.Event()

    async def image_kind(self, arrival: ImageArrival) -> str:
        self.waiting.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    async def image_failed(self, arrival: ImageArrival, exit_code: int, reason: str) -> None:
        self.failed.append((arrival.image_name, exit_code, reason))


async def test_an_image_waiting_for_its_raw_when_processing_stops_gets_an_aborted_result() -> None:
    host = _WaitingHost()
    dispatcher = AutonomousDispatcher(host, FocalPlaneSelector(get_instrument("LATISS")), AutonomousSettings())  # type: ignore[arg-type]
    dispatcher.on_arrival(ImageArrival("AT_O_20251115_000001"))
    await asyncio.wait_for(host.waiting.wait(), STD_TIMEOUT)
    await dispatcher.stop()
    assert host.failed == [
        (
            "AT_O_20251115_000001",
            255,
            "aborted: autonomous processing stopped before the image's kind could be told",
        )
    ]
    assert dispatcher.n_undispatched == 1


class AutonomousMissingRawsTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    csc_index = 1  # LATISS: the kind of every image is read from its raw

    async def test_an_image_whose_raws_never_arrive_gets_a_job_result(self) -> None:
        latiss_writer = make_latiss_writer(self.root / "raw")
        skipped: list[str] = []

        def writer(obsid: str, metadata: dict[str, Any]) -> dict[int, pathlib.Path]:
            if not skipped:  # the first image's raws never arrive
                skipped.append(obsid)
                return {}
            return latiss_writer(obsid, metadata)

        camera = CameraSimulator("LATISS", writer=writer, time_scale=0.05, initial_state=State.ENABLED)
        await asyncio.wait_for(camera.start_task, STD_TIMEOUT)
        camera_remote = Remote(camera.salinfo.domain, "ATCamera", include=["endReadout"])
        await asyncio.wait_for(camera_remote.start_task, STD_TIMEOUT)
        try:
            async with self.enabled_csc(warm=True, override="autonomous_latiss_raw_wait.yaml"):
                await self.remote.evt_focalPlaneMode.next(flush=False, timeout=STD_TIMEOUT)
                loop = asyncio.get_running_loop()

                lost = await self.take(camera_remote)
                assert skipped == [lost]
                t0 = loop.time()
                result = await self.next_job_result(timeout=STD_TIMEOUT)
                waited = loop.time() - t0
                assert result.imageName == lost and result.pipeline == UNDISPATCHED_PIPELINE, result
                assert not result.success and result.exitCode == 3 and result.trigger == "autonomous", result
                assert json.loads(result.dataId)["obsid"] == lost
                report = result.errorReport
                expected = self.root / "raw" / "LATISS" / lost.split("_")[2] / lost / f"{lost}_R00_S00.fits"
                assert "no pipeline run" in report and "science, dispersed or calibration" in report, report
                assert f"arrived within {RAW_WAIT:g} s" in report and str(expected) in report, report
                assert f"{lost}.fits" in report, report  # the 2020-2022 name was looked for too
                assert RAW_WAIT - 0.5 <= waited < RAW_WAIT + 10, waited
                assert result.duration >= RAW_WAIT - 0.5, result.duration

                # Its database row, like any failed job's (written before the jobResult).
                with open_results(self.database_path) as db:
                    jobs = db.jobs(image_name=lost)
                assert len(jobs) == 1, jobs
                row = jobs[0]
                assert (row["job_id"], row["pipeline"], row["state"]) == (result.jobId, UNDISPATCHED_PIPELINE, "failed")
                assert (row["exit_code"], row["trigger"], row["error_report"]) == (3, "autonomous", report)

                # The CSC goes on: the next image's raw is there, and it is processed.
                science = await self.take(camera_remote)
                result = await self.next_job_result(timeout=60)
                assert result.imageName == science and result.pipeline == "sfm", result
                assert result.success, result.errorReport
                assert pathlib.Path(latiss_writer.paths[science]).name == f"{science}_R00_S00.fits"
                assert self.csc.dispatcher is not None and self.csc.dispatcher.n_undispatched == 1
                self.assert_enabled()
        finally:
            await camera_remote.close()
            await camera.close()

    async def take(self, remote: Remote, exp_time: float = 2.0) -> str:
        """Take one image; its name (from its endReadout)."""
        remote.evt_endReadout.flush()
        await remote.cmd_takeImages.set_start(
            numImages=1, expTime=exp_time, shutter=exp_time > 0, keyValueMap="", timeout=STD_TIMEOUT
        )
        end_readout = await remote.evt_endReadout.next(flush=False, timeout=STD_TIMEOUT)
        return end_readout.imageName
