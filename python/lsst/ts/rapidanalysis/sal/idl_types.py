"""Build Cyclone DDS topic types from `TopicInfo`, at run time.

Each type is an appendable ``IdlStruct`` named ``<Comp>::<salName>_<revCode>``, with the
ts_sal private fields first, then ``salIndex`` (the key) for indexed components, then the
public fields. Appendable, so that a reader and writer whose interfaces differ only by
trailing fields still match. Every field has a default, so ``DataType()`` works as in salobj.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Any, cast

from cyclonedds.idl import IdlMeta, IdlStruct, types
from cyclonedds.idl._machinery import StringMachine
from cyclonedds.idl.annotations import extensibility

from .awaitable import await_to_itself
from .xml_interface import PRIVATE_FIELDS, FieldInfo, TopicInfo

__all__ = ["TopicType", "get_topic_type", "rev_code"]

_SCALAR_TYPES: dict[str, Any] = {
    "boolean": bool,
    "byte": types.uint8,
    "octet": types.uint8,
    "short": types.int16,
    "int": types.int32,
    "long": types.int32,  # SAL "long" is 32 bits
    "long long": types.int64,
    "unsigned short": types.uint16,
    "unsigned int": types.uint32,
    "unsigned long": types.uint32,
    "float": types.float32,
    "double": types.float64,
}
_ZERO: dict[str, Any] = {"boolean": False, "float": 0.0, "double": 0.0, "string": ""}


def _annotation(field: FieldInfo) -> Any:
    # cyclonedds' bounded_str and array make annotations with __class_getitem__, which mypy
    # understands only through cyclonedds' own mypy plugin.
    if field.idl_type == "string":
        return types.bounded_str[field.str_length] if field.str_length else str  # type: ignore[misc]
    scalar = _SCALAR_TYPES[field.idl_type]
    return types.array[scalar, field.count] if field.count > 1 else scalar  # type: ignore[misc]


def _default(field: FieldInfo) -> dataclasses.Field[Any]:
    # typeshed types field() as the field's value (for use in a class body); it is a Field.
    zero = _ZERO.get(field.idl_type, 0)
    if field.count > 1:
        return cast(dataclasses.Field[Any], dataclasses.field(default_factory=lambda: [zero] * field.count))
    return cast(dataclasses.Field[Any], dataclasses.field(default=zero))


def _tolerant_deserialize_key(
    cls: type[IdlStruct], data: bytes, has_header: bool = True, use_version_2: bool | None = None
) -> Any:
    """Key of an invalid sample (a writer went away), or None if Cyclone cannot decode it.

    cyclonedds fails (``struct.error``) to decode the key of a keyless topic's invalid sample,
    and the exception aborts the whole ``take``, losing the valid samples taken with it. The
    SAL layer drops invalid samples anyway, so the key does not matter.
    """
    try:
        # IDL.deserialize_key takes None (its annotation, "bool = None", omits it), as does
        # the IdlStruct.deserialize_key this replaces.
        return cls.__idl__.deserialize_key(
            data,
            has_header=has_header,
            use_version_2=use_version_2,  # type: ignore[arg-type]
        )
    except Exception:
        return None


class _TolerantStringMachine(StringMachine):
    """Decodes a string field that is not valid UTF-8 rather than failing.

    cyclonedds decodes strings strictly, and one bad sample (a lone surrogate written by a
    non-Python client as CESU-8, a stray byte) makes the whole ``take`` raise, losing every
    sample taken with it: a command would get no ack at all. Bytes that are not UTF-8 come
    through as lone surrogates (``surrogateescape``), which the SAL layer escapes wherever it
    writes them back (`safe_text`); validators reject them with a clear message.
    """

    def deserialize(self, buffer: Any, *args: Any, **kwargs: Any) -> str:
        buffer.align(4)
        numbytes = buffer.read("I", 4)
        data = buffer.read_bytes(numbytes - 1)
        buffer.read("b", 1)
        return data.decode("utf-8", "surrogateescape")


def _tolerate_bad_strings(cls: type[IdlStruct]) -> None:
    """Make every string field of ``cls`` decode with `_TolerantStringMachine`."""
    idl = cls.__idl__
    idl.populate()
    for machine in (idl.v1_machine, idl.v2_machine):
        members = getattr(machine, "members_machines", None) or getattr(machine, "member_machines", None)
        if not isinstance(members, dict):
            continue
        for name, member in members.items():
            if type(member) is StringMachine:
                members[name] = _TolerantStringMachine(bound=member.bound)


def rev_code(info: TopicInfo, indexed: bool) -> str:
    """A stable 8-hex-digit revision code: changes whenever the wire layout changes."""
    text = ";".join([info.component, info.sal_name, str(indexed)] + [f.signature() for f in info.fields])
    return hashlib.md5(text.encode()).hexdigest()[:8]


def _all_fields(info: TopicInfo, indexed: bool) -> list[FieldInfo]:
    fields = [FieldInfo(name, t, 1, size if t == "string" else 0) for name, t, size in PRIVATE_FIELDS]
    if indexed:
        fields.append(FieldInfo("salIndex", "long"))
    return fields + list(info.fields)


@dataclasses.dataclass(frozen=True)
class TopicType:
    """A DDS type for one topic, with its names.

    Attributes
    ----------
    info : `TopicInfo`
        The interface it was built from.
    rev_code : `str`
        Revision code.
    dds_name : `str`
        DDS topic name ``<Comp>_<salName>_<revCode>``.
    data_type : `type`
        The ``IdlStruct`` dataclass.
    field_names : `tuple` [`str`]
        Public field names (those a user sets).
    byte_array_fields : `tuple` [`str`]
        Fields Cyclone returns as `bytes`; readers turn them into lists, like every other array.
    """

    info: TopicInfo
    rev_code: str
    dds_name: str
    data_type: type
    field_names: tuple[str, ...]
    byte_array_fields: tuple[str, ...] = ()


@functools.cache
def get_topic_type(info: TopicInfo, indexed: bool) -> TopicType:
    """Build (once per process) the DDS type for a topic.

    Parameters
    ----------
    info : `TopicInfo`
        The topic.
    indexed : `bool`
        Whether the component is indexed (adds the ``salIndex`` key).

    Returns
    -------
    topic_type : `TopicType`
        The type and its names; cached so that a Controller and a Remote in one process share it.
    """
    code = rev_code(info, indexed)
    type_name = f"{info.sal_name}_{code}"
    fields = _all_fields(info, indexed)
    # Like cyclonedds.idl.make_idl_struct, plus a default for every field.
    bases = (IdlStruct,)
    # IdlMeta.__prepare__ is typed as returning a Mapping; it is the dict type.__prepare__ makes.
    namespace = cast(dict[str, Any], IdlMeta.__prepare__(type_name, bases, typename=f"{info.component}::{type_name}"))
    for field in fields:
        namespace["__annotations__"][field.name] = _annotation(field)
        namespace[field.name] = _default(field)
    if indexed:
        namespace["__idl_field_annotations__"] = {"salIndex": {"key": True}}
    # Calling the metaclass makes a class (mypy sees an IdlMeta instance).
    cls = cast(type[IdlStruct], IdlMeta(type_name, bases, namespace))
    cls = dataclasses.dataclass(cls)
    extensibility("appendable")(cls)
    # Replaces cyclonedds' classmethod on this generated class only, which mypy cannot type.
    cls.deserialize_key = classmethod(_tolerant_deserialize_key)  # type: ignore[method-assign, assignment]
    _tolerate_bad_strings(cls)
    # A sample that write() returns is awaitable, giving itself: salobj 8 awaits write().
    cls.__await__ = await_to_itself  # type: ignore[attr-defined]
    return TopicType(
        info=info,
        rev_code=code,
        dds_name=f"{info.component}_{type_name}",
        data_type=cls,
        field_names=tuple(f.name for f in info.fields),
        byte_array_fields=tuple(f.name for f in info.fields if f.count > 1 and f.idl_type in ("byte", "octet")),
    )
