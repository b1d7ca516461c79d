"""A command as a Controller sees it: run the handler, acknowledge every outcome."""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any

from ..enums import SalRetCode
from ..errors import ExpectedError
from .read_topic import ReadTopic
from .write_topic import WriteTopic

if TYPE_CHECKING:
    from ..sal_info import SalInfo

__all__ = ["ControllerCommand"]


def _ackcmd_writer(salinfo: SalInfo) -> WriteTopic:
    # One ackcmd writer per component, shared by all its commands.
    writer = getattr(salinfo, "_ackcmd_writer", None)
    if writer is None:
        writer = WriteTopic(salinfo=salinfo, attr_name="ack_ackcmd", min_seq_num=None)
        salinfo._ackcmd_writer = writer
    return writer


class ControllerCommand(ReadTopic):
    """A command topic a Controller reads; its callback (``do_<name>``) decides the ack.

    The handler's outcome maps to the final ack as in salobj: returns None → CMD_COMPLETE
    ("Done"); returns an ackcmd → that ack; raises ExpectedError → CMD_FAILED (no traceback);
    TimeoutError → CMD_TIMEOUT; cancelled → CMD_ABORTED; any other exception → CMD_FAILED
    with the traceback logged. Handlers run one at a time per command unless
    ``allow_multiple_callbacks`` is set.

    Commands are never dropped: without a callback they wait in a queue of unlimited length
    for ``next``.

    Parameters
    ----------
    salinfo : `SalInfo`
        The component.
    name : `str`
        Command name without ``command_``.
    queue_len : `int` or None
        Queue length when there is no callback; None (default) for no limit.
    """

    def __init__(self, salinfo: SalInfo, name: str, queue_len: int | None = None) -> None:
        super().__init__(salinfo=salinfo, attr_name="cmd_" + name, max_history=0, queue_len=queue_len)
        self.cmdtype = salinfo.cmdtype(self.sal_name)
        self.allow_multiple_callbacks = False
        self._ackcmd_writer = _ackcmd_writer(salinfo)
        self._running: set[asyncio.Task] = set()

    def ack(self, data: Any, ack: SalRetCode, error: int = 0, result: str = "", timeout: float = 0.0) -> None:
        """Acknowledge the command ``data`` with ``ack``."""
        self._ackcmd_writer.set(
            private_seqNum=data.private_seqNum,
            ack=int(ack),
            error=error,
            result=result,
            identity=data.private_identity,
            origin=data.private_origin,
            cmdtype=self.cmdtype,
            timeout=timeout,
        )
        if self.salinfo.indexed:
            self._ackcmd_writer.data.salIndex = data.salIndex
        self._ackcmd_writer.write()

    def ack_in_progress(self, data: Any, timeout: float, result: str = "") -> None:
        """Say the command is running and should finish within ``timeout`` more seconds."""
        self.ack(data, SalRetCode.CMD_INPROGRESS, timeout=timeout, result=result)

    def _write_ackcmd(self, data: Any, ackcmd: Any) -> None:
        self.ack(data, SalRetCode(ackcmd.ack), error=ackcmd.error, result=ackcmd.result, timeout=ackcmd.timeout)

    def _queue_for_callback(self, data: Any, historical: bool) -> None:
        if self.allow_multiple_callbacks:
            task = asyncio.create_task(self._run_one_callback(data))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        else:
            super()._queue_for_callback(data, historical)

    async def _run_one_callback(self, data: Any) -> None:
        callback = self.callback
        if callback is None:
            self.ack(data, SalRetCode.CMD_FAILED, error=1, result=f"Failed: no handler for {self.name}")
            return
        if data.private_seqNum <= 0:
            self.log.warning("Ignoring %s with private_seqNum=%s <= 0", self.attr_name, data.private_seqNum)
            return
        try:
            result = callback(data)
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            # Also reached when the Controller closes: SalInfo.close lets this ack out first.
            self.ack(data, SalRetCode.CMD_ABORTED, error=1, result="Aborted")
            return
        except ExpectedError as e:
            self.log.warning("%s failed: %s", self.attr_name, e)
            self.ack(data, SalRetCode.CMD_FAILED, error=1, result=f"Failed: {e}")
            return
        except TimeoutError:
            self.ack(data, SalRetCode.CMD_TIMEOUT, error=1, result="Timeout")
            return
        except Exception as e:
            self.log.exception("%s failed", self.attr_name)
            self.ack(data, SalRetCode.CMD_FAILED, error=1, result=f"Failed: {e}")
            return
        if result is None:
            self.ack(data, SalRetCode.CMD_COMPLETE, result="Done")
        else:
            self._write_ackcmd(data, result)

    def _close(self) -> list[asyncio.Task]:
        cancelled = super()._close()
        for task in list(self._running):
            task.cancel()
            cancelled.append(task)
        return cancelled
