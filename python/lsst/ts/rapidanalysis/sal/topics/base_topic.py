"""What every SAL topic wrapper knows: its component, names and DDS type."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..sal_info import SalInfo

__all__ = ["BaseTopic"]


class BaseTopic:
    """Base of read and write topics.

    Parameters
    ----------
    salinfo : `SalInfo`
        The component.
    attr_name : `str`
        ``cmd_<name>``, ``evt_<name>``, ``tel_<name>`` or ``ack_ackcmd``.
    """

    _PREFIX_TO_SAL = {"cmd_": "command_", "evt_": "logevent_", "tel_": "", "ack_": ""}

    def __init__(self, *, salinfo: SalInfo, attr_name: str) -> None:
        prefix, name = attr_name[:4], attr_name[4:]
        if prefix not in self._PREFIX_TO_SAL:
            raise ValueError(f"attr_name={attr_name!r} must start with cmd_, evt_, tel_ or ack_")
        self.salinfo = salinfo
        self.attr_name = attr_name
        self.name = name
        self.sal_name = self._PREFIX_TO_SAL[prefix] + name
        self.topic_type = salinfo.topic_type(self.sal_name)
        self.topic_info = self.topic_type.info
        self.rev_code = self.topic_type.rev_code
        self.dds_name = self.topic_type.dds_name
        self.log = salinfo.log.getChild(attr_name)

    @property
    def DataType(self) -> type:  # noqa: N802 (salobj's name)
        """The dataclass of this topic's samples."""
        return self.topic_type.data_type

    @property
    def volatile(self) -> bool:
        """Whether late joiners get nothing (everything but events)."""
        return self.topic_info.kind != "event"

    @property
    def metadata(self) -> Any:
        """The topic's interface (fields with units and descriptions)."""
        return self.topic_info

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.salinfo.name_index}, {self.attr_name})"
