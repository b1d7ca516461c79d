"""RawStore: paths, look-up by obsid and group id, waiting for files being written, URLs."""

from __future__ import annotations

import asyncio
import json
import pathlib
import time

import pytest

from fits_factory import write_raw
from lsst.ts.rapidanalysis.data import (
    DataId,
    MissingRawError,
    RawStore,
    RawUrlError,
    get_instrument,
    parse_data_id,
)

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
    assert latiss.path_for(obsid, 0) == tmp_path / "LATISS" / "20251115" / obsid / f"{obsid}_RXX_S00.fits"
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


async def test_wait_for_a_raw_short_of_amps_needs_a_stable_size(store: RawStore, tmp_path: pathlib.Path) -> None:
    """Primary and 8 of 16 amps, whole blocks: maybe still being written, so not taken at the first look."""
    from astropy.io import fits

    full = write_raw(tmp_path / "full.fits", obsid=OBSID, scale=SMALL)
    target = store.path_for(OBSID, 94)
    target.parent.mkdir(parents=True)
    with fits.open(full) as hdul:
        fits.HDUList([hdu.copy() for hdu in hdul[:9]]).writeto(target)
    assert store.is_complete(target)  # structurally sound so far
    with pytest.raises(MissingRawError):
        await store.wait_for(data_id({"obsid": OBSID}), [94], timeout=0, poll_interval=1.0)  # one look
    # Unchanged at the second look: taken (the ISR then reports the missing amps).
    found = await store.wait_for(data_id({"obsid": OBSID}), [94], timeout=5, poll_interval=0.1)
    assert found == {94: target}


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
