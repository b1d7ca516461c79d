"""The template-based raw stream (``sim/stream.py``): atomic files, per-exposure headers, throughput."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import re
import shutil
import subprocess
import threading

import numpy as np
import pytest
from astropy.io import fits

from lsst.ts.rapidanalysis.data.amp_geometry import get_geometry
from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.data.data_id import DataId
from lsst.ts.rapidanalysis.data.raw_store import RawStore
from lsst.ts.rapidanalysis.sim.simulate_cli import add_simulate_arguments
from lsst.ts.rapidanalysis.sim.stream import TINY_SCALE, StreamWriter, main, make_obsid
from lsst.ts.rapidanalysis.sim.truth import read_truth

CAMERA = get_instrument("LSSTCam")
RAW_NAME = re.compile(r"^MC_O_\d{8}_\d{6}_R\d\d_S[0-9GW]\d\.fits(\.fz)?$")


def test_make_obsid() -> None:
    assert make_obsid("LSSTCam", 20251115, 226) == "MC_O_20251115_000226"
    assert make_obsid(get_instrument("LATISS"), "20240101", 3, controller="C") == "AT_C_20240101_000003"
    with pytest.raises(ValueError, match="controller"):
        make_obsid("LSSTCam", 20251115, 1, controller="X")
    with pytest.raises(ValueError, match="YYYYMMDD"):
        make_obsid("LSSTCam", 2025111, 1)


def test_two_exposures_headers_and_truth(tmp_path: pathlib.Path) -> None:
    detectors = [94, 95, 0, 191]
    with StreamWriter(CAMERA, tmp_path, detectors=detectors, n_templates=2, scale=0.1, seed=3) as writer:
        assert writer.physical_types == ("E2V", "ITL", "ITL_WF")
        first = writer.write_exposure(
            make_obsid(CAMERA, 20251115, 11), exp_time=15.0, group_id="2025-11-15T23:00:00.000"
        )
        print("stream (scaled) throughput:", writer.throughput())
        second = writer.write_exposure(
            make_obsid(CAMERA, 20251115, 12),
            exp_time=15.0,
            img_type="ENGTEST",
            tai_start=1763247700.0,
            pointing={"ra": 30.0, "dec": -60.0, "rot_pa": 10.0},
            extra_headers={"OBSANNOT": "second"},
        )
        bias = writer.write_exposure(make_obsid(CAMERA, 20251115, 13), exp_time=0.0, img_type="BIAS")
        totals = writer.throughput(cumulative=True)
    assert totals["exposures"] == 3 and totals["files"] == 12 and totals["mb_per_s"] > 0
    assert set(first) == set(second) == set(detectors)
    headers = {}
    for paths, seq in ((first, 11), (second, 12), (bias, 13)):
        for detector_id, path in paths.items():
            detector = CAMERA.detector(detector_id)
            assert RAW_NAME.match(path.name) and path.parent.name == make_obsid(CAMERA, 20251115, seq)
            with fits.open(path) as hdul:
                h = hdul[0].header
                assert h["OBSID"] == path.parent.name and h["SEQNUM"] == seq and h["DAYOBS"] == "20251115"
                assert f"{h['RAFTBAY']}_{h['CCDSLOT']}" == detector.name and path.name.startswith(h["OBSID"])
                assert hdul[1].header["DETSIZE"] == get_geometry(detector.physical_type, 0.1).detsize
                assert h["FILENAME"] == path.name and "CTYPE1" not in h  # LSSTCam raws carry no WCS
                geom = get_geometry(detector.physical_type, 0.1)
                assert [x.header["DETSEC"] for x in hdul[1 : 1 + len(geom.amps)]] == [a.detsec for a in geom.amps]
                assert hdul[1].data.shape == geom.raw_shape
                headers[(seq, detector_id)] = h.copy()
            truth = read_truth(path)
            assert truth["obsid"] == h["OBSID"] and truth["from_template"] is True
            assert truth["template"]["template_index"] == h["SIMTEMPL"]
            assert truth["template"]["detector"]["physical_type"] == detector.physical_type
    a, b = headers[(11, 94)], headers[(12, 94)]
    assert a["GROUPID"] == "2025-11-15T23:00:00.000" and b["GROUPID"] == b["DATE-BEG"]
    assert (a["IMGTYPE"], b["IMGTYPE"], headers[(13, 94)]["IMGTYPE"]) == ("OBJECT", "ENGTEST", "BIAS")
    assert a["DATE-BEG"] != b["DATE-BEG"] and b["MJD-BEG"] == pytest.approx(1763247700.0 / 86400 + 40587)
    assert (b["RA"], b["DEC"], b["ROTPA"], b["OBSANNOT"]) == (30.0, -60.0, 10.0, "second")
    assert a["RA"] != b["RA"] and headers[(13, 94)]["EXPTIME"] == 0.0
    # Same exposure, different detectors: same exposure keys, own identity cards.
    assert headers[(11, 94)]["DATE-BEG"] == headers[(11, 0)]["DATE-BEG"]
    assert headers[(11, 94)]["IMAGETAG"] != headers[(11, 95)]["IMAGETAG"]
    assert headers[(11, 95)]["FILENAME"] == "MC_O_20251115_000011_R22_S12.fits"
    # The pixels are the templates' (rotating between exposures); a bias template holds no stars.
    with fits.open(first[94]) as x, fits.open(second[95]) as y:
        np.testing.assert_array_equal(x[3].data, y[3].data)  # (94 + 0) % 2 == (95 + 1) % 2
    with fits.open(bias[94]) as hdul:
        assert np.std(hdul[3].data[:100, 10:60]) < 10
    # The hand-made primary headers are valid FITS (fitsverify, when installed: Debian package fitsverify).
    if shutil.which("fitsverify"):
        for path in (first[94], second[191], bias[0]):
            out = subprocess.run(["fitsverify", "-q", str(path)], capture_output=True, text=True, timeout=60)
            assert "verification OK" in out.stdout, out.stdout
    # Nothing half-written or temporary is left; the raw store sees complete files.
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    store = RawStore(tmp_path, CAMERA)
    found = store.find(DataId("LSSTCam", obsid=make_obsid(CAMERA, 20251115, 12)))
    assert set(found) == set(detectors) and all(store.is_complete(p) for p in found.values())


def test_full_size_atomic_under_a_watcher(tmp_path: pathlib.Path) -> None:
    """A watcher polling the directory never sees a raw whose size is not final."""
    stop = threading.Event()
    seen_sizes: dict[str, set[int]] = {}

    def watch() -> None:
        while not stop.is_set():
            for directory, _, files in os.walk(tmp_path):
                for name in files:
                    if RAW_NAME.match(name):
                        try:
                            size = os.stat(os.path.join(directory, name)).st_size
                        except FileNotFoundError:
                            continue
                        seen_sizes.setdefault(name, set()).add(size)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with StreamWriter(CAMERA, tmp_path, detectors=[90, 91, 92], n_templates=1, seed=1, n_threads=3) as writer:
            for seq in (1, 2):
                paths = writer.write_exposure(make_obsid(CAMERA, 20251116, seq), exp_time=15.0)
                stats = writer.throughput()
                print(f"stream, 3 full-size E2V raws: {stats['mb_per_s']:.0f} MB/s")  # printed, not asserted
    finally:
        stop.set()
        watcher.join()
    sizes = {p.stat().st_size for p in paths.values()}
    assert len(sizes) == 1 and sizes.pop() > 75e6
    assert seen_sizes and all(len(s) == 1 for s in seen_sizes.values()), seen_sizes
    with fits.open(paths[91]) as hdul:
        assert hdul[0].header["OBSID"] == "MC_O_20251116_000002" and hdul[16].data.shape == (2048, 576)
    truth = read_truth(paths[91])
    assert len(truth["template"]["stars"]["x"]) > 100


def test_compressed_stream(tmp_path: pathlib.Path) -> None:
    with StreamWriter("LATISS", tmp_path, n_templates=1, compress=True, scale=0.1, eager=False) as writer:
        writer.prepare("OBJECT", 30.0)
        paths = writer.write_exposure("AT_O_20251115_000001", exp_time=30.0)
    (path,) = paths.values()
    assert path.name == "AT_O_20251115_000001_R00_S00.fits.fz"  # as LATISS's camera names it since 2024
    with fits.open(path) as hdul:
        assert isinstance(hdul[1], fits.CompImageHDU) and hdul[1].data.dtype.kind == "i"
        assert hdul[0].header["GRATING"] == "empty" and hdul[0].header["EXPTIME"] == 30.0
    assert RawStore(tmp_path, "LATISS").existing_path("AT_O_20251115_000001", 0) == path


async def test_raw_store_waits_for_streamed_files(tmp_path: pathlib.Path) -> None:
    writer = StreamWriter(CAMERA, tmp_path, detectors=[94, 95], n_templates=1, scale=0.1)
    store = RawStore(tmp_path, CAMERA)
    obsid = make_obsid(CAMERA, 20251117, 5)
    try:
        waiting = asyncio.create_task(store.wait_for(DataId("LSSTCam", obsid=obsid), [94, 95], timeout=10))
        await asyncio.sleep(0.3)
        written = await asyncio.to_thread(writer.write_exposure, obsid, exp_time=15.0)
        found = await waiting
    finally:
        writer.close()
    assert found == written


def test_throughput_entry_point(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "--instrument",
                "LSSTComCam",
                "--visits",
                "2",
                "--scale",
                "0.05",
                "--n-templates",
                "1",
                "--root",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    print(out)
    assert "visit 2" in out and "MB/s" in out and "9 files" in out
    assert not any(p.suffix == ".fits" for p in tmp_path.rglob("*"))  # deleted after each visit
    with StreamWriter("LATISS", tmp_path, eager=False) as idle:
        assert json.dumps(idle.throughput())  # nothing written yet


def test_tiny_raws_are_real_raws_of_few_pixels(tmp_path: pathlib.Path) -> None:
    """TINY_SCALE: every amp HDU and card, the camera's names; the raw store takes them as whole."""
    detectors = [d.id for d in CAMERA.science_detectors]
    obsid = make_obsid(CAMERA, 20251115, 21)
    with StreamWriter(CAMERA, tmp_path / "tiny", detectors=detectors, n_templates=1, scale=TINY_SCALE) as tiny:
        paths = tiny.write_exposure(obsid, exp_time=30.0)
    assert sorted(paths) == detectors and all(RAW_NAME.match(p.name) for p in paths.values())
    size = sum(p.stat().st_size for p in paths.values())
    assert size < 70e6, size  # 14.3 GB at full size
    found = asyncio.run(
        RawStore(tmp_path / "tiny", CAMERA).wait_for(DataId("LSSTCam", obsid=obsid), detectors, timeout=5)
    )
    assert found == paths
    with StreamWriter(CAMERA, tmp_path / "full", detectors=[94, 0], n_templates=1, scale=0.1) as full:
        scaled = full.write_exposure(obsid, exp_time=30.0)
    for detector in (94, 0):
        with fits.open(paths[detector]) as small, fits.open(scaled[detector]) as big:
            assert [h.name for h in small] == [h.name for h in big]
            assert list(small[0].header) == list(big[0].header)
            geometry = get_geometry(CAMERA.detector(detector).physical_type, TINY_SCALE)
            for hdu, amp in zip(small[1:-2], geometry.amps, strict=True):
                assert list(hdu.header) == list(big[hdu.name].header)
                assert hdu.data.shape == amp.raw_shape
                assert hdu.header["DATASEC"] == amp.datasec
    main(["--tiny", "--visits", "1", "--n-templates", "1", "--root", str(tmp_path / "cli")])


def test_simulate_night_takes_tiny(tmp_path: pathlib.Path) -> None:
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    assert parser.parse_args(["night", str(tmp_path), "--tiny"]).tiny
    assert not parser.parse_args(["night", str(tmp_path)]).tiny
