"""The writing side of a SAL component: commands in, events and telemetry out."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .domain import Domain
from .sal_info import SalInfo
from .sal_log_handler import SalLogHandler
from .topics import ControllerCommand, ControllerEvent, ControllerTelemetry

__all__ = ["Controller", "SHUTDOWN_DELAY"]

#: Longest wait on close for readers to acknowledge what we wrote (final states, acks).
SHUTDOWN_DELAY = 1.0


class Controller:
    """A SAL component's Controller (salobj semantics).

    Has ``cmd_<name>`` for each command (callbacks ``do_<name>`` when ``do_callbacks``),
    ``evt_<name>`` and ``tel_<name>`` to write. Owns its `Domain`, whose identity becomes
    ``Name[:index]``. Starts by itself; await ``start_task``.

    Parameters
    ----------
    name : `str`
        SAL component name.
    index : `int`, optional
        SAL index (indexed components).
    do_callbacks : `bool`
        Use methods ``do_<command>`` as command callbacks.
    write_only : `bool`
        No command readers at all.
    allow_missing_callbacks : `bool`
        With ``do_callbacks``, allow commands without a ``do_`` method (they fail when sent).
    """

    def __init__(
        self,
        name: str,
        index: int | None = None,
        *,
        do_callbacks: bool = False,
        write_only: bool = False,
        allow_missing_callbacks: bool = False,
    ) -> None:
        self.closing = False
        self.start_called = False
        self.domain = Domain()
        try:
            salinfo = SalInfo(self.domain, name, index, write_only=write_only)
            self.domain.default_identity = salinfo.name_index
            salinfo.identity = salinfo.name_index
            self.salinfo = salinfo
            self.log = logging.getLogger(salinfo.name_index)
            if self.log.getEffectiveLevel() > logging.INFO or self.log.level == logging.NOTSET:
                self.log.setLevel(logging.INFO)
            if do_callbacks and not write_only:
                self._check_callbacks(allow_missing_callbacks)
            if not write_only:
                for cmd_name in salinfo.command_names:
                    cmd = ControllerCommand(salinfo, cmd_name)
                    setattr(self, cmd.attr_name, cmd)
                    if do_callbacks:
                        func = getattr(self, f"do_{cmd_name}", None)
                        if func is not None:
                            cmd.callback = func
            for evt_name in salinfo.event_names:
                evt = ControllerEvent(salinfo, evt_name)
                setattr(self, evt.attr_name, evt)
            for tel_name in salinfo.telemetry_names:
                tel = ControllerTelemetry(salinfo, tel_name)
                setattr(self, tel.attr_name, tel)
        except Exception:
            asyncio.get_running_loop().create_task(self.domain.close())
            raise
        self._log_handler: SalLogHandler | None = None
        self.done_task: asyncio.Future = asyncio.get_running_loop().create_future()
        self.start_task = asyncio.create_task(self.start())

    if TYPE_CHECKING:
        # The topic attributes (cmd_<name>, evt_<name>, tel_<name>) are made at run time from
        # the component's interface, so a type checker cannot know them. Subclasses that know
        # their interface may declare them (see `BaseCsc`).
        def __getattr__(self, name: str) -> Any: ...

    def _check_callbacks(self, allow_missing: bool) -> None:
        command_names = set(self.salinfo.command_names)
        methods = {n[3:] for n in dir(self) if n.startswith("do_") and callable(getattr(self, n, None))}
        extra = sorted(methods - command_names)
        if extra:
            raise TypeError(f"{type(self).__name__} has do_ methods for unknown commands: {extra}")
        missing = sorted(command_names - methods)
        if missing and not allow_missing:
            raise TypeError(f"{type(self).__name__} has no do_ methods for commands: {missing}")

    async def start(self) -> None:
        """Start reading commands, hook logging to logMessage, publish logLevel."""
        if self.start_called:
            raise RuntimeError("Start already called")
        self.start_called = True
        await self.salinfo.start()
        if hasattr(self, "evt_logMessage"):
            self._log_handler = SalLogHandler(self)
            self.log.addHandler(self._log_handler)
        self.put_log_level()

    def put_log_level(self) -> None:
        """Publish the logger's effective level as ``logLevel``."""
        if hasattr(self, "evt_logLevel"):
            self.evt_logLevel.set_write(level=self.log.getEffectiveLevel(), subsystem="")

    async def close_tasks(self) -> None:
        """Hook: stop the subclass's tasks before the domain closes."""

    async def close(self, exception: BaseException | None = None, cancel_start: bool = True) -> None:
        """Stop tasks, let readers get what was written, leave DDS; then ``done_task`` is done."""
        if self.closing:
            await asyncio.shield(self.done_task) if not self.done_task.done() else None
            return
        self.closing = True
        try:
            if cancel_start and not self.start_task.done():
                self.start_task.cancel()
            await self.close_tasks()
            if self._log_handler is not None:
                self.log.removeHandler(self._log_handler)
                self._log_handler = None
            # Cancel command handlers (they ack CMD_ABORTED), then give the final acks and
            # events a chance to reach their readers.
            await self.salinfo.stop_reading()
            await asyncio.get_running_loop().run_in_executor(None, self.salinfo.wait_for_acks, SHUTDOWN_DELAY)
            await self.domain.close()
        except Exception as e:
            self.log.exception("Error closing")
            if exception is None:
                exception = e
        finally:
            if not self.done_task.done():
                if exception is not None:
                    self.done_task.set_exception(exception)
                else:
                    self.done_task.set_result(None)

    async def __aenter__(self) -> Controller:
        await self.start_task
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.close()
