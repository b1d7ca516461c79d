"""A simulated focus sweep: N visits at given focus offsets, written as real-format raws.

The camera (or hexapod) focus position is the primary header's ``FOCUSZ`` card, in mm, as the
real raws carry it (``FOCUSZ: 0.742`` in a 2024 LATISS raw, ``FOCUSZ: -3.20`` in a 2025 LSSTCam
raw; obs_lsst reads it as the focus position, ``focus_z``). Each visit's PSF is broadened by the
defocus around a true best focus ``z0`` (`lsst.ts.rapidanalysis.sim.scene`)::

    FWHM(z)² = FWHM_seeing² + (k (z - z0))²

``k`` is in arcsec of FWHM per mm of focus offset. The defaults (k = 5″/mm, steps of 0.1 mm,
7 visits from -0.3 to +0.3 mm, z0 = +0.037 mm, seeing 0.8″) make a sweep whose ends are about
twice the seeing, as a real sweep is planned. They are not a calibrated optical model: the
geometric blur of a 1 mm defocus in LSSTCam's f/1.23 beam is ~0.8 mm (~16″) across, so a
quadrature ``k`` of the real camera is of order 8″/mm, and LATISS's hexapod (moving M2) has its
own scale; give ``k`` and the offsets of the sweep being imitated.

Raws go through the existing writer (`lsst.ts.rapidanalysis.sim.raw_writer.simulate_exposure`),
one exposure per visit with ``FOCUSZ`` set, truth beside each raw (its ``focus`` section), and
the sweep's truth as one dict (`FocusSweep.truth`), optionally written as
``{root}/focus_sweep_{last obsid}.truth.json``.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.camera import Instrument, get_instrument
from ..pipelines.focus_sweep import DEFAULT_DETECTORS
from .raw_writer import default_tai_start, simulate_exposure
from .scene import SceneConfig
from .truth import write_truth

__all__ = [
    "FocusSweep",
    "simulate_focus_sweep",
    "sweep_offsets",
    "visit_id",
    "FOCUS_DETECTORS",
    "DEFAULT_K_ARCSEC_PER_MM",
]

#: Default k: arcsec of FWHM per mm of focus offset (see the module docstring).
DEFAULT_K_ARCSEC_PER_MM = 5.0
#: A few detectors per instrument for a sweep: those ``focus_sweep`` measures by default.
FOCUS_DETECTORS: dict[str, tuple[int, ...]] = DEFAULT_DETECTORS


def visit_id(day_obs: int | str, seq_num: int) -> int:
    """The exposure/visit id: ``dayObs * 100000 + seqNum`` (obs_lsst's)."""
    return int(day_obs) * 100_000 + int(seq_num)


def sweep_offsets(n: int = 7, step: float = 0.1, centre: float = 0.0) -> list[float]:
    """``n`` focus positions (mm) ``step`` apart, centred on ``centre``."""
    if n < 1 or not step > 0:
        raise ValueError(f"a sweep needs n >= 1 positions and a step > 0, not n={n}, step={step}")
    return [round(centre + (i - (n - 1) / 2) * step, 6) for i in range(n)]


@dataclasses.dataclass
class FocusSweep:
    """What `simulate_focus_sweep` wrote.

    Attributes
    ----------
    instrument : `str`
    visits : `list` [`int`]
        Visit ids (dayObs * 100000 + seqNum), in order.
    obsids : `list` [`str`]
    offsets : `list` [`float`]
        FOCUSZ of each visit (mm).
    paths : `dict` [`int`, `dict` [`int`, `pathlib.Path`]]
        Raws by visit id, then detector id.
    truth : `dict`
        ``best_focus_z_mm`` (z0), ``defocus_fwhm_per_mm_arcsec`` (k), ``seeing_fwhm_arcsec``,
        ``step_mm``, ``visits``, ``focus_z_mm``, ``fwhm_arcsec`` (per visit, boresight).
    truth_path : `pathlib.Path` or None
    """

    instrument: str
    visits: list[int]
    obsids: list[str]
    offsets: list[float]
    paths: dict[int, dict[int, pathlib.Path]]
    truth: dict[str, Any]
    truth_path: pathlib.Path | None = None

    @property
    def data_id(self) -> dict[str, int]:
        """The RapidAnalysis dataId of the sweep's last visit (what processData is given)."""
        last = self.visits[-1]
        return {"dayObs": last // 100_000, "seqNum": last % 100_000}

    @property
    def files(self) -> list[pathlib.Path]:
        """Every raw of the sweep, visit by visit."""
        return [path for visit in self.visits for _, path in sorted(self.paths[visit].items())]


def simulate_focus_sweep(
    root: pathlib.Path | str,
    instrument: Instrument | str = "LSSTCam",
    *,
    offsets: Sequence[float] | None = None,
    best_focus: float = 0.037,
    k: float = DEFAULT_K_ARCSEC_PER_MM,
    scene: SceneConfig | None = None,
    day_obs: int = 20251115,
    first_seq: int = 100,
    detectors: Sequence[int] | None = None,
    scale: float = 1.0,
    seed: int = 0,
    seeing_jitter: float = 0.0,
    write_truth_file: bool = True,
    **kwargs: Any,
) -> FocusSweep:
    """Render and write a focus sweep: one exposure per offset, ``FOCUSZ`` = the offset.

    Parameters
    ----------
    root : `pathlib.Path` or `str`
        Raw-store root.
    instrument : `Instrument` or `str`
    offsets : sequence of `float`, optional
        Focus positions (mm), one visit each (default `sweep_offsets`: 7 at 0.1 mm steps).
    best_focus : `float`
        The true best focus z0 (mm).
    k : `float`
        Arcsec of FWHM per mm of focus offset (added in quadrature to the seeing).
    scene : `SceneConfig`, optional
        The rest of the scene (seeing, stars, ...); its focus fields are replaced.
    day_obs, first_seq : `int`
        The visits are ``first_seq, first_seq + 1, ...`` of ``day_obs``.
    detectors : sequence of `int`, optional
        Default `FOCUS_DETECTORS` of the instrument.
    scale : `float`
        Data-section scale (1 = full size; less for quick tests).
    seed : `int`
        Seed of the sweep; visit i uses ``seed * 1000 + i`` (noise, and star positions when
        ``scene.n_stars`` is set).
    seeing_jitter : `float`
        Relative rms of the seeing from visit to visit (the atmosphere does not wait for a sweep):
        visit i's seeing is ``scene.seeing_fwhm (1 + seeing_jitter g_i)``, g_i standard normal
        drawn from ``seed``; 0 keeps it fixed. Each visit's seeing is in the truth.
    write_truth_file : `bool`
        Also write the sweep's truth as ``{root}/focus_sweep_{last obsid}.truth.json``.
    **kwargs
        Passed to `simulate_exposure` (``compress``, ``exp_time``, ...).
    """
    instrument = get_instrument(instrument) if isinstance(instrument, str) else instrument
    offsets = list(offsets) if offsets is not None else sweep_offsets()
    if not offsets:
        raise ValueError("a focus sweep needs at least one offset")
    base = scene or SceneConfig()
    ids = list(detectors) if detectors is not None else list(FOCUS_DETECTORS[instrument.name])
    extra_headers = dict(kwargs.pop("extra_headers", None) or {})
    visits, obsids, paths, fwhm, seeing = [], [], {}, [], []
    jitter = np.random.default_rng([seed, 7]).standard_normal(len(offsets)) * seeing_jitter
    for i, z in enumerate(offsets):
        seq = first_seq + i
        obsid = f"{instrument.cam_code}_O_{day_obs}_{seq:06d}"
        seeing.append(float(base.seeing_fwhm * max(1.0 + jitter[i], 0.2)))
        focus = {"focus_z": float(z), "best_focus_z": best_focus, "defocus_fwhm_per_mm": k, "seeing_fwhm": seeing[-1]}
        visit_scene = SceneConfig.model_validate({**base.model_dump(), **focus})
        written = simulate_exposure(
            instrument,
            root,
            obsid,
            detectors=ids,
            scene=visit_scene,
            seed=seed * 1000 + i,
            scale=scale,
            tai_start=default_tai_start(day_obs, seq),
            extra_headers={**extra_headers, "FOCUSZ": (float(z), "Focus position (mm)")},
            **kwargs,
        )
        visits.append(visit_id(day_obs, seq))
        obsids.append(obsid)
        paths[visits[-1]] = written
        fwhm.append(visit_scene.focus_truth()["fwhm_arcsec"])
    diffs = np.diff(sorted(offsets))
    truth = {
        "instrument": instrument.name,
        "best_focus_z_mm": best_focus,
        "defocus_fwhm_per_mm_arcsec": k,
        "seeing_fwhm_arcsec": base.seeing_fwhm,
        "seeing_jitter": seeing_jitter,
        "visit_seeing_fwhm_arcsec": seeing,
        "step_mm": float(np.median(diffs)) if diffs.size else 0.0,
        "visits": visits,
        "obsids": obsids,
        "focus_z_mm": [float(z) for z in offsets],
        "fwhm_arcsec": fwhm,  # optical FWHM at the boresight, per visit
        "detectors": ids,
        "model": "FWHM^2 = seeing^2 + (k (FOCUSZ - z0))^2; FOCUSZ in mm, k in arcsec/mm",
    }
    truth_file = None
    if write_truth_file:
        truth_file = write_truth(pathlib.Path(root) / f"focus_sweep_{obsids[-1]}.truth.json", truth)
    return FocusSweep(instrument.name, visits, obsids, [float(z) for z in offsets], paths, truth, truth_file)
