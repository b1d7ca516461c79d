"""Autonomous mode: files that generators announce with largeFileObjectAvailable are processed.

Real parts: the CSC and a GenericCamera simulator (a real CSC) on DDS, the simulator writing
single-HDU FITS files and announcing them, a LocalCluster, the results database. The pure
decisions (is it an image of the instrument, may this URL be read) are tested directly too.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import unittest
from collections.abc import Callable
from typing import Any

import pytest

from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.data.raw_store import RawStore
from lsst.ts.rapidanalysis.dispatch.autonomous import check_file_id, is_instrument_obsid, resolve_file
from lsst.ts.rapidanalysis.results.database import open_results
from lsst.ts.rapidanalysis.sal import Remote, State
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from lsst.ts.rapidanalysis.sim.camera_sim import GenericCameraSimulator, write_simple_fits
from test_csc import STD_TIMEOUT, RapidAnalysisTestMixin

#: Simulated seconds run 20 times faster: a 0.5 s exposure and its readout take ~50 ms.
TIME_SCALE = 0.05
WARNING = 30


class GeneratorCscTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    csc_index = 1  # LATISS (its own camera does not run here)

    async def generic_camera(
        self, index: int, root: pathlib.Path, writer: Callable[..., Any] | None = None
    ) -> tuple[GenericCameraSimulator, Remote]:
        """A GenericCamera simulator writing under ``root``, and a Remote hearing its files."""
        camera = GenericCameraSimulator(index, root, writer=writer, time_scale=TIME_SCALE, initial_state=State.ENABLED)
        await asyncio.wait_for(camera.start_task, STD_TIMEOUT)
        remote = Remote(camera.salinfo.domain, "GenericCamera", index, include=["largeFileObjectAvailable"])
        await asyncio.wait_for(remote.start_task, STD_TIMEOUT)
        return camera, remote

    async def take(self, remote: Remote, n: int = 1) -> None:
        await remote.cmd_takeImages.set_start(
            numImages=n, expTime=0.5, shutter=True, keyValueMap="imageType: OBJECT", timeout=STD_TIMEOUT
        )

    async def warnings_containing(self, *texts: str, timeout: float = STD_TIMEOUT) -> list[str]:
        """Read logMessage until, for each of ``texts``, a WARNING containing it has come; return them."""
        found: dict[str, str] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(found) < len(texts):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no warning containing {[t for t in texts if t not in found]}; got {found}")
            data = await self.remote.evt_logMessage.next(flush=False, timeout=remaining)
            if data.level < WARNING:
                continue
            for text in texts:
                if text in data.message and text not in found:
                    found[text] = data.message
        return [found[t] for t in texts]

    async def test_generic_camera_files_are_processed(self) -> None:
        camera, camera_remote = await self.generic_camera(101, self.root / "generic")
        try:
            async with self.enabled_csc(warm=True, override="autonomous_generator.yaml"):
                await self.take(camera_remote, n=2)
                announced = [
                    await camera_remote.evt_largeFileObjectAvailable.next(flush=False, timeout=STD_TIMEOUT)
                    for _ in range(2)
                ]
                names = [a.id for a in announced]
                assert all(name.startswith("GC101_O_") for name in names), names
                results = [await self.next_job_result(timeout=60) for _ in range(2)]
                assert sorted(r.imageName for r in results) == sorted(names), results
                for result in results:
                    assert result.pipeline == "image_stats" and result.trigger == "autonomous", result
                    assert result.success, result.errorReport
                    assert json.loads(result.dataId) == {"obsid": result.imageName}
                    assert json.loads(result.result)["summary"]["nFiles"] == 1

                # The same announcement again is a repeat: no second job.
                last = announced[-1]
                camera.evt_largeFileObjectAvailable.set_write(
                    url=last.url,
                    generator=last.generator,
                    version=last.version,
                    byteSize=last.byteSize,
                    checkSum=last.checkSum,
                    mimeType=last.mimeType,
                    id=last.id,
                    force_output=True,
                )
                await self.assert_no_more_job_results(wait=2.0)

                dispatcher = self.csc.dispatcher
                assert dispatcher.n_files == 2 and dispatcher.n_dropped_files == 0
                # Files are no exposures of the instrument: the focal-plane cadence model saw nothing.
                assert dispatcher.n_images == 0 and self.csc.selector.throughput.n_intervals == 0
                assert self.csc.selector.throughput.n_costs == 0

                with open_results(self.database_path) as db:
                    for result in results:
                        row = db.job(result.jobId)
                        assert row is not None and row["state"] == "succeeded" and row["success"], row
                        assert row["image_name"] == result.imageName and row["trigger"] == "autonomous"
                        assert row["data_id"] == {"obsid": result.imageName}
                        metrics = db.metrics(image_name=result.imageName)
                        assert len(metrics) >= 1 and set(metrics["job_id"]) == {result.jobId}
                        products = db.products(job_id=result.jobId)
                        assert len(products) == 1 and result.imageName in products["path"][0]
        finally:
            await camera_remote.close()
            await camera.close()

    async def test_bad_announcements_are_dropped_and_reported(self) -> None:
        outside = self.root / "elsewhere"
        written: list[pathlib.Path] = []

        def writer(image_name: str, metadata: dict[str, Any]) -> pathlib.Path:
            # The first image lands outside the file root (the data root, $RA_TEST_ROOT/raw).
            path = outside / f"{image_name}.fits" if not written else metadata["path"]
            header = {"OBSID": image_name, "IMGTYPE": metadata["img_type"]}
            written.append(write_simple_fits(path, header, (64, 64), metadata["seq_num"]))
            return path

        camera, camera_remote = await self.generic_camera(102, self.root / "raw", writer=writer)
        try:
            async with self.enabled_csc(warm=True, override="autonomous_generator_any.yaml"):
                await self.take(camera_remote)
                lfo = await camera_remote.evt_largeFileObjectAvailable.next(flush=False, timeout=STD_TIMEOUT)
                outside_id = lfo.id

                def announce(**fields: Any) -> None:
                    data = dict(url="", generator=camera.generator, version=1.0, byteSize=0, checkSum="")
                    data.update(mimeType="image/fits", id="GC102_crafted")
                    camera.evt_largeFileObjectAvailable.set_write(**{**data, **fields}, force_output=True)

                announce(url="s3://bucket/GC102_s3.fits", id="GC102_s3")
                announce(url=(self.root / "raw" / "no_such_file.fits").as_uri(), id="GC102_missing")
                announce(url=written[0].as_uri(), id="../../etc/passwd")
                announce(url=written[0].as_uri(), id="GC102_stranger", generator="Stranger:7")
                messages = await self.warnings_containing(
                    f"File {outside_id} ",
                    "File GC102_s3 ",
                    "File GC102_missing ",
                    "File ../../etc/passwd ",
                    "GC102_stranger",
                )
                assert "from GenericCamera:102 dropped" in messages[0] and "outside the file root" in messages[0]
                assert "S3 is not configured" in messages[1], messages[1]
                assert "does not exist" in messages[2], messages[2]
                assert "not a plain name" in messages[3], messages[3]
                assert "'Stranger:7' is not in autonomous.generators" in messages[4], messages[4]

                # The CSC keeps working: the next file, under the root, is processed.
                await self.take(camera_remote)
                result = await self.next_job_result(timeout=60)
                good_id = written[1].stem
                assert result.imageName == good_id and result.pipeline == "image_stats", result
                assert result.success and result.trigger == "autonomous", result.errorReport
                await self.assert_no_more_job_results(wait=1.0)
                assert self.csc.summary_state == State.ENABLED
                dispatcher = self.csc.dispatcher
                assert dispatcher.n_files == 5 and dispatcher.n_dropped_files == 4 and dispatcher.n_dropped_jobs == 0
        finally:
            await camera_remote.close()
            await camera.close()


# The pure decisions


def test_is_instrument_obsid() -> None:
    latiss = get_instrument("LATISS")
    assert is_instrument_obsid("AT_O_20251115_000001", latiss)
    assert not is_instrument_obsid("MC_O_20251115_000001", latiss)  # another camera's
    assert not is_instrument_obsid("GC101_O_20251115_000001", latiss)
    assert not is_instrument_obsid("AT_O_20251399_000001", latiss)  # no such day
    assert not is_instrument_obsid("", latiss)


@pytest.mark.parametrize(
    "file_id, match",
    [
        ("", "has no id"),
        ("../x", "not a plain name"),
        ("a/b", "not a plain name"),
        (".hidden", "not a plain name"),
        ("/etc/passwd", "not a plain name"),
        ("x" * 129, "not a plain name"),
        ("GC 101", "not a plain name"),
    ],
)
def test_check_file_id_rejects(file_id: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_file_id(file_id)


def test_check_file_id_accepts() -> None:
    for file_id in ("GC101_O_20251115_000001", "allsky-2025.11.15", "x" * 128):
        assert check_file_id(file_id) == file_id


def test_resolve_file(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "files"
    store = RawStore(root, "LATISS")
    path = root / "GenericCamera" / "101" / "20251115" / "GC101_O_20251115_000001.fits"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x" * 2880)
    assert resolve_file(path.as_uri(), store) == path.resolve()
    assert resolve_file(f"file://localhost{path}", store) == path.resolve()

    outside = tmp_path / "elsewhere.fits"
    outside.write_bytes(b"x")
    (root / "link.fits").symlink_to(outside)
    for url, match in [
        (outside.as_uri(), "outside the file root"),
        ((root / "link.fits").as_uri(), "outside the file root"),
        ("s3://bucket/GC101_O_20251115_000001.fits", "S3 is not configured"),
        ("https://example.org/x.fits", "scheme 'https'"),
        (f"file://otherhost{path}", "names host"),
        (f"file://{root}/GenericCamera/../GenericCamera/101/x.fits", r"contains '\.\.'"),
        ("", "non-empty"),
        ((root / "missing.fits").as_uri(), "does not exist"),
        (path.parent.as_uri(), "not a regular file"),
    ]:
        with pytest.raises(ValueError, match=match):
            resolve_file(url, store)
