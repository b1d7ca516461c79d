"""Writing a topic: ``set``, ``write``, ``set_write`` with salobj's private-field rules."""

from __future__ import annotations

import copy
import dataclasses
import math
import struct
from typing import TYPE_CHECKING, Any

from ..awaitable import AwaitsToItself
from ..tai import current_tai
from ..xml_interface import FieldInfo
from .base_topic import BaseTopic

if TYPE_CHECKING:
    from ..sal_info import SalInfo

__all__ = ["WriteTopic", "SetWriteResult"]

_INT_RANGES = {
    "byte": (0, 2**8 - 1),
    "octet": (0, 2**8 - 1),
    "short": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "long": (-(2**31), 2**31 - 1),
    "long long": (-(2**63), 2**63 - 1),
    "unsigned short": (0, 2**16 - 1),
    "unsigned int": (0, 2**32 - 1),
    "unsigned long": (0, 2**32 - 1),
}


@dataclasses.dataclass
class SetWriteResult(AwaitsToItself):
    """What `WriteTopic.set_write` did (awaitable, giving itself: salobj 8 awaits set_write)."""

    did_change: bool
    was_written: bool
    data: Any


def _check_scalar(field: FieldInfo, value: Any) -> Any:
    kind = field.idl_type
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"{field.name}={value!r} must be a str")
        try:
            encoded = value.encode("utf-8")
        except UnicodeEncodeError as e:
            # A lone surrogate (e.g. from "\\ud800" in JSON): DDS strings are UTF-8, which cannot hold it.
            raise ValueError(
                f"{field.name} holds {value[e.start : e.end]!r} at character {e.start}: lone surrogates, "
                "which UTF-8 (and so DDS) cannot carry; escape or remove them"
            ) from None
        if field.str_length and len(encoded) > field.str_length:
            raise ValueError(f"{field.name} is longer than {field.str_length} bytes: {value[:80]!r}")
        return str.__str__(value)
    if kind == "boolean":
        return bool(value)
    if kind in ("float", "double"):
        try:
            fvalue = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{field.name}={value!r} must be a number") from None
        if kind == "float":
            # A finite value too big for float32 would make every later write of the topic fail.
            try:
                struct.pack("<f", fvalue)
            except OverflowError:
                raise ValueError(f"{field.name}={fvalue!r} is out of range for float (32 bits)") from None
        return fvalue
    if isinstance(value, float) and not value.is_integer() or isinstance(value, str):
        raise ValueError(f"{field.name}={value!r} must be an integer")
    try:
        ivalue = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field.name}={value!r} must be an integer") from None
    low, high = _INT_RANGES[kind]
    if not low <= ivalue <= high:
        raise ValueError(f"{field.name}={ivalue} is out of range [{low}, {high}] for {kind}")
    return ivalue


def check_value(field: FieldInfo, value: Any) -> Any:
    """Validate (and normalise) a value for a field; raise ValueError naming the field."""
    if field.count > 1:
        try:
            values = list(value)
        except TypeError:
            raise ValueError(f"{field.name} must be a sequence of {field.count} values, not {value!r}") from None
        if len(values) != field.count:
            raise ValueError(f"{field.name} needs exactly {field.count} values, not {len(values)}")
        return [_check_scalar(field, v) for v in values]
    return _check_scalar(field, value)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


class WriteTopic(BaseTopic):
    """A topic that is written.

    Parameters
    ----------
    salinfo : `SalInfo`
        The component.
    attr_name : `str`
        ``evt_x``, ``tel_x``, ``cmd_x`` or ``ack_ackcmd``.
    min_seq_num, max_seq_num : `int`
        Range of ``private_seqNum``; it wraps to ``min_seq_num`` after ``max_seq_num``.
        None for ``min_seq_num`` means the caller sets ``private_seqNum`` itself (ackcmd).
    initial_seq_num : `int`, optional
        First seqNum; default ``min_seq_num``.
    """

    def __init__(
        self,
        *,
        salinfo: SalInfo,
        attr_name: str,
        min_seq_num: int | None = 1,
        max_seq_num: int = 2**31 - 1,
        initial_seq_num: int | None = None,
    ) -> None:
        super().__init__(salinfo=salinfo, attr_name=attr_name)
        self.min_seq_num = min_seq_num
        self.max_seq_num = max_seq_num
        self._seq_num = initial_seq_num if initial_seq_num is not None else (min_seq_num or 0)
        self._fields = {f.name: f for f in self.topic_info.fields}
        self._data = self.DataType()
        self._has_data = False
        self._writer = salinfo.make_writer(self.topic_type)

    @property
    def data(self) -> Any:
        """The sample that the next write sends (set with `set`)."""
        return self._data

    @data.setter
    def data(self, data: Any) -> None:
        if not isinstance(data, self.DataType):
            raise TypeError(f"data={data!r} must be a {self.DataType.__name__}")
        self._data = copy.copy(data)
        self._has_data = True

    @property
    def has_data(self) -> bool:
        """Whether `set` or `data` has been used."""
        return self._has_data

    def set(self, **kwargs: Any) -> bool:
        """Set fields of `data`; return True if any value changed.

        Raises
        ------
        AttributeError
            If a field does not exist.
        ValueError
            If a value does not fit its field (type, range, length).
        """
        did_change = not self._has_data
        checked = {}
        for name, value in kwargs.items():
            field = self._fields.get(name)
            if field is None:
                if name == "salIndex" or name.startswith("private_"):
                    checked[name] = value
                    continue
                raise AttributeError(f"{self.attr_name} has no field {name!r}; fields: {', '.join(self._fields)}")
            checked[name] = check_value(field, value)
        for name, value in checked.items():
            if not _equal(getattr(self._data, name), value):
                did_change = True
            setattr(self._data, name, value)
        self._has_data = True
        return did_change

    def _next_seq_num(self) -> int:
        assert self.min_seq_num is not None  # only topics that number their samples get here
        seq_num = self._seq_num
        self._seq_num = self.min_seq_num if seq_num >= self.max_seq_num else seq_num + 1
        return seq_num

    def write(self) -> Any:
        """Write `data` now, filling in the private fields; return what was written.

        The sample returned is awaitable, giving itself (salobj 8 awaits write).
        """
        data = self._data
        data.private_revCode = self.rev_code
        data.private_sndStamp = current_tai()
        data.private_origin = self.salinfo.domain.origin
        data.private_identity = self.salinfo.identity
        if self.min_seq_num is not None:
            data.private_seqNum = self._next_seq_num()
        if self.salinfo.indexed and self.salinfo.index != 0:
            data.salIndex = self.salinfo.index
        self._writer.write(data)
        self._has_data = True
        return data

    def set_write(self, *, force_output: bool | None = None, **kwargs: Any) -> SetWriteResult:
        """Set fields and write (subclasses decide when an unchanged sample is written)."""
        did_change = self.set(**kwargs)
        self.write()
        return SetWriteResult(did_change=did_change, was_written=True, data=self._data)
