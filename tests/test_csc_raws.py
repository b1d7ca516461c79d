"""processData reads raws as the camera names and writes them: every real file name, and a raw
taken only once every amplifier is there.

Real parts: the CSC (index 1, LATISS) and a Remote on DDS, a LocalCluster, real files: the real
LATISS raw of obs_lsst (``../shared/data/real-formats``; zeroed pixels, 16 amps and 2 tables)
under each name LATISS's camera has used, and small raws written in two halves.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import time
import unittest

from astropy.io import fits

from fits_factory import write_raw
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from real_raws import place, unpacked_real_raw
from test_csc import STD_TIMEOUT, RapidAnalysisTestMixin

#: raw_wait_timeout of raw_wait.yaml.
RAW_WAIT = 3.0
NO_PLOT = {"make_plot": False}
SMALL_LATISS = dict(raft="R00", sensor="S00", detector_type="ITL", instrument="LATISS", scale=0.1)


def latiss_raw_dir(root: pathlib.Path, obsid: str) -> pathlib.Path:
    return root / "raw" / "LATISS" / obsid.split("_")[2] / obsid


def write_in_halves(target: pathlib.Path, content: bytes, cut: int, pause: float | None) -> None:
    """Write ``content[:cut]``, then after ``pause`` s the rest (never, if ``pause`` is None)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as f:
        f.write(content[:cut])
        f.flush()
        if pause is None:
            return
        time.sleep(pause)
        f.write(content[cut:])


class CscRawsTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    csc_index = 1  # LATISS

    async def test_real_latiss_raws_under_every_real_name(self) -> None:
        """AT_O_…_R00_S00.fits (2024 on), AT_O_….fits (2020-2022) and the simulator's old AT_O_…_RXX_S00.fits."""
        source = unpacked_real_raw("LATISS", self.root / "real")
        names = {
            "AT_O_20240624_000106": "AT_O_20240624_000106_R00_S00.fits",
            "AT_O_20220405_000348": "AT_O_20220405_000348.fits",
            "AT_O_20251115_000007": "AT_O_20251115_000007_RXX_S00.fits",
        }
        for obsid, name in names.items():
            place(source, latiss_raw_dir(self.root, obsid) / name)
        async with self.enabled_csc(warm=True):
            for obsid, name in names.items():
                job_id = await self.process("image_stats", data_id={"obsid": obsid}, config=NO_PLOT)
                result = await self.next_job_result(job_id, timeout=60)
                assert result.success and result.exitCode == 0, (name, result.errorReport)
                assert json.loads(result.dataId)["obsid"] == obsid
                metrics = json.loads(result.result)["metrics"]
                assert metrics["nAmps"] == 16 and metrics["nBadAmps"] == 0, (name, metrics)

    async def test_a_raw_paused_mid_write_is_waited_for(self) -> None:
        """Half the amps, a 1 s pause (five 0.2 s looks of the same size), then the rest: all 16 measured."""
        obsid = "AT_O_20251115_000010"
        full = write_raw(self.root / "full.fits", obsid=obsid, **SMALL_LATISS)
        with fits.open(full) as hdul:
            cut = hdul.fileinfo(9)["hdrLoc"]  # primary and 8 amps
        target = latiss_raw_dir(self.root, obsid) / f"{obsid}_R00_S00.fits"
        async with self.enabled_csc(warm=True, override="raw_wait.yaml"):
            job_id = await self.process("image_stats", data_id={"obsid": obsid}, config=NO_PLOT)
            await asyncio.to_thread(write_in_halves, target, full.read_bytes(), cut, pause=1.0)
            result = await self.next_job_result(job_id, timeout=60)
            assert result.success, result.errorReport
            metrics = json.loads(result.result)["metrics"]
            assert metrics["nAmps"] == 16 and metrics["nBadAmps"] == 0, metrics

    async def test_a_raw_that_never_completes_fails_at_the_timeout(self) -> None:
        """8 of 16 amps and no more: exit code 3 at raw_wait_timeout, saying how far the file got."""
        obsid = "AT_O_20251115_000011"
        full = write_raw(self.root / "full.fits", obsid=obsid, **SMALL_LATISS)
        with fits.open(full) as hdul:
            cut = hdul.fileinfo(9)["hdrLoc"]
        target = latiss_raw_dir(self.root, obsid) / f"{obsid}_R00_S00.fits"
        write_in_halves(target, full.read_bytes(), cut, pause=None)
        async with self.enabled_csc(warm=True, override="raw_wait.yaml"):
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            job_id = await self.process("image_stats", data_id={"obsid": obsid}, config=NO_PLOT)
            result = await self.next_job_result(job_id, timeout=STD_TIMEOUT)
            waited = loop.time() - t0
            assert not result.success and result.exitCode == 3, result
            assert RAW_WAIT - 0.2 <= waited < RAW_WAIT + 10, waited
            report = result.errorReport
            assert f"arrived within {RAW_WAIT:g} s" in report, report
            assert f"{target.name} has 8 of 16 amplifier HDUs whole" in report, report
            assert "stopped growing" in report, report
            # The CSC goes on.
            job_id = await self.process()
            assert (await self.next_job_result(job_id)).success
            self.assert_enabled()
