"""A command as a Remote sees it: send it, then follow its acknowledgements."""

from __future__ import annotations

import asyncio
import collections
import random
from typing import TYPE_CHECKING, Any

from ..enums import FAILED_ACK_CODES, FINAL_ACK_CODES, SalRetCode
from ..errors import AckError, AckTimeoutError
from .read_topic import ReadTopic
from .write_topic import WriteTopic

if TYPE_CHECKING:
    from ..sal_info import SalInfo

__all__ = ["RemoteCommand", "AckCmdReader", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 3600.0
_MAX_SEQ_NUM = 2**31 - 1


class AckCmdReader(ReadTopic):
    """Reads acks meant for this process's commands and routes them by seqNum, at once."""

    def __init__(self, salinfo: SalInfo) -> None:
        # Acks are routed as they come (never queued, so never dropped); the DDS reader keeps
        # every sample until the pump takes it (KEEP_ALL, see dds_config.topic_qos).
        super().__init__(salinfo=salinfo, attr_name="ack_ackcmd", max_history=0, queue_len=None)

    def _deliver(self, samples: list[Any]) -> None:
        origin = self.salinfo.domain.origin
        identity = self.salinfo.identity
        index = self.salinfo.index
        for ackcmd in samples:
            if ackcmd.origin != origin or ackcmd.identity != identity:
                continue
            if index != 0 and ackcmd.salIndex != index:
                continue
            self.salinfo._route_ackcmd(ackcmd)


class _CommandInfo:
    """The acknowledgements of one command in flight."""

    def __init__(self, command: RemoteCommand, seq_num: int, timeout: float) -> None:
        self.command = command
        self.seq_num = seq_num
        loop = asyncio.get_running_loop()
        self.end_time = loop.time() + timeout
        self.acks: collections.deque = collections.deque()
        self.event = asyncio.Event()
        self.last_ackcmd: Any = None
        self.closed = False

    def add_ackcmd(self, ackcmd: Any) -> None:
        if ackcmd is None:  # the Remote is closing
            self.closed = True
        else:
            self.acks.append(ackcmd)
        self.event.set()

    def _no_ack(self) -> Any:
        return self.command.salinfo.make_ackcmd(
            private_seqNum=self.seq_num, ack=SalRetCode.CMD_NOACK, result="No command acknowledgement seen"
        )

    async def next_ackcmd(self, wait_done: bool) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            while not self.acks:
                if self.closed:
                    raise AckError(msg="Remote closed", ackcmd=self.last_ackcmd or self._no_ack())
                remaining = self.end_time - loop.time()
                if remaining <= 0:
                    raise AckTimeoutError(
                        msg="Timed out waiting for command acknowledgement",
                        ackcmd=self.last_ackcmd or self._no_ack(),
                    )
                self.event.clear()
                try:
                    await asyncio.wait_for(self.event.wait(), remaining)
                except TimeoutError:
                    pass
            ackcmd = self.acks.popleft()
            self.last_ackcmd = ackcmd
            if ackcmd.ack == SalRetCode.CMD_INPROGRESS and ackcmd.timeout > 0:
                self.end_time += ackcmd.timeout
            if ackcmd.ack in FAILED_ACK_CODES:
                raise AckError(msg="Command failed", ackcmd=ackcmd)
            if ackcmd.ack in FINAL_ACK_CODES or not wait_done:
                return ackcmd


class RemoteCommand(WriteTopic):
    """A command topic a Remote sends (salobj semantics).

    Each command name gets its own range of seqNums, starting at random, so that one
    ackcmd reader can route acks to the command (and call) they belong to.

    Parameters
    ----------
    salinfo : `SalInfo`
        The component.
    name : `str`
        Command name without ``command_``.
    """

    def __init__(self, salinfo: SalInfo, name: str) -> None:
        names = salinfo.command_names
        seq_range = _MAX_SEQ_NUM // len(names)
        min_seq_num = names.index(name) * seq_range + 1
        max_seq_num = min_seq_num + seq_range - 1
        super().__init__(
            salinfo=salinfo,
            attr_name="cmd_" + name,
            min_seq_num=min_seq_num,
            max_seq_num=max_seq_num,
            initial_seq_num=random.randint(min_seq_num, max_seq_num),
        )
        self._in_flight: dict[int, _CommandInfo] = {}

    def write(self) -> Any:
        """Not allowed: use `start` or `set_start`."""
        raise NotImplementedError("Use start or set_start to send a command")

    def set_write(self, *, force_output: bool | None = None, **kwargs: Any) -> Any:
        """Not allowed: use `set_start`."""
        raise NotImplementedError("Use set_start to send a command")

    async def set_start(self, *, timeout: float = DEFAULT_TIMEOUT, wait_done: bool = True, **kwargs: Any) -> Any:
        """Reset the data to defaults, set ``kwargs``, send the command and wait for an ack.

        Parameters
        ----------
        timeout : `float`
            Seconds to wait for the final ack (extended by each CMD_INPROGRESS's timeout).
        wait_done : `bool`
            True: wait for the final ack; False: return the first ack.
        **kwargs
            Command fields.

        Returns
        -------
        ackcmd
            The final (or first) acknowledgement.

        Raises
        ------
        AckError
            The command failed (the ack says how).
        AckTimeoutError
            No final ack in time.
        """
        self._data = self.DataType()
        self.set(**kwargs)
        return await self.start(timeout=timeout, wait_done=wait_done)

    async def start(self, data: Any = None, timeout: float = DEFAULT_TIMEOUT, wait_done: bool = True) -> Any:
        """Send the command (``data`` if given, else `data`) and wait for an ack; see `set_start`."""
        if data is not None:
            self.data = data
        if not self.salinfo.start_called:
            raise RuntimeError(f"{self}: the Remote has not started; await remote.start_task first")
        sent = super().write()
        seq_num = sent.private_seqNum
        info = _CommandInfo(self, seq_num, timeout)
        self._in_flight[seq_num] = info
        self.salinfo.add_running_command(seq_num, info.add_ackcmd)
        return await self._wait(info, wait_done)

    async def next_ackcmd(self, ackcmd: Any, timeout: float = DEFAULT_TIMEOUT, wait_done: bool = True) -> Any:
        """Wait for the next ack of a command started with ``wait_done=False``.

        Parameters
        ----------
        ackcmd
            An ack of that command (gives its seqNum).
        timeout : `float`
            Seconds from now to wait (extended by CMD_INPROGRESS).
        wait_done : `bool`
            Wait for the final ack (True) or the next one.
        """
        info = self._in_flight.get(ackcmd.private_seqNum)
        if info is None:
            raise RuntimeError(f"No command with seqNum={ackcmd.private_seqNum} is in flight")
        info.end_time = asyncio.get_running_loop().time() + timeout
        return await self._wait(info, wait_done)

    async def _wait(self, info: _CommandInfo, wait_done: bool) -> Any:
        done = True
        try:
            ackcmd = await info.next_ackcmd(wait_done)
            done = ackcmd.ack in FINAL_ACK_CODES
            return ackcmd
        finally:
            if done:
                self._in_flight.pop(info.seq_num, None)
                self.salinfo.remove_running_command(info.seq_num)
