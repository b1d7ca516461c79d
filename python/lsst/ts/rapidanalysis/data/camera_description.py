"""The camera description: each amplifier's nominal gain, read noise and saturation (obs_lsst).

Real raws carry no GAIN card: the camera software leaves gains to the DM stack's camera
description, shipped here as obs_lsst wrote it (``camera_description/README.md``). A detector's
amplifiers are read from its raft's file the first time they are asked for, and kept.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import math
from collections.abc import Mapping

import yaml

from .camera import get_instrument

__all__ = ["AmpElectronics", "SOURCE", "amp_electronics"]

#: Where the values come from, for reports.
SOURCE = "camera description (obs_lsst policy)"

# Folder of each instrument's raft files.
_FOLDERS = {"LSSTCam": "lsstCam", "LSSTComCam": "comCam", "LATISS": "latiss"}
# LSSTCam corner rafts keep their wavefront sensors in a file of their own (``R00W.yaml``).
_WAVEFRONT_SLOTS = ("SW0", "SW1")


@dataclasses.dataclass(frozen=True)
class AmpElectronics:
    """One amplifier's nominal electronics.

    Attributes
    ----------
    gain : `float`
        e-/ADU.
    read_noise : `float`
        Electrons.
    saturation : `float`
        ADU above bias; NaN where the description gives none (ComCam, LATISS).
    """

    gain: float
    read_noise: float
    saturation: float = math.nan


def _loader() -> type:
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _raft_file(folder: str, raft_key: str) -> Mapping[str, object]:
    resource = importlib.resources.files(__package__).joinpath("camera_description", folder, f"{raft_key}.yaml")
    with resource.open("r") as stream:
        content = yaml.load(stream, Loader=_loader())
    return content[raft_key]


@functools.cache
def amp_electronics(instrument: str, detector: str) -> Mapping[str, AmpElectronics]:
    """Each amplifier's gain, read noise and saturation, by amp name (``C10``).

    Parameters
    ----------
    instrument : `str`
        ``LSSTCam``, ``LSSTComCam`` or ``LATISS``.
    detector : `str`
        The DM stack's detector name: ``R22_S11``, ``R00_SW0``, ``RXX_S00``.

    Raises
    ------
    ValueError
        If the instrument or detector is unknown (saying what is known), or the description has
        no amplifiers for it.
    """
    camera = get_instrument(instrument)
    camera.detector(detector)  # ValueError naming what exists
    raft, slot = detector.split("_")
    raft_key = f"{raft}W" if camera.name == "LSSTCam" and slot in _WAVEFRONT_SLOTS else raft
    try:
        amps = _raft_file(_FOLDERS[camera.name], raft_key)["amplifiers"][slot]  # type: ignore[index]
    except (FileNotFoundError, KeyError) as e:
        raise ValueError(f"the camera description has no amplifiers for {camera.name} {detector} ({e})") from None
    return {
        name: AmpElectronics(
            gain=float(values["gain"]),
            read_noise=float(values["readNoise"]),
            saturation=float(values.get("saturation", math.nan)),
        )
        for name, values in amps.items()
    }
