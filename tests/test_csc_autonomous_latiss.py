"""Autonomous mode on LATISS: dispersed images → spectrum_examiner, others → sfm, biases → image_stats.

Real parts: the CSC (index 1, LATISS) and the LATISS camera simulator (ATCamera) on DDS, a writer
putting small raws on disk before endReadout, a LocalCluster, the results database.

Whether an image is dispersed is said by its raw's ``GRATING`` header, which the CSC reads
(``RapidAnalysisCsc.image_kind``). The camera simulator leaves the header to its writer and hands
it the takeImages ``keyValueMap``: this test's writer renders a dispersed raw (`simulate_dispersed`)
for ``grating: <name>``, and an undispersed one (``GRATING = empty``) otherwise.
"""

from __future__ import annotations

import asyncio
import collections
import json
import pathlib
import re
import unittest
from typing import Any

import pytest

from lsst.ts.rapidanalysis.pipelines.base import PipelineError
from lsst.ts.rapidanalysis.pipelines.fits_input import read_primary_header
from lsst.ts.rapidanalysis.sal import Remote, State
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from lsst.ts.rapidanalysis.sim.camera_sim import CameraSimulator
from lsst.ts.rapidanalysis.sim.raw_writer import simulate_detector
from lsst.ts.rapidanalysis.sim.spectrum import SpectrumConfig, simulate_dispersed
from lsst.ts.rapidanalysis.sim.truth import read_truth
from test_csc import STD_TIMEOUT, RapidAnalysisTestMixin

#: A spectrum that fits a 1/4-size raw; autonomous_latiss.yaml's holo4_003 box is placed for it.
SPECTRUM = dict(zeroth_order_x=500.0, zeroth_order_y=100.0, offset=100.0, length=800.0)
GRATING = "holo4_003"


def make_latiss_writer(root: pathlib.Path) -> Any:
    """A LATISS raw writer: dispersed if the keyValueMap names a ``grating``; ``writer.paths`` by obsid."""
    paths: dict[str, pathlib.Path] = {}

    def writer(obsid: str, metadata: dict[str, Any]) -> dict[int, pathlib.Path]:
        common = dict(
            exp_time=metadata["exp_time"],
            tai_start=metadata["tai_start"],
            group_id=metadata["group_id"],
            seed=metadata["seq_num"],
            extra_headers=metadata["extra_headers"],
        )
        grating = metadata["key_value_map"].get("grating", "")
        if grating:
            spectrum = SpectrumConfig(**SPECTRUM, grating=grating)
            raw = simulate_dispersed(root, obsid, spectrum=spectrum, scale=0.25, **common)
        else:
            raw = simulate_detector("LATISS", 0, root, obsid, img_type=metadata["img_type"], scale=0.1, **common)
        paths[obsid] = raw.path
        return {0: raw.path}

    writer.paths = paths  # type: ignore[attr-defined]
    return writer


def test_unreadable_header_names_the_file(tmp_path: pathlib.Path) -> None:
    """What image_kind reads: an unreadable raw is an error naming the file (the image's jobResult then says it)."""
    path = tmp_path / "AT_O_20251115_000001_RXX_S00.fits"
    path.write_bytes(b"not a FITS file " * 180)
    with pytest.raises(PipelineError, match=re.escape(str(path))):
        read_primary_header(path)
    with pytest.raises(PipelineError, match="FileNotFoundError"):
        read_primary_header(tmp_path / "missing.fits")


class AutonomousLatissTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    csc_index = 1  # LATISS: one detector

    async def camera(self) -> tuple[CameraSimulator, Remote, Any]:
        writer = make_latiss_writer(self.root / "raw")
        camera = CameraSimulator("LATISS", writer=writer, time_scale=0.05, initial_state=State.ENABLED)
        await asyncio.wait_for(camera.start_task, STD_TIMEOUT)
        remote = Remote(camera.salinfo.domain, "ATCamera", include=["endReadout"])
        await asyncio.wait_for(remote.start_task, STD_TIMEOUT)
        return camera, remote, writer

    async def take(self, remote: Remote, exp_time: float, key_value_map: str = "") -> str:
        """Take one image; its name (from its endReadout)."""
        remote.evt_endReadout.flush()
        await remote.cmd_takeImages.set_start(
            numImages=1, expTime=exp_time, shutter=exp_time > 0, keyValueMap=key_value_map, timeout=STD_TIMEOUT
        )
        end_readout = await remote.evt_endReadout.next(flush=False, timeout=STD_TIMEOUT)
        return end_readout.imageName

    async def result_of(self, image_name: str, pipeline: str, seen: dict[str, list[Any]]) -> Any:
        """The jobResult of ``pipeline`` on ``image_name``, the image's first; every jobResult read goes to ``seen``."""
        while True:
            result = await self.next_job_result(timeout=60)
            seen[result.imageName].append(result)
            if result.imageName == image_name:
                assert result.pipeline == pipeline, f"{image_name}: {result.pipeline} ran, not {pipeline}"
                return result

    async def test_images_go_to_the_pipelines_of_their_kind(self) -> None:
        camera, camera_remote, writer = await self.camera()
        seen: dict[str, list[Any]] = collections.defaultdict(list)
        try:
            async with self.enabled_csc(warm=True, override="autonomous_latiss.yaml"):
                mode = await self.remote.evt_focalPlaneMode.next(flush=False, timeout=STD_TIMEOUT)
                assert mode.pattern == "all" and mode.nSelected == 1, mode

                # A dispersed image: spectrum_examiner, which measures the spectrum.
                dispersed = await self.take(camera_remote, exp_time=20.0, key_value_map=f"grating: {GRATING}")
                result = await self.result_of(dispersed, "spectrum_examiner", seen)
                assert result.success and result.trigger == "autonomous", result.errorReport
                assert not json.loads(result.result).get("skipped"), result.result
                sample = await self.remote.tel_spectrumMetrics.next(flush=False, timeout=STD_TIMEOUT)
                assert sample.imageName == dispersed and sample.grating == GRATING, sample
                truth = read_truth(writer.paths[dispersed])["spectrum"]
                assert sample.continuumRate == pytest.approx(truth["continuum_rate_adu"], rel=0.05)

                # An undispersed science image (GRATING empty): sfm.
                science = await self.take(camera_remote, exp_time=2.0)
                result = await self.result_of(science, "sfm", seen)
                assert result.success and result.trigger == "autonomous", result.errorReport

                # A bias: ISR statistics.
                bias = await self.take(camera_remote, exp_time=0.0)
                result = await self.result_of(bias, "image_stats", seen)
                assert result.success and result.trigger == "autonomous", result.errorReport

                # Nothing else for them: what is still to come is sfm's gather, and then silence.
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 3.0
                while (left := deadline - loop.time()) > 0:
                    try:
                        result = await self.remote.evt_jobResult.next(flush=False, timeout=left)
                    except TimeoutError:
                        break
                    seen[result.imageName].append(result)
                pipelines = {name: sorted(r.pipeline for r in results) for name, results in seen.items()}
                assert pipelines == {
                    dispersed: ["spectrum_examiner"],
                    science: ["sfm", "sfm_gather"],
                    bias: ["image_stats"],
                }, pipelines
                assert all(r.success for results in seen.values() for r in results), [
                    r.errorReport for results in seen.values() for r in results if not r.success
                ]
                dispatcher = self.csc.dispatcher
                assert dispatcher is not None
                kinds = {name: image.kind for name, image in dispatcher.images.items()}
                assert kinds == {dispersed: "dispersed", science: "science", bias: "calibration"}, kinds
                assert sum(len(image.job_ids) for image in dispatcher.images.values()) == 3
                assert self.csc.job_manager.queued_jobs() == [] and self.csc.job_manager.n_running == 0
                assert self.remote.tel_spectrumMetrics.nqueued == 0  # one sample, the dispersed image's
        finally:
            await camera_remote.close()
            await camera.close()
