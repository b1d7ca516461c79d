"""Which Cyclone DDS configuration a process uses, and the QoS of each kind of SAL topic."""

from __future__ import annotations

import os
import pathlib
import threading

from cyclonedds.core import Policy, Qos
from cyclonedds.domain import Domain as CycloneDomain

__all__ = ["ensure_dds_domain", "default_config_xml", "topic_qos", "MAX_DOMAIN_ID"]

MAX_DOMAIN_ID = 232
#: Samples of each event (per SAL index) a writer keeps for late joiners (DurabilityService).
_HISTORY_DEPTH = 100
#: Writer history of events and telemetry, per instance: how many samples not yet acknowledged
#: by every reader a writer holds before Cyclone discards the oldest (a KEEP_LAST writer prunes
#: the samples it overwrites, acknowledged or not). Deep enough for any burst a CSC writes;
#: KEEP_LAST so that a stalled reader never makes a CSC's publishing block or fail.
_WRITER_DEPTH = 1000
_MAX_BLOCKING_NS = 100_000_000  # 100 ms, as ts_ddsconfig
#: How long writing a command or an ack may wait for room (KEEP_ALL writers are flow-controlled:
#: they wait while too much is unacknowledged). Longer than the default, so that a burst of
#: commands slows down rather than fails.
_COMMAND_MAX_BLOCKING_NS = 2_000_000_000

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


def topic_qos(kind: str, *, writer: bool) -> Qos:
    """QoS for a reader or writer of one kind of topic (ts_ddsconfig profiles, DDS-era, but lossless).

    DDS never discards a sample on our side, whatever the burst:

    * Every reader is KEEP_ALL (with no resource limits): a received sample stays in the reader
      until the sample pump takes it; what to keep is then the Python queue's business (salobj
      semantics), not the DDS history's. A KEEP_LAST 100 reader silently lost acks when more
      than 100 arrived before the pump ran (two acks per command, 189 commands in flight).
    * Command and ackcmd writers are KEEP_ALL as well: Cyclone then keeps every sample until
      every reader acknowledged it, and flow-controls the writer (it waits, at most
      ``_COMMAND_MAX_BLOCKING_NS``, while too much is unacknowledged) instead of pruning.
    * Event and telemetry writers are KEEP_LAST ``_WRITER_DEPTH`` per instance, so that a
      stalled reader cannot block a CSC, yet a burst loses nothing.

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
    if kind not in ("command", "ackcmd", "event", "telemetry"):
        raise ValueError(f"unknown topic kind {kind!r}")
    lossless = not writer or kind in ("command", "ackcmd")
    max_blocking = _COMMAND_MAX_BLOCKING_NS if kind in ("command", "ackcmd") else _MAX_BLOCKING_NS
    policies = [
        Policy.Reliability.Reliable(max_blocking_time=max_blocking),
        Policy.History.KeepAll if lossless else Policy.History.KeepLast(_WRITER_DEPTH),
        Policy.ResourceLimits(max_samples=-1, max_instances=-1, max_samples_per_instance=-1),
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
    else:
        policies.append(Policy.Durability.Volatile)
    if writer:
        policies.append(Policy.WriterDataLifecycle(autodispose=True))
    return Qos(*policies)
