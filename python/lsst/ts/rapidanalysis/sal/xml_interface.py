"""Read SAL interfaces written in the ts_xml format.

A component's interface is ``SALSubsystems.xml`` (its index enumeration and the generic
topics it adds), ``SALGenerics.xml`` and ``<Comp>/<Comp>_{Commands,Events,Telemetry}.xml``.
This module turns them into `ComponentInfo`; `idl_types` turns that into DDS types.
Every malformed input raises `InterfaceError` naming the file and the element.
"""

from __future__ import annotations

import dataclasses
import functools
import keyword
import os
import pathlib
import re
import xml.etree.ElementTree as ElementTree

from .errors import InterfaceError

__all__ = [
    "FieldInfo",
    "TopicInfo",
    "ComponentInfo",
    "get_interfaces_dir",
    "load_component_info",
    "PRIVATE_FIELDS",
]

#: The scalar IDL types an interface may use, by their ts_xml spelling.
IDL_TYPES = (
    "boolean",
    "byte",
    "octet",
    "short",
    "int",
    "long",
    "long long",
    "unsigned short",
    "unsigned int",
    "unsigned long",
    "float",
    "double",
    "string",
)

GENERIC_CATEGORIES = ("mandatory", "csc", "configurable")

# ts_sal adds these to every topic, in this order (DDS-era IDL).
PRIVATE_FIELDS: tuple[tuple[str, str, int], ...] = (
    ("private_revCode", "string", 8),
    ("private_sndStamp", "double", 1),
    ("private_rcvStamp", "double", 1),
    ("private_seqNum", "long", 1),
    ("private_identity", "string", 128),
    ("private_origin", "long", 1),
)

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_MAX_NAME_LEN = 63
_KIND_BY_ROOT = {
    "SALCommandSet": ("command", "SALCommand"),
    "SALEventSet": ("event", "SALEvent"),
    "SALTelemetrySet": ("telemetry", "SALTelemetry"),
}
_FILE_SUFFIX_BY_KIND = {"command": "Commands", "event": "Events", "telemetry": "Telemetry"}


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One field of a topic.

    Attributes
    ----------
    name : `str`
        Field name (``EFDB_Name``).
    idl_type : `str`
        ts_xml IDL type, e.g. ``"long long"``.
    count : `int`
        1 for a scalar, N > 1 for a fixed-length array.
    str_length : `int`
        For strings: 0 = unbounded, N = ``string<N>``.
    units : `str`
        astropy unit string or ``unitless``.
    description : `str`
        What the field means.
    """

    name: str
    idl_type: str
    count: int = 1
    str_length: int = 0
    units: str = "unitless"
    description: str = ""

    def signature(self) -> str:
        """Compact type signature; part of the topic's revision code."""
        return f"{self.name}:{self.idl_type}:{self.count}:{self.str_length}"


@dataclasses.dataclass(frozen=True)
class TopicInfo:
    """One topic of a component.

    Attributes
    ----------
    component : `str`
        SAL component name.
    sal_name : `str`
        ``command_<name>``, ``logevent_<name>``, ``<telemetryName>`` or ``ackcmd``.
    kind : `str`
        ``command``, ``event``, ``telemetry`` or ``ackcmd``.
    fields : `tuple` [`FieldInfo`]
        Public fields, in file order (private fields and ``salIndex`` excluded).
    description : `str`
        What the topic is for.
    enumeration : `str`
        The topic's ``<Enumeration>`` text, if any.
    """

    component: str
    sal_name: str
    kind: str
    fields: tuple[FieldInfo, ...]
    description: str = ""
    enumeration: str = ""

    @property
    def attr_name(self) -> str:
        """Attribute name on a Controller or Remote: ``cmd_x``, ``evt_x``, ``tel_x``, ``ack_ackcmd``."""
        if self.kind == "command":
            return "cmd_" + self.sal_name[len("command_") :]
        if self.kind == "event":
            return "evt_" + self.sal_name[len("logevent_") :]
        if self.kind == "ackcmd":
            return "ack_ackcmd"
        return "tel_" + self.sal_name

    @property
    def short_name(self) -> str:
        """Name without its ``command_``/``logevent_`` prefix."""
        return self.attr_name[4:]


@dataclasses.dataclass
class ComponentInfo:
    """Everything known about one SAL component's interface.

    Attributes
    ----------
    name : `str`
        SAL component name.
    description : `str`
        From SALSubsystems.xml.
    indexed : `bool`
        Whether instances are told apart by ``salIndex``.
    index_enumeration : `dict` [`str`, `int`]
        Named indices (empty for ``any`` or ``no``).
    added_generics : `tuple` [`str`]
        The ``AddedGenerics`` entries (categories and topic names).
    topics : `dict` [`str`, `TopicInfo`]
        All topics by SAL name, generics included, plus ``ackcmd``.
    enumerations : `dict` [`str`, `int`]
        File-level enumeration values, ``Prefix_Item`` → value.
    """

    name: str
    description: str
    indexed: bool
    index_enumeration: dict[str, int]
    added_generics: tuple[str, ...]
    topics: dict[str, TopicInfo]
    enumerations: dict[str, int]

    @property
    def command_names(self) -> list[str]:
        """Short command names (no ``command_`` prefix), sorted."""
        return sorted(t.short_name for t in self.topics.values() if t.kind == "command")

    @property
    def event_names(self) -> list[str]:
        """Short event names (no ``logevent_`` prefix), sorted."""
        return sorted(t.short_name for t in self.topics.values() if t.kind == "event")

    @property
    def telemetry_names(self) -> list[str]:
        """Telemetry topic names, sorted."""
        return sorted(t.short_name for t in self.topics.values() if t.kind == "telemetry")

    @functools.cached_property
    def sal_topic_names(self) -> list[str]:
        """All SAL topic names except ackcmd, sorted: the basis of ``cmdtype`` in acks."""
        return sorted(name for name in self.topics if name != "ackcmd")


def get_interfaces_dir() -> pathlib.Path:
    """Directory of interface files: ``$LSST_RA_INTERFACES_DIR`` or the package's own."""
    env = os.environ.get("LSST_RA_INTERFACES_DIR")
    if env:
        return pathlib.Path(env)
    return pathlib.Path(__file__).resolve().parent.parent / "interfaces"


def _text(parent: ElementTree.Element, tag: str, path: pathlib.Path, where: str, required: bool = True) -> str:
    elt = parent.find(tag)
    if elt is None or elt.text is None or not elt.text.strip():
        if required:
            raise InterfaceError(f"{path}: {where}: missing or empty <{tag}>")
        return ""
    return elt.text.strip()


def _int(text: str, path: pathlib.Path, where: str, tag: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InterfaceError(f"{path}: {where}: <{tag}> must be an integer, not {text!r}") from None
    if value < minimum:
        raise InterfaceError(f"{path}: {where}: <{tag}> must be >= {minimum}, not {value}")
    return value


def _check_name(name: str, path: pathlib.Path, where: str) -> None:
    if not _NAME_RE.match(name) or keyword.iskeyword(name):
        raise InterfaceError(f"{path}: {where}: invalid name {name!r}")
    if len(name) > _MAX_NAME_LEN:
        raise InterfaceError(f"{path}: {where}: name {name!r} is longer than {_MAX_NAME_LEN} characters")


def _parse_int(text: str) -> int:
    """Integer in decimal (leading zeros allowed, as ts_xml writes ``04``) or 0x hex."""
    try:
        return int(text, 0)
    except ValueError:
        return int(text, 10)


def parse_enumeration(text: str, path: pathlib.Path, where: str) -> dict[str, int]:
    """Parse a ts_xml enumeration: comma list of ``Prefix_Item[=value]``, values counting from 1.

    Parameters
    ----------
    text : `str`
        The ``<Enumeration>`` text.
    path : `pathlib.Path`
        File, for error messages.
    where : `str`
        Element, for error messages.

    Returns
    -------
    values : `dict` [`str`, `int`]
        Item name → value.
    """
    values: dict[str, int] = {}
    next_value = 1
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, value_text = item.partition("=")
        name = name.strip()
        _check_name(name, path, f"{where} <Enumeration>")
        if sep:
            try:
                next_value = _parse_int(value_text.strip())
            except ValueError:
                raise InterfaceError(
                    f"{path}: {where} <Enumeration>: value of {name!r} must be an integer, not {value_text!r}"
                ) from None
        if name in values:
            raise InterfaceError(f"{path}: {where} <Enumeration>: {name!r} appears twice")
        values[name] = next_value
        next_value += 1
    return values


def _parse_item(item: ElementTree.Element, path: pathlib.Path, where: str) -> FieldInfo:
    name = _text(item, "EFDB_Name", path, f"{where} <item>")
    where = f"{where} <item> {name!r}"
    _check_name(name, path, where)
    if name.startswith("private_") or name == "salIndex":
        raise InterfaceError(f"{path}: {where}: {name!r} is reserved (added by the SAL layer)")
    idl_type = " ".join(_text(item, "IDL_Type", path, where).split())
    if idl_type not in IDL_TYPES:
        raise InterfaceError(f"{path}: {where}: unknown <IDL_Type> {idl_type!r}; allowed: {', '.join(IDL_TYPES)}")
    count_text = _text(item, "Count", path, where, required=False) or "1"
    count = _int(count_text, path, where, "Count", 1)
    str_length = 0
    size_text = _text(item, "IDL_Size", path, where, required=False)
    if idl_type == "string":
        if count > 1:
            raise InterfaceError(f"{path}: {where}: arrays of strings are not allowed (Count={count})")
        if size_text:
            size = _int(size_text, path, where, "IDL_Size", 1)
            str_length = 0 if size == 1 else size
    return FieldInfo(
        name=name,
        idl_type=idl_type,
        count=count,
        str_length=str_length,
        units=_text(item, "Units", path, where, required=False) or "unitless",
        description=_text(item, "Description", path, where, required=False),
    )


@dataclasses.dataclass
class _ParsedTopic:
    info: TopicInfo
    category: str


def _parse_topic_file(
    path: pathlib.Path, component: str, expected_kind: str | None = None
) -> tuple[list[_ParsedTopic], dict[str, int]]:
    """Parse one Commands/Events/Telemetry file (or one root of SALGenerics.xml)."""
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as e:
        raise InterfaceError(f"{path}: not well-formed XML: {e}") from None
    except OSError as e:
        raise InterfaceError(f"{path}: cannot read: {e}") from None
    return _parse_topic_root(root, path, component, expected_kind)


def _parse_topic_root(
    root: ElementTree.Element, path: pathlib.Path, component: str, expected_kind: str | None
) -> tuple[list[_ParsedTopic], dict[str, int]]:
    if root.tag not in _KIND_BY_ROOT:
        raise InterfaceError(
            f"{path}: root element <{root.tag}> is not one of {', '.join('<' + r + '>' for r in _KIND_BY_ROOT)}"
        )
    kind, child_tag = _KIND_BY_ROOT[root.tag]
    if expected_kind is not None and kind != expected_kind:
        raise InterfaceError(f"{path}: root <{root.tag}> holds {kind} topics, but this file must hold {expected_kind}")
    enumerations: dict[str, int] = {}
    topics: list[_ParsedTopic] = []
    prefix = {"command": "command_", "event": "logevent_", "telemetry": ""}[kind]
    for child in root:
        if child.tag == "Enumeration":
            enumerations.update(parse_enumeration(child.text or "", path, f"<{root.tag}>"))
            continue
        if child.tag != child_tag:
            raise InterfaceError(f"{path}: unexpected element <{child.tag}> in <{root.tag}>; expected <{child_tag}>")
        efdb_topic = _text(child, "EFDB_Topic", path, f"<{child_tag}>")
        where = f"<{child_tag}> {efdb_topic!r}"
        subsystem = _text(child, "Subsystem", path, where)
        if subsystem != component:
            raise InterfaceError(f"{path}: {where}: <Subsystem> is {subsystem!r}, expected {component!r}")
        if not efdb_topic.startswith(component + "_" + prefix):
            raise InterfaceError(f"{path}: {where}: <EFDB_Topic> must start with {component + '_' + prefix!r}")
        sal_name = efdb_topic[len(component) + 1 :]
        _check_name(sal_name, path, where)
        if kind == "telemetry" and (sal_name.startswith(("command_", "logevent_")) or sal_name == "ackcmd"):
            raise InterfaceError(f"{path}: {where}: telemetry topic name {sal_name!r} is reserved")
        fields = [_parse_item(item, path, where) for item in child.findall("item")]
        names = [f.name for f in fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InterfaceError(f"{path}: {where}: duplicate field name(s) {', '.join(duplicates)}")
        enum_text = _text(child, "Enumeration", path, where, required=False)
        if enum_text:
            enumerations.update(parse_enumeration(enum_text, path, where))
        topics.append(
            _ParsedTopic(
                TopicInfo(
                    component=component,
                    sal_name=sal_name,
                    kind=kind,
                    fields=tuple(fields),
                    description=_text(child, "Description", path, where, required=False),
                    enumeration=enum_text,
                ),
                category=_text(child, "Category", path, where, required=False),
            )
        )
    return topics, enumerations


def _ackcmd_info(component: str) -> TopicInfo:
    fields = (
        FieldInfo("ack", "long", description="Acknowledgement code (SalRetCode)"),
        FieldInfo("error", "long", description="Error code; 0 if none"),
        FieldInfo("result", "string", description="Message"),
        FieldInfo("identity", "string", description="private_identity of the command"),
        FieldInfo("origin", "long", description="private_origin of the command"),
        FieldInfo("cmdtype", "long", description="Index of the command in the sorted topic names"),
        FieldInfo("timeout", "double", units="s", description="Time to finish, for CMD_INPROGRESS"),
    )
    return TopicInfo(component, "ackcmd", "ackcmd", fields, "Command acknowledgement")


@dataclasses.dataclass(frozen=True)
class _SubsystemEntry:
    name: str
    description: str
    index_enumeration: str
    added_generics: tuple[str, ...]


def _read_subsystems(path: pathlib.Path) -> dict[str, _SubsystemEntry]:
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as e:
        raise InterfaceError(f"{path}: not well-formed XML: {e}") from None
    except OSError as e:
        raise InterfaceError(f"{path}: cannot read: {e}") from None
    if root.tag != "SALSubsystemSet":
        raise InterfaceError(f"{path}: root element <{root.tag}> should be <SALSubsystemSet>")
    entries = {}
    # ts_xml spells the entry <SALSubsystem>; accept the short form as well.
    for elt in [*root.findall("SALSubsystem"), *root.findall("Subsystem")]:
        name = _text(elt, "Name", path, "<Subsystem>")
        where = f"<Subsystem> {name!r}"
        generics_text = _text(elt, "AddedGenerics", path, where, required=False)
        generics = tuple(g.strip() for g in generics_text.split(",") if g.strip() and g.strip().lower() != "no")
        entries[name] = _SubsystemEntry(
            name=name,
            description=_text(elt, "Description", path, where, required=False),
            index_enumeration=_text(elt, "IndexEnumeration", path, where, required=False) or "no",
            added_generics=generics,
        )
    return entries


def _parse_index_enumeration(text: str, path: pathlib.Path, component: str) -> tuple[bool, dict[str, int]]:
    text = text.strip()
    if text.lower() == "no":
        return False, {}
    if text.lower() == "any":
        return True, {}
    values: dict[str, int] = {}
    for raw in text.split(","):
        name, sep, value_text = raw.strip().partition("=")
        where = f"<Subsystem> {component!r} <IndexEnumeration>"
        if not sep:
            raise InterfaceError(f"{path}: {where}: {raw.strip()!r} needs a value (Name=value)")
        try:
            value = int(value_text)
        except ValueError:
            raise InterfaceError(f"{path}: {where}: value of {name.strip()!r} is not an integer") from None
        if value == 0:
            raise InterfaceError(f"{path}: {where}: index 0 is not allowed ({name.strip()!r})")
        values[name.strip()] = value
    return True, values


@functools.cache
def _load_cached(component: str, interfaces_dir: pathlib.Path) -> ComponentInfo:
    subsystems_path = interfaces_dir / "SALSubsystems.xml"
    subsystems = _read_subsystems(subsystems_path)
    if component not in subsystems:
        raise InterfaceError(
            f"{subsystems_path}: no <Subsystem> named {component!r}; known: {', '.join(sorted(subsystems))}"
        )
    entry = subsystems[component]
    indexed, index_enumeration = _parse_index_enumeration(entry.index_enumeration, subsystems_path, component)

    # Generic topics: mandatory always, then the categories and names in AddedGenerics.
    generics_path = interfaces_dir / "SALGenerics.xml"
    try:
        generics_root = ElementTree.parse(generics_path).getroot()
    except ElementTree.ParseError as e:
        raise InterfaceError(f"{generics_path}: not well-formed XML: {e}") from None
    except OSError as e:
        raise InterfaceError(f"{generics_path}: cannot read: {e}") from None
    generic_topics: list[_ParsedTopic] = []
    roots = [generics_root] if generics_root.tag in _KIND_BY_ROOT else list(generics_root)
    for root in roots:
        root_topics, _ = _parse_topic_root(root, generics_path, "SALGeneric", None)
        generic_topics += root_topics
    known_generic_names = {p.info.sal_name for p in generic_topics}
    for wanted in entry.added_generics:
        if wanted not in GENERIC_CATEGORIES and wanted not in known_generic_names:
            raise InterfaceError(
                f"{subsystems_path}: <Subsystem> {component!r} <AddedGenerics>: {wanted!r} is neither a category "
                f"({', '.join(GENERIC_CATEGORIES)}) nor a generic topic"
            )
    wanted_set = set(entry.added_generics) | {"mandatory"}
    topics: dict[str, TopicInfo] = {}
    for parsed in generic_topics:
        if parsed.category in wanted_set or parsed.info.sal_name in wanted_set:
            topics[parsed.info.sal_name] = dataclasses.replace(parsed.info, component=component)

    enumerations: dict[str, int] = {}
    comp_dir = interfaces_dir / component
    for kind, suffix in _FILE_SUFFIX_BY_KIND.items():
        path = comp_dir / f"{component}_{suffix}.xml"
        if not path.exists():
            continue
        parsed_topics, file_enums = _parse_topic_file(path, component, kind)
        enumerations.update(file_enums)
        for parsed in parsed_topics:
            if parsed.info.sal_name in topics:
                raise InterfaceError(f"{path}: topic {parsed.info.sal_name!r} is defined twice (or shadows a generic)")
            topics[parsed.info.sal_name] = parsed.info
    topics["ackcmd"] = _ackcmd_info(component)
    return ComponentInfo(
        name=component,
        description=entry.description,
        indexed=indexed,
        index_enumeration=index_enumeration,
        added_generics=entry.added_generics,
        topics=topics,
        enumerations=enumerations,
    )


def load_component_info(component: str, interfaces_dir: str | pathlib.Path | None = None) -> ComponentInfo:
    """Load (and cache) the interface of one SAL component.

    Parameters
    ----------
    component : `str`
        SAL component name, e.g. ``"RapidAnalysis"``.
    interfaces_dir : `str` or `pathlib.Path`, optional
        Directory in the ts_xml layout; default `get_interfaces_dir`.

    Returns
    -------
    info : `ComponentInfo`
        The component's topics and metadata.

    Raises
    ------
    InterfaceError
        If a file is missing, malformed, or names an unknown generic.
    """
    directory = pathlib.Path(interfaces_dir) if interfaces_dir is not None else get_interfaces_dir()
    return _load_cached(component, directory.resolve())
