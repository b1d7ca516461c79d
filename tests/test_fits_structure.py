"""count_whole_hdus and scan_fits against astropy on real files: whole, compressed, truncated,
garbage, and the real camera raws (primary, 16 amps, 2 tables)."""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
import pytest
from astropy.io import fits

from fits_factory import write_raw
from lsst.ts.rapidanalysis.data.fits_structure import FITS_BLOCK, count_whole_hdus, scan_fits
from real_raws import unpacked_real_raw


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


@pytest.mark.parametrize("compress", [False, True])
def test_scan_counts_amp_images_not_tables(tmp_path: pathlib.Path, compress: bool) -> None:
    """16 amps (plain or tile-compressed) of the 18 extensions; the tables after them are not images."""
    path = write_raw(tmp_path / "raw.fits", scale=0.05, compress=compress)
    structure = scan_fits(path)
    assert structure.whole and structure.n_hdus == count_whole_hdus(path)
    assert structure.n_images == 16 and structure.size == path.stat().st_size
    # Cut mid-way through the 9th amp's data: 8 amps whole, the file not.
    with fits.open(path) as hdul:
        ninth = hdul.fileinfo(9)
    path.write_bytes(path.read_bytes()[: ninth["datLoc"] + FITS_BLOCK])
    partial = scan_fits(path)
    assert (partial.n_hdus, partial.n_images, partial.whole) == (9, 8, False)


def test_scan_real_raw(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A real raw: primary, 16 int32 amps, 2 binary tables (obs_lsst's LSSTCam R10_S22)."""
    path = unpacked_real_raw("LSSTCam", tmp_path_factory.mktemp("real"))
    structure = scan_fits(path)
    assert (structure.n_hdus, structure.n_images, structure.whole) == (19, 16, True)
    assert structure.n_hdus == astropy_count(path)
