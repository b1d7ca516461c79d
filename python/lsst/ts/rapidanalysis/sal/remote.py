"""The reading side of a SAL component: commands out, events and telemetry in."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .domain import Domain
from .sal_info import SalInfo
from .topics import AckCmdReader, RemoteCommand, RemoteEvent, RemoteTelemetry

__all__ = ["Remote"]


class Remote:
    """A Remote of a SAL component (salobj semantics).

    Has ``cmd_<name>`` to send commands (unless read-only), ``evt_<name>`` and ``tel_<name>``
    to read. Late joiners see the newest ``evt_max_history`` samples of each event (per index).

    Parameters
    ----------
    domain : `Domain`
        The participant to use (share one per process).
    name : `str`
        SAL component name.
    index : `int`, optional
        SAL index; 0 or None reads every index of an indexed component.
    readonly : `bool`
        No commands.
    include, exclude : iterable of `str`, optional
        Event and telemetry names (no prefix) to read, or not to read; at most one.
    evt_max_history : `int`
        Historical samples kept per event (and index).
    start : `bool`
        Start at once (``start_task``).
    """

    def __init__(
        self,
        domain: Domain,
        name: str,
        index: int | None = None,
        *,
        readonly: bool = False,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        evt_max_history: int = 1,
        start: bool = True,
    ) -> None:
        if include is not None and exclude is not None:
            raise ValueError("Specify include or exclude, not both")
        self.salinfo = SalInfo(domain, name, index)
        try:
            if self.salinfo.indexed and self.salinfo.index == 0 and evt_max_history > 1:
                raise ValueError("evt_max_history must be 0 or 1 for a Remote of every index (index=0)")
            include_set = set(include) if include is not None else None
            exclude_set = set(exclude) if exclude is not None else set()

            def wanted(topic_name: str) -> bool:
                if include_set is not None:
                    return topic_name in include_set
                return topic_name not in exclude_set

            if not readonly:
                self._ackcmd_reader = AckCmdReader(self.salinfo)
                for cmd_name in self.salinfo.command_names:
                    cmd = RemoteCommand(self.salinfo, cmd_name)
                    setattr(self, cmd.attr_name, cmd)
            for evt_name in self.salinfo.event_names:
                if wanted(evt_name):
                    evt = RemoteEvent(self.salinfo, evt_name, max_history=evt_max_history)
                    setattr(self, evt.attr_name, evt)
            for tel_name in self.salinfo.telemetry_names:
                if wanted(tel_name):
                    tel = RemoteTelemetry(self.salinfo, tel_name)
                    setattr(self, tel.attr_name, tel)
        except Exception:
            asyncio.get_running_loop().create_task(self.salinfo.close())
            raise
        # A Task, or (start=False) a plain Future that `start` completes.
        self.start_task: asyncio.Future[None]
        if start:
            self.start_task = asyncio.create_task(self.start())
        else:
            self.start_task = asyncio.get_running_loop().create_future()

    if TYPE_CHECKING:
        # The topic attributes (cmd_<name>, evt_<name>, tel_<name>) are made at run time from
        # the component's interface, so a type checker cannot know them.
        def __getattr__(self, name: str) -> Any: ...

    async def start(self) -> None:
        """Start reading."""
        await self.salinfo.start()
        if (
            not self.start_task.done()
            and isinstance(self.start_task, asyncio.Future)
            and not isinstance(self.start_task, asyncio.Task)
        ):
            self.start_task.set_result(None)

    async def close(self) -> None:
        """Stop reading and delete the DDS readers and writers."""
        await self.salinfo.close()

    async def __aenter__(self) -> Remote:
        if not isinstance(self.start_task, asyncio.Task) and not self.salinfo.start_called:
            await self.start()  # made with start=False
        await self.start_task
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.close()
