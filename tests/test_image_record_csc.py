"""The CSC writes each image's ``ra_image`` row: a processData image and a down-selected autonomous one.

Real parts: the CSC and the ComCam camera simulator (CCCamera) on DDS, small raws written before
endReadout, a LocalCluster, the results database (a SQLite file, read while the CSC writes).
"""

from __future__ import annotations

import asyncio
import unittest
from typing import Any

from lsst.ts.rapidanalysis.results.database import ResultsDatabase
from lsst.ts.rapidanalysis.sal import Remote, State
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from lsst.ts.rapidanalysis.sim.camera_sim import CameraSimulator
from lsst.ts.rapidanalysis.sim.stream import StreamWriter
from test_csc import STD_TIMEOUT, RapidAnalysisTestMixin

COMCAM_OBSID = "CC_O_20251115_000007"


class ImageRecordCscTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    csc_index = 2  # LSSTComCam: 9 detectors

    async def image_row(self, name: str, timeout: float = 60.0, measured: bool = True) -> dict[str, Any]:
        """The image's row once it is no longer processing (and, if ``measured``, has its visit metrics).

        Polled: the CSC writes it ~50 ms after a change.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        row = None
        while asyncio.get_running_loop().time() < deadline:
            with ResultsDatabase(self.database_path, create=False) as db:
                row = db.image_row("LSSTComCam", name)
            if row is not None and row["state"] != "processing" and (row["visit_metrics_time"] or not measured):
                return row
            await asyncio.sleep(0.2)
        raise AssertionError(f"{name}: no final row in {timeout} s: {row}")

    async def test_command_and_autonomous_images(self) -> None:
        writer = StreamWriter("LSSTComCam", self.root / "raw", scale=0.2, n_templates=1)
        camera = CameraSimulator(
            "LSSTComCam", writer=writer.write_exposure, time_scale=0.1, initial_state=State.ENABLED
        )
        await asyncio.wait_for(camera.start_task, STD_TIMEOUT)
        camera_remote = Remote(camera.salinfo.domain, "CCCamera", include=["endReadout"])
        await asyncio.wait_for(camera_remote.start_task, STD_TIMEOUT)
        try:
            async with self.enabled_csc(warm=True, override="autonomous_checkerboard.yaml"):
                # processData: one job, made now; no endReadout.
                job_id = await self.process("test.succeed", {"obsid": COMCAM_OBSID})
                assert (await self.next_job_result(job_id)).success
                row = await self.image_row(COMCAM_OBSID)
                assert row["trigger"] == "command" and row["state"] == "complete" and row["reason"] is None
                assert (row["day_obs"], row["seq_num"]) == (20251115, 7)
                assert (row["n_expected"], row["n_done"], row["n_failed"], row["n_dropped"]) == (1, 1, 0, 0)
                assert row["end_readout_time"] is None and row["obs_time"] > 0
                assert row["first_detector_time"] == row["visit_metrics_time"]  # one job: its end
                failing = await self.process("test.fail", {"obsid": "CC_O_20251115_000008"})
                assert not (await self.next_job_result(failing)).success
                row = await self.image_row("CC_O_20251115_000008", measured=False)
                assert row["state"] == "failed" and row["reason"].startswith("1 failed: test.fail: exit ")

                # An autonomous image: sfm on the checkerboard's 4 detectors, the other 5 dropped.
                camera_remote.evt_endReadout.flush()
                await camera_remote.cmd_takeImages.set_start(
                    numImages=1, expTime=2.0, shutter=True, keyValueMap="", timeout=STD_TIMEOUT
                )
                end_readout = await camera_remote.evt_endReadout.next(flush=False, timeout=STD_TIMEOUT)
                gathered = await self.remote.evt_visitGathered.next(flush=False, timeout=90)
                assert gathered.imageName == end_readout.imageName and gathered.nProcessed == 4, gathered
                row = await self.image_row(end_readout.imageName, timeout=90)
                assert row["trigger"] == "autonomous" and row["image_type"], row
                assert row["exposure_time"] == 2.0 and row["filter"], row  # endReadout's; the raw's header
                assert (row["n_expected"], row["n_done"], row["n_failed"], row["n_dropped"]) == (9, 4, 0, 5), row
                assert row["state"] == "partial", row
                assert row["reason"].startswith("down-selected: 5 of 9 detectors dropped, pool of "), row
                # endReadout heard → first detector → visit metrics, in that order.
                assert row["end_readout_time"] < row["first_detector_time"] <= row["visit_metrics_time"], row
                assert abs(row["obs_time"] - end_readout.timestampEndOfReadout) < 1e-3, row
        finally:
            await camera_remote.close()
            await camera.close()
