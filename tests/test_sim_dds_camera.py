"""The camera simulators (sim/camera_sim.py) as CSCs on real DDS: takeImages and its events."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import math
import os
import pathlib
import signal
import sys
import tempfile
import textwrap
import unittest
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import pytest
from astropy.io import fits

from fits_factory import write_raw
from lsst.ts.rapidanalysis import __version__, sal
from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.data.raw_store import RawStore
from lsst.ts.rapidanalysis.sal import SalRetCode, State
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase, assert_raises_ack_error
from lsst.ts.rapidanalysis.sim.camera_sim import (
    CameraSimulator,
    GenericCameraSimulator,
    SimClock,
    call_writer,
    day_obs_for_tai,
    join_colon_list,
    make_image_name,
    parse_key_value_map,
    split_colon_list,
)

#: Bound on anything that should happen at once.
TIMEOUT = 10.0
#: 50 simulated seconds per wall second: a 1 s exposure and the 2 s readout take 60 ms.
TIME_SCALE = 0.02
TESTS_DIR = pathlib.Path(__file__).parent
IMAGE_EVENTS = ("startIntegration", "startReadout", "endReadout", "endOfImageTelemetry")


def make_writer(root: pathlib.Path, instrument: str, default_detectors: list[int]) -> Any:
    """A small raw writer: camera-format FITS at 1/50 size, in the raw store layout."""
    store = RawStore(root, instrument)
    inst = get_instrument(instrument)
    calls: list[tuple[str, dict]] = []

    def writer(obsid: str, metadata: dict) -> dict[int, pathlib.Path]:
        calls.append((obsid, metadata))
        paths = {}
        for detector_id in metadata["detectors"] or default_detectors:
            detector = inst.detector(detector_id)
            paths[detector_id] = write_raw(
                store.path_for(obsid, detector_id),
                detector_type=detector.physical_type,
                obsid=obsid,
                raft=detector.raft,
                sensor=detector.sensor,
                imgtype=metadata["img_type"],
                exptime=metadata["exp_time"],
                group_id=metadata["group_id"],
                instrument=instrument,
                scale=0.02,
                seed=metadata["seq_num"],
            )
        return paths

    writer.calls = calls  # type: ignore[attr-defined]
    return writer


class ImageEvents:
    """Every image event a Remote sees, and what was on disk when each endReadout arrived."""

    def __init__(self, remote: sal.Remote, store: RawStore | None, detectors: list[int]) -> None:
        self.samples: dict[str, list[Any]] = {name: [] for name in IMAGE_EVENTS}
        self.files_at_end_readout: dict[str, dict[int, bool]] = {}
        self.store = store
        self.detectors = detectors
        self._arrived = asyncio.Event()
        for name in IMAGE_EVENTS:
            getattr(remote, f"evt_{name}").callback = self._make_callback(name)

    def _make_callback(self, name: str) -> Any:
        def callback(data: Any) -> None:
            self.samples[name].append(data)
            self._arrived.set()
            if name == "endReadout" and self.store is not None:
                complete = {}
                for detector_id in self.detectors:
                    path = self.store.existing_path(data.imageName, detector_id)
                    complete[detector_id] = path is not None and self.store.is_complete(path)
                self.files_at_end_readout[data.imageName] = complete

        return callback

    async def wait_for(self, name: str, count: int) -> list[Any]:
        async with asyncio.timeout(TIMEOUT):
            while len(self.samples[name]) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.samples[name]


@contextlib.asynccontextmanager
async def camera_and_remote(csc: Any, name: str, index: int | None = None) -> AsyncIterator[sal.Remote]:
    """Start ``csc`` and a Remote of it in its own Domain (as another program); wait until ENABLED."""
    domain = sal.Domain()
    remote = sal.Remote(domain, name, index)
    try:
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(csc.start_task, remote.start_task)
            while (await remote.evt_summaryState.next(flush=False)).summaryState != State.ENABLED:
                pass
        yield remote
    finally:
        await remote.close()
        await asyncio.wait_for(csc.close(), TIMEOUT)
        await domain.close()


def check_image_events(
    events: ImageEvents,
    n: int,
    source: str,
    exp_time: float,
    readout_time: float,
    time_scale: float = TIME_SCALE,
    day_obs: str | None = None,
) -> None:
    """Every image has its four events, in order, with consistent names, indices and timestamps."""
    slack = 0.5 / time_scale  # half a wall second of event loop latency, in simulated seconds
    starts, readouts, ends, telemetry = (events.samples[name] for name in IMAGE_EVENTS)
    assert [len(s) for s in (starts, readouts, ends, telemetry)] == [n] * 4
    previous_end = -math.inf
    for i, (s, r, e, t) in enumerate(zip(starts, readouts, ends, telemetry, strict=True)):
        for sample in (s, r, e, t):
            assert sample.imageName == s.imageName
            assert sample.imageIndex == i + 1
            assert sample.imagesInSequence == n
            assert sample.imageSource == source
            assert sample.imageController == "O"
            assert sample.timestampAcquisitionStart == s.timestampAcquisitionStart
            assert sample.additionalKeys == s.additionalKeys and sample.additionalValues == s.additionalValues
        assert s.imageName == make_image_name(source, "O", s.imageDate, s.imageNumber)
        assert s.imageDate == (day_obs or day_obs_for_tai(s.timestampAcquisitionStart))
        # written in this order (one writer per topic, so compare send times)
        stamps = [x.private_sndStamp for x in (s, r, e, t)]
        assert stamps == sorted(stamps), stamps
        assert s.timestampAcquisitionStart > previous_end
        assert s.exposureTime == r.exposureTime == t.exposureTime == e.requestedExposureTime == exp_time
        # simulated seconds: the exposure, then the readout (or the writer, if it takes longer)
        assert exp_time <= r.timestampStartOfReadout - s.timestampAcquisitionStart < exp_time + slack
        assert e.timestampEndOfReadout - r.timestampStartOfReadout >= readout_time
        assert t.timestampDateObs == s.timestampAcquisitionStart
        assert t.timestampDateEnd == pytest.approx(s.timestampAcquisitionStart + exp_time)
        assert t.darkTime == pytest.approx(r.timestampStartOfReadout - s.timestampAcquisitionStart)
        assert t.measuredShutterOpenTime == exp_time
        assert len(t.imageTag) == 32
        previous_end = e.timestampEndOfReadout
    numbers = [s.imageNumber for s in starts]
    assert numbers == list(range(numbers[0], numbers[0] + n))


# Pure functions


def test_day_obs_rolls_over_at_noon_tai() -> None:
    def tai(*args: int) -> float:
        return datetime.datetime(*args, tzinfo=datetime.UTC).timestamp()

    assert day_obs_for_tai(tai(2025, 11, 15, 11, 59, 59, 999000)) == "20251114"
    assert day_obs_for_tai(tai(2025, 11, 15, 12, 0, 0)) == "20251115"
    assert day_obs_for_tai(tai(2025, 11, 16, 0, 30, 0)) == "20251115"
    assert day_obs_for_tai(tai(2026, 1, 1, 6, 0, 0)) == "20251231"
    assert make_image_name("AT", "O", "20240813", 632) == "AT_O_20240813_000632"


def test_key_value_map() -> None:
    parsed = parse_key_value_map(" imageType: FLAT , groupId: 2025-11-15T21:03:14.123,reason:  a b ")
    assert parsed == {"imageType": "FLAT", "groupId": "2025-11-15T21:03:14.123", "reason": "a b"}
    assert parse_key_value_map("") == {}
    for bad in ("imageType FLAT", "imageType: FLAT,", ": x", "a: 1, a: 2", "1a: x"):
        with pytest.raises(ValueError):
            parse_key_value_map(bad)
    items = ["OBJECT", "2025-11-15T21:03:14.123", "back\\slash", ""]
    assert split_colon_list(join_colon_list(items)) == items
    assert join_colon_list(["a", "b:c"]) == "a:b\\:c"


def test_sim_clock() -> None:
    clock = SimClock(0.5, epoch_tai=1000.0)
    assert 1000.0 <= clock.now() < 1001.0
    assert clock.wall_seconds(4.0) == 2.0
    real = SimClock()
    assert abs(real.now() - sal.current_tai()) < 0.01
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            SimClock(bad)


# The cameras on DDS


async def test_latiss_take_images(tmp_path: pathlib.Path) -> None:
    writer = make_writer(tmp_path, "LATISS", [0])
    csc = CameraSimulator("LATISS", writer=writer, time_scale=TIME_SCALE, initial_state=State.ENABLED, start_seq_num=5)
    async with camera_and_remote(csc, "ATCamera") as remote:
        events = ImageEvents(remote, RawStore(tmp_path, "LATISS"), [0])
        group_id = "2025-11-15T21:03:14.123"
        ack = await remote.cmd_takeImages.set_start(
            numImages=2,
            expTime=1.0,
            shutter=True,
            sensors="",
            keyValueMap=f"imageType: OBJECT, groupId: {group_id}, reason: test",
            obsNote="a note",
            timeout=TIMEOUT,
        )
        assert ack.ack == SalRetCode.CMD_COMPLETE
        await events.wait_for("endOfImageTelemetry", 2)
        check_image_events(events, 2, "AT", exp_time=1.0, readout_time=2.0)
        starts = events.samples["startIntegration"]
        assert [s.imageNumber for s in starts] == [5, 6]
        assert split_colon_list(starts[0].additionalKeys) == ["imageType", "groupId", "reason"]
        assert split_colon_list(starts[0].additionalValues) == ["OBJECT", group_id, "test"]
        # the raws were complete, in the raw store layout, before endReadout was seen
        for s in starts:
            assert events.files_at_end_readout[s.imageName] == {0: True}
            path = (
                tmp_path / "LATISS" / s.imageDate / s.imageName / f"{s.imageName}_R00_S00.fits"
            )  # as the camera names it since 2024
            header = fits.getheader(path)
            assert (header["OBSID"], header["IMGTYPE"], header["GROUPID"]) == (s.imageName, "OBJECT", group_id)
        obsid, metadata = writer.calls[0]
        assert metadata["obs_note"] == "a note" and metadata["extra_headers"]["REASON"] == "test"
        assert metadata["tai_start"] == starts[0].timestampAcquisitionStart
        assert metadata["day_obs"] == int(starts[0].imageDate) and metadata["seq_num"] == 5

        # the sequence continues with the next command (same day)
        await remote.cmd_takeImages.set_start(numImages=1, expTime=0.0, shutter=False, keyValueMap="", timeout=TIMEOUT)
        await events.wait_for("endOfImageTelemetry", 3)
        third = events.samples["endReadout"][2]
        assert third.imageNumber == 7 and third.imageIndex == 1 and third.imagesInSequence == 1
        assert split_colon_list(third.additionalValues)[0] == "BIAS"  # default for expTime 0
        assert csc.last_seq_num == {third.imageDate: 7}


async def test_lsstcam_sensors_and_day_override(tmp_path: pathlib.Path) -> None:
    detectors = [0, 94, 95]
    writer = make_writer(tmp_path, "LSSTCam", detectors)
    csc = CameraSimulator(
        "LSSTCam", writer=writer, time_scale=TIME_SCALE, initial_state=State.ENABLED, day_obs_override=20251115
    )
    async with camera_and_remote(csc, "MTCamera") as remote:
        events = ImageEvents(remote, RawStore(tmp_path, "LSSTCam"), detectors)
        await remote.cmd_takeImages.set_start(
            numImages=2, expTime=0.5, shutter=True, sensors="R22_S11:R22_S12:R01_S00", timeout=TIMEOUT
        )
        await events.wait_for("endOfImageTelemetry", 2)
        check_image_events(events, 2, "MC", exp_time=0.5, readout_time=2.0, day_obs="20251115")
        names = [e.imageName for e in events.samples["endReadout"]]
        assert names == ["MC_O_20251115_000001", "MC_O_20251115_000002"]
        for name in names:
            assert events.files_at_end_readout[name] == {0: True, 94: True, 95: True}
        assert writer.calls[0][1]["detectors"] == [0, 94, 95]
        assert writer.calls[0][1]["img_type"] == "OBJECT"  # default with the shutter open

        # only the named sensors are written
        await remote.cmd_takeImages.set_start(numImages=1, expTime=0.5, shutter=True, sensors="94", timeout=TIMEOUT)
        await events.wait_for("endReadout", 3)
        third = events.samples["endReadout"][2]
        assert third.imageName == "MC_O_20251115_000003"
        assert sorted(RawStore(tmp_path, "LSSTCam")._scan_exposure(third.imageName)) == [94]

        with assert_raises_ack_error(ack=SalRetCode.CMD_FAILED, result_contains="R99_S99"):
            await remote.cmd_takeImages.set_start(numImages=1, expTime=0.5, sensors="R99_S99", timeout=TIMEOUT)


async def test_day_rollover_during_a_sequence(tmp_path: pathlib.Path) -> None:
    writer = make_writer(tmp_path, "LATISS", [0])
    csc = CameraSimulator("LATISS", writer=writer, time_scale=0.05, initial_state=State.ENABLED, start_seq_num=7)
    async with camera_and_remote(csc, "ATCamera") as remote:
        events = ImageEvents(remote, RawStore(tmp_path, "LATISS"), [0])
        noon = datetime.datetime(2025, 11, 15, 12, tzinfo=datetime.UTC).timestamp()
        # 2 simulated seconds (100 ms) before noon TAI; each image takes 1 + 2 simulated seconds
        csc.clock = SimClock(0.05, epoch_tai=noon - 2.0)
        await remote.cmd_takeImages.set_start(numImages=2, expTime=1.0, shutter=True, timeout=TIMEOUT)
        await events.wait_for("endOfImageTelemetry", 2)
        first, second = events.samples["startIntegration"]
        assert first.timestampAcquisitionStart < noon < second.timestampAcquisitionStart
        assert (first.imageName, second.imageName) == ("AT_O_20251114_000007", "AT_O_20251115_000001")
        assert first.imageIndex == 1 and second.imageIndex == 2  # still one sequence
        assert events.files_at_end_readout == {first.imageName: {0: True}, second.imageName: {0: True}}


async def test_bad_take_images(tmp_path: pathlib.Path) -> None:
    writer = make_writer(tmp_path, "LATISS", [0])
    csc = CameraSimulator("LATISS", writer=writer, time_scale=TIME_SCALE, initial_state=State.ENABLED)
    async with camera_and_remote(csc, "ATCamera") as remote:
        bad = [
            (dict(numImages=0, expTime=1.0), "numImages=0"),
            (dict(numImages=-2, expTime=1.0), "numImages=-2"),
            (dict(numImages=1, expTime=-1.0), "expTime=-1.0"),
            (dict(numImages=1, expTime=math.nan), "expTime=nan"),
            (dict(numImages=1, expTime=1.0, keyValueMap="imageType OBJECT"), "not of the form"),
            (dict(numImages=1, expTime=1.0, keyValueMap="imageType: SELFIE"), "SELFIE"),
            (dict(numImages=1, expTime=1.0, keyValueMap="a: 1, a: 2"), "twice"),
            (dict(numImages=1, expTime=1.0, keyValueMap="groupId: has space"), "groupId"),
        ]
        for fields, message in bad:
            with assert_raises_ack_error(ack=SalRetCode.CMD_FAILED, result_contains=message):
                await remote.cmd_takeImages.set_start(**fields, timeout=TIMEOUT)
        # a writer that fails fails the command (and nothing claims the image was read out)
        csc.writer = lambda obsid, metadata: 1 / 0
        with assert_raises_ack_error(ack=SalRetCode.CMD_FAILED, result_contains="ZeroDivisionError"):
            await remote.cmd_takeImages.set_start(numImages=1, expTime=0.0, timeout=TIMEOUT)
        assert remote.evt_endReadout.get() is None
        # not ENABLED
        await remote.cmd_disable.start(timeout=TIMEOUT)
        with assert_raises_ack_error(ack=SalRetCode.CMD_FAILED, result_contains="Not allowed in state"):
            await remote.cmd_takeImages.set_start(numImages=1, expTime=1.0, timeout=TIMEOUT)
        assert writer.calls == []


async def test_disable_aborts_a_sequence(tmp_path: pathlib.Path) -> None:
    writer = make_writer(tmp_path, "LATISS", [0])
    csc = CameraSimulator("LATISS", writer=writer, time_scale=TIME_SCALE, initial_state=State.ENABLED)
    async with camera_and_remote(csc, "ATCamera") as remote:
        task = asyncio.create_task(
            remote.cmd_takeImages.set_start(numImages=100, expTime=10.0, shutter=True, timeout=TIMEOUT)
        )
        await remote.evt_startIntegration.next(flush=False, timeout=TIMEOUT)
        await remote.cmd_disable.start(timeout=TIMEOUT)
        with assert_raises_ack_error(ack=SalRetCode.CMD_ABORTED):
            await asyncio.wait_for(task, TIMEOUT)


async def test_generic_camera_large_file_object(tmp_path: pathlib.Path) -> None:
    index = 101
    csc = GenericCameraSimulator(index, tmp_path, time_scale=TIME_SCALE, initial_state=State.ENABLED)
    async with camera_and_remote(csc, "GenericCamera", index) as remote:
        events = ImageEvents(remote, None, [])
        await remote.cmd_takeImages.set_start(
            numImages=2, expTime=0.5, shutter=True, keyValueMap="imageType: OBJECT", timeout=TIMEOUT
        )
        await events.wait_for("endOfImageTelemetry", 2)
        # endOfImageTelemetry is written after largeFileObjectAvailable: both are here
        lfas = [remote.evt_largeFileObjectAvailable.get_oldest() for _ in range(2)]
        assert remote.evt_largeFileObjectAvailable.get_oldest() is None
        ends = events.samples["endReadout"]
        assert [e.imageIndex for e in ends] == [0, 1]  # 0-based for GenericCamera
        assert [e.imageSource for e in ends] == [f"GC{index}"] * 2
        for end, lfa in zip(ends, lfas, strict=True):
            assert end.imageName == f"GC{index}_O_{end.imageDate}_{end.imageNumber:06d}"
            assert lfa.id == end.imageName
            assert lfa.generator == f"GenericCamera:{index}"
            assert lfa.mimeType == "image/fits"
            assert lfa.private_sndStamp > end.private_sndStamp
            header = check_lfa_file(lfa, tmp_path)
            assert header["OBSID"] == end.imageName and header["IMGTYPE"] == "OBJECT"
        assert ends[1].imageNumber == ends[0].imageNumber + 1


def check_lfa_file(lfa: Any, root: pathlib.Path) -> fits.Header:
    """The file a largeFileObjectAvailable names exists under ``root`` with its size and md5; its header."""
    url = urllib.parse.urlsplit(lfa.url)
    assert url.scheme == "file"
    path = pathlib.Path(urllib.parse.unquote(url.path))
    assert path.is_file() and path.is_relative_to(root)
    data = path.read_bytes()
    assert lfa.byteSize == len(data)
    assert lfa.checkSum == hashlib.md5(data).hexdigest()
    return fits.getheader(path)


# Standard CSC behaviour


class CameraSimulatorStatesTestCase(BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    def basic_make_csc(
        self, initial_state: Any, config_dir: Any, simulation_mode: int, **kwargs: Any
    ) -> CameraSimulator:
        return CameraSimulator(
            "LSSTComCam",
            writer=lambda obsid, metadata: {},
            time_scale=TIME_SCALE,
            initial_state=initial_state,
            simulation_mode=simulation_mode,
        )

    async def test_standard_state_transitions(self) -> None:
        async with self.make_csc(initial_state=State.STANDBY):
            assert self.csc.salinfo.name == "CCCamera"
            data = await self.remote.evt_softwareVersions.aget(timeout=TIMEOUT)
            assert data.cscVersion == __version__
            await self.check_standard_state_transitions(enabled_commands=["takeImages"])


class GenericCameraStatesTestCase(BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    def setUp(self) -> None:
        self.root = pathlib.Path(self.enterContext(tempfile.TemporaryDirectory()))

    def basic_make_csc(
        self, initial_state: Any, config_dir: Any, simulation_mode: int, **kwargs: Any
    ) -> GenericCameraSimulator:
        return GenericCameraSimulator(
            self.next_index(),
            self.root,
            time_scale=TIME_SCALE,
            initial_state=initial_state,
            simulation_mode=simulation_mode,
        )

    async def test_standard_state_transitions(self) -> None:
        async with self.make_csc(initial_state=State.STANDBY, simulation_mode=1):
            await self.check_standard_state_transitions(enabled_commands=["takeImages"])


# A separate process

_CAMERA_SCRIPT = """
import asyncio, pathlib, sys
sys.path.insert(0, {tests_dir!r})
from fits_factory import write_raw
from lsst.ts.rapidanalysis.data.raw_store import RawStore
from lsst.ts.rapidanalysis.sal import State
from lsst.ts.rapidanalysis.sim.camera_sim import CameraSimulator

store = RawStore({root!r}, "LATISS")

def writer(obsid, metadata):
    path = write_raw(store.path_for(obsid, 0), detector_type="ITL", obsid=obsid, raft="RXX", sensor="S00",
                     imgtype=metadata["img_type"], exptime=metadata["exp_time"], instrument="LATISS", scale=0.02)
    return {{0: path}}

async def main():
    csc = CameraSimulator("LATISS", writer=writer, time_scale=0.02, initial_state=State.ENABLED)
    await csc.done_task

asyncio.run(main())
"""


async def test_camera_in_another_process(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "camera.py"
    script.write_text(textwrap.dedent(_CAMERA_SCRIPT.format(tests_dir=str(TESTS_DIR), root=str(tmp_path))))
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdin=asyncio.subprocess.DEVNULL, env=dict(os.environ)
    )
    try:
        async with sal.Domain() as domain, sal.Remote(domain, "ATCamera") as remote:
            events = ImageEvents(remote, RawStore(tmp_path, "LATISS"), [0])
            async with asyncio.timeout(30.0):  # includes the other interpreter's imports
                while (await remote.evt_summaryState.next(flush=False)).summaryState != State.ENABLED:
                    pass
            await remote.cmd_takeImages.set_start(numImages=2, expTime=1.0, shutter=True, timeout=TIMEOUT)
            await events.wait_for("endOfImageTelemetry", 2)
            check_image_events(events, 2, "AT", exp_time=1.0, readout_time=2.0)
            assert all(files == {0: True} for files in events.files_at_end_readout.values())
            assert len(events.files_at_end_readout) == 2
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
    assert process.returncode == 0


async def test_writer_calling_conventions() -> None:
    """A writer(obsid, metadata), async or not, or a writer with keyword-only parameters (StreamWriter's)."""
    metadata = {"obsid": "MC_O_20251115_000001", "exp_time": 2.0, "img_type": "FLAT", "group_id": "g", "seq_num": 1}
    seen: list[Any] = []

    def plain(obsid: str, md: dict) -> dict:
        seen.append(("plain", obsid, md))
        return {1: pathlib.Path("a")}

    async def coroutine(obsid: str, md: dict) -> dict:
        seen.append(("async", obsid, md))
        return {2: pathlib.Path("b")}

    class StreamLike:
        def write_exposure(
            self, obsid: str, *, exp_time: float, img_type: str = "OBJECT", group_id: str | None = None
        ) -> dict:
            seen.append(("kwargs", obsid, exp_time, img_type, group_id))
            return {3: pathlib.Path("c")}

    assert await call_writer(plain, "X", metadata) == {1: pathlib.Path("a")}
    assert await call_writer(coroutine, "X", metadata) == {2: pathlib.Path("b")}
    assert await call_writer(StreamLike().write_exposure, "X", metadata) == {3: pathlib.Path("c")}
    assert seen == [("plain", "X", metadata), ("async", "X", metadata), ("kwargs", "X", 2.0, "FLAT", "g")]


async def test_sequence_numbers_resume_after_those_on_disk(tmp_path: pathlib.Path) -> None:
    (tmp_path / "LATISS" / "20251115" / "AT_O_20251115_000041").mkdir(parents=True)
    writer = make_writer(tmp_path, "LATISS", [0])
    csc = CameraSimulator(
        "LATISS",
        writer=writer,
        raw_root=tmp_path,
        time_scale=TIME_SCALE,
        initial_state=State.ENABLED,
        day_obs_override="20251115",
    )
    async with camera_and_remote(csc, "ATCamera") as remote:
        await remote.cmd_takeImages.set_start(numImages=1, expTime=0.0, timeout=TIMEOUT)
        end = await remote.evt_endReadout.next(flush=False, timeout=TIMEOUT)
        assert end.imageName == "AT_O_20251115_000042"
