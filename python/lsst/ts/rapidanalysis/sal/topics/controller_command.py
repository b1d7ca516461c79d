"""A command as a Controller sees it: run the handler, acknowledge every outcome."""

from __future__ import annotations

import asyncio
import inspect
import math
from typing import TYPE_CHECKING, Any

from ..awaitable import DONE, Done
from ..enums import FINAL_ACK_CODES, SalRetCode
from ..errors import ExpectedError
from ..safe_text import describe_exception, safe_text
from .read_topic import ReadTopic
from .write_topic import WriteTopic

if TYPE_CHECKING:
    from ..sal_info import SalInfo

__all__ = ["ControllerCommand", "MAX_ACK_RESULT_BYTES", "MAX_FAILED_RESULT_BYTES"]

#: Longest ``result`` of any ack, in UTF-8 bytes (longer ones are cut, saying so). The field is
#: unbounded on the wire, but a reader must never get megabytes; a processData ack listing the
#: job ids of all 189 LSSTCam detectors needs about 4 kB.
MAX_ACK_RESULT_BYTES = 16384
#: Longest ``result`` of an ack that reports a failure (the message of what the handler raised).
MAX_FAILED_RESULT_BYTES = 1024
#: The result of the CMD_FAILED written when the final ack asked for could not be written.
_FALLBACK_RESULT = "Failed: the acknowledgement could not be written ({}); see the CSC log"


def _ackcmd_writer(salinfo: SalInfo) -> WriteTopic:
    # One ackcmd writer per component, shared by all its commands.
    writer = salinfo._ackcmd_writer
    if writer is None:
        writer = WriteTopic(salinfo=salinfo, attr_name="ack_ackcmd", min_seq_num=None)
        salinfo._ackcmd_writer = writer
    return writer


def _as_int(value: Any, default: int) -> int:
    try:
        result = int(value)
    except Exception:
        return default
    return result if -(2**31) <= result < 2**31 else default


def _as_timeout(value: Any) -> float:
    try:
        result = float(value)
    except Exception:
        return 0.0
    return result if math.isfinite(result) and result >= 0 else 0.0


class ControllerCommand(ReadTopic):
    """A command topic a Controller reads; its callback (``do_<name>``) decides the ack.

    The handler's outcome maps to the final ack as in salobj: returns None → CMD_COMPLETE
    ("Done"); returns an ackcmd → that ack; raises ExpectedError → CMD_FAILED (no traceback);
    TimeoutError → CMD_TIMEOUT; cancelled → CMD_ABORTED; any other exception → CMD_FAILED
    with the traceback logged. Handlers run one at a time per command unless
    ``allow_multiple_callbacks`` is set.

    Every command gets exactly one final ack, whatever the handler does: a returned value that
    is not an ackcmd, or an ackcmd whose code is not final, is a CMD_FAILED saying so; every
    ``result`` is escaped (lone surrogates, NUL and other control characters become Python
    escapes) and cut to `MAX_ACK_RESULT_BYTES` (`MAX_FAILED_RESULT_BYTES` for the message
    of an exception); and if an ack cannot be written at all, a plain CMD_FAILED is.

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

    def ack(self, data: Any, ack: SalRetCode | int, error: int = 0, result: str = "", timeout: float = 0.0) -> Done:
        """Acknowledge the command ``data`` with ``ack`` (now; await the result or not: salobj 8 awaits it).

        ``result`` may be any text: it is escaped and cut to `MAX_ACK_RESULT_BYTES`.

        Raises
        ------
        Exception
            If the ack cannot be written (DDS failed); the command's final ack is then written
            by the Controller as a CMD_FAILED.
        """
        self._ackcmd_writer.set(
            private_seqNum=data.private_seqNum,
            ack=int(ack),
            error=error,
            result=safe_text(result, MAX_ACK_RESULT_BYTES),
            identity=safe_text(data.private_identity, MAX_ACK_RESULT_BYTES),
            origin=data.private_origin,
            cmdtype=self.cmdtype,
            timeout=timeout,
        )
        if self.salinfo.indexed:
            self._ackcmd_writer.data.salIndex = data.salIndex
        self._ackcmd_writer.write()
        return DONE

    def ack_in_progress(self, data: Any, timeout: float, result: str = "") -> Done:
        """Say the command is running and should finish within ``timeout`` more seconds (see `ack`)."""
        return self.ack(data, SalRetCode.CMD_INPROGRESS, timeout=timeout, result=result)

    def _ack_final(self, data: Any, ack: int, error: int, result: str, timeout: float = 0.0) -> None:
        """Write the command's final ack; never raises. If it cannot be written as asked, write
        a plain CMD_FAILED (the reason is logged), so that the sender is never left waiting."""
        try:
            self.ack(data, ack, error=error, result=result, timeout=timeout)
            return
        except Exception as e:
            reason = f"{type(e).__name__}: {safe_text(describe_exception(e), 200)}"
            self.log.exception("%s: could not write the final ack %s (%s)", self.attr_name, ack, reason)
        try:
            self.ack(data, SalRetCode.CMD_FAILED, error=1, result=_FALLBACK_RESULT.format(reason))
        except Exception:
            self.log.exception("%s: could not write any final ack for seqNum %s", self.attr_name, data.private_seqNum)

    def _queue_for_callback(self, data: Any, historical: bool) -> None:
        if self.allow_multiple_callbacks:
            task = asyncio.create_task(self._run_one_callback(data))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        else:
            super()._queue_for_callback(data, historical)

    async def _run_one_callback(self, data: Any) -> None:
        if data.private_seqNum <= 0:
            self.log.warning("Ignoring %s with private_seqNum=%s <= 0", self.attr_name, data.private_seqNum)
            return
        callback = self.callback
        if callback is None:
            self._ack_final(data, SalRetCode.CMD_FAILED, error=1, result=f"Failed: no handler for {self.name}")
            return
        try:
            result = callback(data)
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            # Also reached when the Controller closes: SalInfo.close lets this ack out first.
            self._ack_final(data, SalRetCode.CMD_ABORTED, error=1, result="Aborted")
            return
        except ExpectedError as e:
            message = safe_text(describe_exception(e), MAX_FAILED_RESULT_BYTES)
            self.log.warning("%s failed: %s", self.attr_name, message)
            self._ack_final(data, SalRetCode.CMD_FAILED, error=1, result=f"Failed: {message}")
            return
        except TimeoutError:
            self._ack_final(data, SalRetCode.CMD_TIMEOUT, error=1, result="Timeout")
            return
        except Exception as e:
            message = safe_text(describe_exception(e), MAX_FAILED_RESULT_BYTES)
            self.log.exception("%s failed", self.attr_name)
            self._ack_final(data, SalRetCode.CMD_FAILED, error=1, result=f"Failed: {message}")
            return
        except BaseException as e:  # SystemExit, KeyboardInterrupt: answer, then let it go on
            self._ack_final(data, SalRetCode.CMD_FAILED, error=1, result=f"Failed: {type(e).__name__}")
            raise
        if result is None:
            self._ack_final(data, SalRetCode.CMD_COMPLETE, error=0, result="Done")
            return
        self._ack_returned(data, result)

    def _ack_returned(self, data: Any, ackcmd: Any) -> None:
        """Write the ack a handler returned, if it is one that ends the command."""
        code = getattr(ackcmd, "ack", None)
        if code is None or isinstance(code, bool) or not isinstance(code, int):
            what = safe_text(repr(ackcmd), 200)
            self.log.error("%s: the handler returned %s; expected None or an ackcmd", self.attr_name, what)
            self._ack_final(
                data,
                SalRetCode.CMD_FAILED,
                error=1,
                result=f"Failed: the handler returned {what}, not None or an ackcmd",
            )
            return
        result = safe_text(getattr(ackcmd, "result", ""), MAX_ACK_RESULT_BYTES)
        if code not in FINAL_ACK_CODES:
            try:
                name = SalRetCode(code).name
            except ValueError:
                name = str(code)
            self.log.error("%s: the handler returned ack %s, which does not end a command", self.attr_name, name)
            self._ack_final(
                data,
                SalRetCode.CMD_FAILED,
                error=1,
                result=safe_text(
                    f"Failed: the handler ended with ack {name}, which is not final: {result}", MAX_FAILED_RESULT_BYTES
                ),
            )
            return
        self._ack_final(
            data,
            code,
            error=_as_int(getattr(ackcmd, "error", 0), 1),
            result=result,
            timeout=_as_timeout(getattr(ackcmd, "timeout", 0.0)),
        )

    def _close(self) -> list[asyncio.Task]:
        cancelled = super()._close()
        for task in list(self._running):
            task.cancel()
            cancelled.append(task)
        return cancelled
