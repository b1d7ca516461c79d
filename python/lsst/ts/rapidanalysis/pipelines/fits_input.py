"""Reading input FITS files safely: every way a file can be unusable becomes a clear `PipelineError`.

Shared by the pipelines that read camera raws or images (``image_stats``, ``sfm``,
``spectrum_examiner``, ``mount_torque``). Files are read without memory mapping: a file truncated
while mapped would kill the worker with SIGBUS.
"""

from __future__ import annotations

import pathlib
import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.io import fits

from ..data.camera import Instrument, get_instrument, instrument_of_instrume
from ..data.fits_header import HeaderError, primary_header
from .base import ExitCode, PipelineError

__all__ = [
    "AmpError",
    "amp_extname",
    "sensor_make",
    "CAM_CODES",
    "amp_pixels",
    "identify_detector",
    "instrument_of",
    "is_image",
    "open_fits",
    "read_data",
    "read_primary_header",
    "release",
]

_SEGMENT = re.compile(r"^\s*segment(\d\d)\s*$", re.IGNORECASE)

#: Instrument by camera code (``CAMCODE``, the first two letters of an obsid).
CAM_CODES = {"AT": "LATISS", "CC": "LSSTComCam", "MC": "LSSTCam"}


def amp_extname(header: Mapping[str, Any]) -> str:
    """An amp HDU's EXTNAME as the camera spells it (``Segment10``), matched as FITS readers do.

    FITS EXTNAMEs compare case-insensitively and without trailing blanks: ``SEGMENT10`` and
    ``segment10 `` are ``Segment10``. Anything else is returned stripped, as it is.
    """
    name = str(header.get("EXTNAME", "?"))
    match = _SEGMENT.match(name)
    return f"Segment{match.group(1)}" if match else name.strip()


def open_fits(path: pathlib.Path) -> fits.HDUList:
    """Open a FITS file with every header read; `PipelineError` (exit code 3, naming the file) if unusable."""
    if not path.exists():
        raise PipelineError(f"input file {path} does not exist", exit_code=ExitCode.NO_INPUT)
    if not path.is_file():
        raise PipelineError(f"input {path} is not a file", exit_code=ExitCode.NO_INPUT)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # memmap=False: a file truncated while mapped would kill the worker with SIGBUS.
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
    except Exception as e:
        raise PipelineError(
            f"{path}: not a readable FITS file ({type(e).__name__}: {e})", exit_code=ExitCode.NO_INPUT
        ) from None
    truncated = [str(w.message) for w in caught if "truncated" in str(w.message)]
    if truncated:
        hdul.close()
        raise PipelineError(f"{path}: FITS file is truncated ({truncated[0]})", exit_code=ExitCode.NO_INPUT)
    if len(hdul) == 0:
        hdul.close()
        raise PipelineError(f"{path}: FITS file has no HDUs", exit_code=ExitCode.NO_INPUT)
    return hdul


def read_primary_header(path: pathlib.Path) -> fits.Header:
    """The primary header alone (`lsst.ts.rapidanalysis.data.fits_header`); `PipelineError` (exit
    code 3, naming the file) if unreadable.

    What needs the amp HDUs too opens the file with `open_fits` and takes ``hdul[0].header``.
    """
    try:
        return primary_header(path)
    except HeaderError as e:
        raise PipelineError(str(e), exit_code=ExitCode.NO_INPUT) from None


def read_data(hdu: Any) -> np.ndarray | None:
    """An HDU's pixels (astropy's warnings about scaling and the like silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hdu.data


class AmpError(Exception):
    """One amplifier cannot be used (flagged by the caller; its pixels are left out)."""


def amp_pixels(hdu: Any) -> np.ndarray:
    """An amplifier HDU's 2-D pixels; `AmpError` saying why if they cannot be read."""
    try:
        pixels = read_data(hdu)
    except Exception as e:
        raise AmpError(f"cannot read the pixels ({type(e).__name__}: {e})") from None
    if pixels is None or pixels.ndim != 2:
        raise AmpError("has no 2-D pixel data")
    return pixels


def release(hdu: Any) -> None:
    """Let go of an HDU's pixels (astropy keeps them until the file is closed otherwise)."""
    try:
        del hdu.data
    except Exception:  # nothing loaded, or an HDU type that does not allow it
        pass


def is_image(hdu: Any) -> bool:
    """Whether an HDU holds an image (plain or tile-compressed)."""
    return isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU)


def instrument_of(header: fits.Header) -> Instrument | None:
    """The instrument named by INSTRUME (``LSST_ATISS``, ``lsstCam``, ``COMCAM``, ...), else by CAMCODE or OBSID."""
    instrument = instrument_of_instrume(header.get("INSTRUME"))
    if instrument is not None:
        return instrument
    for code in (header.get("CAMCODE"), str(header.get("OBSID", ""))[:2]):
        if isinstance(code, str) and code in CAM_CODES:
            return get_instrument(CAM_CODES[code])
    return None


def sensor_make(header: Mapping[str, Any]) -> str:
    """``E2V`` or ``ITL`` from ``CCD_MANU``, else "" (``CCD_TYPE`` holds the sensor model, e.g. 3800C)."""
    make = str(header.get("CCD_MANU", "") or "").strip().upper()
    return make if make in ("E2V", "ITL") else ""


def identify_detector(header: fits.Header) -> tuple[int, str, str | None, list[str]]:
    """(detector id, detector name, physical type, flags) from RAFTBAY/CCDSLOT; id 0 if unknown."""
    raft, slot = header.get("RAFTBAY"), header.get("CCDSLOT")
    instrument = instrument_of(header)
    if instrument is not None and instrument.name == "LATISS":
        detector = instrument.detectors[0]
        return detector.id, detector.name, detector.physical_type, []
    if not (isinstance(raft, str) and isinstance(slot, str)):
        return 0, "", None, []
    name = f"{raft.strip()}_{slot.strip()}"
    for inst in (instrument, get_instrument("LSSTCam")) if instrument is not None else (get_instrument("LSSTCam"),):
        known = inst.by_name.get(name)
        if known is not None:
            return known.id, known.name, known.physical_type, []
    return 0, name, None, [f"detector {name} is not known; reported as detector 0"]
