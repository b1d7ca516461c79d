"""Real camera raws for tests: the obs_lsst examples in ``../shared/data/real-formats/raw``.

They are real files from the camera software with their pixels zeroed (gzip-compressed, 75.7 MB
each unpacked), copied from lsst/obs_lsst (GPL-3.0, see ``real-formats/README.md``). They are not
shipped with this package: tests read them from beside the repository and skip, saying why, when
they are not there.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import shutil

import pytest

__all__ = ["REAL_FORMATS", "REAL_RAWS", "real_raw", "unpacked_real_raw", "place"]

#: ``../shared/data/real-formats`` relative to the repository root.
REAL_FORMATS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-formats"
#: The real raws by what they are (all have a primary, 16 amp HDUs and 2 binary tables).
REAL_RAWS = {
    "LATISS": "3018092000065-det000.fits.gz",  # LATISS 2018, OBSID AT_C_20180920_000065
    "LSSTCam": "3019032200002-R10-S22-det035.fits.gz",  # LSSTCam 2019 FLAT, R10_S22
    "LSSTComCam": "3019053000001-R22-S00-det000.fits.gz",  # ComCam 2019 BIAS, R22_S00
}


def real_raw(instrument: str) -> pathlib.Path:
    """The gzip-compressed real raw of ``instrument``; skips the test if it is not there."""
    path = REAL_FORMATS / "raw" / REAL_RAWS[instrument]
    if not path.is_file():
        pytest.skip(f"real raw {path} is not present (the real-formats data lives beside the repository)")
    return path


def unpacked_real_raw(instrument: str, directory: pathlib.Path) -> pathlib.Path:
    """The real raw of ``instrument`` unpacked into ``directory`` (once: later calls reuse it)."""
    target = directory / REAL_RAWS[instrument].removesuffix(".gz")
    if not target.exists():
        directory.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        with gzip.open(real_raw(instrument), "rb") as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
        partial.rename(target)
    return target


def place(source: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """Put ``source`` at ``target``, making its directory: a hard link when possible (75 MB copies are
    slow), so never write to ``target`` in place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target
