"""A simulated telescope: the camera and mount simulators of one instrument on one clock."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..data.camera import Instrument
from ..sal import State
from .camera_sim import CAMERA_COMPONENTS, CameraSimulator, SimClock
from .mount_sim import make_mount_simulator

__all__ = ["SimulatedTelescope", "make_telescope"]


@dataclasses.dataclass
class SimulatedTelescope:
    """Camera and mount simulators sharing a clock, so exposures and telemetry share a time line."""

    clock: SimClock
    camera: CameraSimulator
    mount: Any
    camera_name: str

    async def start(self) -> None:
        """Wait until both simulators run."""
        await self.camera.start_task
        await self.mount.start_task

    async def close(self) -> None:
        """Stop both."""
        await self.camera.close()
        await self.mount.close()


def make_telescope(
    instrument: Instrument, writer: Callable[..., Any], *, time_scale: float, jitter_arcsec: float = 0.1
) -> SimulatedTelescope:
    """The ENABLED camera simulator of ``instrument`` (files from ``writer``) and its mount, pointing
    where the mount tracks."""
    clock = SimClock(time_scale=time_scale)
    mount = make_mount_simulator(instrument.name, clock=clock, jitter_arcsec=jitter_arcsec)
    camera = CameraSimulator(
        instrument.name, writer=writer, clock=clock, pointing=mount.pointing_at, initial_state=State.ENABLED
    )
    return SimulatedTelescope(clock, camera, mount, CAMERA_COMPONENTS[instrument.name])
