"""Which Cyclone DDS configuration a process uses, and the QoS of each kind of SAL topic."""

from __future__ import annotations

import os
import pathlib
import threading

from cyclonedds.core import Policy, Qos
from cyclonedds.domain import Domain as CycloneDomain

__all__ = ["ensure_dds_domain", "default_config_xml", "topic_qos", "MAX_DOMAIN_ID"]

MAX_DOMAIN_ID = 232
_HISTORY_DEPTH = 100
_MAX_BLOCKING_NS = 100_000_000  # 100 ms, as ts_ddsconfig

_lock = threading.Lock()
_domains: dict[int, CycloneDomain | None] = {}


def default_config_xml(domain_id: int) -> str:
    """The shipped loopback-only, unicast-only configuration for ``domain_id``."""
    template = (pathlib.Path(__file__).parent / "data" / "cyclonedds_loopback.xml").read_text()
    return template.replace("{domain_id}", str(domain_id))


def ensure_dds_domain(domain_id: int) -> None:
    """Make sure ``domain_id`` is configured before the first participant joins it.

    ``CYCLONEDDS_URI``, when set, is the site's configuration and wins; otherwise the shipped
    loopback configuration is applied. The Cyclone domain object lives as long as the process.

    Parameters
    ----------
    domain_id : `int`
        DDS domain id, 0–232.
    """
    if not 0 <= domain_id <= MAX_DOMAIN_ID:
        raise ValueError(f"DDS domain id must be in 0–{MAX_DOMAIN_ID}, not {domain_id}")
    with _lock:
        if domain_id in _domains:
            return
        if os.environ.get("CYCLONEDDS_URI"):
            _domains[domain_id] = None
        else:
            _domains[domain_id] = CycloneDomain(domain_id, config=default_config_xml(domain_id))


def _reliable() -> Policy:
    return Policy.Reliability.Reliable(max_blocking_time=_MAX_BLOCKING_NS)


def topic_qos(kind: str, *, writer: bool) -> Qos:
    """QoS for a reader or writer of one kind of topic (ts_ddsconfig profiles, DDS-era).

    Events are transient-local so that late joiners get the last values; the writer's
    DurabilityService sets how many (Cyclone gives min(that, reader history depth)).

    Parameters
    ----------
    kind : `str`
        ``command``, ``ackcmd``, ``event`` or ``telemetry``.
    writer : `bool`
        Writer (True) or reader (False).

    Returns
    -------
    qos : `cyclonedds.core.Qos`
    """
    policies = [
        _reliable(),
        Policy.History.KeepLast(_HISTORY_DEPTH),
        Policy.DestinationOrder.ByReceptionTimestamp,
    ]
    if kind == "event":
        policies.append(Policy.Durability.TransientLocal)
        if writer:
            policies.append(
                Policy.DurabilityService(
                    cleanup_delay=0,
                    history=Policy.History.KeepLast(_HISTORY_DEPTH),
                    max_samples=-1,
                    max_instances=-1,
                    max_samples_per_instance=-1,
                )
            )
    elif kind in ("command", "ackcmd", "telemetry"):
        policies.append(Policy.Durability.Volatile)
    else:
        raise ValueError(f"unknown topic kind {kind!r}")
    if writer:
        policies.append(Policy.WriterDataLifecycle(autodispose=True))
    return Qos(*policies)
