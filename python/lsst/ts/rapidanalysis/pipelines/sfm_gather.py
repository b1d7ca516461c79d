"""``sfm_gather``: the per-visit metrics of a gathered set of ``sfm`` detector results.

The CSC runs it (it cannot be requested with ``processData``) when every selected detector of a
visit has finished, or at the gather timeout after the first did, and again at the re-gather when
the first gather was partial (`lsst.ts.rapidanalysis.dispatch.gather`). Its inputs are a JSON
file the CSC writes (``visit.json``: image name, instrument, expected detectors, the detector
metric rows, partial/regather) followed by the detectors' 8 x 8-binned post-ISR images.

Visit metrics (``ra-algorithms.md`` §2, averages are nanmeans over detectors):

* ``psfFwhmMean`` (RubinTV "PSF FWHM"), ``psfFwhmMedian``, ``psfFwhmMin``, ``psfFwhmMax``;
* ``psfGradient`` = √(FWHM₉₅² − FWHM₀₅²) over the per-detector FWHMs (warning ≥ 0.65″, bad
  ≥ 0.85″; NaN with fewer than 3 detectors);
* ``psfFwhmStandardized`` = median FWHM · airmass^−0.6 · (λ_eff/500 nm)^0.2;
* ``e1Median``, ``e2Median``, ``ellipticityMedian`` (median over detectors of √(e1² + e2²)),
  ``skyBgMedian``, ``zeroPointMedian``, ``nPsfStarTotal``, ``effTimeMedian``; and for the
  database the min/median/max of every detector metric (as ConsDB's ``visit1_quicklook``),
  ``zeroPointRealMedian`` (ZP − 2.5 log10 t) and the witness detector's FWHM.

Products: the focal-plane FWHM/whisker map and the binned mosaic (PNG).
"""

from __future__ import annotations

import json
import math
import pathlib
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pydantic
from astropy.io import fits

from ..data.camera import get_instrument
from .base import (
    ExitCode,
    Pipeline,
    PipelineConfig,
    PipelineContext,
    PipelineError,
    PipelineResult,
    Product,
    TelemetrySample,
)
from .summary_stats import standardized_fwhm
from .visit_plots import plot_focal_plane, plot_mosaic

__all__ = ["SfmGatherConfig", "SfmGatherPipeline", "visit_metrics", "VISIT_FILE"]

#: Name of the CSC-written description of the visit (the first input).
VISIT_FILE = "visit.json"
# Per-detector metrics summarised as _min/_median/_max for the database.
_SUMMARISED = (
    "psfFwhm",
    "psfSigma",
    "psfArea",
    "e1",
    "e2",
    "skyBg",
    "skyNoise",
    "meanVar",
    "zeroPoint",
    "magLim",
    "effTime",
    "effTimePsfSigmaScale",
    "effTimeSkyBgScale",
    "effTimeZeroPointScale",
    "astromOffsetMean",
    "astromOffsetStd",
    "postIsrPixelMedian",
)


class SfmGatherConfig(PipelineConfig):
    """Configuration of ``sfm_gather``."""

    psf_gradient_warning: float = pydantic.Field(0.65, gt=0, description="PSF gradient warning level (arcsec).")
    psf_gradient_bad: float = pydantic.Field(0.85, gt=0, description="PSF gradient bad level (arcsec).")
    witness_detector: int | None = pydantic.Field(
        None, ge=0, description="Witness detector (default: LSSTCam 94, ComCam 4, LATISS 0)."
    )
    make_plots: bool = pydantic.Field(True, description="Write the focal-plane map and the mosaic.")


_WITNESS = {"LSSTCam": 94, "LSSTComCam": 4, "LATISS": 0}


def _values(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    values = [r.get(key) for r in rows]
    return np.array([v for v in values if isinstance(v, int | float) and v is not None and math.isfinite(v)], float)


def _stat(values: np.ndarray, how: str) -> float:
    if values.size == 0:
        return math.nan
    reducers: dict[str, Callable[[np.ndarray], Any]] = {
        "mean": np.mean,
        "median": np.median,
        "min": np.min,
        "max": np.max,
    }
    return float(reducers[how](values))


def visit_metrics(
    rows: list[dict[str, Any]], *, airmass: float | None, band: str | None, witness: int | None
) -> dict[str, Any]:
    """Visit metrics from per-detector metric rows (see the module docstring)."""
    fwhm = _values(rows, "psfFwhm")
    gradient = math.nan
    if fwhm.size >= 3:
        p05, p95 = np.percentile(fwhm, [5.0, 95.0])
        gradient = math.sqrt(max(p95**2 - p05**2, 0.0))
    median_fwhm = _stat(fwhm, "median")
    out: dict[str, Any] = {
        "nDetectors": len(rows),
        "psfFwhmMean": _stat(fwhm, "mean"),
        "psfFwhmMedian": median_fwhm,
        "psfFwhmMin": _stat(fwhm, "min"),
        "psfFwhmMax": _stat(fwhm, "max"),
        "psfFwhmStandardized": standardized_fwhm(median_fwhm, airmass, band),
        "psfGradient": gradient,
        "e1Median": _stat(_values(rows, "e1"), "median"),
        "e2Median": _stat(_values(rows, "e2"), "median"),
        # |e| per detector, then the median: the page's "ellipticity" (a median e1, e2 pair would cancel).
        "ellipticityMedian": _stat(
            np.array(
                [
                    math.hypot(r["e1"], r["e2"])
                    for r in rows
                    if isinstance(r.get("e1"), int | float)
                    and isinstance(r.get("e2"), int | float)
                    and math.isfinite(r["e1"])
                    and math.isfinite(r["e2"])
                ],
                float,
            ),
            "median",
        ),
        "skyBgMedian": _stat(_values(rows, "skyBg"), "median"),
        "zeroPointMedian": _stat(_values(rows, "zeroPoint"), "median"),
        "nPsfStarTotal": int(_values(rows, "nPsfStar").sum()),
        "effTimeMedian": _stat(_values(rows, "effTime"), "median"),
    }
    for key in _SUMMARISED:
        values = _values(rows, key)
        for how in ("min", "median", "max"):
            out[f"{key}_{how}"] = _stat(values, how)
    real = [
        r["zeroPoint"] - 2.5 * math.log10(r["expTime"])
        for r in rows
        if isinstance(r.get("zeroPoint"), float) and math.isfinite(r["zeroPoint"]) and (r.get("expTime") or 0) > 0
    ]
    out["zeroPointRealMedian"] = float(np.median(real)) if real else math.nan
    witness_rows = [r for r in rows if r.get("detector") == witness]
    out["witnessPsfFwhm"] = witness_rows[0].get("psfFwhm", math.nan) if witness_rows else math.nan
    return out


def _read_visit(path: pathlib.Path) -> dict[str, Any]:
    try:
        visit = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PipelineError(
            f"cannot read the visit description {path} ({type(e).__name__}: {e})", exit_code=ExitCode.NO_INPUT
        ) from None
    for key in ("imageName", "instrument", "expected", "detectors"):
        if key not in visit:
            raise PipelineError(f"visit description {path} has no {key!r}", exit_code=ExitCode.NO_INPUT)
    return visit


def _read_binned(paths: list[pathlib.Path]) -> tuple[dict[int, np.ndarray], int, list[str]]:
    images, binning, problems = {}, 8, []
    for path in paths:
        try:
            with fits.open(path, memmap=False) as hdul:
                header, data = hdul[0].header, hdul[0].data
                images[int(header["DETECTOR"])] = np.asarray(data, dtype=np.float32)
                binning = int(header.get("BINNING", binning))
        except Exception as e:
            problems.append(f"binned image {path.name} unreadable ({type(e).__name__}: {e})")
    return images, binning, problems


def _json_value(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


class SfmGatherPipeline(Pipeline[SfmGatherConfig]):
    """Visit metrics and plots from the gathered ``sfm`` detector results."""

    name = "sfm_gather"
    description = "Per-visit SFM metrics, focal-plane map and mosaic (run by the CSC's gather)"
    Config = SfmGatherConfig
    requires_inputs = False
    internal = True

    def run(self, inputs: list[pathlib.Path], config: SfmGatherConfig, context: PipelineContext) -> PipelineResult:
        """Gather; see the module docstring."""
        if not inputs:
            raise PipelineError(
                "sfm_gather needs the visit description as its first input", exit_code=ExitCode.NO_INPUT
            )
        visit = _read_visit(pathlib.Path(inputs[0]))
        rows = [r for r in visit["detectors"] if isinstance(r, dict) and "detector" in r]
        image_name = str(visit["imageName"])
        try:
            instrument = get_instrument(visit["instrument"])
        except ValueError as e:
            raise PipelineError(str(e), exit_code=ExitCode.NO_INPUT) from None
        expected = [int(d) for d in visit["expected"]]
        witness = config.witness_detector if config.witness_detector is not None else _WITNESS.get(instrument.name)
        airmass = _values(rows, "airmass")
        bands = {r.get("band") for r in rows if r.get("band")}
        band = bands.pop() if len(bands) == 1 else None
        metrics = visit_metrics(
            rows, airmass=float(np.median(airmass)) if airmass.size else None, band=band, witness=witness
        )
        partial = bool(visit.get("partial", False))
        flags = []
        gradient = metrics["psfGradient"]
        if math.isfinite(gradient) and gradient >= config.psf_gradient_bad:
            flags.append(f"PSF gradient {gradient:.2f} arcsec is bad (>= {config.psf_gradient_bad})")
        elif math.isfinite(gradient) and gradient >= config.psf_gradient_warning:
            flags.append(f"PSF gradient {gradient:.2f} arcsec is high (>= {config.psf_gradient_warning})")
        missing = sorted(set(expected) - {int(r["detector"]) for r in rows})
        products = []
        if config.make_plots and (rows or len(inputs) > 1):
            context.check_cancelled()
            title = f"{image_name}: {len(rows)}/{len(expected)} detectors" + (" (partial)" if partial else "")
            if math.isfinite(metrics["psfFwhmMedian"]):
                title += f', median FWHM {metrics["psfFwhmMedian"]:.2f}"'
            path = context.product_path(f"sfm_focal_plane_{image_name}.png")
            plot_focal_plane(instrument, rows, path, title, expected)
            products.append(Product(path=str(path), description=f"PSF FWHM and ellipticity per detector, {image_name}"))
            images, binning, problems = _read_binned([pathlib.Path(p) for p in inputs[1:]])
            flags.extend(problems)
            if images:
                context.check_cancelled()
                path = context.product_path(f"sfm_mosaic_{image_name}.png")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    plot_mosaic(instrument, images, binning, path, image_name)
                products.append(Product(path=str(path), description=f"binned post-ISR mosaic of {image_name}"))
        telemetry_fields = {
            key: _json_value(metrics[key])
            for key in (
                "nDetectors",
                "psfFwhmMean",
                "psfFwhmMedian",
                "psfFwhmMin",
                "psfFwhmMax",
                "psfFwhmStandardized",
                "psfGradient",
                "e1Median",
                "e2Median",
                "skyBgMedian",
                "zeroPointMedian",
                "nPsfStarTotal",
                "effTimeMedian",
            )
        }
        telemetry_fields.update(imageName=image_name, partial=partial)
        metrics.update(nExpected=len(expected), partial=int(partial), regather=int(bool(visit.get("regather"))))
        return PipelineResult(
            image_name=image_name,
            metrics={k: _json_value(v) for k, v in metrics.items() if isinstance(v, int | float)},
            telemetry=[TelemetrySample(topic="sfmVisitMetrics", fields=telemetry_fields)],
            products=products,
            summary={
                "nExpected": len(expected),
                "nProcessed": len(rows),
                "partial": partial,
                "regather": bool(visit.get("regather")),
                "missingDetectors": missing,
                "flags": flags,
            },
        )
