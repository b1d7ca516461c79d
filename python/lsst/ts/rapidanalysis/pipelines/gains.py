"""Where each amplifier's gain comes from, in order: a gain calibration, the camera description,
the amp header's ``GAIN`` card, the physical type's nominal value.

The DM stack's ISR never reads a GAIN card: it takes the camera description's per-amplifier gain
unless a PTC (gain) calibration is given. Real raws carry no GAIN card, so the camera description
(`lsst.ts.rapidanalysis.data.camera_description`) is what a raw normally gets; a GAIN card counts
only for a detector the description does not know (another camera's file), and the physical
type's nominal gain only when nothing else says anything, with a flag.

A gain calibration is a YAML or JSON file, its path configured per pipeline (``{detector}`` and
``{id}`` in it stand for the detector's name and id), holding either one detector's amps::

    C10: 1.652
    C11: 1.647

or several detectors' (``R22_S11: {C10: 1.652, ...}``). Amp keys are ``C10`` or ``Segment10`` (any
case). Amps it leaves out fall back to the camera description.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from ..data.camera_description import SOURCE as DESCRIPTION_SOURCE
from ..data.camera_description import AmpElectronics
from .base import ExitCode, PipelineError
from .fits_input import amp_extname

# amp_extname is re-exported for the callers that found it here first.
__all__ = ["AmpGain", "AmpGains", "amp_extname", "read_calibration_file", "read_gain_calibration"]

CALIBRATION_SOURCE = "gain calibration"
HEADER_SOURCE = "header GAIN card"
NOMINAL_SOURCE = "nominal gain of the sensor type"

_AMP_KEY = re.compile(r"^\s*(?:segment|c)(\d\d)\s*$", re.IGNORECASE)


def _amp_number(key: str) -> str | None:
    match = _AMP_KEY.match(str(key))
    return match.group(1) if match else None


@dataclasses.dataclass(frozen=True)
class AmpGain:
    """One amplifier's gain and where it comes from.

    Attributes
    ----------
    gain : `float`
        e-/ADU.
    source : `str`
        Where it came from (`AmpGains` order).
    saturation : `float` or None
        ADU above bias from the camera description, if it gives one.
    """

    gain: float
    source: str
    saturation: float | None = None


class AmpGains:
    """The gain of each amplifier of one detector.

    Parameters
    ----------
    calibration : mapping [`str`, `float`] or None
        Gains by amp number (``"10"``) from a gain calibration.
    description : mapping [`str`, `AmpElectronics`]
        The camera description's amps by name (``C10``); empty for an unknown detector.
    nominal : `float`
        The physical type's nominal gain.
    """

    def __init__(
        self, calibration: Mapping[str, float] | None, description: Mapping[str, AmpElectronics], nominal: float
    ) -> None:
        self._calibration = dict(calibration or {})
        self._description = {name[1:]: amp for name, amp in description.items()}
        self._nominal = nominal
        self.sources: dict[str, str] = {}

    def gain_for(self, extname: str, header: Mapping[str, Any]) -> AmpGain:
        """The gain of the amp ``extname`` (``Segment10``), whose HDU header is ``header``."""
        number = _amp_number(extname)
        described = self._description.get(number) if number else None
        saturation = None
        if described is not None and math.isfinite(described.saturation):
            saturation = described.saturation
        if number in self._calibration:
            found = AmpGain(self._calibration[number], CALIBRATION_SOURCE, saturation)
        elif described is not None:
            found = AmpGain(described.gain, DESCRIPTION_SOURCE, saturation)
        elif _positive(header.get("GAIN")):
            found = AmpGain(float(header["GAIN"]), HEADER_SOURCE)
        else:
            found = AmpGain(self._nominal, NOMINAL_SOURCE)
        self.sources[extname] = found.source
        return found

    def describe(self) -> str:
        """Which gains were used, e.g. ``camera description (obs_lsst policy)``, or the mix of them."""
        counts = collections.Counter(self.sources.values())
        if len(counts) == 1:
            return next(iter(counts))
        return "; ".join(f"{source} for {n} amps" for source, n in counts.most_common())


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@functools.lru_cache(maxsize=64)
def _load(path: str, mtime_ns: int) -> Any:
    del mtime_ns  # part of the cache key only: a rewritten calibration is read again
    with open(path) as stream:
        text = stream.read()
    return json.loads(text) if path.endswith(".json") else yaml.safe_load(text)


def read_calibration_file(
    template: str, detector_name: str, detector_id: int, kind: str, read: Callable[[str, int], Any]
) -> tuple[str, Any]:
    """A calibration file's path and content, ``read(path, mtime_ns)`` (cache it by both).

    ``{detector}`` and ``{id}`` in ``template`` stand for the detector's name and id.

    Raises
    ------
    PipelineError
        (exit code 3) naming the ``kind`` of calibration and the file, if it is missing or
        ``read`` fails.
    """
    path = template.format(detector=detector_name, id=detector_id)
    try:
        return path, read(path, os.stat(path).st_mtime_ns)
    except FileNotFoundError:
        raise PipelineError(f"{kind} {path} does not exist", exit_code=ExitCode.NO_INPUT) from None
    except Exception as e:
        raise PipelineError(
            f"{kind} {path} is unreadable ({type(e).__name__}: {e})", exit_code=ExitCode.NO_INPUT
        ) from None


def read_gain_calibration(template: str, detector_name: str, detector_id: int) -> dict[str, float]:
    """The gains (by amp number, ``"10"``) a gain calibration gives one detector.

    Raises
    ------
    PipelineError
        (exit code 3) If the file is missing or unreadable, or a gain is not a positive number,
        naming the file and what is wrong.
    """
    path, content = read_calibration_file(template, detector_name, detector_id, "gain calibration", _load)
    if not isinstance(content, dict):
        raise PipelineError(
            f"gain calibration {path} is not a mapping of amps (C10: 1.6, ...)", exit_code=ExitCode.NO_INPUT
        )
    if detector_name in content and isinstance(content[detector_name], dict):
        content = content[detector_name]
    elif not any(_amp_number(k) for k in content):
        return {}  # a file of other detectors' gains: nothing for this one
    gains = {}
    for key, value in content.items():
        number = _amp_number(key)
        if number is None:
            continue
        if not _positive(value):
            raise PipelineError(
                f"gain calibration {path}: gain of {key} is {value!r}, not a positive number",
                exit_code=ExitCode.NO_INPUT,
            )
        gains[number] = float(value)
    return gains
