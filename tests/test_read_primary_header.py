"""`fits_input.read_primary_header`: the one way a primary header is read without the rest of the file."""

from __future__ import annotations

import pathlib
import re
import warnings

import numpy as np
import pytest
from astropy.io import fits

from lsst.ts.rapidanalysis.pipelines.base import ExitCode, PipelineError
from lsst.ts.rapidanalysis.pipelines.fits_input import read_primary_header


def write(path: pathlib.Path) -> pathlib.Path:
    primary = fits.PrimaryHDU()
    primary.header["OBSID"] = "MC_O_20250609_000578"
    primary.header["IMGTYPE"] = "OBJECT"
    amp = fits.ImageHDU(np.zeros((64, 64), dtype=np.int32), name="Segment10")
    fits.HDUList([primary, amp]).writeto(path)
    return path


def test_reads_the_primary_header(tmp_path: pathlib.Path) -> None:
    header = read_primary_header(write(tmp_path / "raw.fits"))
    assert header["OBSID"] == "MC_O_20250609_000578" and header["IMGTYPE"] == "OBJECT"


def test_truncated_pixels_still_give_the_header(tmp_path: pathlib.Path) -> None:
    """Only the primary header is read: a file cut in its pixels (being written) has one."""
    path = write(tmp_path / "raw.fits")
    path.write_bytes(path.read_bytes()[: 2880 * 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and says nothing about the rest
        assert read_primary_header(path)["OBSID"] == "MC_O_20250609_000578"


@pytest.mark.parametrize("content", [None, b"not a FITS file " * 180, b""])
def test_unreadable_is_no_input_naming_the_file(tmp_path: pathlib.Path, content: bytes | None) -> None:
    path = tmp_path / "raw.fits"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PipelineError, match=re.escape(f"{path}: cannot read the primary header (")) as info:
        read_primary_header(path)
    assert info.value.exit_code == ExitCode.NO_INPUT
