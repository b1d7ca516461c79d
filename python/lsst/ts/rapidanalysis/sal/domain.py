"""The DDS participant a process shares among its Controllers and Remotes."""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
import weakref
from typing import TYPE_CHECKING, Any

from cyclonedds.domain import DomainParticipant
from cyclonedds.topic import Topic

from .dds_config import ensure_dds_domain
from .sample_pump import SamplePump

if TYPE_CHECKING:
    from .sal_info import SalInfo

__all__ = ["Domain", "get_partition_prefix", "get_domain_id", "delete_entity"]


def delete_entity(entity: Any) -> None:
    """Delete a Cyclone entity now rather than whenever Python collects it."""
    try:
        entity.__del__()
    except Exception:
        pass


def get_partition_prefix() -> str:
    """``$LSST_DDS_PARTITION_PREFIX``; required, as in salobj."""
    prefix = os.environ.get("LSST_DDS_PARTITION_PREFIX")
    if not prefix:
        raise RuntimeError(
            "Environment variable LSST_DDS_PARTITION_PREFIX is not set; "
            "set it to e.g. 'summit' (all components that talk to each other must share it)"
        )
    return prefix


def get_domain_id() -> int:
    """``$LSST_DDS_DOMAIN_ID``, default 0."""
    text = os.environ.get("LSST_DDS_DOMAIN_ID", "0")
    try:
        return int(text)
    except ValueError:
        raise RuntimeError(f"LSST_DDS_DOMAIN_ID must be an integer, not {text!r}") from None


class Domain:
    """A DDS participant plus the identity of this process (as salobj's ``Domain``).

    Attributes
    ----------
    origin : `int`
        This process's id (``private_origin`` of everything it writes).
    default_identity : `str`
        ``private_identity`` of commands sent by Remotes of this domain: ``user@host``,
        or a CSC's ``Name[:index]`` when a Controller owns the domain.
    partition_prefix : `str`
        ``$LSST_DDS_PARTITION_PREFIX``.
    domain_id : `int`
        DDS domain id.
    participant : `cyclonedds.domain.DomainParticipant`
        The participant.
    """

    def __init__(self) -> None:
        self.origin = os.getpid()
        self.user_host = f"{getpass.getuser()}@{socket.getfqdn()}"
        self.default_identity = self.user_host
        self.partition_prefix = get_partition_prefix()
        self.domain_id = get_domain_id()
        ensure_dds_domain(self.domain_id)
        self.participant = DomainParticipant(self.domain_id)
        self.salinfo_set: weakref.WeakSet[SalInfo] = weakref.WeakSet()
        self._topics: dict[str, Topic] = {}
        self._pump: SamplePump | None = None
        self._closed = False

    def get_topic(self, dds_name: str, data_type: type) -> Topic:
        """The DDS topic of this name, created once per participant."""
        topic = self._topics.get(dds_name)
        if topic is None:
            topic = Topic(self.participant, dds_name, data_type)
            self._topics[dds_name] = topic
        return topic

    @property
    def pump(self) -> SamplePump:
        """The thread that delivers this participant's samples to the running loop."""
        if self._pump is None:
            self._pump = SamplePump(self.participant, asyncio.get_running_loop(), name=f"dds-pump-{self.domain_id}")
        return self._pump

    def add_salinfo(self, salinfo: SalInfo) -> None:
        """Register a SalInfo, so that `close` closes it."""
        if self._closed:
            raise RuntimeError("Domain is closed")
        self.salinfo_set.add(salinfo)

    def remove_salinfo(self, salinfo: SalInfo) -> None:
        """Forget a SalInfo (it is closing)."""
        self.salinfo_set.discard(salinfo)

    async def close(self) -> None:
        """Close every SalInfo, stop the pump and leave DDS (peers see us go at once)."""
        if self._closed:
            return
        self._closed = True
        for salinfo in list(self.salinfo_set):
            await salinfo.close()
        if self._pump is not None:
            self._pump.stop()
            self._pump = None
        self._topics.clear()
        # Deleting the participant deletes whatever of its readers and writers remain.
        delete_entity(self.participant)

    async def __aenter__(self) -> Domain:
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.close()
