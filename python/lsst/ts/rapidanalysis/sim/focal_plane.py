"""Where each detector sits on the focal plane, and the sky it sees: plate scales, TAN WCS, site.

Where detectors sit (focal-plane mm, yaw) is `lsst.ts.rapidanalysis.data.camera_layout`,
re-exported here.

Sky: each detector gets the TAN WCS of `lsst.ts.rapidanalysis.data.camera_wcs` (field angle =
focal-plane position x plate scale, projected about the boresight; ``CRPIX`` = the boresight in
that detector's pixels, ``CRVAL`` = the boresight), so every detector of an exposure shares one
exact projection, and the pipelines rebuild the same WCS when a header's cannot be trusted.
"""

from __future__ import annotations

import dataclasses
import datetime
import math

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from ..data.amp_geometry import DetectorGeometry
from ..data.camera import Detector, Instrument
from ..data.camera_layout import PIXEL_SIZE_MM, detector_center_mm, pixel_to_focal_plane
from ..data.camera_wcs import PLATE_SCALE, camera_wcs
from ..data.camera_wcs import wcs_params as camera_wcs_params

__all__ = [
    "PIXEL_SIZE_MM",
    "InstrumentOptics",
    "Pointing",
    "SITE",
    "TAI_MINUS_UTC",
    "altaz",
    "detector_center_mm",
    "detector_wcs",
    "field_angle_deg",
    "get_optics",
    "local_sidereal_time",
    "mjd_from_tai",
    "pixel_to_focal_plane",
    "tai_iso",
    "wcs_cards",
    "wcs_params",
    "zenith_pointing",
]

#: TAI - UTC (s) since 2017.
TAI_MINUS_UTC = 37.0


@dataclasses.dataclass(frozen=True)
class Site:
    """An observatory site (degrees east, degrees, metres)."""

    longitude: float
    latitude: float
    elevation: float


#: Cerro Pachón (Simonyi and the Auxiliary Telescope share the headers' values to 1e-3 deg).
SITE = {
    "LSSTCam": Site(-70.749417, -30.244639, 2663.0),
    "LSSTComCam": Site(-70.749417, -30.244639, 2663.0),
    "LATISS": Site(-70.747698, -30.244728, 2663.0),
}


@dataclasses.dataclass(frozen=True)
class InstrumentOptics:
    """Plate scale, filters and defaults of one instrument.

    Attributes
    ----------
    plate_scale : `float`
        arcsec per mm.
    telescope : `str`
        ``TELESCOP``.
    filters : `dict` [`str`, `str`]
        Band -> physical filter name (LATISS: the ``FILTER`` value; the grating is separate).
    field_radius_mm : `float`
        Radius of the illuminated field (for vignetting).
    zero_point : `float`
        Default magnitude giving 1 e-/s.
    sky_rate : `float`
        Default sky (e-/s/pixel).
    """

    plate_scale: float
    telescope: str
    filters: dict[str, str]
    field_radius_mm: float
    zero_point: float
    sky_rate: float

    @property
    def pixel_scale(self) -> float:
        """arcsec per pixel."""
        return self.plate_scale * PIXEL_SIZE_MM


_OPTICS = {
    "LSSTCam": InstrumentOptics(
        plate_scale=PLATE_SCALE["LSSTCam"],
        telescope="Simonyi Survey Telescope",
        filters={"u": "u_24", "g": "g_6", "r": "r_57", "i": "i_39", "z": "z_20", "y": "y_10"},
        field_radius_mm=320.0,
        zero_point=28.5,
        sky_rate=33.0,
    ),
    "LSSTComCam": InstrumentOptics(
        plate_scale=PLATE_SCALE["LSSTComCam"],
        telescope="Simonyi Survey Telescope",
        filters={"u": "u_02", "g": "g_01", "r": "r_03", "i": "i_06", "z": "z_03", "y": "y_04"},
        field_radius_mm=90.0,
        zero_point=28.5,
        sky_rate=33.0,
    ),
    "LATISS": InstrumentOptics(
        plate_scale=PLATE_SCALE["LATISS"],
        telescope="Rubin Auxiliary Telescope",
        filters={
            "g": "SDSSg_65mm",
            "r": "SDSSr_65mm",
            "i": "SDSSi_65mm",
            "z": "SDSSz_65mm",
            "y": "SDSSy_65mm",
            "white": "empty",
        },
        field_radius_mm=30.0,
        zero_point=25.0,
        sky_rate=1.0,
    ),
}


def get_optics(instrument: Instrument | str) -> InstrumentOptics:
    """The optics of an instrument (by `Instrument` or name)."""
    name = instrument if isinstance(instrument, str) else instrument.name
    try:
        return _OPTICS[name]
    except KeyError:
        raise ValueError(f"no optics for instrument {name!r}; known: {', '.join(_OPTICS)}") from None


def field_angle_deg(instrument: Instrument | str, fp_x: np.ndarray, fp_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Field angle (deg) of focal-plane positions (mm)."""
    scale = get_optics(instrument).plate_scale / 3600.0
    return np.asarray(fp_x) * scale, np.asarray(fp_y) * scale


@dataclasses.dataclass(frozen=True)
class Pointing:
    """Boresight RA, Dec and rotator position angle (degrees)."""

    ra: float
    dec: float
    rot_pa: float = 0.0

    @classmethod
    def from_any(cls, value: Pointing | dict | None, default: Pointing) -> Pointing:
        """A `Pointing` from itself, a dict with ``ra``, ``dec`` and optional ``rot_pa``, or the default."""
        if value is None:
            return default
        if isinstance(value, Pointing):
            return value
        return cls(float(value["ra"]), float(value["dec"]), float(value.get("rot_pa", value.get("rotpa", 0.0))))

    def as_dict(self) -> dict[str, float]:
        """JSON-able."""
        return dataclasses.asdict(self)


def wcs_params(
    instrument: Instrument | str, detector: Detector, geometry: DetectorGeometry, pointing: Pointing
) -> tuple[tuple[float, float], np.ndarray]:
    """(CRPIX1, CRPIX2) (1-based) and the CD matrix (deg/px) of a detector's TAN WCS; CRVAL is the boresight."""
    return camera_wcs_params(instrument, detector, geometry.shape, pointing.rot_pa)


def detector_wcs(
    instrument: Instrument | str, detector: Detector, geometry: DetectorGeometry, pointing: Pointing
) -> WCS:
    """The TAN WCS of a detector's assembled image (`lsst.ts.rapidanalysis.data.camera_wcs`)."""
    return camera_wcs(instrument, detector, geometry.shape, pointing.ra, pointing.dec, pointing.rot_pa)


def wcs_cards(wcs: WCS) -> fits.Header:
    """The WCS as header cards (CD matrix form)."""
    header = wcs.to_header()
    # astropy writes PC + CDELT; keep CD, which every reader understands.
    out = fits.Header()
    for key in ("WCSAXES", "CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2"):
        if key in header:
            out[key] = header[key]
    cd = wcs.wcs.cd
    for i in range(2):
        for j in range(2):
            out[f"CD{i + 1}_{j + 1}"] = float(cd[i, j])
    out["RADESYS"] = "ICRS"
    out["EQUINOX"] = 2000.0
    return out


# Time and site


def mjd_from_tai(tai: float) -> float:
    """MJD (TAI scale) of TAI unix seconds."""
    return tai / 86400.0 + 40587.0


def tai_iso(tai: float) -> str:
    """ISO-8601 (TAI, milliseconds, no zone) of TAI unix seconds."""
    stamp = datetime.datetime.fromtimestamp(tai, tz=datetime.UTC).replace(tzinfo=None)
    return stamp.isoformat(timespec="milliseconds")


def local_sidereal_time(tai: float, longitude: float) -> float:
    """Local mean sidereal time (deg) at TAI unix seconds (UT1 ~ UTC = TAI - 37 s)."""
    jd_ut = (tai - TAI_MINUS_UTC) / 86400.0 + 2440587.5
    gmst = 280.46061837 + 360.98564736629 * (jd_ut - 2451545.0)
    return (gmst + longitude) % 360.0


def altaz(ra: float, dec: float, tai: float, site: Site) -> tuple[float, float, float, float]:
    """Azimuth (deg, N through E), elevation (deg), hour angle (h) and airmass of a position."""
    ha = math.radians((local_sidereal_time(tai, site.longitude) - ra + 180.0) % 360.0 - 180.0)
    d, lat = math.radians(dec), math.radians(site.latitude)
    sin_alt = math.sin(d) * math.sin(lat) + math.cos(d) * math.cos(lat) * math.cos(ha)
    alt = math.asin(max(-1.0, min(1.0, sin_alt)))
    az = math.atan2(
        -math.cos(d) * math.sin(ha), math.sin(d) * math.cos(lat) - math.cos(d) * math.sin(lat) * math.cos(ha)
    )
    zenith = math.pi / 2 - alt
    airmass = 1.0 / math.cos(zenith) if alt > math.radians(1.0) else float("nan")
    return math.degrees(az) % 360.0, math.degrees(alt), math.degrees(ha) / 15.0, airmass


def zenith_pointing(tai: float, instrument: Instrument | str, offset_deg: float = 5.0) -> Pointing:
    """A pointing a little east of the zenith at ``tai`` (airmass ~1.004)."""
    name = instrument if isinstance(instrument, str) else instrument.name
    site = SITE[name]
    return Pointing((local_sidereal_time(tai, site.longitude) + offset_deg) % 360.0, site.latitude, 0.0)
