"""Per-component DDS state shared by the topics of one Controller or Remote."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from typing import TYPE_CHECKING, Any, cast

from cyclonedds.core import Policy, Qos
from cyclonedds.pub import DataWriter, Publisher
from cyclonedds.sub import DataReader, Subscriber

from .dds_config import topic_qos
from .domain import Domain, delete_entity
from .enums import SalRetCode
from .idl_types import TopicType, get_topic_type
from .xml_interface import ComponentInfo, TopicInfo, load_component_info

if TYPE_CHECKING:
    from .topics.read_topic import ReadTopic
    from .topics.write_topic import WriteTopic

__all__ = ["SalInfo", "MAX_SEQ_NUM"]

MAX_SEQ_NUM = 2**31 - 1


class SalInfo:
    """DDS readers, writers and partitions for one SAL component (and index) in a `Domain`.

    Parameters
    ----------
    domain : `Domain`
        The participant to use.
    name : `str`
        SAL component name.
    index : `int`, optional
        SAL index; 0 or None for a non-indexed component (or a Remote that reads every index).
    write_only : `bool`
        Only write (no readers, nothing to start).
    interfaces_dir : `str`, optional
        Interface files; default: the package's.
    """

    def __init__(
        self,
        domain: Domain,
        name: str,
        index: int | None = 0,
        write_only: bool = False,
        interfaces_dir: str | None = None,
    ) -> None:
        self.domain = domain
        self.name = name
        self.component_info: ComponentInfo = load_component_info(name, interfaces_dir)
        index = 0 if index is None else int(index)
        if index != 0 and not self.component_info.indexed:
            raise ValueError(f"Index={index} must be 0 or None; {name} is not an indexed SAL component")
        self.index = index
        self.write_only = write_only
        self.identity = domain.default_identity
        self.log = logging.getLogger(self.name_index)
        # As salobj: make the logger at least as verbose as INFO, but never less verbose than it
        # was (this logger is shared with a Controller of the same name and index, whose level
        # may have been set by --loglevel or setLogLevel).
        if self.log.getEffectiveLevel() > logging.INFO:
            self.log.setLevel(logging.INFO)
        self._partition = {
            "cmd": f"{domain.partition_prefix}.{name}.cmd",
            "data": f"{domain.partition_prefix}.{name}.data",
        }
        self._publishers: dict[str, Publisher] = {}
        self._subscribers: dict[str, Subscriber] = {}
        self._readers: dict[str, tuple[ReadTopic, DataReader]] = {}
        self._writers: list[DataWriter] = []
        #: seqNum → callback for commands this SalInfo's Remote is waiting on.
        self._running_cmds: dict[int, Any] = {}
        #: The one ackcmd writer of a Controller's commands, made by the first of them.
        self._ackcmd_writer: WriteTopic | None = None
        self.start_called = False
        self.started_task: asyncio.Future = asyncio.get_running_loop().create_future()
        self.done_task: asyncio.Future = asyncio.get_running_loop().create_future()
        self._closed = False
        self._reading_stopped = False
        domain.add_salinfo(self)

    @property
    def name_index(self) -> str:
        """``Name`` or ``Name:index`` (indexed components, even index 0)."""
        return f"{self.name}:{self.index}" if self.component_info.indexed else self.name

    @property
    def indexed(self) -> bool:
        """Whether the component is indexed."""
        return self.component_info.indexed

    @property
    def index_enum(self) -> type[enum.IntEnum] | None:
        """The component's named indices as an IntEnum, if it has any."""
        values = self.component_info.index_enumeration
        if not values:
            return None
        # The functional API makes a class; mypy only models it with literal arguments.
        return cast(type[enum.IntEnum], enum.IntEnum(f"{self.name}Index", values))

    @property
    def command_names(self) -> list[str]:
        """Short command names, sorted."""
        return self.component_info.command_names

    @property
    def event_names(self) -> list[str]:
        """Short event names, sorted."""
        return self.component_info.event_names

    @property
    def telemetry_names(self) -> list[str]:
        """Telemetry names, sorted."""
        return self.component_info.telemetry_names

    @property
    def sal_topic_names(self) -> list[str]:
        """All SAL topic names but ackcmd, sorted."""
        return self.component_info.sal_topic_names

    @property
    def partition_prefix(self) -> str:
        """The DDS partition prefix."""
        return self.domain.partition_prefix

    def topic_info(self, sal_name: str) -> TopicInfo:
        """Interface of one topic, by SAL name."""
        try:
            return self.component_info.topics[sal_name]
        except KeyError:
            raise ValueError(f"{self.name} has no topic {sal_name!r}") from None

    def topic_type(self, sal_name: str) -> TopicType:
        """DDS type of one topic, by SAL name."""
        return get_topic_type(self.topic_info(sal_name), self.indexed)

    def cmdtype(self, sal_name: str) -> int:
        """``cmdtype`` of a command in acks: its position in the sorted SAL topic names."""
        return self.sal_topic_names.index(sal_name)

    @staticmethod
    def _partition_kind(topic_kind: str) -> str:
        return "cmd" if topic_kind == "command" else "data"

    def _publisher(self, partition_kind: str) -> Publisher:
        pub = self._publishers.get(partition_kind)
        if pub is None:
            qos = Qos(Policy.Partition([self._partition[partition_kind]]))
            pub = Publisher(self.domain.participant, qos)
            self._publishers[partition_kind] = pub
        return pub

    def _subscriber(self, partition_kind: str) -> Subscriber:
        sub = self._subscribers.get(partition_kind)
        if sub is None:
            qos = Qos(Policy.Partition([self._partition[partition_kind]]))
            sub = Subscriber(self.domain.participant, qos)
            self._subscribers[partition_kind] = sub
        return sub

    def make_writer(self, topic_type: TopicType) -> DataWriter:
        """A DDS writer for a topic, in the right partition, with the right QoS."""
        kind = topic_type.info.kind
        topic = self.domain.get_topic(topic_type.dds_name, topic_type.data_type)
        writer = DataWriter(self._publisher(self._partition_kind(kind)), topic, topic_qos(kind, writer=True))
        self._writers.append(writer)
        return writer

    def make_reader(self, read_topic: ReadTopic) -> tuple[DataReader, int]:
        """A DDS reader for a topic; returns it with its creation time (ns, UTC).

        Samples written before that time arrived as history (late-joiner data).
        """
        if self.start_called:
            raise RuntimeError(f"{self.name_index}: cannot add reader {read_topic.attr_name} after start")
        topic_type = read_topic.topic_type
        kind = topic_type.info.kind
        topic = self.domain.get_topic(topic_type.dds_name, topic_type.data_type)
        created_ns = time.time_ns()
        reader = DataReader(self._subscriber(self._partition_kind(kind)), topic, topic_qos(kind, writer=False))
        self._readers[read_topic.attr_name] = (read_topic, reader)
        return reader, created_ns

    def make_ackcmd(
        self, private_seqNum: int, ack: SalRetCode, error: int = 0, result: str = "", timeout: float = 0.0
    ) -> Any:
        """An ackcmd sample (its origin, identity and cmdtype are filled in when written)."""
        data = self.topic_type("ackcmd").data_type(
            private_seqNum=private_seqNum, ack=int(ack), error=error, result=result, timeout=timeout
        )
        return data

    async def start(self) -> None:
        """Start reading: from now on samples (history first) reach the read topics."""
        if self.start_called:
            raise RuntimeError(f"{self.name_index}: start already called")
        self.start_called = True
        try:
            if not self.write_only:
                pump = self.domain.pump
                for read_topic, reader in self._readers.values():
                    pump.add_reader(reader, read_topic._deliver, read_topic._created_ns)
            if not self.started_task.done():
                self.started_task.set_result(None)
        except Exception as e:
            if not self.started_task.done():
                self.started_task.set_exception(e)
            raise

    def add_running_command(self, seq_num: int, callback: Any) -> None:
        """Route acks for ``seq_num`` to ``callback(ackcmd)``."""
        self._running_cmds[seq_num] = callback

    def remove_running_command(self, seq_num: int) -> None:
        """Stop routing acks for ``seq_num``."""
        self._running_cmds.pop(seq_num, None)

    def _route_ackcmd(self, ackcmd: Any) -> None:
        callback = self._running_cmds.get(ackcmd.private_seqNum)
        if callback is not None:
            callback(ackcmd)

    async def stop_reading(self, timeout: float = 1.0) -> None:
        """Stop delivering samples and cancel callbacks, letting them finish (e.g. write a
        CMD_ABORTED ack) for at most ``timeout`` seconds; writers stay usable."""
        if self._reading_stopped:
            return
        self._reading_stopped = True
        cancelled: list[asyncio.Task] = []
        if self.domain._pump is not None:
            for _, reader in self._readers.values():
                self.domain._pump.remove_reader(reader)
            # Deliver what the pump already handed to the loop, then what is still in the readers:
            # e.g. the final ack of a command whose CSC is closing the domain we share.
            await asyncio.sleep(0)
            for read_topic, reader in self._readers.values():
                while True:  # every sample left, however many (a burst of acks, say)
                    try:
                        samples = reader.take(N=1000)
                    except Exception as e:
                        self.log.warning("Could not drain %s: %r", read_topic.attr_name, e)
                        break
                    valid = [s for s in samples if s.sample_info.valid_data]
                    if valid:
                        read_topic._deliver(valid)
                    if len(samples) < 1000:
                        break
        for read_topic, _ in self._readers.values():
            cancelled += read_topic._close()
        for cmd_callback in list(self._running_cmds.values()):
            cmd_callback(None)
        self._running_cmds.clear()
        current = asyncio.current_task()
        cancelled = [t for t in cancelled if t is not current]
        if cancelled:
            await asyncio.wait(cancelled, timeout=timeout)

    async def close(self) -> None:
        """Delete this component's readers and writers."""
        if self._closed:
            return
        self._closed = True
        await self.stop_reading()
        for writer in self._writers:
            delete_entity(writer)
        for _, reader in self._readers.values():
            delete_entity(reader)
        for entity in [*self._publishers.values(), *self._subscribers.values()]:
            delete_entity(entity)
        self._writers.clear()
        self._readers.clear()
        self._publishers.clear()
        self._subscribers.clear()
        self.domain.remove_salinfo(self)
        if not self.started_task.done():
            self.started_task.cancel()
        if not self.done_task.done():
            self.done_task.set_result(None)

    def wait_for_acks(self, timeout: float) -> None:
        """Wait (blocking, at most ``timeout`` s per writer) until readers acknowledged what we wrote."""
        deadline = time.monotonic() + timeout
        for writer in self._writers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                writer.wait_for_acks(int(remaining * 1e9))
            except Exception:
                pass

    async def __aenter__(self) -> SalInfo:
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.close()
