"""Reading a FITS file's primary header alone: the one way the package does it.

About 1 ms for a raw, against 14 ms (65 ms compressed) for opening every HDU's header: for deciding
what an image is on the way from endReadout to its first job, a group id, an exposure window.
What needs the amp HDUs too opens the whole file (`lsst.ts.rapidanalysis.pipelines.fits_input`).
"""

from __future__ import annotations

import pathlib
import warnings

from astropy.io import fits

__all__ = ["HeaderError", "primary_header"]


class HeaderError(ValueError):
    """A file's primary header cannot be read (the message names the file and why)."""


def primary_header(path: pathlib.Path | str) -> fits.Header:
    """The primary header of ``path``; `HeaderError` naming the file if it cannot be read.

    Astropy's warnings about non-standard cards are silenced (raws have some; they would flood
    the log).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # memmap=False: a file truncated while mapped would kill the worker with SIGBUS;
            # lazy_load_hdus: only the primary header is read, not the other HDUs or any pixels.
            with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
                return hdul[0].header
    except Exception as e:
        raise HeaderError(f"{path}: cannot read the primary header ({type(e).__name__}: {e})") from None
