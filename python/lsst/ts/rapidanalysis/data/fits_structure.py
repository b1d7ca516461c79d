"""Whether a FITS file is whole: its HDUs counted from the header blocks alone, without parsing them.

`count_whole_hdus` is on the way from a camera's endReadout to the first job: the raw store asks
it of every detector's raw before the job may run. ``astropy.io.fits.open`` answers the same
question by parsing every card of every header (13 ms for a 17-HDU raw, and nine detectors'
checks, GIL-bound, queue behind one another); reading only the ``END`` card and the few keywords
that size each HDU's data (FITS 4.0 §4.4.1) takes a small fraction of that. Anything this walker
does not understand counts as not whole, so the raw store falls back to waiting, never to
reading a partial file.
"""

from __future__ import annotations

import math
import os

__all__ = ["FITS_BLOCK", "count_whole_hdus"]

#: FITS files are made of 2880-byte blocks.
FITS_BLOCK = 2880
_CARD = 80
#: Keywords that size an HDU's data.
_SIZE_KEYS = frozenset({b"BITPIX", b"NAXIS", b"PCOUNT", b"GCOUNT"})
#: Most header blocks one HDU may have (a guard against a file of garbage without END).
_MAX_HEADER_BLOCKS = 1000


def _int_value(card: bytes) -> int | None:
    """The integer value of a ``KEYWORD = value / comment`` card, or None."""
    if card[8:10] != b"= ":
        return None
    text = card[10:].split(b"/", 1)[0].strip()
    try:
        return int(text)
    except ValueError:
        return None


def count_whole_hdus(path: str | os.PathLike[str]) -> int:
    """HDUs of a file made of whole FITS blocks in which every HDU's header and data are present.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    n_hdus : `int`
        The number of HDUs; 0 if the file is missing, empty, not whole blocks, not FITS, or if a
        header has no ``END`` or promises more data than the file holds (still being written).
    """
    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0 or size % FITS_BLOCK:
                return 0
            offset, n_hdus = 0, 0
            while offset < size:
                keys: dict[bytes, int] = {}
                axes: dict[int, int] = {}
                first: bytes | None = None
                ended = False
                for _ in range(_MAX_HEADER_BLOCKS):
                    block = os.pread(f.fileno(), FITS_BLOCK, offset)
                    if len(block) < FITS_BLOCK:
                        return 0
                    offset += FITS_BLOCK
                    for start in range(0, FITS_BLOCK, _CARD):
                        card = block[start : start + _CARD]
                        key = card[:8].rstrip()
                        if first is None:
                            first = key
                        if key == b"END":
                            ended = True
                            break
                        if key in _SIZE_KEYS:
                            value = _int_value(card)
                            if value is not None:
                                keys[key] = value
                        elif key.startswith(b"NAXIS") and key[5:].isdigit():
                            value = _int_value(card)
                            if value is not None:
                                axes[int(key[5:])] = value
                    if ended:
                        break
                expected_first = b"SIMPLE" if n_hdus == 0 else b"XTENSION"
                if not ended or first != expected_first or b"BITPIX" not in keys:
                    return 0
                naxis = keys.get(b"NAXIS", 0)
                if naxis:
                    if any(axes.get(i) is None for i in range(1, naxis + 1)):
                        return 0
                    n_values = math.prod(axes[i] for i in range(1, naxis + 1))
                    n_bytes = abs(keys[b"BITPIX"]) // 8 * keys.get(b"GCOUNT", 1) * (keys.get(b"PCOUNT", 0) + n_values)
                else:
                    n_bytes = 0
                offset += -(-n_bytes // FITS_BLOCK) * FITS_BLOCK
                if offset > size:
                    return 0  # the data are not all there yet
                n_hdus += 1
            return n_hdus
    except OSError:
        return 0
