"""Event and telemetry topics of Controllers (write) and Remotes (read)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .read_topic import DEFAULT_QUEUE_LEN, ReadTopic
from .write_topic import SetWriteResult, WriteTopic

if TYPE_CHECKING:
    from ..sal_info import SalInfo

__all__ = ["ControllerEvent", "ControllerTelemetry", "RemoteEvent", "RemoteTelemetry"]


class ControllerEvent(WriteTopic):
    """An event a Controller writes; `set_write` writes only when something changed."""

    def __init__(self, salinfo: SalInfo, name: str) -> None:
        super().__init__(salinfo=salinfo, attr_name="evt_" + name)

    def set_write(self, *, force_output: bool | None = None, **kwargs: Any) -> SetWriteResult:
        """Set fields; write if any changed, if never written, or if ``force_output``.

        Parameters
        ----------
        force_output : `bool`, optional
            True: always write; False: never write; None: write if changed.
        """
        first = not self.has_data
        did_change = self.set(**kwargs)
        do_write = force_output if force_output is not None else (did_change or first)
        if do_write:
            self.write()
        return SetWriteResult(did_change=did_change, was_written=bool(do_write), data=self.data)


class ControllerTelemetry(WriteTopic):
    """A telemetry topic a Controller writes; `set_write` always writes."""

    def __init__(self, salinfo: SalInfo, name: str) -> None:
        super().__init__(salinfo=salinfo, attr_name="tel_" + name)


class RemoteEvent(ReadTopic):
    """An event a Remote reads; late joiners get the newest ``max_history`` samples."""

    def __init__(self, salinfo: SalInfo, name: str, max_history: int = 1, queue_len: int = DEFAULT_QUEUE_LEN) -> None:
        super().__init__(salinfo=salinfo, attr_name="evt_" + name, max_history=max_history, queue_len=queue_len)


class RemoteTelemetry(ReadTopic):
    """A telemetry topic a Remote reads (volatile: no history)."""

    def __init__(self, salinfo: SalInfo, name: str, queue_len: int = DEFAULT_QUEUE_LEN) -> None:
        super().__init__(salinfo=salinfo, attr_name="tel_" + name, max_history=0, queue_len=queue_len)
