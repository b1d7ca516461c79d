"""Listen to an instrument's mount telemetry over DDS and keep it in a `MountTelemetryBuffer`.

The RapidAnalysis CSC of each instrument subscribes (read-only) to the telemetry topics its
telescope's mount analysis needs: AuxTel's ATMCS for LATISS; the Simonyi TMA's MTMount and
MTRotator for LSSTCam and LSSTComCam. Every sample goes into the buffer under its EFD topic name,
and `wait_until_covered` tells when an exposure window has been received in full (telemetry
arrives after the fact: ATMCS packs a second of samples into each message).
"""

from __future__ import annotations

import asyncio
import logging

from ..sal.domain import Domain
from ..sal.remote import Remote
from .mount_telemetry import MountTelemetryBuffer

__all__ = ["MOUNT_TOPICS", "MountListener"]

#: Telemetry topics per instrument: component → topics (without the ``tel_`` prefix).
MOUNT_TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "LATISS": {"ATMCS": ("mount_AzEl_Encoders", "mount_Nasmyth_Encoders", "measuredTorque")},
    "LSSTComCam": {"MTMount": ("azimuth", "elevation"), "MTRotator": ("rotation", "motors")},
    "LSSTCam": {"MTMount": ("azimuth", "elevation"), "MTRotator": ("rotation", "motors")},
}
# Topics whose arrival bounds what is known (the axis positions; torques may lag behind).
_REQUIRED = {"ATMCS": ("mount_AzEl_Encoders",), "MTMount": ("azimuth", "elevation"), "MTRotator": ("rotation",)}


class MountListener:
    """Subscribe to the mount topics of ``instrument`` and fill ``buffer``.

    Parameters
    ----------
    domain : `Domain`
        DDS domain (the CSC's).
    instrument : `str`
        ``LATISS``, ``LSSTComCam`` or ``LSSTCam``.
    buffer : `MountTelemetryBuffer`
        Where samples go.
    log : `logging.Logger`, optional
    """

    def __init__(
        self, domain: Domain, instrument: str, buffer: MountTelemetryBuffer, log: logging.Logger | None = None
    ):
        self.buffer = buffer
        self.log = log or logging.getLogger(__name__)
        self.components = MOUNT_TOPICS.get(instrument, {})
        self.remotes: list[Remote] = []
        self._arrived = asyncio.Event()
        for component, topics in self.components.items():
            remote = Remote(domain, component, readonly=True, include=topics, start=False)
            for topic in topics:
                getattr(remote, f"tel_{topic}").callback = self._callback(f"lsst.sal.{component}.{topic}")
            self.remotes.append(remote)

    def _callback(self, efd_name: str):
        def store(data: object) -> None:
            try:
                self.buffer.append(efd_name, data)
            except Exception as e:  # one bad sample must not stop the listener
                self.log.warning("Mount telemetry %s sample not stored: %s", efd_name, e)
            self._arrived.set()

        return store

    @property
    def required_topics(self) -> list[str]:
        """EFD names of the topics that must cover an exposure window."""
        return [f"lsst.sal.{c}.{t}" for c in self.components for t in _REQUIRED.get(c, ())]

    async def start(self) -> None:
        """Start the remotes (returns when they read)."""
        for remote in self.remotes:
            await remote.start()

    async def close(self) -> None:
        """Stop reading."""
        for remote in self.remotes:
            await remote.close()
        self.remotes = []

    def covered_until(self) -> float:
        """TAI up to which every required topic has been received (-inf before any)."""
        ends = []
        for topic in self.required_topics:
            span = self.buffer.time_range(topic)
            if span is None:
                return float("-inf")
            ends.append(span[1])
        return min(ends) if ends else float("-inf")

    async def wait_until_covered(self, end_tai: float, timeout: float) -> bool:
        """Wait until every required topic has a sample at or after ``end_tai``; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.covered_until() < end_tai:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return False
        return True
