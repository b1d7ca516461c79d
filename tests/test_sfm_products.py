"""sfm's products are named per exposure: two exposures of one detector in one run keep both."""

from __future__ import annotations

import json
import pathlib

import pytest
from astropy.io import fits

from fits_factory import write_raw
from lsst.ts.rapidanalysis.cli import main


def test_two_exposures_of_one_detector_give_two_binned_images(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture
) -> None:
    """``rapid_analysis run sfm a.fits b.fits``, both R22_S11: one binned post-ISR image each, named by obsid."""
    obsids = ["MC_O_20251115_000042", "MC_O_20251115_000043"]
    raws = [
        write_raw(
            tmp_path / f"{obsid}_R22_S11.fits",
            obsid=obsid,
            imgtype="OBJECT",
            exptime=30.0,
            signal=200.0 * (k + 1),  # told apart by their sky
            seed=k,
            scale=0.1,
        )
        for k, obsid in enumerate(obsids)
    ]
    out_dir = tmp_path / "products"
    assert main(["run", "sfm", *map(str, raws), "--json", "--output-dir", str(out_dir)]) == 0
    result = json.loads(capsys.readouterr().out)
    binned = [pathlib.Path(d["binnedImage"]) for d in result["summary"]["detectors"]]
    assert [p.name for p in binned] == [f"sfm_postisr_binned_{obsid}_094.fits" for obsid in obsids]
    assert sorted(out_dir.iterdir()) == sorted(binned)
    levels = []
    for path, obsid in zip(binned, obsids, strict=True):
        with fits.open(path) as hdul:
            assert hdul[0].header["OBSID"] == obsid and hdul[0].header["DETECTOR"] == 94
            levels.append(float(abs(hdul[0].data).mean()))
    assert levels[1] > levels[0]  # each holds its own exposure's pixels


def test_binned_image_without_obsid_is_named_by_its_file(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    """No OBSID card: the input's file name stands in for it (still one product per input)."""
    raws = []
    for k, name in enumerate(("first", "second")):
        path = write_raw(tmp_path / f"{name}.fits", imgtype="OBJECT", exptime=30.0, signal=200.0, seed=k, scale=0.1)
        with fits.open(path, mode="update") as hdul:
            del hdul[0].header["OBSID"]
        raws.append(path)
    out_dir = tmp_path / "products"
    assert main(["run", "sfm", *map(str, raws), "--json", "--output-dir", str(out_dir)]) == 0
    result = json.loads(capsys.readouterr().out)
    names = [pathlib.Path(d["binnedImage"]).name for d in result["summary"]["detectors"]]
    assert names == ["sfm_postisr_binned_first_094.fits", "sfm_postisr_binned_second_094.fits"]
