"""RawStore: paths, look-up by obsid and group id under every real file name, waiting for files
being written (until every amplifier is there), URLs."""

from __future__ import annotations

import asyncio
import json
import pathlib
import time

import pytest
from astropy.io import fits

from fits_factory import write_raw
from lsst.ts.rapidanalysis.data import (
    DataId,
    MissingRawError,
    RawStore,
    RawUrlError,
    get_instrument,
    parse_data_id,
)
from lsst.ts.rapidanalysis.data.fits_structure import scan_fits
from real_raws import place, unpacked_real_raw

OBSID = "MC_O_20251115_000226"
SMALL = 0.05  # data sections of about 26 x 100 pixels: fast


@pytest.fixture
def store(tmp_path: pathlib.Path) -> RawStore:
    return RawStore(tmp_path / "raws", get_instrument("LSSTCam"))


def data_id(text: dict) -> DataId:
    return parse_data_id(json.dumps(text), get_instrument("LSSTCam"))


def write(store: RawStore, obsid: str, detector: int, *, compress: bool = False, **kwargs: object) -> pathlib.Path:
    name = store.instrument.by_id[detector].name
    raft, sensor = name.split("_")
    path = store.path_for(obsid, detector)
    if compress:
        path = path.with_name(path.name + ".fz")
    return write_raw(path, obsid=obsid, raft=raft, sensor=sensor, scale=SMALL, compress=compress, **kwargs)


def test_path_for(store: RawStore) -> None:
    path = store.path_for(OBSID, 94)
    assert path == store.root / "LSSTCam" / "20251115" / OBSID / f"{OBSID}_R22_S11.fits"
    assert store.path_for(OBSID, 0).name == f"{OBSID}_R01_S00.fits"
    assert store.path_for(OBSID, 191).name == f"{OBSID}_R00_SW0.fits"
    with pytest.raises(ValueError, match="camera code AT"):
        store.path_for("AT_O_20251115_000226", 94)
    with pytest.raises(ValueError, match="no detector 999"):
        store.path_for(OBSID, 999)
    with pytest.raises(ValueError, match="not of the form"):
        store.path_for("../../etc/passwd", 94)


def test_path_for_other_instruments(tmp_path: pathlib.Path) -> None:
    latiss = RawStore(tmp_path, "LATISS")
    obsid = "AT_O_20251115_000007"
    # The name LATISS's camera writes since 2024 (RAFTBAY R00, CCDSLOT S00), not the DM stack's RXX_S00.
    assert latiss.path_for(obsid, 0) == tmp_path / "LATISS" / "20251115" / obsid / f"{obsid}_R00_S00.fits"
    comcam = RawStore(tmp_path, "LSSTComCam")
    assert comcam.path_for("CC_O_20241120_000001", 4).name == "CC_O_20241120_000001_R22_S11.fits"


def test_find_by_obsid(store: RawStore) -> None:
    write(store, OBSID, 94)
    fz = write(store, OBSID, 0, compress=True)
    write(store, "MC_O_20251115_000227", 1)  # another exposure
    (store.exposure_dir(OBSID) / "notes.txt").write_text("not a raw")
    assert fz.name.endswith(".fits.fz")

    everything = store.find(data_id({"obsid": OBSID}))
    assert sorted(everything) == [0, 94]
    assert everything[0] == fz
    assert store.find(data_id({"obsid": OBSID}), [94, 95]) == {94: store.path_for(OBSID, 94)}
    assert store.find(data_id({"obsid": OBSID, "detectors": ["R01_S00"]})) == {0: fz}
    by_day_seq = store.find(data_id({"dayObs": 20251115, "seqNum": 226}), [94])
    assert by_day_seq == {94: store.path_for(OBSID, 94)}
    assert store.find(data_id({"obsid": "MC_O_20251115_000999"})) == {}
    with pytest.raises(ValueError, match="no detector"):
        store.find(data_id({"obsid": OBSID}), [5000])


#: LATISS file names, as the camera wrote them (2024 on; 2020-2022) and as this simulator once did.
LATISS_NAMES = {
    "AT_O_20240624_000106": "AT_O_20240624_000106_R00_S00.fits",
    "AT_O_20220405_000348": "AT_O_20220405_000348.fits",
    "AT_O_20251115_000007": "AT_O_20251115_000007_RXX_S00.fits",
}


@pytest.fixture(scope="module")
def real_latiss(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return unpacked_real_raw("LATISS", tmp_path_factory.mktemp("real"))


@pytest.mark.parametrize("obsid", sorted(LATISS_NAMES))
async def test_latiss_raws_are_found_under_every_real_name(
    obsid: str, real_latiss: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """A real LATISS raw under each name the camera has written: find, existing_path, scan, wait_for, group id."""
    latiss = RawStore(tmp_path, "LATISS")
    day = obsid.split("_")[2]
    path = place(real_latiss, tmp_path / "LATISS" / day / obsid / LATISS_NAMES[obsid])
    latiss_id = parse_data_id(json.dumps({"obsid": obsid}), latiss.instrument)
    assert latiss.existing_path(obsid, 0) == path
    assert latiss.find(latiss_id) == {0: path}  # by directory scan
    assert latiss.find(latiss_id, [0]) == {0: path}  # by name
    t0 = time.monotonic()
    assert await latiss.wait_for(latiss_id, [0], timeout=10, poll_interval=5.0) == {0: path}
    assert time.monotonic() - t0 < 2.0  # whole at the first look: 16 amps (and the 2 real tables)


@pytest.mark.parametrize("obsid", sorted(LATISS_NAMES))
def test_latiss_group_ids_are_read_under_every_real_name(obsid: str, tmp_path: pathlib.Path) -> None:
    latiss = RawStore(tmp_path, "LATISS")
    day = obsid.split("_")[2]
    group = f"{day[:4]}-{day[4:6]}-{day[6:]}T23:10:00.000"
    path = tmp_path / "LATISS" / day / obsid / LATISS_NAMES[obsid]
    latiss_raw = dict(raft="R00", sensor="S00", detector_type="ITL", instrument="LATISS", scale=SMALL)
    write_raw(path, obsid=obsid, group_id=group, **latiss_raw)
    assert latiss.obsids_for_group(group) == [obsid]
    assert latiss.find(DataId("LATISS", group_id=group)) == {0: path}


def test_latiss_prefers_the_name_the_camera_writes_today(tmp_path: pathlib.Path) -> None:
    latiss = RawStore(tmp_path, "LATISS")
    obsid = "AT_O_20240624_000106"
    directory = latiss.exposure_dir(obsid)
    directory.mkdir(parents=True)
    for name in (f"{obsid}_RXX_S00.fits", f"{obsid}.fits.fz", f"{obsid}_R00_S00.fits.fz", f"{obsid}_R00_S00.fits"):
        (directory / name).write_bytes(b"")
    (directory / f"{obsid}_R00_S00.fits.truth.json").write_text("{}")  # not a raw
    (directory / "AT_O_20240624_000107_R00_S00.fits").write_bytes(b"")  # another exposure's
    latiss_id = parse_data_id(json.dumps({"obsid": obsid}), latiss.instrument)
    assert latiss.find(latiss_id) == latiss.find(latiss_id, [0]) == {0: directory / f"{obsid}_R00_S00.fits"}
    (directory / f"{obsid}_R00_S00.fits").unlink()
    assert latiss.find(latiss_id) == latiss.find(latiss_id, [0]) == {0: directory / f"{obsid}_R00_S00.fits.fz"}
    (directory / f"{obsid}_R00_S00.fits.fz").unlink()
    assert latiss.find(latiss_id) == latiss.find(latiss_id, [0]) == {0: directory / f"{obsid}.fits.fz"}


@pytest.mark.parametrize(
    ("instrument", "obsid", "detector_name"),
    [("LSSTCam", "MC_C_20190322_000002", "R10_S22"), ("LSSTComCam", "CC_C_20190530_000001", "R22_S00")],
)
async def test_real_lsstcam_and_comcam_raws_are_found(
    instrument: str, obsid: str, detector_name: str, tmp_path: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Real raws under their FILENAME card's name, ``<OBSID>_<RAFT>_<SENSOR>.fits``."""
    source = unpacked_real_raw(instrument, tmp_path_factory.mktemp("real"))
    assert fits.getheader(source)["FILENAME"] == f"{obsid}_{detector_name}.fits"
    raws = RawStore(tmp_path, instrument)
    detector = raws.instrument.detector(detector_name).id
    path = place(source, tmp_path / instrument / obsid.split("_")[2] / obsid / f"{obsid}_{detector_name}.fits")
    assert raws.path_for(obsid, detector) == path
    the_id = parse_data_id(json.dumps({"obsid": obsid}), raws.instrument)
    assert raws.find(the_id) == {detector: path}
    assert await raws.wait_for(the_id, [detector], timeout=10, poll_interval=5.0) == {detector: path}
    assert raws.resolve_url(path.as_uri()) == path.resolve()


def test_find_by_group_id(store: RawStore) -> None:
    group = "2025-11-16T03:10:00.000"  # dayObs 20251115 (days roll over at 12:00 TAI)
    write(store, "MC_O_20251115_000010", 94, group_id=group)
    write(store, "MC_O_20251115_000010", 95, group_id=group)
    write(store, "MC_O_20251115_000011", 94, group_id=group)
    write(store, "MC_O_20251115_000012", 94, group_id="2025-11-16T03:20:00.000")
    write(store, "MC_O_20251116_000001", 94, group_id=group)  # next day: inside the window
    write(store, "MC_O_20251119_000001", 94, group_id=group)  # far away: not scanned

    obsids = store.obsids_for_group(group)
    assert obsids == ["MC_O_20251115_000010", "MC_O_20251115_000011", "MC_O_20251116_000001"]
    found = store.find(data_id({"groupId": group}), [94, 95])
    assert found == {94: store.path_for("MC_O_20251116_000001", 94)}  # the newest exposure of the group
    assert store.find(data_id({"groupId": "2025-11-16T03:20:00.000"})) == {
        94: store.path_for("MC_O_20251115_000012", 94)
    }
    assert store.find(data_id({"groupId": "2025-11-10T03:20:00.000"})) == {}


async def test_wait_for_file_appearing_later(store: RawStore) -> None:
    async def write_later() -> pathlib.Path:
        await asyncio.sleep(0.3)
        return await asyncio.to_thread(write, store, OBSID, 94)

    writer = asyncio.create_task(write_later())
    t0 = time.monotonic()
    found = await store.wait_for(data_id({"obsid": OBSID}), [94], timeout=10, poll_interval=0.05)
    elapsed = time.monotonic() - t0
    assert found == {94: await writer}
    assert 0.3 <= elapsed < 5


async def test_wait_for_waits_until_file_is_complete(store: RawStore, tmp_path: pathlib.Path) -> None:
    full = write_raw(tmp_path / "full.fits", obsid=OBSID, scale=SMALL)
    target = store.path_for(OBSID, 94)
    target.parent.mkdir(parents=True)
    content = full.read_bytes()
    target.write_bytes(content[: len(content) // 2 - 100])  # half written, not whole FITS blocks
    assert not store.is_complete(target)

    async def finish_later() -> None:
        await asyncio.sleep(0.4)
        target.write_bytes(content)

    finisher = asyncio.create_task(finish_later())
    found = await store.wait_for(data_id({"obsid": OBSID}), [94], timeout=10, poll_interval=0.05)
    await finisher
    assert found == {94: target}
    assert target.stat().st_size == len(content)
    assert store.is_complete(target)

    # Whole blocks but data missing (header promises more): not complete either.
    target.write_bytes(content[: 2880 * 3])
    assert not store.is_complete(target)


async def test_wait_for_takes_a_whole_raw_at_the_first_look(store: RawStore, tmp_path: pathlib.Path) -> None:
    """Every amp's HDU there, whole: no second look (the endReadout → first job path waits for nothing)."""
    target = store.path_for(OBSID, 94)
    target.parent.mkdir(parents=True)
    write_raw(target, obsid=OBSID, scale=SMALL)
    t0 = time.monotonic()
    found = await store.wait_for(data_id({"obsid": OBSID}), [94], timeout=30, poll_interval=5.0)
    assert found == {94: target}
    assert time.monotonic() - t0 < 1.0


def cut_after_amps(full: pathlib.Path, n_amps: int) -> int:
    """Bytes of ``full`` up to the end of its ``n_amps``-th amp HDU (primary first)."""
    with fits.open(full) as hdul:
        return hdul.fileinfo(n_amps + 1)["hdrLoc"]


def write_in_halves(target: pathlib.Path, content: bytes, cut: int, pause: float) -> None:
    """Write ``content[:cut]``, pause, write the rest (as a camera that stalls mid-file)."""
    with open(target, "wb") as f:
        f.write(content[:cut])
        f.flush()
        time.sleep(pause)
        f.write(content[cut:])


async def test_wait_for_never_takes_a_raw_short_of_amps(store: RawStore, tmp_path: pathlib.Path) -> None:
    """Primary and 8 of 16 amps, whole HDUs, no longer growing: waited for to the timeout, never taken."""
    full = write_raw(tmp_path / "full.fits", obsid=OBSID, scale=SMALL)
    target = store.path_for(OBSID, 94)
    target.parent.mkdir(parents=True)
    target.write_bytes(full.read_bytes()[: cut_after_amps(full, 8)])
    assert store.is_complete(target)  # structurally sound so far: whole HDUs and nothing after
    t0 = time.monotonic()
    with pytest.raises(MissingRawError) as info:
        await store.wait_for(data_id({"obsid": OBSID}), [94], timeout=1.0, poll_interval=0.1)
    assert time.monotonic() - t0 >= 1.0
    message = str(info.value)
    assert f"{target.name} has 8 of 16 amplifier HDUs whole" in message, message
    assert "stopped growing" in message and f"at {target.stat().st_size} bytes" in message, message
    assert "94 (R22_S11)" in message and "within 1 s" in message, message


async def test_wait_for_a_raw_written_in_two_halves(store: RawStore, tmp_path: pathlib.Path) -> None:
    """Half the amps, a pause longer than the old 0.2 s stable-size window, then the rest: taken whole."""
    full = write_raw(tmp_path / "full.fits", obsid=OBSID, scale=SMALL)
    content = full.read_bytes()
    cut = cut_after_amps(full, 8)
    target = store.path_for(OBSID, 94)
    target.parent.mkdir(parents=True)

    # Five looks 0.2 s apart see the same size during the pause.
    writer = asyncio.create_task(asyncio.to_thread(write_in_halves, target, content, cut, pause=1.0))
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    found = await store.wait_for(data_id({"obsid": OBSID}), [94], timeout=10, poll_interval=0.2)
    elapsed = time.monotonic() - t0
    structure = scan_fits(target)  # as it was when wait_for returned
    await writer
    assert found == {94: target}
    assert structure.n_images == 16 and structure.whole, structure
    assert elapsed >= 0.8, elapsed


async def test_wait_for_a_real_raw_written_in_two_halves(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The real 19-HDU layout (primary, 16 amps, 2 tables): taken once all 16 amps are whole, not at the pause."""
    source = unpacked_real_raw("LSSTCam", tmp_path_factory.mktemp("real"))
    store = RawStore(tmp_path_factory.mktemp("raws"), "LSSTCam")
    obsid = "MC_O_20190322_000002"
    target = store.path_for(obsid, store.instrument.detector("R10_S22").id)
    assert target.name == "MC_O_20190322_000002_R10_S22.fits"  # the file's own FILENAME card
    target.parent.mkdir(parents=True)
    content = source.read_bytes()
    assert scan_fits(source).n_hdus == 19 and scan_fits(source).n_images == 16
    cut = cut_after_amps(source, 8)

    writer = asyncio.create_task(asyncio.to_thread(write_in_halves, target, content, cut, pause=1.0))
    await asyncio.sleep(0.1)
    found = await store.wait_for(data_id({"obsid": obsid}), [35], timeout=20, poll_interval=0.2)
    structure = scan_fits(target)
    await writer
    assert found == {35: target}
    assert structure.n_images == 16, structure


async def test_wait_for_a_wavefront_sensor_needs_8_amps(store: RawStore, tmp_path: pathlib.Path) -> None:
    """R00_SW0 (ITL_WF) has 8 amps: whole with 8, taken at the first look."""
    target = store.path_for(OBSID, 191)
    target.parent.mkdir(parents=True)
    write_raw(target, obsid=OBSID, raft="R00", sensor="SW0", detector_type="ITL_WF", scale=SMALL)
    assert scan_fits(target).n_images == 8
    assert store.expected_amps(191) == 8 and store.expected_amps(94) == 16
    t0 = time.monotonic()
    found = await store.wait_for(data_id({"obsid": OBSID}), [191], timeout=30, poll_interval=5.0)
    assert found == {191: target} and time.monotonic() - t0 < 1.0


async def test_wait_for_returns_what_exists_at_timeout(store: RawStore) -> None:
    write(store, OBSID, 94)
    t0 = time.monotonic()
    found = await store.wait_for(data_id({"obsid": OBSID}), [94, 95], timeout=0.3, poll_interval=0.05)
    assert found == {94: store.path_for(OBSID, 94)}
    assert time.monotonic() - t0 >= 0.3


async def test_wait_for_nothing_raises(store: RawStore) -> None:
    with pytest.raises(MissingRawError) as info:
        await store.wait_for(data_id({"obsid": OBSID}), [94, 95], timeout=0.3, poll_interval=0.05)
    message = str(info.value)
    assert "94 (R22_S11)" in message and "95 (R22_S12)" in message
    assert str(store.path_for(OBSID, 94)) in message
    assert isinstance(info.value, ValueError)

    with pytest.raises(MissingRawError, match="GROUPID '2025-11-16T03:10:00.000'.*20251115"):
        await store.wait_for(data_id({"groupId": "2025-11-16T03:10:00.000"}), [94], timeout=0.1)


async def test_wait_for_group_appearing_later(store: RawStore) -> None:
    group = "2025-11-16T03:10:00.000"

    async def write_later() -> None:
        await asyncio.sleep(0.2)
        await asyncio.to_thread(write, store, "MC_O_20251115_000010", 94, group_id=group)

    writer = asyncio.create_task(write_later())
    found = await store.wait_for(data_id({"groupId": group}), [94], timeout=10, poll_interval=0.05)
    await writer
    assert found == {94: store.path_for("MC_O_20251115_000010", 94)}


def test_resolve_url(store: RawStore, tmp_path: pathlib.Path) -> None:
    path = write(store, OBSID, 94)
    assert store.resolve_url(path.as_uri()) == path.resolve()
    assert store.resolve_url(f"file://localhost{path}") == path.resolve()
    # Percent-encoding is decoded.
    assert store.resolve_url("file://" + str(path).replace("_", "%5F")) == path.resolve()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("file:///etc/passwd", "outside the raw store root"),
        ("file://{root}/LSSTCam/../../secret.fits", r"contains '\.\.'"),
        ("file://{root}/LSSTCam/%2e%2e/%2E%2E/secret.fits", r"contains '\.\.'"),
        ("s3://rubin-summit/LSSTCam/20251115/x.fits", "S3 is not configured"),
        ("https://example.org/x.fits", "scheme 'https'"),
        ("{root}/LSSTCam/x.fits", "no scheme"),
        ("file://otherhost{root}/x.fits", "host 'otherhost'"),
        ("file://{root}/x.fits?x=1", "query"),
        ("", "non-empty"),
    ],
)
def test_resolve_url_rejects(store: RawStore, url: str, match: str) -> None:
    with pytest.raises(RawUrlError, match=match):
        store.resolve_url(url.format(root=store.root))


def test_resolve_url_rejects_symlink_out_of_root(store: RawStore, tmp_path: pathlib.Path) -> None:
    outside = tmp_path / "outside.fits"
    outside.write_bytes(b"x" * 2880)
    link = store.root / "LSSTCam" / "link.fits"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    with pytest.raises(RawUrlError, match="outside the raw store root"):
        store.resolve_url(link.as_uri())
    with pytest.raises(RawUrlError, match="outside"):
        store.resolve_url(pathlib.Path(str(store.root) + "-sibling/x.fits").as_uri())
