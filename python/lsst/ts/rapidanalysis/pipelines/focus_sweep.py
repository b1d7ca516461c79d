"""``focus_sweep``: best focus from a sweep of visits at different focus positions.

Request
-------
``processData(pipeline="focus_sweep", dataId=<the sweep's last visit, e.g. {"dayObs": 20251115,
"seqNum": 42}>, config={"visits": [<visit ids dayObs*100000+seqNum>, ...]})`` (what the
``OCPS:101`` front door sends for ``<instrument>-FROM-OCS_FOCUSSWEEP``). The CSC gives the job the
raws of every listed visit (and of the dataId's, which is always part of the sweep) for a few
detectors: the dataId's ``detectors`` if it names them, else `FocusSweepConfig.detectors`, else
the field centre and two of its corners (`DEFAULT_DETECTORS`). The resolving is
``dispatch/inputs.py``'s, told by this class's `FocusSweepPipeline.multi_visit` and the class
methods `FocusSweepPipeline.input_visits` and `FocusSweepPipeline.input_detectors`. From the
command line, ``rapid_analysis run focus_sweep RAW...`` groups the given raws by visit.

Where each visit's FWHM comes from
----------------------------------
The pipeline measures it itself, from the raws it is given, with ``sfm``'s own measurement
(`lsst.ts.rapidanalysis.pipelines.sfm.measure_detector`: ISR, background, detection, adaptive
moments, PSF-star selection and model; no photometric calibration, which focus does not need):
the visit FWHM is the median ``psfFwhm`` (arcsec) of its detectors, as ``sfm_gather``'s
``psfFwhmMedian``. So "sfm first for any visit not yet measured" holds by construction: every
visit without a known FWHM is measured here, with the same code and settings (`FocusSweepConfig.sfm`)
as ``sfm``. Why not read the results database instead: a worker has no database connection (only
the CSC writes it), the visits of a sweep are usually not processed autonomously on the detectors
a sweep needs, and a gather's FWHM over whatever detectors were selected mixes field positions
that differ from visit to visit. Measuring three detectors takes well under a second a visit on
small images and a few seconds on full-size ones. A caller that already has a visit's FWHM (the
CSC from its database, a notebook) passes it in ``visit_fwhm`` ({visit id: arcsec}); such a visit
is not measured again, only its header is read for the focus position.

The focus position of a visit is its raws' ``FOCUSZ`` header card (mm), as real LATISS and
LSSTCam raws carry it; a visit without a finite ``FOCUSZ`` is not usable.

Fit
---
Defocus adds in quadrature to the seeing, so ``FWHM²`` against focus ``z`` is a parabola::

    FWHM(z)² = a (z - z0)² + c,   a = k² (arcsec²/mm²), c = FWHM(z0)²

First a weighted linear least-squares fit of ``FWHM² = A z² + B z + C`` (σ(FWHM²) = 2 FWHM σ(FWHM),
σ(FWHM) from the PSF stars' size scatter over √nPsfStar per detector, with a floor of
``fwhm_error_floor`` of the FWHM) checks the curvature: ``A <= 0`` (negative) or ``A`` below
``min_curvature_snr`` of its uncertainty (flat) ends there, with no best focus. Then
``scipy.optimize.curve_fit`` of the parabola's vertex form gives ``z0`` (best focus), ``c`` and
their covariance directly; the uncertainties are scaled up by √χ²_red when χ²_red > 1 (the FWHM
errors were too small, or the model does not describe the data). With 3 visits there is no
residual to judge: the uncertainties come from the FWHM errors alone (and a flag says so). With 6
or more visits, one visit far off the curve (more than ``outlier_threshold``, 5, times the others'
robust scatter: a gust, a cloud, a failed measurement) is left out and the curve fitted again; a
flag names it.

Flags (``summary["flags"]``, the telemetry's ``flags``): fewer than ``min_visits`` (3) usable
visits; non-positive or insignificant curvature; a fit that did not converge; a best focus outside
the swept range (the extrapolated value is in ``summary["extrapolatedBestFocus"]``, never in the
metrics); an uncertainty larger than half the swept range; ``FWHM(z0)² <= 0``. In every one of
these cases ``bestFocus`` (and what depends on it) is NaN and ``fitOk`` is 0: the result never
claims a focus it did not find. The job still succeeds (the sweep was analysed) and publishes
what it has; the reason is in the flags.

Output
------
Metrics (the results database): ``bestFocus``, ``bestFocusErr`` (mm), ``fwhmAtBestFocus``,
``fwhmAtBestFocusErr`` (arcsec), ``curvature`` (a, arcsec²/mm²) and ``curvatureErr``,
``defocusCoefficient`` (k = √a, arcsec/mm), ``chi2Reduced``, ``focusMin``/``focusMax`` (mm),
``nVisits`` (usable), ``nVisitsRequested``, ``fitOk``. Telemetry ``focusSweepResult`` (one sample).
A PNG of FWHM against focus with the fitted curve and the best focus (matplotlib, Agg).
``summary``: per visit its obsid, focus, FWHM and error, detectors measured, residual, or why it
was not usable.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pydantic

from ..data.camera import Instrument
from .base import (
    ExitCode,
    Pipeline,
    PipelineConfig,
    PipelineContext,
    PipelineError,
    PipelineResult,
    Product,
    TelemetrySample,
    safe_file_name,
)
from .fits_input import read_primary_header

__all__ = [
    "FocusSweepConfig",
    "FocusSweepPipeline",
    "FocusFit",
    "VisitFwhm",
    "fit_focus_curve",
    "DEFAULT_DETECTORS",
    "MAX_VISITS",
]

#: Detectors measured per visit when neither the dataId nor the configuration names them: the
#: field centre and two of its corners (LSSTCam R22_S11, R22_S00, R22_S22; ComCam S11, S00, S22).
DEFAULT_DETECTORS: dict[str, tuple[int, ...]] = {"LSSTCam": (94, 90, 98), "LSSTComCam": (4, 0, 8), "LATISS": (0,)}
#: At most this many visits in one sweep.
MAX_VISITS = 200
#: Image types that are not sky images (as ``sfm``'s).
_NOT_SKY = frozenset({"BIAS", "DARK", "FLAT", "SFLAT", "DFLAT", "SPOT", "CWFS"})


def _check_visit_id(visit: int) -> int:
    day, seq = divmod(int(visit), 100_000)
    text = str(day)
    if len(text) != 8 or seq < 1:
        raise ValueError(f"visit id {visit} is not dayObs*100000+seqNum (e.g. 2025111500042)")
    try:
        import datetime

        datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise ValueError(f"visit id {visit}: dayObs {text} is not a real date") from None
    return int(visit)


class FocusSweepConfig(PipelineConfig):
    """Configuration of ``focus_sweep``."""

    visits: list[int] = pydantic.Field(
        default_factory=list,
        max_length=MAX_VISITS,
        description="Visit ids (dayObs*100000+seqNum) of the sweep; the dataId's visit is always included.",
    )
    detectors: list[int] | None = pydantic.Field(
        None,
        min_length=1,
        max_length=50,
        description="Detectors measured per visit when the dataId names none (default: centre and two corners).",
    )
    visit_fwhm: dict[int, float] = pydantic.Field(
        default_factory=dict,
        description="Visit FWHMs already measured (visit id -> arcsec): not measured again.",
    )
    min_visits: int = pydantic.Field(3, ge=3, le=MAX_VISITS, description="Fewer usable visits: no fit.")
    fwhm_error_floor: float = pydantic.Field(
        0.005, gt=0, le=0.5, description="Smallest relative uncertainty of a visit FWHM (fraction)."
    )
    min_curvature_snr: float = pydantic.Field(
        3.0, gt=0, description="The curvature must exceed this many times its uncertainty."
    )
    sfm: dict[str, Any] = pydantic.Field(
        default_factory=dict, description="Settings of the sfm measurement (SfmConfig fields)."
    )
    outlier_threshold: float = pydantic.Field(
        5.0,
        ge=0,
        description="With 6+ visits, leave out one this many times the others' scatter off the curve; 0: never.",
    )
    make_plot: bool = pydantic.Field(True, description="Write the focus-curve plot (PNG).")

    @pydantic.field_validator("visits")
    @classmethod
    def _valid_visits(cls, visits: list[int]) -> list[int]:
        for visit in visits:
            _check_visit_id(visit)
        if len(set(visits)) != len(visits):
            raise ValueError("visits lists a visit twice")
        return visits

    @pydantic.field_validator("visit_fwhm")
    @classmethod
    def _valid_fwhm(cls, fwhm: dict[int, float]) -> dict[int, float]:
        for visit, value in fwhm.items():
            _check_visit_id(visit)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"visit_fwhm of {visit} must be a positive number of arcsec, not {value}")
        return fwhm

    @pydantic.field_validator("sfm")
    @classmethod
    def _valid_sfm(cls, sfm: dict[str, Any]) -> dict[str, Any]:
        from .sfm import SfmConfig

        SfmConfig(**sfm)  # a bad field is a ValueError naming it
        return sfm


@dataclasses.dataclass
class VisitFwhm:
    """One visit of the sweep: where it was focused and how wide its PSF was."""

    visit: int
    obsid: str = ""
    focus: float = math.nan
    fwhm: float = math.nan
    fwhm_err: float = math.nan
    detectors: list[int] = dataclasses.field(default_factory=list)
    detector_fwhm: list[float] = dataclasses.field(default_factory=list)
    source: str = "measured"
    problem: str = ""
    #: Fitted minus measured FWHM (arcsec), once fitted.
    residual: float = math.nan
    #: Left out of the fit as an outlier.
    rejected: bool = False

    @property
    def usable(self) -> bool:
        return not self.problem and all(map(math.isfinite, (self.focus, self.fwhm, self.fwhm_err)))


@dataclasses.dataclass
class FocusFit:
    """The focus curve fitted to a sweep (NaN where there is no trustworthy value)."""

    ok: bool = False
    best_focus: float = math.nan
    best_focus_err: float = math.nan
    fwhm_at_best: float = math.nan
    fwhm_at_best_err: float = math.nan
    curvature: float = math.nan
    curvature_err: float = math.nan
    chi2_reduced: float = math.nan
    converged: bool = False
    extrapolated_best_focus: float | None = None
    flags: list[str] = dataclasses.field(default_factory=list)
    #: (z0, a, c) of the vertex form, for the plot (also when the result is not trusted).
    params: tuple[float, float, float] | None = None
    residuals: list[float] = dataclasses.field(default_factory=list)
    #: Indices (into the points given) of the point left out as an outlier, if any.
    rejected: list[int] = dataclasses.field(default_factory=list)

    @property
    def defocus_coefficient(self) -> float:
        """k = √a (arcsec per mm)."""
        return math.sqrt(self.curvature) if self.curvature > 0 else math.nan


def fit_focus_curve(
    focus: np.ndarray | list[float],
    fwhm: np.ndarray | list[float],
    fwhm_err: np.ndarray | list[float],
    *,
    min_visits: int = 3,
    min_curvature_snr: float = 3.0,
    outlier_threshold: float = 5.0,
) -> FocusFit:
    """Fit ``FWHM² = a (z - z0)² + c`` to a sweep; see the module docstring for the method and flags.

    With 6 or more points, one point whose residual is more than ``outlier_threshold`` times the
    others' robust scatter (1.4826 MAD of the normalised residuals, at least 1) is left out and
    the curve fitted again (`FocusFit.rejected`, and a flag, say which); 0 disables this.
    """
    z = np.asarray(focus, dtype=float)
    f = np.asarray(fwhm, dtype=float)
    ferr = np.asarray(fwhm_err, dtype=float)
    fit = _fit_parabola(z, f, ferr, min_visits, min_curvature_snr)
    if fit.params is None or z.size < max(6, min_visits + 1) or outlier_threshold <= 0:
        return fit
    z0, a, c = fit.params
    normalised = (a * (z - z0) ** 2 + c - f**2) / (2.0 * f * ferr)
    order = np.argsort(-np.abs(normalised))
    worst, others = int(order[0]), np.abs(normalised[order[1:]])
    scale = max(1.4826 * float(np.median(others)), 1.0)
    if abs(normalised[worst]) <= outlier_threshold * scale:
        return fit
    keep = np.arange(z.size) != worst
    refit = _fit_parabola(z[keep], f[keep], ferr[keep], min_visits, min_curvature_snr)
    refit.rejected = [worst]
    refit.flags.insert(
        0,
        f'the visit at focus {z[worst]:.4g} mm (FWHM {f[worst]:.3g}") was left out: {abs(normalised[worst]):.1f} '
        f"times the others' scatter off the curve",
    )
    residuals = iter(refit.residuals)
    refit.residuals = [math.nan if i == worst else next(residuals, math.nan) for i in range(z.size)]
    return refit


def _fit_parabola(
    z: np.ndarray, f: np.ndarray, ferr: np.ndarray, min_visits: int, min_curvature_snr: float
) -> FocusFit:
    """One fit of the focus curve (`fit_focus_curve` without the outlier check)."""
    from scipy.optimize import curve_fit

    out = FocusFit()
    n = z.size
    if n < min_visits:
        out.flags.append(f"only {n} usable visit(s): a focus curve needs at least {min_visits}")
        return out
    if np.unique(z).size < 3:
        out.flags.append(f"only {np.unique(z).size} distinct focus position(s): a parabola needs 3")
        return out
    y, yerr = f**2, 2.0 * f * ferr
    # Weighted linear least squares of y = A z² + B z + C, z centred for conditioning.
    zc = z.mean()
    u = z - zc
    design = np.stack([u**2, u, np.ones_like(u)], axis=1)
    w = 1.0 / yerr
    coef, *_ = np.linalg.lstsq(design * w[:, None], y * w, rcond=None)
    cov_lin = np.linalg.pinv((design * w[:, None]).T @ (design * w[:, None]))
    dof = n - 3
    chi2 = float(np.sum(((design @ coef - y) * w) ** 2))
    scale = math.sqrt(chi2 / dof) if dof > 0 and chi2 > dof else 1.0
    a_lin, a_err = float(coef[0]), math.sqrt(max(cov_lin[0, 0], 0.0)) * scale
    out.curvature, out.curvature_err = a_lin, a_err
    out.chi2_reduced = chi2 / dof if dof > 0 else math.nan
    if a_lin <= 0:
        out.flags.append(
            f"the curvature of FWHM² against focus is not positive ({a_lin:.3g} ± {a_err:.2g} arcsec²/mm²): "
            "no minimum in these visits"
        )
        return out
    if a_lin < min_curvature_snr * a_err:
        out.flags.append(
            f"the focus curve is flat: curvature {a_lin:.3g} ± {a_err:.2g} arcsec²/mm² is below "
            f"{min_curvature_snr:g} times its uncertainty"
        )
        return out
    b_lin, c_lin = float(coef[1]), float(coef[2])
    p0 = (-b_lin / (2 * a_lin), a_lin, c_lin - b_lin**2 / (4 * a_lin))

    def model(uu: np.ndarray, u0: float, a: float, c: float) -> np.ndarray:
        return a * (uu - u0) ** 2 + c

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, cov = curve_fit(model, u, y, p0=p0, sigma=yerr, absolute_sigma=True, maxfev=2000)
    except (RuntimeError, ValueError) as e:
        out.flags.append(f"the focus-curve fit did not converge ({e})")
        return out
    if not np.all(np.isfinite(params)) or not np.all(np.isfinite(np.diag(cov))):
        out.flags.append("the focus-curve fit did not converge (no finite covariance)")
        return out
    out.converged = True
    u0, a, c = (float(p) for p in params)
    chi2 = float(np.sum(((model(u, u0, a, c) - y) / yerr) ** 2))
    scale = math.sqrt(chi2 / dof) if dof > 0 and chi2 > dof else 1.0
    errors = np.sqrt(np.maximum(np.diag(cov), 0.0)) * scale
    out.chi2_reduced = chi2 / dof if dof > 0 else math.nan
    out.params = (u0 + zc, a, c)
    out.residuals = [float(r) for r in (np.sqrt(np.maximum(model(u, u0, a, c), 0.0)) - f)]
    out.curvature, out.curvature_err = a, float(errors[1])
    z0, z0_err = u0 + zc, float(errors[0])
    if dof == 0:
        out.flags.append("3 visits: the fit is exact, its uncertainties come from the FWHM errors alone")
    lo, hi = float(z.min()), float(z.max())
    ok = True
    if not lo <= z0 <= hi:
        out.flags.append(
            f"the best focus is outside the swept range [{lo:.4g}, {hi:.4g}] mm (extrapolated {z0:.4g} mm): "
            "sweep again around it"
        )
        out.extrapolated_best_focus = z0
        ok = False
    elif z0_err > (hi - lo) / 2:
        out.flags.append(f"the best focus is uncertain by {z0_err:.3g} mm, more than half the swept range")
        ok = False
    if c <= 0:
        out.flags.append(f"the fitted FWHM² at best focus is not positive ({c:.3g} arcsec²): not a defocus curve")
        ok = False
    if not ok:
        return out
    out.ok = True
    out.best_focus, out.best_focus_err = z0, z0_err
    out.fwhm_at_best = math.sqrt(c)
    out.fwhm_at_best_err = float(errors[2]) / (2 * math.sqrt(c))
    return out


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _number(header: Any, key: str) -> float:
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _visit_of(header: Any) -> int | None:
    try:
        return int(str(header.get("DAYOBS", "")).strip()) * 100_000 + int(header.get("SEQNUM"))
    except (TypeError, ValueError):
        return None


def _plot(visits: list[VisitFwhm], fit: FocusFit, path: pathlib.Path, title: str) -> None:
    # A bare Figure draws with the Agg canvas: no pyplot, no backend chosen, safe in worker threads.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    good = [v for v in visits if v.usable and not v.rejected]
    if good:
        ax.errorbar(
            [v.focus for v in good], [v.fwhm for v in good], yerr=[v.fwhm_err for v in good], fmt="o", color="C0",
            label="visit FWHM (median of detectors)",
        )  # fmt: skip
    for v in visits:
        if v.usable:
            ax.plot([v.focus] * len(v.detector_fwhm), v.detector_fwhm, ".", color="0.6", ms=3)
        if v.rejected:
            ax.plot([v.focus], [v.fwhm], "x", color="C3", ms=9, label="left out (outlier)")
    if fit.params is not None and good:
        z0, a, c = fit.params
        zs = np.array([v.focus for v in good])
        span = max(zs.max() - zs.min(), 1e-3)
        grid = np.linspace(zs.min() - 0.1 * span, zs.max() + 0.1 * span, 200)
        curve = np.sqrt(np.maximum(a * (grid - z0) ** 2 + c, 0.0))
        ax.plot(grid, curve, "-", color="C1", label="fit: FWHM² = a (z - z0)² + c")
    if fit.ok:
        ax.axvline(fit.best_focus, color="C2", ls="--")
        ax.axvspan(fit.best_focus - fit.best_focus_err, fit.best_focus + fit.best_focus_err, color="C2", alpha=0.2)
        ax.plot([], [], "--", color="C2", label=f"best focus {fit.best_focus:.4f} ± {fit.best_focus_err:.4f} mm, "
                f'FWHM {fit.fwhm_at_best:.3f}"')  # fmt: skip
    if fit.flags:
        ax.text(0.02, 0.02, "\n".join(f[:110] for f in fit.flags), transform=ax.transAxes, fontsize=7, color="C3",
                va="bottom")  # fmt: skip
    ax.set_xlabel("focus position FOCUSZ (mm)")
    ax.set_ylabel("PSF FWHM (arcsec)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper center", fontsize=8)
    fig.savefig(path)


class FocusSweepPipeline(Pipeline[FocusSweepConfig]):
    """Best focus of a sweep of visits (see the module docstring)."""

    name = "focus_sweep"
    description = "Best focus from a focus sweep: visit FWHM against FOCUSZ, parabola fit of FWHM²"
    Config = FocusSweepConfig
    #: Its inputs are the raws of several visits: ``dispatch/inputs.py`` resolves the visits of
    #: `input_visits` for the detectors of `input_detectors`.
    multi_visit: ClassVar[bool] = True

    @classmethod
    def input_visits(cls, config: Mapping[str, Any], day_obs: int | None, seq_num: int | None) -> list[int]:
        """The visit ids whose raws the job needs: the configured ones and the dataId's, in order."""
        visits = [int(v) for v in config.get("visits", [])]
        if day_obs is not None and seq_num is not None:
            own = int(day_obs) * 100_000 + int(seq_num)
            if own not in visits:
                visits.append(own)
        return visits

    @classmethod
    def input_detectors(cls, instrument: Instrument, config: Mapping[str, Any]) -> tuple[int, ...]:
        """The detectors measured per visit (when the dataId names none)."""
        configured = config.get("detectors")
        if configured:
            return tuple(int(d) for d in configured)
        if instrument.name in DEFAULT_DETECTORS:
            return DEFAULT_DETECTORS[instrument.name]
        return (instrument.science_detectors[0].id,)

    def run(self, inputs: list[pathlib.Path], config: FocusSweepConfig, context: PipelineContext) -> PipelineResult:
        """Measure each visit's FWHM, fit the focus curve; see the module docstring."""
        if not inputs:
            raise PipelineError("focus_sweep needs the raws of the sweep's visits", exit_code=ExitCode.NO_INPUT)
        from .sfm import SfmConfig, measure_detector

        sfm_config = SfmConfig(**{"refcat": "", **config.sfm})
        by_visit: dict[int, list[tuple[pathlib.Path, Any]]] = {}
        unreadable = []
        for path in map(pathlib.Path, inputs):
            try:
                header = read_primary_header(path)
            except PipelineError as e:
                unreadable.append(str(e))
                continue
            visit = _visit_of(header)
            if visit is None:
                unreadable.append(f"{path.name} has no DAYOBS/SEQNUM")
                continue
            by_visit.setdefault(visit, []).append((path, header))
        if not by_visit:
            raise PipelineError("; ".join(unreadable) or "no readable raw", exit_code=ExitCode.NO_INPUT)
        requested = list(dict.fromkeys(list(config.visits) + sorted(by_visit)))
        visits: list[VisitFwhm] = []
        for visit in requested:
            context.check_cancelled()
            visits.append(self._visit(visit, by_visit.get(visit, []), config, sfm_config, measure_detector, context))
        usable = [v for v in visits if v.usable]
        fit = fit_focus_curve(
            [v.focus for v in usable],
            [v.fwhm for v in usable],
            [v.fwhm_err for v in usable],
            min_visits=config.min_visits,
            min_curvature_snr=config.min_curvature_snr,
            outlier_threshold=config.outlier_threshold,
        )
        for v, residual in zip(usable, fit.residuals, strict=False):
            v.residual = residual
        for index in fit.rejected:
            usable[index].rejected = True
        newest = max(usable or visits, key=lambda v: v.visit)
        image_name = newest.obsid or next((v.obsid for v in visits if v.obsid), "")
        focus_values = [v.focus for v in usable]
        metrics: dict[str, float | int | None] = {
            "bestFocus": fit.best_focus,
            "bestFocusErr": fit.best_focus_err,
            "fwhmAtBestFocus": fit.fwhm_at_best,
            "fwhmAtBestFocusErr": fit.fwhm_at_best_err,
            "curvature": fit.curvature,
            "curvatureErr": fit.curvature_err,
            "defocusCoefficient": fit.defocus_coefficient,
            "chi2Reduced": fit.chi2_reduced,
            "focusMin": min(focus_values) if focus_values else math.nan,
            "focusMax": max(focus_values) if focus_values else math.nan,
            "nVisits": len(usable) - len(fit.rejected),
            "nVisitsRequested": len(visits),
            "fitOk": int(fit.ok),
        }
        metrics = {k: (_finite(v) if isinstance(v, float) else v) for k, v in metrics.items()}
        problems = [f"visit {v.visit}: {v.problem}" for v in visits if v.problem]
        flags = fit.flags + problems + unreadable
        products = []
        if config.make_plot:
            context.check_cancelled()
            path = context.product_path(f"focus_sweep_{safe_file_name(image_name or 'sweep')}.png")
            title = f"Focus sweep of {len(visits)} visit(s) ending {image_name}"
            _plot(visits, fit, path, title)
            products.append(Product(path=str(path), description=f"focus curve (FWHM against FOCUSZ), {image_name}"))
        telemetry = {
            "imageName": image_name,
            "visits": ",".join(str(v.visit) for v in visits),
            "flags": "; ".join(flags)[:2000],
            **{k: metrics[k] for k in (
                "bestFocus", "bestFocusErr", "fwhmAtBestFocus", "fwhmAtBestFocusErr", "curvature",
                "defocusCoefficient", "chi2Reduced", "focusMin", "focusMax", "nVisits", "fitOk",
            )},
        }  # fmt: skip
        telemetry["fitOk"] = bool(fit.ok)
        return PipelineResult(
            image_name=image_name,
            metrics=metrics,
            telemetry=[TelemetrySample(topic="focusSweepResult", fields=telemetry)],
            products=products,
            summary={
                "bestFocus": metrics["bestFocus"],
                "bestFocusErr": metrics["bestFocusErr"],
                "fwhmAtBestFocus": metrics["fwhmAtBestFocus"],
                "fitOk": fit.ok,
                "converged": fit.converged,
                "extrapolatedBestFocus": fit.extrapolated_best_focus,
                "flags": flags,
                "visits": [
                    {
                        "visit": v.visit,
                        "obsid": v.obsid,
                        "focus": _finite(v.focus),
                        "fwhm": _finite(v.fwhm),
                        "fwhmErr": _finite(v.fwhm_err),
                        "source": v.source,
                        "detectors": v.detectors,
                        "detectorFwhm": [_finite(x) for x in v.detector_fwhm],
                        "residual": _finite(v.residual),
                        "rejected": v.rejected,
                        "problem": v.problem,
                    }
                    for v in visits
                ],
            },
        )

    @staticmethod
    def _visit(
        visit: int,
        raws: list[tuple[pathlib.Path, Any]],
        config: FocusSweepConfig,
        sfm_config: Any,
        measure_detector: Any,
        context: PipelineContext,
    ) -> VisitFwhm:
        """One visit's focus (its headers' FOCUSZ) and FWHM (given, or measured on its raws)."""
        out = VisitFwhm(visit)
        if not raws:
            out.problem = "no raw of it was given (not found, or not yet written)"
            return out
        out.obsid = str(raws[0][1].get("OBSID", "") or "")
        image_type = str(raws[0][1].get("IMGTYPE", "") or "").strip().upper()
        if image_type in _NOT_SKY:
            out.problem = f"it is a {image_type} image, not a sky image"
            return out
        focus = [z for z in (_number(h, "FOCUSZ") for _, h in raws) if math.isfinite(z)]
        if not focus:
            out.problem = "its header has no finite FOCUSZ (focus position)"
            return out
        out.focus = float(np.median(focus))
        if visit in config.visit_fwhm:
            out.fwhm = float(config.visit_fwhm[visit])
            out.fwhm_err = config.fwhm_error_floor * out.fwhm * 2  # a number without its error: be modest
            out.source = "given"
            return out
        rel_errors, reasons = [], []
        for path, _ in raws:
            context.check_cancelled()
            try:
                m = measure_detector(path, sfm_config, context)
            except PipelineError as e:
                reasons.append(str(e))
                continue
            fwhm = m.metrics.get("psfFwhm")
            if fwhm is None or not math.isfinite(fwhm) or fwhm <= 0:
                reasons.append(f"{path.name}: no PSF FWHM ({'; '.join(m.flags) or 'no PSF star'})")
                continue
            out.detectors.append(int(m.metrics.get("detector", -1)))
            out.detector_fwhm.append(float(fwhm))
            n = m.metrics.get("nPsfStar") or 0
            scatter, trace = m.metrics.get("psfStarDeltaSizeScatter"), m.metrics.get("psfTraceRadius")
            if n >= 2 and scatter is not None and trace and math.isfinite(scatter) and math.isfinite(trace):
                rel_errors.append(scatter / trace / math.sqrt(n))
            else:
                rel_errors.append(0.05)  # a single PSF star: its size says little
        if not out.detector_fwhm:
            out.problem = "no detector measured a PSF: " + "; ".join(reasons)
            return out
        out.fwhm = float(np.median(out.detector_fwhm))
        statistical = math.sqrt(sum(r * r for r in rel_errors)) / len(rel_errors)
        out.fwhm_err = out.fwhm * max(statistical, config.fwhm_error_floor)
        return out
