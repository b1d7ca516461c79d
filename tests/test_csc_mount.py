"""mount_torque under the CSC: telemetry heard over DDS from a mount simulator, buffered, analysed.

Real parts: the CSC, the AuxTel mount simulator publishing ATMCS telemetry on DDS, a
LocalCluster, a simulated raw whose header gives the exposure window, the SQLite database.
"""

from __future__ import annotations

import asyncio
import json
import unittest

import pytest

from lsst.ts.rapidanalysis.results.database import open_results
from lsst.ts.rapidanalysis.sal import current_tai
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from lsst.ts.rapidanalysis.sim.mount_sim import make_mount_simulator
from lsst.ts.rapidanalysis.sim.raw_writer import simulate_detector
from test_csc import STD_TIMEOUT, RapidAnalysisTestMixin

JITTER = 0.3  # arcsec RMS per axis


class MountCscTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    csc_index = 1  # LATISS: AuxTel's ATMCS

    async def test_mount_torque_from_buffered_telemetry(self) -> None:
        mount = make_mount_simulator("LATISS", time_scale=1.0, jitter_arcsec=JITTER, el=55.0)
        try:
            await asyncio.wait_for(mount.start_task, STD_TIMEOUT)
            async with self.enabled_csc(warm=True):
                # An exposure of 6 s that ended a moment ago, while the CSC was listening.
                await asyncio.sleep(9.0)
                start = current_tai() - 7.5
                for seq, img_type in ((10, "OBJECT"), (11, "BIAS")):
                    await asyncio.to_thread(
                        simulate_detector,
                        "LATISS",
                        0,
                        self.root / "raw",
                        f"AT_O_20251115_{seq:06d}",
                        img_type=img_type,
                        exp_time=6.0 if img_type == "OBJECT" else 0.0,
                        tai_start=start,
                        scale=0.05,
                    )
                ack = await self.remote.cmd_processData.set_start(
                    dataId=json.dumps({"obsid": "AT_O_20251115_000010"}), pipeline="mount_torque", timeout=STD_TIMEOUT
                )
                job_id = json.loads(ack.result)["jobId"]
                result = await self.next_job_result(job_id, timeout=60)
                assert result.success, result.errorReport
                metrics = await self.remote.tel_mountMetrics.next(flush=False, timeout=STD_TIMEOUT)
                assert metrics.imageName == "AT_O_20251115_000010" and metrics.telescope == "AuxTel"
                truth = mount.truth
                for field, axis in (("azRms", "azimuth"), ("elRms", "elevation")):
                    expected = truth.jitter_rms_arcsec(axis, start, start + 6.0)
                    assert getattr(metrics, field) == pytest.approx(expected, rel=0.1), (field, expected)
                assert metrics.imageAzElRms > 0 and metrics.imageImpactRms >= metrics.imageAzElRms
                assert metrics.maxTelemetryGap < 0.05, metrics.status
                with open_results(self.database_path) as db:
                    assert db.metrics(job_id=job_id)["azRms"][0] == pytest.approx(metrics.azRms)

                # A bias is skipped with a reason, and nothing is published but the jobResult.
                ack = await self.remote.cmd_processData.set_start(
                    dataId=json.dumps({"obsid": "AT_O_20251115_000011"}), pipeline="mount_torque", timeout=STD_TIMEOUT
                )
                result = await self.next_job_result(json.loads(ack.result)["jobId"], timeout=60)
                assert result.success and "BIAS" in json.loads(result.result)["skipped"], result.result
                assert self.remote.tel_mountMetrics.nqueued == 0
        finally:
            await mount.close()
