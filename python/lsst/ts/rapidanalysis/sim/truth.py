"""The truth sidecar of a simulated raw: ``{raw file}.truth.json`` next to it.

Keys (all lengths in pixels of the assembled detector image, 0-based pixel centres: the centre of
``image[0, 0]`` is x = y = 0, x the column; FITS/WCS pixels are these + 1):

* ``instrument``, ``detector`` {id, name, physical_type}, ``img_type``, ``image_class`` (bias, dark,
  flat, sky), ``exp_time``, ``seed``, ``scale``, ``shape`` [rows, cols], ``pointing`` {ra, dec,
  rot_pa}, ``detector_center_mm``, ``band``, ``zero_point`` (mag giving 1 e-/s),
  ``zero_point_with_exptime``;
* ``sky`` {rate_e_per_s, level_e, dark_e, flat_level_e};
* ``psf`` at the detector centre: model, beta, fwhm_arcsec, fwhm_px, e1, e2 (optical), and the
  adaptive-moment sigma / e1 / e2 / area of the pixel-integrated PSF;
* ``focus``: the focus model (`lsst.ts.rapidanalysis.sim.scene.SceneConfig.focus_truth`):
  ``focus_z_mm`` (this exposure's focus position, the header's ``FOCUSZ``), ``best_focus_z_mm``
  (z0, the true best focus), ``defocus_fwhm_per_mm_arcsec`` (k, arcsec of FWHM per mm of offset),
  ``seeing_fwhm_arcsec``, ``defocus_fwhm_arcsec`` = k |z - z0| and ``fwhm_arcsec`` =
  √(seeing² + (k (z - z0))²) at the boresight (the ``psf`` section has it at the detector);
  a focus sweep (`lsst.ts.rapidanalysis.sim.focus`) also writes the sweep's truth as
  ``{root}/focus_sweep_{last obsid}.truth.json``;
* ``stars``: columns id, x, y, ra, dec, mag, flux_e (above the atmosphere, whole exposure),
  response (vignetting at the star: the image holds flux_e x response), fwhm_arcsec, e1, e2,
  peak_e (noise-free peak with sky), saturated, in_image;
* ``cosmic_rays`` {x0, y0, x1, y1, charge_e}; ``saturation`` {full_well_e, n_saturated_pixels};
  ``response`` (vignetting, PRNU and how to regenerate the per-pixel response);
* ``amps`` {name: gain (e-/ADU), read_noise_e, read_noise_adu, bias_adu, saturate_adu,
  row_bias_rms_adu}, ``file``, ``obsid``, ``refcat`` (file name) — added by the raw writer;
* ``template`` (stream frames only): which template the pixels came from; its stars are at the
  template's positions and their RA/Dec were computed with the template's pointing, not with the
  WCS in this file's header.
* ``spectrum`` (LATISS dispersed images only): see `lsst.ts.rapidanalysis.sim.spectrum`.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np
from astropy.table import Table

from ..atomic_file import write_atomic

__all__ = ["TRUTH_SUFFIX", "truth_path", "write_truth", "read_truth", "stars_table"]

#: Appended to the raw file's name.
TRUTH_SUFFIX = ".truth.json"


def truth_path(raw_path: pathlib.Path | str) -> pathlib.Path:
    """``{raw_path}.truth.json``."""
    raw_path = pathlib.Path(raw_path)
    return raw_path.with_name(raw_path.name + TRUTH_SUFFIX)


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pathlib.Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_truth(path: pathlib.Path | str, truth: dict[str, Any]) -> pathlib.Path:
    """Write a truth dict as JSON (atomically) and return the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(truth, default=_default, separators=(",", ":")).encode())
    return path


def read_truth(path: pathlib.Path | str) -> dict[str, Any]:
    """Read a truth file (given it, or the raw file it belongs to)."""
    path = pathlib.Path(path)
    if not path.name.endswith(TRUTH_SUFFIX):
        path = truth_path(path)
    truth = json.loads(path.read_text())
    return truth


def stars_table(truth: dict[str, Any]) -> Table:
    """The truth's star list as an astropy Table (empty if there are no stars)."""
    stars = truth.get("template", {}).get("stars") if "stars" not in truth else truth["stars"]
    return Table(stars or {})
