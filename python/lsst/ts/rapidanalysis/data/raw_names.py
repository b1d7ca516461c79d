"""The file names a raw may have: what the camera writes for a detector of an instrument, and back.

The camera names each raw after its ``FILENAME`` card (``data/real-formats/README.md``):

==============  ====================================================================
LSSTCam, ComCam ``{obsid}_{raft}_{sensor}.fits``, e.g. ``MC_O_20250609_000578_R01_S01.fits``
LATISS 2024 on  ``{obsid}_R00_S00.fits`` (``RAFTBAY`` R00, ``CCDSLOT`` S00)
LATISS to 2022  ``{obsid}.fits`` (no detector in the name)
==============  ====================================================================

The DM stack names LATISS's one detector ``RXX_S00``, which is no file name the camera writes;
this package's simulator wrote ``{obsid}_RXX_S00.fits`` before, and such trees are still read.
Any of these may end in ``.fits.fz`` (RICE tile-compressed) instead of ``.fits``.

`raw_file_names` is the one place that says this: the raw store looks raws up with it, and the
simulator names what it writes with its first answer (what the camera writes today).
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from .camera import Instrument, get_instrument

__all__ = ["RAW_SUFFIXES", "RawFileName", "raw_file_names", "parse_raw_file_name"]

#: File name endings of raws, in order of preference.
RAW_SUFFIXES: tuple[str, ...] = (".fits", ".fits.fz")
#: What LATISS's camera puts after the obsid (RAFTBAY, CCDSLOT) since 2024, then through 2022 (nothing).
_LATISS_PARTS = ("_R00_S00", "")
_OBSID_PREFIX_RE = re.compile(r"^(?P<obsid>(?:AT|CC|MC)_[OCHPQS]_\d{8}_\d{6})(?P<rest>.*)$")


class RawFileName(NamedTuple):
    """What a raw's file name says.

    Attributes
    ----------
    obsid : `str`
        The exposure.
    detector_id : `int`
        The detector.
    preference : `int`
        Its place in `raw_file_names` (0: what the camera writes today): when one detector has
        files under several names, the lowest is read.
    """

    obsid: str
    detector_id: int
    preference: int


def _detector_parts(instrument: Instrument, detector_id: int) -> tuple[str, ...]:
    """What follows the obsid in the names of a detector's raw, the camera's present choice first."""
    detector = instrument.detector(detector_id)
    if instrument.name == "LATISS":
        return (*_LATISS_PARTS, f"_{detector.name}")
    return (f"_{detector.name}",)


def raw_file_names(
    instrument: Instrument | str, obsid: str, detector_id: int, suffixes: tuple[str, ...] = RAW_SUFFIXES
) -> tuple[str, ...]:
    """Every file name the raw of one detector of one exposure may have, the preferred first.

    Parameters
    ----------
    instrument : `Instrument` or `str`
        The instrument (or its name).
    obsid : `str`
        The exposure, e.g. ``AT_O_20240624_000106`` (not checked here: see `RawStore`).
    detector_id : `int`
        The detector.
    suffixes : `tuple` [`str`], optional
        File name endings, in order of preference (default `RAW_SUFFIXES`).

    Returns
    -------
    names : `tuple` [`str`]
        For each name the camera has used, newest first, each suffix in turn: the first is the
        name the camera writes today (LATISS: ``{obsid}_R00_S00.fits``).

    Raises
    ------
    ValueError
        If the instrument has no such detector (the message names what exists).
    """
    inst = get_instrument(instrument) if isinstance(instrument, str) else instrument
    return tuple(f"{obsid}{part}{suffix}" for part in _detector_parts(inst, detector_id) for suffix in suffixes)


@functools.cache
def _parts_table(instrument_name: str) -> dict[str, tuple[int, int]]:
    """Part after the obsid → (detector id, preference of that part), for every detector."""
    instrument = get_instrument(instrument_name)
    table: dict[str, tuple[int, int]] = {}
    for detector in instrument.detectors:
        for rank, part in enumerate(_detector_parts(instrument, detector.id)):
            table.setdefault(part, (detector.id, rank))
    return table


def parse_raw_file_name(instrument: Instrument | str, name: str) -> RawFileName | None:
    """The exposure and detector a file name belongs to, if it is a raw's name for ``instrument``.

    Parameters
    ----------
    instrument : `Instrument` or `str`
        The instrument (or its name).
    name : `str`
        A file name (no directory), e.g. ``AT_O_20220405_000348.fits``.

    Returns
    -------
    parsed : `RawFileName` or None
        None if ``name`` is none of the names `raw_file_names` gives for any detector of
        ``instrument`` (another instrument's raw, a truth file, a temporary file).
    """
    inst_name = instrument if isinstance(instrument, str) else instrument.name
    suffix_rank = next((i for i, suffix in enumerate(RAW_SUFFIXES) if name.endswith(suffix)), None)
    if suffix_rank is None:
        return None
    stem = name.removesuffix(RAW_SUFFIXES[suffix_rank])
    match = _OBSID_PREFIX_RE.match(stem)
    if match is None:
        return None
    found = _parts_table(inst_name).get(match["rest"])
    if found is None:
        return None
    detector_id, part_rank = found
    if not match["obsid"].startswith(get_instrument(inst_name).cam_code + "_"):
        return None
    return RawFileName(match["obsid"], detector_id, part_rank * len(RAW_SUFFIXES) + suffix_rank)
