"""A detector's TAN WCS from the camera geometry and the pointing (boresight RA, Dec, ROTPA).

Field angle = focal-plane position x plate scale (no distortion), projected about the boresight
(gnomonic). With ``ROTPA`` = 0 the focal-plane +y axis points north and +x west (east to the left,
as on the sky) for the Simonyi cameras; LATISS's focal plane is seen mirrored in x (as the DM
stack's ``createInitialSkyWcs`` flips it). ``ROTPA`` turns +y from north through east. ``CRPIX`` is
the boresight in the detector's pixels (DM orientation, `lsst.ts.rapidanalysis.data.amp_geometry`)
and ``CRVAL`` the boresight, so every detector of an exposure shares one projection.

Used by the simulator to write its headers, and by the pipelines when a header's own WCS cannot
be trusted (`lsst.ts.rapidanalysis.pipelines.raw_wcs`).
"""

from __future__ import annotations

import math

import numpy as np
from astropy.wcs import WCS

from .camera import Detector, Instrument
from .camera_layout import PIXEL_SIZE_MM, detector_center_mm

__all__ = ["PLATE_SCALE", "camera_wcs", "pixel_scale", "wcs_params"]

#: Plate scale (arcsec per mm) of each instrument (obs_lsst ``cameraTransforms.yaml``).
PLATE_SCALE = {"LSSTCam": 20.0059, "LSSTComCam": 20.018, "LATISS": 9.5695}


def pixel_scale(instrument: Instrument | str) -> float:
    """arcsec per pixel of an instrument (0.2 for LSSTCam and ComCam, 0.096 for LATISS)."""
    name = instrument if isinstance(instrument, str) else instrument.name
    try:
        return PLATE_SCALE[name] * PIXEL_SIZE_MM
    except KeyError:
        raise ValueError(f"no plate scale for instrument {name!r}; known: {', '.join(PLATE_SCALE)}") from None


def wcs_params(
    instrument: Instrument | str, detector: Detector, shape: tuple[int, int], rot_pa: float
) -> tuple[tuple[float, float], np.ndarray]:
    """(CRPIX1, CRPIX2) (1-based) and the CD matrix (deg/px) of a detector's TAN WCS; CRVAL is the boresight.

    Parameters
    ----------
    instrument : `Instrument` or `str`
        The camera.
    detector : `Detector`
        The detector.
    shape : `tuple` [`int`, `int`]
        (rows, cols) of its assembled image.
    rot_pa : `float`
        ``ROTPA`` (deg).
    """
    name = instrument if isinstance(instrument, str) else instrument.name
    cx, cy, yaw = detector_center_mm(instrument, detector)
    rows, cols = shape
    scale_deg = pixel_scale(name) / 3600.0
    # pixel offsets -> focal plane (rotated by yaw) -> field angle -> intermediate world (xi east, eta north).
    cyaw, syaw = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    to_fp = np.array([[cyaw, -syaw], [syaw, cyaw]])
    p = math.radians(rot_pa)
    parity = -1.0 if name == "LATISS" else 1.0
    to_sky = np.array([[-math.cos(p), math.sin(p)], [math.sin(p), math.cos(p)]]) @ np.diag([parity, 1.0])
    cd = scale_deg * to_sky @ to_fp
    # The boresight (focal plane 0, 0) in this detector's 0-based pixels.
    centre_pix = np.linalg.solve(to_fp, -np.array([cx, cy]) / PIXEL_SIZE_MM)
    crpix = (float(centre_pix[0] + (cols - 1) / 2 + 1), float(centre_pix[1] + (rows - 1) / 2 + 1))
    return crpix, cd


def camera_wcs(
    instrument: Instrument | str, detector: Detector, shape: tuple[int, int], ra: float, dec: float, rot_pa: float
) -> WCS:
    """The TAN WCS of a detector's assembled image, from the camera geometry and the pointing."""
    crpix, cd = wcs_params(instrument, detector, shape, rot_pa)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crval = [ra % 360.0, dec]
    wcs.wcs.crpix = list(crpix)
    wcs.wcs.cd = cd
    wcs.wcs.radesys = "ICRS"
    return wcs
