"""``command_rapid_analysis INDEX``: command the Rapid Analysis CSC from a terminal."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from lsst.ts.idl.enums.OCPS import SalIndex

from .sal.csc_commander import CscCommander

__all__ = ["RapidAnalysisCommander", "command_rapid_analysis"]


class RapidAnalysisCommander(CscCommander):
    """CscCommander with readable help for processData and a compact jobResult."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(name="RapidAnalysis", telemetry_fields_to_not_compare=("timestamp", "cpuLoad"), **kwargs)
        self.help_dict["processData"] = (
            "dataId pipeline [config]   e.g. processData '{\"obsid\": \"MC_O_20251115_000226\"}' image_stats '{}'"
        )

    async def do_processData(self, args: list[str]) -> None:  # noqa: N802 (SAL name)
        """processData with an optional config (default ``{}``)."""
        if len(args) not in (2, 3):
            raise ValueError("processData takes: dataId pipeline [config]")
        config = args[2] if len(args) == 3 else "{}"
        ack = await self.remote.cmd_processData.set_start(dataId=args[0], pipeline=args[1], config=config, timeout=600)
        self.output(f"processData: {ack.result}")

    async def evt_jobResult_callback(self, data: Any) -> None:  # noqa: N802
        """One line per job, with its metrics."""
        status = "succeeded" if data.success else f"FAILED (exit {data.exitCode}): {data.errorReport}"
        try:
            metrics = json.loads(data.result).get("metrics", {})
        except ValueError:
            metrics = {}
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(metrics.items())[:8])
        self.output(
            f"{data.private_sndStamp:0.3f} jobResult {data.jobId} {data.pipeline} {data.imageName}: {status} "
            f"in {data.duration:.2f} s {shown}"
        )


def command_rapid_analysis() -> None:
    """Entry point."""
    asyncio.run(RapidAnalysisCommander.amain(index=SalIndex))
