"""raw_file_names and parse_raw_file_name: every file name the camera gives a detector's raw, and back."""

from __future__ import annotations

import pytest

from lsst.ts.rapidanalysis.data import get_instrument
from lsst.ts.rapidanalysis.data.raw_names import RawFileName, parse_raw_file_name, raw_file_names


def test_latiss_names() -> None:
    """2024 on (RAFTBAY R00, CCDSLOT S00) first, then 2020-2022 (no suffix), then the DM stack's RXX_S00."""
    names = raw_file_names("LATISS", "AT_O_20240624_000106", 0)
    assert names == (
        "AT_O_20240624_000106_R00_S00.fits",
        "AT_O_20240624_000106_R00_S00.fits.fz",
        "AT_O_20240624_000106.fits",
        "AT_O_20240624_000106.fits.fz",
        "AT_O_20240624_000106_RXX_S00.fits",
        "AT_O_20240624_000106_RXX_S00.fits.fz",
    )
    assert raw_file_names("LATISS", "AT_O_20220405_000348", 0, suffixes=(".fits.fz",))[0] == (
        "AT_O_20220405_000348_R00_S00.fits.fz"
    )
    for preference, name in enumerate(names):
        assert parse_raw_file_name("LATISS", name) == RawFileName("AT_O_20240624_000106", 0, preference)


@pytest.mark.parametrize(
    ("instrument", "obsid", "detector_id", "name"),
    [
        ("LSSTCam", "MC_O_20250609_000578", 1, "MC_O_20250609_000578_R01_S01.fits"),
        ("LSSTCam", "MC_O_20250609_000578", 191, "MC_O_20250609_000578_R00_SW0.fits"),
        ("LSSTComCam", "CC_O_20241120_000001", 4, "CC_O_20241120_000001_R22_S11.fits"),
    ],
)
def test_lsstcam_and_comcam_names(instrument: str, obsid: str, detector_id: int, name: str) -> None:
    assert raw_file_names(instrument, obsid, detector_id) == (name, name + ".fz")
    assert raw_file_names(get_instrument(instrument), obsid, detector_id)[0] == name
    assert parse_raw_file_name(instrument, name) == RawFileName(obsid, detector_id, 0)
    assert parse_raw_file_name(instrument, name + ".fz") == RawFileName(obsid, detector_id, 1)


@pytest.mark.parametrize(
    ("instrument", "name"),
    [
        ("LATISS", "AT_O_20240624_000106_R22_S11.fits"),  # no such LATISS detector
        ("LATISS", "MC_O_20240624_000106_R00_S00.fits"),  # another camera's obsid
        ("LSSTCam", "MC_O_20250609_000578.fits"),  # no detector: only LATISS names files so
        ("LSSTCam", "MC_O_20250609_000578_R01_S01.fits.truth.json"),
        ("LSSTCam", "MC_O_20250609_000578_R01_S01.fits.tmp"),
        ("LSSTCam", "MC_O_20250609_000578_R99_S01.fits"),
        ("LSSTComCam", "CC_O_20241120_000001_R01_S11.fits"),  # ComCam is raft R22 alone
        ("LATISS", "notes.txt"),
        ("LATISS", ".fits"),
    ],
)
def test_names_that_are_no_raw_of_the_instrument(instrument: str, name: str) -> None:
    assert parse_raw_file_name(instrument, name) is None


def test_unknown_detector() -> None:
    with pytest.raises(ValueError, match="LATISS has no detector 1"):
        raw_file_names("LATISS", "AT_O_20240624_000106", 1)
