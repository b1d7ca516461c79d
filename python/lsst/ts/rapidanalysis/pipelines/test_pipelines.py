"""Pipelines for testing scripts without data (simulation mode only), as OCPS has."""

from __future__ import annotations

import math
import pathlib
import time
import zlib
from typing import Any

import numpy as np
import pydantic

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
from .sfm_fields import TELEMETRY_FIELDS

__all__ = ["SucceedPipeline", "FailPipeline", "SleepPipeline", "CostPipeline", "CostConfig", "detector_cost"]


class SucceedConfig(PipelineConfig):
    """Configuration of ``test.succeed``."""

    value: float = pydantic.Field(1.0, description="Reported as the metric 'value'.")
    write_product: bool = pydantic.Field(False, description="Write a small text product.")
    telemetry: dict[str, dict[str, Any]] = pydantic.Field(
        default_factory=dict, description="Telemetry samples to publish, as {topic: {field: value}}."
    )


class SucceedPipeline(Pipeline[SucceedConfig]):
    """Succeeds at once, reporting ``value`` (and the number of inputs)."""

    name = "test.succeed"
    description = "Succeed at once (simulation mode)"
    Config = SucceedConfig
    simulation_only = True
    requires_inputs = False

    def run(self, inputs: list[pathlib.Path], config: SucceedConfig, context: PipelineContext) -> PipelineResult:
        products = []
        if config.write_product:
            path = context.product_path("test_succeed.txt")
            path.write_text(f"job {context.job_id}: value={config.value}\n")
            products.append(Product(path=str(path), mime_type="text/plain", description="test product"))
        return PipelineResult(
            metrics={"value": config.value, "nInputs": len(inputs)},
            telemetry=[TelemetrySample(topic=topic, fields=fields) for topic, fields in config.telemetry.items()],
            products=products,
            summary={"value": config.value},
        )


class FailConfig(PipelineConfig):
    """Configuration of ``test.fail``."""

    message: str = pydantic.Field("failed as requested", description="The failure reason.")
    exit_code: int = pydantic.Field(2, ge=1, le=255, description="The exit code to report.")
    crash: bool = pydantic.Field(False, description="Raise an unexpected exception instead.")


class FailPipeline(Pipeline[FailConfig]):
    """Fails at once with ``message`` (or crashes, to test unexpected errors)."""

    name = "test.fail"
    description = "Fail at once (simulation mode)"
    Config = FailConfig
    simulation_only = True
    requires_inputs = False

    def run(self, inputs: list[pathlib.Path], config: FailConfig, context: PipelineContext) -> PipelineResult:
        if config.crash:
            raise RuntimeError(config.message)
        raise PipelineError(config.message, exit_code=config.exit_code)


class SleepConfig(PipelineConfig):
    """Configuration of ``test.sleep``."""

    duration: float = pydantic.Field(1.0, ge=0, le=3600, description="Seconds to work.")
    check_interval: float = pydantic.Field(0.05, gt=0, le=10, description="Seconds between abort checks.")


class SleepPipeline(Pipeline[SleepConfig]):
    """Works (sleeps) for ``duration`` seconds, checking for abort as a real pipeline must."""

    name = "test.sleep"
    description = "Sleep for a while, abortable (simulation mode)"
    Config = SleepConfig
    simulation_only = True
    requires_inputs = False

    def run(self, inputs: list[pathlib.Path], config: SleepConfig, context: PipelineContext) -> PipelineResult:
        t0 = time.monotonic()
        while (elapsed := time.monotonic() - t0) < config.duration:
            context.check_cancelled()
            time.sleep(min(config.check_interval, config.duration - elapsed))
        return PipelineResult(metrics={"slept": time.monotonic() - t0}, summary={"slept": round(elapsed, 3)})


# -- test.cost: sfm's cost and result size, without its pixels --

#: The median sfm cost the measured spread is scaled to (s per detector).
COST_MEDIAN = 1.0
#: σ of ln(cost): the spread of sfm's per-detector cost. doc/performance.rst measured sfm at
#: 0.49–0.65 s per detector over five uncrowded scenes (±14 % about 0.57 s) and 1.2–1.6 s per
#: detector under a camera's write load in bench/keepup.py (±14 % about 1.4 s); σ = 0.2 is a little
#: wider than both (5–95 %: 0.72–1.39 × the median), so the slowest of 189 detectors is ~1.7 ×.
COST_SIGMA = 0.2
#: A crowded field (20 000 stars) took 2.25 s against 0.62 s for a normal one (3.6 ×): the cap.
COST_MAX_RATIO = 3.6
#: sfm's per-detector metric keys (`sfm.measure_detector`), in its order; tests/test_cost_pipeline.py
#: checks that they are still sfm's.
SFM_METRIC_KEYS = (
    "detector",
    "detectorName",
    "psfSigma",
    "psfFwhm",
    "psfArea",
    "psfIxx",
    "psfIyy",
    "psfIxy",
    "psfTraceRadius",
    "e1",
    "e2",
    "nPsfStar",
    "psfModelOrder",
    "psfStarDeltaSizeMedian",
    "psfStarDeltaSizeScatter",
    "psfStarDeltaE1Median",
    "psfStarDeltaE1Scatter",
    "psfStarDeltaE2Median",
    "psfStarDeltaE2Scatter",
    "nSource",
    "nSaturatedSource",
    "skyBg",
    "skyNoise",
    "meanVar",
    "readNoise",
    "zeroPoint",
    "zeroPointScatter",
    "nCalibStar",
    "nMatched",
    "astromOffsetMean",
    "astromOffsetStd",
    "wcsShiftX",
    "wcsShiftY",
    "magLim",
    "effTime",
    "effTimePsfSigmaScale",
    "effTimeSkyBgScale",
    "effTimeZeroPointScale",
    "postIsrPixelMedian",
    "pixelScale",
    "expTime",
    "airmass",
    "band",
    "wcsSource",
    "gain",
    "gainSource",
)
#: sfm's stages (its summary's ``timings``) and an illustrative share of the time each: ISR with
#: the read about half (0.27-0.32 s of 0.6 s in doc/performance.rst), measurement the next.
_SFM_STAGES = {
    "isr": 0.45,
    "background": 0.08,
    "detection": 0.12,
    "measurement": 0.17,
    "psf": 0.08,
    "calibration": 0.06,
    "metrics": 0.04,
}


def _seed_of(image_name: str, detector: int, seed: int) -> list[int]:
    return [zlib.crc32(image_name.encode()), int(detector), int(seed)]


def detector_cost(
    image_name: str,
    detector: int,
    *,
    median: float = COST_MEDIAN,
    sigma: float = COST_SIGMA,
    max_ratio: float = COST_MAX_RATIO,
    seed: int = 0,
) -> float:
    """Seconds ``test.cost`` holds its slot for one detector of one image (the same on every run).

    Log-normal about ``median`` with σ(ln) ``sigma``, at most ``max_ratio`` × the median, drawn
    from a generator seeded by the image name, the detector and ``seed``.
    """
    if median <= 0:
        return 0.0
    draw = float(np.random.default_rng(_seed_of(image_name, detector, seed)).standard_normal())
    return min(median * math.exp(sigma * draw), median * max_ratio)


class CostConfig(PipelineConfig):
    """Configuration of ``test.cost``."""

    median: float = pydantic.Field(COST_MEDIAN, ge=0, le=600, description="Median seconds per detector.")
    sigma: float = pydantic.Field(COST_SIGMA, ge=0, le=3, description="σ of ln(cost).")
    max_ratio: float = pydantic.Field(COST_MAX_RATIO, ge=1, le=100, description="Cap, as a multiple of the median.")
    seed: int = pydantic.Field(0, ge=0, description="Added to each detector's seed (another night's costs).")
    check_interval: float = pydantic.Field(
        0.2, gt=0, le=10, description="Seconds between abort checks (sfm checks about 6 times per detector)."
    )


class CostPipeline(Pipeline[CostConfig]):
    """Holds its worker slot as long as ``sfm`` would on each detector, and returns a result as large.

    For benchmarks of the dispatch at full focal plane without 14 GB of pixels a visit: the inputs
    are raws (the CSC waits for and checks them as for ``sfm``; a small-pixel raw serves), of
    which only the primary header is read (detector, image name, exposure time). Each detector
    then costs `detector_cost` seconds, abortable, and the result has ``sfm``'s shape: one
    ``sfmDetectorMetrics`` sample, one metrics row with sfm's keys and sfm's summary, with
    plausible made-up values. Per detector and gathered by ``sfm_gather``, like ``sfm``.
    """

    name = "test.cost"
    description = "Hold a worker as sfm would (log-normal cost, 1 s median) and return sfm's result shape (simulation)"
    Config = CostConfig
    simulation_only = True
    per_detector = True
    gather_pipeline = "sfm_gather"

    def run(self, inputs: list[pathlib.Path], config: CostConfig, context: PipelineContext) -> PipelineResult:
        """One sfm-shaped row per input raw, after its cost has passed."""
        # Imported here: test.succeed and the rest must not pay for astropy.
        from .fits_input import identify_detector, read_primary_header

        if not inputs:
            raise PipelineError("test.cost needs at least one input raw", exit_code=ExitCode.NO_INPUT)
        rows, telemetry, summaries = [], [], []
        image_names = set()
        for path in inputs:
            t0 = time.monotonic()
            context.check_cancelled()
            header = read_primary_header(pathlib.Path(path))
            detector, detector_name, _, flags = identify_detector(header)
            image_name = str(header.get("OBSID", "") or "")
            image_names.add(image_name)
            cost = detector_cost(
                image_name,
                detector,
                median=config.median,
                sigma=config.sigma,
                max_ratio=config.max_ratio,
                seed=config.seed,
            )
            while (left := cost - (time.monotonic() - t0)) > 0:
                context.check_cancelled()
                time.sleep(min(config.check_interval, left))
            exp_time = header.get("EXPTIME")
            metrics = _made_up_metrics(image_name, detector, detector_name, exp_time, config.seed)
            rows.append(metrics)
            fields: dict[str, Any] = {k: metrics[k] for k in TELEMETRY_FIELDS}
            fields.update(imageName=image_name, flags="; ".join(flags)[:1000])
            telemetry.append(TelemetrySample(topic="sfmDetectorMetrics", fields=fields))
            elapsed = time.monotonic() - t0
            timings = {stage: round(share * elapsed, 4) for stage, share in _SFM_STAGES.items()}
            timings["total"] = round(elapsed, 4)
            summaries.append(
                {
                    "file": pathlib.Path(path).name,
                    "detector": detector,
                    "flags": flags,
                    "isrSteps": ["simulated: test.cost reads the header only"],
                    "timings": timings,
                    "binnedImage": "",
                    "metrics": metrics,
                    "cost": round(cost, 4),
                }
            )
        job_metrics = (
            {k: v for k, v in rows[0].items() if k != "detector" and (isinstance(v, int | float) or v is None)}
            if len(rows) == 1
            else {}
        )
        return PipelineResult(
            image_name=sorted(image_names)[0] if len(image_names) == 1 else "",
            metrics=job_metrics,
            detector_metrics=[{k: v for k, v in r.items() if k not in ("detectorName", "band")} for r in rows],
            telemetry=telemetry,
            summary={"detectors": summaries, "errors": [], "skipped": []},
        )


def _made_up_metrics(image_name: str, detector: int, detector_name: str, exp_time: Any, seed: int) -> dict[str, Any]:
    """sfm's metrics row with plausible values (0.8″ seeing, r band, dark sky), seeded like the cost."""
    rng = np.random.default_rng([*_seed_of(image_name, detector, seed), 1])
    t = float(exp_time) if isinstance(exp_time, int | float) and exp_time > 0 else 30.0
    scale = 0.2
    sigma = float(1.70 * math.exp(0.05 * rng.standard_normal()))
    e1, e2 = (float(x) for x in 0.02 * rng.standard_normal(2))
    sky = float(1500.0 * t / 30.0 * math.exp(0.03 * rng.standard_normal()))
    zero_point = float(31.5 + 0.01 * rng.standard_normal())
    area = 4 * math.pi * sigma**2
    n_source = int(rng.integers(800, 1600))
    values: dict[str, Any] = {
        "detector": int(detector),
        "detectorName": detector_name,
        "psfSigma": sigma,
        "psfFwhm": sigma * 2.3548200450309493 * scale,
        "psfArea": area,
        "psfIxx": sigma**2 * (1 + e1),
        "psfIyy": sigma**2 * (1 - e1),
        "psfIxy": sigma**2 * e2,
        "psfTraceRadius": sigma,
        "e1": e1,
        "e2": e2,
        "nPsfStar": int(rng.integers(60, 200)),
        "psfModelOrder": 2,
        "psfStarDeltaSizeMedian": float(0.001 * rng.standard_normal()),
        "psfStarDeltaSizeScatter": 0.01,
        "psfStarDeltaE1Median": float(0.001 * rng.standard_normal()),
        "psfStarDeltaE1Scatter": 0.01,
        "psfStarDeltaE2Median": float(0.001 * rng.standard_normal()),
        "psfStarDeltaE2Scatter": 0.01,
        "nSource": n_source,
        "nSaturatedSource": int(rng.integers(0, 10)),
        "skyBg": sky,
        "skyNoise": math.sqrt(sky + 36.0),
        "meanVar": sky + 36.0,
        "readNoise": 6.0,
        "zeroPoint": zero_point,
        "zeroPointScatter": 0.02,
        "nCalibStar": int(rng.integers(50, 150)),
        "nMatched": int(rng.integers(200, 600)),
        "astromOffsetMean": 0.05,
        "astromOffsetStd": 0.03,
        "wcsShiftX": float(rng.standard_normal()),
        "wcsShiftY": float(rng.standard_normal()),
        "magLim": zero_point - 2.5 * math.log10(5 * math.sqrt(area * (sky + 36.0))),
        "effTime": t * 0.9,
        "effTimePsfSigmaScale": 0.95,
        "effTimeSkyBgScale": 0.97,
        "effTimeZeroPointScale": 0.98,
        "postIsrPixelMedian": sky,
        "pixelScale": scale,
        "expTime": t,
        "airmass": 1.1,
        "band": "r",
        "wcsSource": "simulated",
        "gain": 1.5,
        "gainSource": "simulated",
    }
    return {k: values[k] for k in SFM_METRIC_KEYS}
