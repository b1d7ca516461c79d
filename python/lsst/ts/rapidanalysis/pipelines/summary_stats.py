"""Exposure summary statistics as ``ExposureSummaryStats`` defines them (``ra-algorithms.md`` §2).

* effTime = f·c·b·t with f = (psfSigma/σ_fid)⁻², c = 10^(−0.8 (ZP_fid − (ZP − 2.5 log10 t))),
  b = B_fid/(skyBg/t); the three factors are ``effTimePsfSigmaScale``, ``effTimeZeroPointScale``
  and ``effTimeSkyBgScale``.
* magLim (S/N 5) = ZP − 2.5 log10 C, C = s²/(2g) + √(s⁴/(4g) + s² (skyBg/g + RN²) psfArea), with
  s = 5. Our images stay in electrons, so g = 1 and RN is in electrons.
* Standardized FWHM = FWHM · airmass^−0.6 · (λ_eff/500 nm)^0.2.

The fiducials are LSSTCam's (u..y); ComCam and LATISS use them too, which makes their effTime a
relative figure (say so when comparing instruments).
"""

from __future__ import annotations

import math

__all__ = [
    "FIDUCIAL_PSF_SIGMA",
    "FIDUCIAL_SKY_BACKGROUND",
    "FIDUCIAL_ZERO_POINT",
    "EFFECTIVE_WAVELENGTH_NM",
    "EffTime",
    "eff_time",
    "mag_lim",
    "standardized_fwhm",
    "band_of",
]

_BANDS = "ugrizy"
#: σ_fid (pixels) per band.
FIDUCIAL_PSF_SIGMA = dict(zip(_BANDS, (1.72, 1.63, 1.56, 1.51, 1.47, 1.44), strict=True))
#: B_fid (electrons per pixel per second) per band.
FIDUCIAL_SKY_BACKGROUND = dict(zip(_BANDS, (1.51, 15.45, 32.95, 52.94, 79.40, 90.57), strict=True))
#: ZP_fid (magnitude of 1 electron per second) per band.
FIDUCIAL_ZERO_POINT = dict(zip(_BANDS, (26.56, 28.59, 28.50, 28.29, 27.90, 26.87), strict=True))
#: λ_eff (nm) of the LSSTCam filters u_24, g_6, r_57, i_39, z_20, y_10.
EFFECTIVE_WAVELENGTH_NM = dict(zip(_BANDS, (365.14, 475.61, 618.61, 753.55, 868.09, 972.60), strict=True))


def band_of(filter_band: str | None, physical_filter: str | None = None) -> str | None:
    """The band letter from ``FILTBAND`` (``r``), else from the physical filter (``r_57``, ``SDSSr_65mm``)."""
    for text in (filter_band, physical_filter):
        if not isinstance(text, str) or not text.strip():
            continue
        text = text.strip()
        if text in FIDUCIAL_PSF_SIGMA:
            return text
        if text.startswith("SDSS") and len(text) > 4 and text[4] in FIDUCIAL_PSF_SIGMA:
            return text[4]
        if len(text) > 1 and text[0] in FIDUCIAL_PSF_SIGMA and text[1] == "_":
            return text[0]
    return None


class EffTime:
    """effTime and its three scales (NaN where an input is missing).

    Attributes
    ----------
    value, psf_sigma_scale, sky_bg_scale, zero_point_scale : `float`
    """

    def __init__(self, value: float, psf_sigma_scale: float, sky_bg_scale: float, zero_point_scale: float) -> None:
        self.value = value
        self.psf_sigma_scale = psf_sigma_scale
        self.sky_bg_scale = sky_bg_scale
        self.zero_point_scale = zero_point_scale


def _finite(*values: float) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def eff_time(psf_sigma: float, sky_bg: float, zero_point: float, exp_time: float, band: str | None) -> EffTime:
    """effTime (s) and its scales; NaN when the band has no fiducials or an input is missing."""
    nan = math.nan
    if band not in FIDUCIAL_PSF_SIGMA or not (exp_time and exp_time > 0):
        return EffTime(nan, nan, nan, nan)
    f = (psf_sigma / FIDUCIAL_PSF_SIGMA[band]) ** -2 if _finite(psf_sigma) and psf_sigma > 0 else nan
    c = (
        10 ** (-0.8 * (FIDUCIAL_ZERO_POINT[band] - (zero_point - 2.5 * math.log10(exp_time))))
        if _finite(zero_point)
        else nan
    )
    b = FIDUCIAL_SKY_BACKGROUND[band] / (sky_bg / exp_time) if _finite(sky_bg) and sky_bg > 0 else nan
    return EffTime(f * c * b * exp_time, f, b, c)


def mag_lim(zero_point: float, sky_bg: float, psf_area: float, read_noise: float, snr: float = 5.0) -> float:
    """The magnitude of a point source detected at ``snr`` (electrons: gain 1)."""
    if not _finite(zero_point, sky_bg, psf_area, read_noise) or psf_area <= 0:
        return math.nan
    s2 = snr * snr
    c = s2 / 2 + math.sqrt(s2 * s2 / 4 + s2 * (max(sky_bg, 0.0) + read_noise**2) * psf_area)
    return zero_point - 2.5 * math.log10(c)


def standardized_fwhm(fwhm: float, airmass: float | None, band: str | None) -> float:
    """FWHM at zenith and 500 nm: FWHM · airmass^−0.6 · (λ_eff/500)^0.2 (NaN without airmass or band)."""
    if band not in EFFECTIVE_WAVELENGTH_NM or not _finite(fwhm) or not (airmass and airmass >= 1.0):
        return math.nan
    return fwhm * airmass**-0.6 * (EFFECTIVE_WAVELENGTH_NM[band] / 500.0) ** 0.2
