"""The WCS a measurement may use: the header's only when it agrees with the camera.

Some real headers' WCSs are wrong: LATISS AT_O_20220405_000348 has a CD matrix of ~0.1 deg/px
(378″/px against the camera's 0.096″/px). A header WCS is used only when its pixel scale is within
``max_scale_error`` of the camera's and, where the header has ``RA``/``DEC`` cards, it puts the
boresight within ``max_boresight_offset`` of them. Otherwise it is replaced by the WCS of the
camera geometry and the pointing cards (`lsst.ts.rapidanalysis.data.camera_wcs`), and the result
says so; without pointing cards there is no WCS, and the pixel scale is the camera's. Either way
every angle a pipeline reports is in arcseconds of the camera's scale, never of a wrong WCS.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from ..data.camera import Detector, Instrument
from ..data.camera_wcs import camera_wcs, pixel_scale, wcs_params
from .photocal import header_wcs

__all__ = ["CheckedWcs", "checked_wcs"]

HEADER = "header"
CAMERA_GEOMETRY = "camera geometry and pointing"
NONE = "none"


@dataclasses.dataclass(frozen=True)
class CheckedWcs:
    """The WCS to use and why.

    Attributes
    ----------
    wcs : `astropy.wcs.WCS` or None
        None when there is none to be had.
    pixel_scale : `float`
        arcsec per pixel.
    source : `str`
        ``header``, ``camera geometry and pointing`` or ``none``.
    flags : `list` [`str`]
        Why the header's was not used, if it was not.
    """

    wcs: WCS | None
    pixel_scale: float
    source: str
    flags: list[str]


def _finite(header: Mapping[str, Any], key: str) -> float | None:
    value = header.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _angle_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    cos = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def checked_wcs(
    header: Mapping[str, Any],
    instrument: Instrument | None,
    detector: Detector | None,
    shape: tuple[int, int],
    *,
    max_scale_error: float = 0.05,
    max_boresight_offset: float = 120.0,
    fallback_scale: float | None = None,
) -> CheckedWcs:
    """The header's WCS if it agrees with the camera, else the camera geometry's, else none.

    Parameters
    ----------
    header : mapping
        The primary header (WCS and pointing cards ``RA``, ``DEC``, ``ROTPA``).
    instrument, detector
        What took the image (None if unknown: the header WCS is then taken as it is).
    shape : `tuple` [`int`, `int`]
        (rows, cols) of the assembled image.
    max_scale_error : `float`
        Largest fractional difference of the header's pixel scale from the camera's.
    max_boresight_offset : `float`
        Largest distance (arcsec) of the header WCS's boresight from the ``RA``/``DEC`` cards.
    fallback_scale : `float`, optional
        arcsec/pixel when neither the header nor the camera gives one (default 0.2).
    """
    wcs = header_wcs(header)
    camera_scale = pixel_scale(instrument) if instrument is not None else None
    if camera_scale is None or detector is None:
        scale = _scale_of(wcs) if wcs is not None else None
        if scale is not None:
            return CheckedWcs(wcs, scale, HEADER, [])
        return CheckedWcs(None, fallback_scale or 0.2, NONE, [])
    ra, dec, rot_pa = _finite(header, "RA"), _finite(header, "DEC"), _finite(header, "ROTPA")
    flags: list[str] = []
    if wcs is not None:
        scale = _scale_of(wcs)
        problem = None
        if scale is None or abs(scale / camera_scale - 1.0) > max_scale_error:
            shown = f"{scale:.4g}" if scale is not None else "no usable"
            problem = f"its pixel scale {shown}″/px is not the camera's {camera_scale:.4g}″/px"
        elif ra is not None and dec is not None:
            crpix, _ = wcs_params(instrument, detector, shape, rot_pa or 0.0)  # type: ignore[arg-type]
            bore_ra, bore_dec = (float(v) for v in wcs.all_pix2world(crpix[0], crpix[1], 1))
            offset = _angle_deg(bore_ra, bore_dec, ra, dec) * 3600.0
            if not offset <= max_boresight_offset:
                problem = f"it puts the boresight {offset:.0f}″ from the RA/DEC cards"
        if problem is None:
            return CheckedWcs(wcs, float(scale), HEADER, [])  # type: ignore[arg-type]
        flags.append(f"header WCS not trusted: {problem}")
    if ra is None or dec is None:
        if wcs is not None:
            flags.append("no RA/DEC cards to rebuild it from: no WCS")
        return CheckedWcs(None, camera_scale, NONE, flags)
    if rot_pa is None:
        flags.append("no ROTPA card: WCS rebuilt with the rotator at 0")
    rebuilt = camera_wcs(instrument, detector, shape, ra, dec, rot_pa or 0.0)  # type: ignore[arg-type]
    if wcs is not None:
        flags[-1 if rot_pa is not None else -2] += "; replaced by the camera geometry's"
    return CheckedWcs(rebuilt, camera_scale, CAMERA_GEOMETRY, flags)


def _scale_of(wcs: WCS) -> float | None:
    try:
        scale = float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600.0)
    except Exception:
        return None
    return scale if math.isfinite(scale) and scale > 0 else None
