"""Where each detector sits on the focal plane (as obs_lsst lays it out).

Focal-plane coordinates are in mm with the boresight at (0, 0) (``ra-algorithms.md`` §6): LSSTCam
raft ``R{y}{x}`` is centred at ``((x - 2) 127, (y - 2) 127)`` mm and sensor ``S{y}{x}`` at
``((x - 1) 42.25, (y - 1) 42.25)`` mm from its raft centre; ComCam is raft R22 alone; LATISS is one
sensor on the axis. Pixels are 10 µm. Corner rafts (guiders ``SG0``/``SG1``, wavefront halves
``SW0``/``SW1``) are an approximation: in the raft's own frame the wavefront halves sit at
x = -42.25 mm, y = -52.8125 (SW0) and -31.6875 mm (SW1), the guiders at (+42.25, -42.25) mm (SG0)
and (-42.25, +42.25) mm (SG1); the raft frame is then turned by the raft's yaw (R00 180°, R04 270°,
R40 90°, R44 0°), which also turns the detectors' pixel axes.

Used by the simulator (to place stars) and by the visit plots (to place detectors).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from .amp_geometry import DetectorGeometry
from .camera import Detector, Instrument

__all__ = ["PIXEL_SIZE_MM", "detector_center_mm", "pixel_to_focal_plane"]

#: Pixel pitch (mm).
PIXEL_SIZE_MM = 0.010
_RAFT_PITCH_MM = 127.0
_CCD_PITCH_MM = 42.25
_CORNER_YAW = {"R00": 180.0, "R04": 270.0, "R40": 90.0, "R44": 0.0}
_CORNER_OFFSETS_MM = {
    "SW0": (-42.25, -52.8125),
    "SW1": (-42.25, -31.6875),
    "SG0": (42.25, -42.25),
    "SG1": (-42.25, 42.25),
}


def detector_center_mm(instrument: Instrument | str, detector: Detector) -> tuple[float, float, float]:
    """Focal-plane position (mm) of a detector's centre and the yaw (deg) of its pixel axes."""
    name = instrument if isinstance(instrument, str) else instrument.name
    if name == "LATISS":
        return 0.0, 0.0, 0.0
    raft, sensor = detector.raft, detector.sensor
    if name == "LSSTComCam":
        raft_x = raft_y = 0.0
    else:
        raft_x, raft_y = (int(raft[2]) - 2) * _RAFT_PITCH_MM, (int(raft[1]) - 2) * _RAFT_PITCH_MM
    if sensor in _CORNER_OFFSETS_MM:
        yaw = _CORNER_YAW[raft]
        dx, dy = _CORNER_OFFSETS_MM[sensor]
        c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
        return raft_x + c * dx - s * dy, raft_y + s * dx + c * dy, yaw
    return raft_x + (int(sensor[2]) - 1) * _CCD_PITCH_MM, raft_y + (int(sensor[1]) - 1) * _CCD_PITCH_MM, 0.0


def pixel_to_focal_plane(
    instrument: Instrument | str, detector: Detector, geometry: DetectorGeometry, x: npt.ArrayLike, y: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Focal-plane mm of 0-based assembled-image pixel positions (x = column, y = row)."""
    cx, cy, yaw = detector_center_mm(instrument, detector)
    rows, cols = geometry.shape
    u = (np.asarray(x, dtype=float) - (cols - 1) / 2) * PIXEL_SIZE_MM
    v = (np.asarray(y, dtype=float) - (rows - 1) / 2) * PIXEL_SIZE_MM
    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    return cx + c * u - s * v, cy + s * u + c * v
