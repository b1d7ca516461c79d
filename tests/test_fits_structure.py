"""count_whole_hdus against astropy on real files: whole, compressed, truncated, garbage."""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
import pytest
from astropy.io import fits

from fits_factory import write_raw
from lsst.ts.rapidanalysis.data.fits_structure import FITS_BLOCK, count_whole_hdus


def astropy_count(path: pathlib.Path) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
            n = len(hdul)
    return 0 if any("truncated" in str(w.message) for w in caught) else n


@pytest.mark.parametrize("compress", [False, True])
def test_whole_raw_counts_as_astropy_does(tmp_path: pathlib.Path, compress: bool) -> None:
    path = write_raw(tmp_path / "raw.fits", scale=0.05, compress=compress)
    n_hdus = count_whole_hdus(path)
    assert n_hdus == astropy_count(path) and n_hdus >= 17  # primary, 16 amps (and what else the camera writes)


def test_other_layouts(tmp_path: pathlib.Path) -> None:
    """Header-only primary, a float image with long headers, and a binary table with a heap."""
    primary = fits.PrimaryHDU()
    primary.header.update({f"KEY{i}": i for i in range(100)})  # several header blocks
    image = fits.ImageHDU(np.zeros((37, 53), dtype=np.float64))
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name="v", format="PJ()", array=np.array([np.arange(3), np.arange(70)], dtype=object))]
    )
    path = tmp_path / "mixed.fits"
    fits.HDUList([primary, image, table]).writeto(path)
    assert count_whole_hdus(path) == astropy_count(path) == 3


def test_partial_files_are_not_whole(tmp_path: pathlib.Path) -> None:
    full = write_raw(tmp_path / "raw.fits", scale=0.05)
    n_full = count_whole_hdus(full)
    content = full.read_bytes()
    partial = tmp_path / "partial.fits"
    # Cut at every 10th block boundary: whole blocks, but the last HDU's data (or header) is short.
    for n_blocks in range(1, len(content) // FITS_BLOCK, 10):
        partial.write_bytes(content[: n_blocks * FITS_BLOCK])
        counted = count_whole_hdus(partial)
        assert counted < n_full
        assert counted == astropy_count(partial) or counted == 0, n_blocks
    partial.write_bytes(content[:-100])  # not whole blocks
    assert count_whole_hdus(partial) == 0


def test_garbage_and_missing(tmp_path: pathlib.Path) -> None:
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"not a FITS file " * 180)  # exactly one block, no SIMPLE, no END
    assert count_whole_hdus(garbage) == 0
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    assert count_whole_hdus(empty) == 0
    assert count_whole_hdus(tmp_path / "missing.fits") == 0
    no_end = tmp_path / "no_end.fits"
    no_end.write_bytes(b"SIMPLE  =                    T".ljust(80) + b" " * (FITS_BLOCK - 80))
    assert count_whole_hdus(no_end) == 0
