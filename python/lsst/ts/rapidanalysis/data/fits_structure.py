"""Whether a FITS file is whole: its HDUs counted from the header blocks alone, without parsing them.

`scan_fits` is on the way from a camera's endReadout to the first job: the raw store asks it of
every detector's raw before the job may run. ``astropy.io.fits.open`` answers the same question
by parsing every card of every header (13 ms for a 17-HDU raw, and nine detectors' checks,
GIL-bound, queue behind one another); reading only the ``END`` card and the few keywords that size
each HDU's data (FITS 4.0 §4.4.1) takes a small fraction of that. Anything this walker does not
understand ends the count there, so the raw store falls back to waiting, never to reading a
partial file.

A raw is a header-only primary HDU, one image HDU per amplifier (a tile-compressed one is a
``BINTABLE`` with ``ZIMAGE = T``) and, in real raws, tables after them (``REB_COND``,
``CONFIG_COND``): `FitsStructure.n_images` counts the image extensions that are whole, which is
how the raw store knows every amplifier is there.
"""

from __future__ import annotations

import dataclasses
import math
import os

__all__ = ["FITS_BLOCK", "FitsStructure", "scan_fits", "count_whole_hdus"]

#: FITS files are made of 2880-byte blocks.
FITS_BLOCK = 2880
_CARD = 80
#: Keywords that size an HDU's data.
_SIZE_KEYS = frozenset({b"BITPIX", b"NAXIS", b"PCOUNT", b"GCOUNT"})
#: Most header blocks one HDU may have (a guard against a file of garbage without END).
_MAX_HEADER_BLOCKS = 1000


@dataclasses.dataclass(frozen=True)
class FitsStructure:
    """What the header blocks of a FITS file say of it.

    Attributes
    ----------
    size : `int`
        File size in bytes (0 if missing).
    n_hdus : `int`
        HDUs from the start of the file whose header and data are all there.
    n_images : `int`
        Of those, the extensions that hold an image (``XTENSION = 'IMAGE'`` with pixels, or a
        tile-compressed image): a raw's amplifiers.
    whole : `bool`
        Whether the file is exactly those HDUs: whole blocks, nothing after the last whole HDU
        (a file still being written, or with a header this walker cannot read, is not).
    """

    size: int
    n_hdus: int
    n_images: int
    whole: bool


_MISSING = FitsStructure(size=0, n_hdus=0, n_images=0, whole=False)


def _int_value(card: bytes) -> int | None:
    """The integer value of a ``KEYWORD = value / comment`` card, or None."""
    if card[8:10] != b"= ":
        return None
    text = card[10:].split(b"/", 1)[0].strip()
    try:
        return int(text)
    except ValueError:
        return None


def _text_value(card: bytes) -> bytes:
    """The value of a ``KEYWORD = 'string'`` or ``KEYWORD = T`` card, unquoted and stripped."""
    if card[8:10] != b"= ":
        return b""
    text = card[10:].strip()
    if text.startswith(b"'"):
        return text[1:].split(b"'", 1)[0].strip()
    return text.split(b"/", 1)[0].strip()


def scan_fits(path: str | os.PathLike[str]) -> FitsStructure:
    """Walk a FITS file's headers: its size, whole HDUs, whole image extensions, and whether it is whole.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    structure : `FitsStructure`
        All zero and not whole if the file is missing, empty or not FITS. The count stops at the
        first HDU whose header has no ``END`` yet or whose data the file does not yet hold.
    """
    try:
        with open(path, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            offset, n_hdus, n_images = 0, 0, 0
            while offset < size:
                keys: dict[bytes, int] = {}
                axes: dict[int, int] = {}
                first: bytes | None = None
                xtension = zimage = b""
                ended = False
                for _ in range(_MAX_HEADER_BLOCKS):
                    block = os.pread(f.fileno(), FITS_BLOCK, offset)
                    if len(block) < FITS_BLOCK:
                        return FitsStructure(size, n_hdus, n_images, whole=False)
                    offset += FITS_BLOCK
                    for start in range(0, FITS_BLOCK, _CARD):
                        card = block[start : start + _CARD]
                        key = card[:8].rstrip()
                        if first is None:
                            first = key
                            if key == b"XTENSION":
                                xtension = _text_value(card)
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
                        elif key == b"ZIMAGE":
                            zimage = _text_value(card)
                    if ended:
                        break
                expected_first = b"SIMPLE" if n_hdus == 0 else b"XTENSION"
                if not ended or first != expected_first or b"BITPIX" not in keys:
                    return FitsStructure(size, n_hdus, n_images, whole=False)
                naxis = keys.get(b"NAXIS", 0)
                if naxis:
                    if any(axes.get(i) is None for i in range(1, naxis + 1)):
                        return FitsStructure(size, n_hdus, n_images, whole=False)
                    n_values = math.prod(axes[i] for i in range(1, naxis + 1))
                    n_bytes = abs(keys[b"BITPIX"]) // 8 * keys.get(b"GCOUNT", 1) * (keys.get(b"PCOUNT", 0) + n_values)
                else:
                    n_values = n_bytes = 0
                offset += -(-n_bytes // FITS_BLOCK) * FITS_BLOCK
                if offset > size:
                    return FitsStructure(size, n_hdus, n_images, whole=False)  # its data are not all there yet
                n_hdus += 1
                if (xtension == b"IMAGE" and n_values > 0) or (xtension == b"BINTABLE" and zimage == b"T"):
                    n_images += 1
            return FitsStructure(size, n_hdus, n_images, whole=n_hdus > 0)
    except OSError:
        return _MISSING


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
    structure = scan_fits(path)
    return structure.n_hdus if structure.whole else 0
