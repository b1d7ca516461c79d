"""LATISS dispersed images: a zeroth-order star and its first-order spectrum, with truth.

The spectrum examiner (``ra-algorithms.md`` §3) finds the zeroth order, boxes x = cx-100..cx+99,
y = cy+400.. (dispersion along +y), follows the ridge row by row and fits a Gaussian per row. This
module draws exactly what it should find:

* the zeroth order at (``zeroth_order_x``, ``zeroth_order_y``) with the scene's PSF and a total of
  ``zeroth_order_rate`` ADU/s;
* the first order starting ``offset`` px from the zeroth order along the dispersion direction
  (``dispersion_angle`` degrees from +y towards +x; 0 = +y) and ``length`` px long: per unit of
  length along the trace a flux ``continuum_rate x f(t)``, where f rises smoothly from 0 over
  ``ramp_start`` px, falls over the last ``ramp_end`` px, and has Gaussian absorption lines
  (position along the spectrum, fractional depth, sigma in px); across the trace a Gaussian of
  FWHM ``fwhm`` (default: the PSF's) growing by ``fwhm_slope`` px per 1000 px;
* a uniform sky of ``sky_rate`` ADU/s/pixel (no vignetting or flat-field structure here).

Rates in ADU/s are turned into electrons with one nominal gain (the mean of the detector's amp
gains, ``truth.spectrum.gain``), so they are exact in ADU for an amp of that gain and off by the
amp's gain ratio (a few per cent) elsewhere; the electron rates in the truth are exact.

Truth (``truth["spectrum"]``): zeroth order position, total and peak rate; continuum rate (row sum,
ADU/s and e-/s) and its peak-pixel rate; per row of the spectrum (when the dispersion is closer to
y than to x): ``y``, ridge ``x``, ``fwhm_px`` (across the row, before pixelisation), row flux
``rate_e``/``rate_adu`` and ``profile`` f.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import numpy as np
import pydantic

from ..atomic_file import write_atomic
from ..data.amp_geometry import get_geometry
from ..data.camera import get_instrument
from .focal_plane import Pointing, detector_wcs, get_optics, zenith_pointing
from .raw_writer import (
    SimulatedRaw,
    amp_electronics,
    default_tai_start,
    hdulist_bytes,
    make_hdulist,
    parse_obsid,
    raw_parts,
)
from .scene import (
    RenderedDetector,
    SceneConfig,
    _add_stamp,
    _bleed,
    _cosmic_rays,
    _photon_noise,
    _render_stamps,
)
from .truth import truth_path, write_truth

__all__ = ["SpectrumConfig", "render_dispersed", "simulate_dispersed", "spectrum_profile"]

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_GRATINGS = ("ronchi90lpmm", "ronchi170lpmm", "holo4_003", "holo4_001", "blue300lpmm_qn1")


class SpectrumConfig(pydantic.BaseModel):
    """The dispersed image of one star (positions in 0-based pixels of the assembled image)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    zeroth_order_x: float = pydantic.Field(1780.0, description="Zeroth-order x (column).")
    zeroth_order_y: float = pydantic.Field(700.0, description="Zeroth-order y (row).")
    zeroth_order_rate: float = pydantic.Field(2.0e5, ge=0, description="Zeroth-order total flux (ADU/s).")
    continuum_rate: float = pydantic.Field(
        2.0e4, ge=0, description="First-order flux per row on the continuum plateau (ADU/s, summed across the row)."
    )
    offset: float = pydantic.Field(400.0, ge=0, description="Zeroth order to first-order start along the trace (px).")
    length: float = pydantic.Field(2800.0, gt=10, description="Length of the first order (px).")
    dispersion_angle: float = pydantic.Field(0.0, ge=-180, le=180, description="Degrees from +y towards +x.")
    ramp_start: float = pydantic.Field(150.0, ge=0, description="Rise at the start of the spectrum (px).")
    ramp_end: float = pydantic.Field(300.0, ge=0, description="Fall at the end of the spectrum (px).")
    lines: tuple[tuple[float, float, float], ...] = pydantic.Field(
        ((900.0, 0.6, 6.0), (1700.0, 0.4, 10.0)),
        description="Absorption lines: (position from the start in px, fractional depth, sigma px).",
    )
    fwhm: float | None = pydantic.Field(None, gt=0, description="Cross-section FWHM (px); None: the PSF's.")
    fwhm_slope: float = pydantic.Field(0.0, description="FWHM growth along the spectrum (px per 1000 px).")
    sky_rate: float = pydantic.Field(1.0, ge=0, description="Sky (ADU/s/pixel).")
    filter: str = pydantic.Field("empty", description="FILTER (physical filter, e.g. empty or SDSSr_65mm).")
    grating: str = pydantic.Field("holo4_003", description="GRATING.")

    @pydantic.field_validator("grating")
    @classmethod
    def _check_grating(cls, value: str) -> str:
        if value not in _GRATINGS and not value.startswith("empty"):
            raise ValueError(f"grating {value!r} is not one of {', '.join(_GRATINGS)} or empty")
        return value

    @property
    def direction(self) -> tuple[float, float]:
        """Unit vector (dx, dy) of the dispersion."""
        a = math.radians(self.dispersion_angle)
        return math.sin(a), math.cos(a)


def spectrum_profile(config: SpectrumConfig, t: np.ndarray) -> np.ndarray:
    """f(t): 0 outside [0, length], smooth ramps at both ends, absorption lines; 1 on the continuum."""
    t = np.asarray(t, dtype=float)
    f = np.ones_like(t)
    if config.ramp_start > 0:
        u = np.clip(t / config.ramp_start, 0, 1)
        f *= u * u * (3 - 2 * u)
    if config.ramp_end > 0:
        u = np.clip((config.length - t) / config.ramp_end, 0, 1)
        f *= u * u * (3 - 2 * u)
    for position, depth, sigma in config.lines:
        f *= 1.0 - depth * np.exp(-0.5 * ((t - position) / sigma) ** 2)
    f[(t < 0) | (t > config.length)] = 0.0
    return f


def _cross_fwhm(config: SpectrumConfig, fwhm0: float, t: np.ndarray) -> np.ndarray:
    return np.maximum(fwhm0 + config.fwhm_slope * np.asarray(t) / 1000.0, 0.5)


def _draw_first_order(image: np.ndarray, config: SpectrumConfig, fwhm0: float, rate_e: float, exp_time: float) -> None:
    """Add the first order (e-) to ``image`` (3 x 3 sub-samples per pixel)."""
    dx, dy = config.direction
    x0 = config.zeroth_order_x + config.offset * dx
    y0 = config.zeroth_order_y + config.offset * dy
    x1, y1 = x0 + config.length * dx, y0 + config.length * dy
    sigma_max = float(_cross_fwhm(config, fwhm0, np.array([0.0, config.length])).max()) / _FWHM_PER_SIGMA
    pad = 7 * sigma_max + 2
    rows, cols = image.shape
    ya, yb = max(0, math.floor(min(y0, y1) - pad)), min(rows, math.ceil(max(y0, y1) + pad) + 1)
    xa, xb = max(0, math.floor(min(x0, x1) - pad)), min(cols, math.ceil(max(x0, x1) + pad) + 1)
    if ya >= yb or xa >= xb:
        return
    sub = (np.arange(3) + 0.5) / 3 - 0.5
    # Flux per unit length along the trace so that a row holds rate_e per second (for |angle| < 45°).
    per_length = rate_e * exp_time * abs(dy) if abs(dy) >= abs(dx) else rate_e * exp_time * abs(dx)
    step = max(1, int(2e6 // ((xb - xa) * 9)))
    for r0 in range(ya, yb, step):
        r1 = min(yb, r0 + step)
        yy = (np.arange(r0, r1)[:, None] + sub[None, :]).reshape(-1)  # fine rows
        xx = (np.arange(xa, xb)[:, None] + sub[None, :]).reshape(-1)  # fine cols
        ry, rx = yy[:, None] - y0, xx[None, :] - x0
        t = rx * dx + ry * dy
        c = rx * dy - ry * dx
        sigma = _cross_fwhm(config, fwhm0, t) / _FWHM_PER_SIGMA
        value = (
            per_length * spectrum_profile(config, t) * np.exp(-0.5 * (c / sigma) ** 2) / (math.sqrt(2 * np.pi) * sigma)
        )
        value = value.reshape(r1 - r0, 3, xb - xa, 3).mean(axis=(1, 3))
        image[r0:r1, xa:xb] += value.astype(np.float32)


def render_dispersed(
    *,
    scene: SceneConfig | None = None,
    spectrum: SpectrumConfig | None = None,
    exp_time: float | None = None,
    pointing: Pointing | dict | None = None,
    seed: int = 0,
    scale: float = 1.0,
    noise: bool = True,
) -> RenderedDetector:
    """Render a LATISS dispersed image (electrons) and its truth (``truth["spectrum"]``).

    Parameters
    ----------
    scene : `SceneConfig`, optional
        PSF of the zeroth order (and default cross-section FWHM), dark current, cosmic rays,
        full well, default exposure time (sky and stars are not used).
    spectrum : `SpectrumConfig`, optional
        The spectrum.
    exp_time : `float`, optional
        Seconds (default ``scene.exp_time``).
    pointing : `Pointing` or `dict`, optional
        Boresight (only for the WCS; default `lsst.ts.rapidanalysis.sim.scene.DEFAULT_POINTING`).
    seed : `int`
        Noise seed.
    scale : `float`
        Data-section scale (positions are not scaled: choose them inside the smaller image).
    noise : `bool`
        Add photon noise and cosmic rays.
    """
    from .scene import DEFAULT_POINTING, adaptive_moments, psf_stamp

    instrument = get_instrument("LATISS")
    detector = instrument.detectors[0]
    scene = scene or SceneConfig()
    spectrum = spectrum or SpectrumConfig()
    exp_time = float(scene.exp_time if exp_time is None else exp_time)
    point = Pointing.from_any(pointing, DEFAULT_POINTING)
    geometry = get_geometry(detector.physical_type, scale)
    rows, cols = geometry.shape
    zx, zy = spectrum.zeroth_order_x, spectrum.zeroth_order_y
    if not (0 <= zx < cols and 0 <= zy < rows):
        raise ValueError(f"zeroth order ({zx}, {zy}) is outside the {cols} x {rows} image")
    electronics = amp_electronics(instrument, detector, geometry)
    gain = float(np.mean([el.gain for el in electronics.values()]))
    optics = get_optics(instrument)
    fwhm_px = scene.seeing_fwhm / optics.pixel_scale
    fwhm0 = spectrum.fwhm if spectrum.fwhm is not None else fwhm_px
    rng = np.random.default_rng([seed, detector.id, 17])

    lam = np.full(geometry.shape, spectrum.sky_rate * gain * exp_time + scene.dark_current * exp_time, np.float32)
    zeroth_flux = spectrum.zeroth_order_rate * gain * exp_time
    peak = 0.0
    for _, x0, y0, stamp in _render_stamps(
        scene.psf_model,
        scene.moffat_beta,
        np.array([zx]),
        np.array([zy]),
        np.array([zeroth_flux]),
        np.array([fwhm_px]),
        np.array([scene.e1]),
        np.array([scene.e2]),
    ):
        _add_stamp(lam, x0, y0, stamp)
        peak = float(stamp.max())
    rate_e = spectrum.continuum_rate * gain
    _draw_first_order(lam, spectrum, fwhm0, rate_e, exp_time)

    cosmic: dict[str, list] = {"x0": [], "y0": [], "x1": [], "y1": [], "charge_e": []}
    if noise:
        image = _photon_noise(lam, rng)
        cosmic = _cosmic_rays(image, scene.cosmic_ray_rate, exp_time, rng)
    else:
        image = lam
    n_saturated = _bleed(
        image, scene.full_well, geometry.data_height if len(geometry.amps) == 16 else None, scene.bleed
    )

    dx, dy = spectrum.direction
    sx0 = zx + spectrum.offset * dx
    sy0 = zy + spectrum.offset * dy
    trace: dict[str, Any] = {}
    if abs(dy) >= abs(dx):
        y_end = sy0 + spectrum.length * dy
        y_rows = np.arange(max(0, math.ceil(min(sy0, y_end))), min(rows - 1, math.floor(max(sy0, y_end))) + 1)
        t = (y_rows - sy0) / dy
        profile = spectrum_profile(spectrum, t)
        keep = profile > 0
        y_rows, t, profile = y_rows[keep], t[keep], profile[keep]
        ridge_x = sx0 + t * dx
        fwhm_row = _cross_fwhm(spectrum, fwhm0, t) / abs(dy)
        trace = {
            "y": [int(v) for v in y_rows],
            "x": [round(float(v), 4) for v in ridge_x],
            "fwhm_px": [round(float(v), 4) for v in fwhm_row],
            "profile": [round(float(v), 6) for v in profile],
            "rate_e": [round(float(v), 3) for v in rate_e * profile],
            "rate_adu": [round(float(v), 3) for v in spectrum.continuum_rate * profile],
        }
    sigma_cross = fwhm0 / _FWHM_PER_SIGMA / max(abs(dy), abs(dx))
    peak_fraction = math.erf(0.5 / (sigma_cross * math.sqrt(2)))
    stamp = psf_stamp(scene, fwhm_px, scene.e1, scene.e2)
    moments = adaptive_moments(stamp)
    spectrum_truth = {
        "config": spectrum.model_dump(mode="json"),
        "gain": gain,
        "exp_time": exp_time,
        "zeroth_order": {
            "x": zx,
            "y": zy,
            "rate_adu": spectrum.zeroth_order_rate,
            "flux_e": zeroth_flux,
            "peak_rate_adu": peak / gain / exp_time if exp_time > 0 else None,
            "peak_e": peak,
            "fwhm_px": fwhm_px,
        },
        "first_order_start": [sx0, sy0],
        "first_order_end": [sx0 + spectrum.length * dx, sy0 + spectrum.length * dy],
        "direction": [dx, dy],
        "continuum_rate_adu": spectrum.continuum_rate,
        "continuum_rate_e": rate_e,
        "continuum_peak_rate_adu": spectrum.continuum_rate * peak_fraction,
        "examiner_continuum_adu_s_approx": spectrum.continuum_rate * peak_fraction + spectrum.sky_rate,
        "cross_fwhm_px_start": fwhm0,
        "sky_rate_adu": spectrum.sky_rate,
        "sky_rate_e": spectrum.sky_rate * gain,
        "rows": trace,
        "notes": (
            "continuum_rate_* is the first order's flux summed across a row on the plateau (above sky); "
            "continuum_peak_rate_adu is the pixel-integrated peak of a centred ridge; the examiner's number (98th "
            "percentile of ridge maxima, no sky subtraction) is about continuum_peak_rate_adu + sky_rate_adu."
        ),
    }
    wcs = detector_wcs(instrument, detector, geometry, point)
    truth: dict[str, Any] = {
        "instrument": instrument.name,
        "detector": {"id": detector.id, "name": detector.name, "physical_type": detector.physical_type},
        "img_type": "OBJECT",
        "image_class": "sky",
        "exp_time": exp_time,
        "seed": seed,
        "scale": scale,
        "shape": list(geometry.shape),
        "noise": noise,
        "pointing": point.as_dict(),
        "band": spectrum.filter,
        "sky": {
            "rate_e_per_s": spectrum.sky_rate * gain,
            "level_e": spectrum.sky_rate * gain * exp_time,
            "dark_e": scene.dark_current * exp_time,
            "flat_level_e": 0.0,
        },
        "psf": {
            "model": scene.psf_model,
            "beta": scene.moffat_beta if scene.psf_model == "moffat" else None,
            "fwhm_arcsec": scene.seeing_fwhm,
            "fwhm_px": fwhm_px,
            "e1": scene.e1,
            "e2": scene.e2,
            "sigma_adaptive_px": moments["sigma"],
            "pixel_scale_arcsec": optics.pixel_scale,
        },
        "stars": {},
        "cosmic_rays": cosmic,
        "saturation": {"full_well_e": scene.full_well, "n_saturated_pixels": n_saturated, "bleed": scene.bleed},
        "response": {"applied": False},
        "spectrum": spectrum_truth,
        "scene": scene.model_dump(mode="json"),
    }
    return RenderedDetector(image, truth, geometry, wcs, detector, instrument)


def simulate_dispersed(
    root: pathlib.Path | str,
    obsid: str,
    *,
    scene: SceneConfig | None = None,
    spectrum: SpectrumConfig | None = None,
    exp_time: float | None = None,
    pointing: Pointing | dict | None = None,
    tai_start: float | None = None,
    group_id: str | None = None,
    seed: int = 0,
    scale: float = 1.0,
    compress: bool = False,
    row_bias_rms: float = 1.5,
    extra_headers: dict[str, Any] | None = None,
) -> SimulatedRaw:
    """Render and write a LATISS dispersed raw (``FILTER``/``GRATING`` from ``spectrum``) with its truth."""
    instrument = get_instrument("LATISS")
    detector = instrument.detectors[0]
    scene = scene or SceneConfig()
    spectrum = spectrum or SpectrumConfig()
    _, day_obs, seq_num = parse_obsid(obsid, instrument)
    tai = float(tai_start) if tai_start is not None else default_tai_start(day_obs, seq_num)
    point = Pointing.from_any(pointing, zenith_pointing(tai, instrument))
    rendered = render_dispersed(
        scene=scene, spectrum=spectrum, exp_time=exp_time, pointing=point, seed=seed, scale=scale
    )
    parts = raw_parts(
        rendered,
        instrument,
        detector,
        root,
        obsid,
        img_type="OBJECT",
        tai=tai,
        pointing=point,
        group_id=group_id,
        band=spectrum.filter,
        grating=spectrum.grating,
        extra_headers=extra_headers,
        seed=seed,
        row_bias_rms=row_bias_rms,
        compress=compress,
        truth_extra={"filter": spectrum.filter, "grating": spectrum.grating},
    )
    truth_file = write_truth(truth_path(parts.path), parts.truth)
    parts.header["SIMTRUTH"] = (truth_file.name, "truth sidecar")
    hdul = make_hdulist(parts.header, parts.amps, rendered.geometry, parts.electronics, compress=compress)
    write_atomic(parts.path, hdulist_bytes(hdul))
    return SimulatedRaw(parts.path, truth_file, None, rendered, parts.electronics)
