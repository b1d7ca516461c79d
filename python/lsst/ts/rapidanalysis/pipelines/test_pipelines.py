"""Pipelines for testing scripts without data (simulation mode only), as OCPS has."""

from __future__ import annotations

import pathlib
import time
from typing import Any

import pydantic

from .base import (
    Pipeline,
    PipelineConfig,
    PipelineContext,
    PipelineError,
    PipelineResult,
    Product,
    TelemetrySample,
)

__all__ = ["SucceedPipeline", "FailPipeline", "SleepPipeline"]


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
