"""The instruments and their detectors (ids, names, physical types), as obs_lsst defines them."""

from __future__ import annotations

import dataclasses
import functools

from lsst.ts.idl.enums.OCPS import SalIndex

__all__ = [
    "CAMERA_COMPONENTS",
    "CAMERA_WRITES_INSTRUME",
    "Detector",
    "Instrument",
    "INSTRUMENT_NAMES",
    "get_instrument",
    "instrument_of_instrume",
]

# Science rafts of LSSTCam and the id of their S00 (obs_lsst).
_SCIENCE_RAFT_ID0 = {
    "R01": 0, "R02": 9, "R03": 18, "R10": 27, "R11": 36, "R12": 45, "R13": 54, "R14": 63,
    "R20": 72, "R21": 81, "R22": 90, "R23": 99, "R24": 108, "R30": 117, "R31": 126, "R32": 135,
    "R33": 144, "R34": 153, "R41": 162, "R42": 171, "R43": 180,
}  # fmt: skip
_ITL_RAFTS = {"R01", "R02", "R03", "R10", "R20", "R41", "R42", "R43"}
_SENSORS = ("S00", "S01", "S02", "S10", "S11", "S12", "S20", "S21", "S22")
#: The SAL component of each instrument's camera.
CAMERA_COMPONENTS: dict[str, str] = {"LATISS": "ATCamera", "LSSTComCam": "CCCamera", "LSSTCam": "MTCamera"}
# Corner rafts: guiders SG0/SG1, wavefront SW0 (extra-focal) / SW1 (intra-focal).
_CORNER_ID0 = {"R00": 189, "R04": 193, "R40": 197, "R44": 201}


@dataclasses.dataclass(frozen=True)
class Detector:
    """One detector.

    Attributes
    ----------
    id : `int`
        Detector id.
    name : `str`
        ``Rxy_Sxy`` (``RXX_S00`` for LATISS).
    physical_type : `str`
        ``E2V``, ``ITL``, ``ITL_G`` (guider) or ``ITL_WF`` (wavefront).
    """

    id: int
    name: str
    physical_type: str

    @property
    def raft(self) -> str:
        """Raft name, e.g. ``R22``."""
        return self.name.split("_")[0]

    @property
    def sensor(self) -> str:
        """Sensor slot, e.g. ``S11``."""
        return self.name.split("_")[1]

    @property
    def is_science(self) -> bool:
        """Imaging (E2V or ITL) rather than guider or wavefront."""
        return self.physical_type in ("E2V", "ITL")


@dataclasses.dataclass(frozen=True)
class Instrument:
    """A camera: its name, SAL index, camera code and detectors."""

    name: str
    sal_index: SalIndex
    cam_code: str
    detectors: tuple[Detector, ...]

    @property
    def camera_component(self) -> str:
        """The SAL component of its camera (``ATCamera``, ``CCCamera``, ``MTCamera``)."""
        return CAMERA_COMPONENTS[self.name]

    @functools.cached_property
    def by_id(self) -> dict[int, Detector]:
        """Detectors by id."""
        return {d.id: d for d in self.detectors}

    @functools.cached_property
    def by_name(self) -> dict[str, Detector]:
        """Detectors by name."""
        return {d.name: d for d in self.detectors}

    @property
    def science_detectors(self) -> tuple[Detector, ...]:
        """Imaging detectors."""
        return tuple(d for d in self.detectors if d.is_science)

    def detector(self, key: int | str) -> Detector:
        """A detector by id or name; ValueError (naming what exists) if there is none."""
        found = self.by_id.get(key) if isinstance(key, int) else self.by_name.get(key)
        if found is None:
            ids = f"{min(self.by_id)}–{max(self.by_id)}"
            raise ValueError(f"{self.name} has no detector {key!r} (ids {ids}, names like {self.detectors[0].name})")
        return found


def _lsstcam_detectors() -> tuple[Detector, ...]:
    detectors = []
    for raft, id0 in _SCIENCE_RAFT_ID0.items():
        kind = "ITL" if raft in _ITL_RAFTS else "E2V"
        detectors += [Detector(id0 + i, f"{raft}_{sensor}", kind) for i, sensor in enumerate(_SENSORS)]
    for raft, id0 in _CORNER_ID0.items():
        detectors += [
            Detector(id0, f"{raft}_SG0", "ITL_G"),
            Detector(id0 + 1, f"{raft}_SG1", "ITL_G"),
            Detector(id0 + 2, f"{raft}_SW0", "ITL_WF"),
            Detector(id0 + 3, f"{raft}_SW1", "ITL_WF"),
        ]
    return tuple(sorted(detectors, key=lambda d: d.id))


@functools.cache
def get_instrument(name_or_index: str | int) -> Instrument:
    """The instrument by name (``LATISS``, ``LSSTComCam``, ``LSSTCam``) or SAL index (1, 2, 3)."""
    try:
        index = SalIndex(name_or_index) if isinstance(name_or_index, int) else SalIndex[name_or_index]
    except (KeyError, ValueError):
        names = ", ".join(f"{e.name}={int(e)}" for e in SalIndex)
        raise ValueError(f"Unknown instrument {name_or_index!r}; known: {names}") from None
    if index == SalIndex.LATISS:
        return Instrument("LATISS", index, "AT", (Detector(0, "RXX_S00", "ITL"),))
    if index == SalIndex.LSSTComCam:
        detectors = tuple(Detector(i, f"R22_{s}", "ITL") for i, s in enumerate(_SENSORS))
        return Instrument("LSSTComCam", index, "CC", detectors)
    return Instrument("LSSTCam", index, "MC", _lsstcam_detectors())


INSTRUMENT_NAMES = tuple(e.name for e in SalIndex)

# Every INSTRUME value the camera software has written (obs_lsst's translators), lower-cased, and
# the instrument it means. The simulated cameras (``*Sim``) count as the cameras they simulate.
_INSTRUME_VALUES = {
    "latiss": "LATISS",
    "lsst_atiss": "LATISS",
    "lsstcam": "LSSTCam",
    "lsstcamsim": "LSSTCam",
    "comcam": "LSSTComCam",
    "comcamsim": "LSSTComCam",
    "lsstcomcam": "LSSTComCam",
    "lsstcomcamsim": "LSSTComCam",
}
#: The INSTRUME each camera writes today (the simulator writes the same).
CAMERA_WRITES_INSTRUME = {"LATISS": "LATISS", "LSSTComCam": "ComCam", "LSSTCam": "LSSTCam"}


def instrument_of_instrume(value: object) -> Instrument | None:
    """The instrument an ``INSTRUME`` card names (any value the camera has written, any case), else None."""
    name = _INSTRUME_VALUES.get(str(value or "").strip().lower())
    return get_instrument(name) if name else None
