"""The interface loader (ts_xml format): shipped components, generics, indices, malformed files."""

from __future__ import annotations

import pathlib
import shutil
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable

import pytest

from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sal import InterfaceError, load_component_info
from lsst.ts.rapidanalysis.sal.xml_interface import get_interfaces_dir

SHIPPED = [
    "Test",
    "RapidAnalysis",
    "ATCamera",
    "CCCamera",
    "MTCamera",
    "GenericCamera",
    "ATMCS",
    "MTMount",
    "MTRotator",
]
MANDATORY_EVENTS = {"heartbeat", "logLevel", "logMessage", "softwareVersions"}
CSC_COMMANDS = {"start", "enable", "disable", "standby", "exitControl", "setLogLevel"}
CSC_EVENTS = {"errorCode", "summaryState", "simulationMode"}
CONFIGURABLE_EVENTS = {"configurationApplied", "configurationsAvailable"}
CAMERA_EVENTS = {"startIntegration", "startReadout", "endReadout", "endOfImageTelemetry"}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_component_loads(name: str) -> None:
    info = load_component_info(name)
    assert info.name == name
    assert MANDATORY_EVENTS <= set(info.event_names)
    assert CSC_COMMANDS <= set(info.command_names)
    assert CSC_EVENTS <= set(info.event_names)
    # ackcmd is always there, with salobj's fields
    ackcmd = info.topics["ackcmd"]
    assert ackcmd.kind == "ackcmd"
    assert [f.name for f in ackcmd.fields] == ["ack", "error", "result", "identity", "origin", "cmdtype", "timeout"]
    # every topic belongs to the component and has a consistent attribute name
    for sal_name, topic in info.topics.items():
        assert topic.component == name
        assert topic.sal_name == sal_name
        prefix = {"command": "cmd_", "event": "evt_", "telemetry": "tel_", "ackcmd": "ack_"}[topic.kind]
        assert topic.attr_name.startswith(prefix)
    assert info.sal_topic_names == sorted(n for n in info.topics if n != "ackcmd")


def test_rapid_analysis_interface() -> None:
    info = load_component_info("RapidAnalysis")
    assert info.indexed
    assert info.index_enumeration == {"LATISS": 1, "LSSTComCam": 2, "LSSTCam": 3}
    assert {"processData", "abortJob", "setFocalPlaneMode"} <= set(info.command_names)
    assert {"jobResult", "focalPlaneMode", "workerPool", "visitGathered"} <= set(info.event_names)
    assert {"sfmDetectorMetrics", "sfmVisitMetrics", "spectrumMetrics", "mountMetrics", "poolStatus"} <= set(
        info.telemetry_names
    )
    # AddedGenerics = csc, configurable, logevent_largeFileObjectAvailable
    assert info.added_generics == ("csc", "configurable", "logevent_largeFileObjectAvailable")
    assert CONFIGURABLE_EVENTS | {"largeFileObjectAvailable"} <= set(info.event_names)
    # uncategorised generics are only added by name
    assert "abort" not in info.command_names
    assert "enterControl" not in info.command_names
    assert "clockOffset" not in info.event_names
    assert "statusCode" not in info.event_names
    job_result = info.topics["logevent_jobResult"]
    assert job_result.kind == "event"
    assert job_result.attr_name == "evt_jobResult"
    assert "jobId" in [f.name for f in job_result.fields]
    assert info.topics["sfmDetectorMetrics"].attr_name == "tel_sfmDetectorMetrics"
    # file-level enumerations
    assert info.enumerations["WorkerMode_Waiting"] == 0
    assert info.enumerations["FocalPlaneVariation_AlternatingByTwos"] == 2


@pytest.mark.parametrize(
    "name, indexed, configurable, lfoa",
    [
        ("Test", True, True, False),
        ("GenericCamera", True, True, True),
        ("ATCamera", False, False, True),
        ("CCCamera", False, False, True),
        ("MTCamera", False, False, True),
        ("ATMCS", False, False, False),
        ("MTMount", False, True, False),
        ("MTRotator", False, True, False),
    ],
)
def test_generics_and_index_flags(name: str, indexed: bool, configurable: bool, lfoa: bool) -> None:
    info = load_component_info(name)
    assert info.indexed is indexed
    assert info.index_enumeration == {}  # "any" or "no": no named indices
    events = set(info.event_names)
    assert (CONFIGURABLE_EVENTS <= events) is configurable
    assert bool(CONFIGURABLE_EVENTS & events) is configurable
    assert ("largeFileObjectAvailable" in events) is lfoa
    if name.endswith("Camera"):
        assert CAMERA_EVENTS <= events
        assert "takeImages" in info.command_names


def test_atmcs_has_no_configuration_events() -> None:
    info = load_component_info("ATMCS")
    assert "logevent_configurationApplied" not in info.topics
    assert "logevent_configurationsAvailable" not in info.topics
    assert {"mount_AzEl_Encoders", "mount_Nasmyth_Encoders", "measuredTorque"} <= set(info.telemetry_names)


def test_test_component_fields_and_enumerations() -> None:
    info = load_component_info("Test")
    assert {"setScalars", "setArrays", "fault", "wait"} <= set(info.command_names)
    assert {"scalars", "arrays"} <= set(info.event_names)
    assert set(info.telemetry_names) >= {"scalars", "arrays"}
    scalars = {f.name: f for f in info.topics["logevent_scalars"].fields}
    assert scalars["longLong0"].idl_type == "long long"
    assert scalars["string0"].str_length == 0  # IDL_Size 1 = unbounded
    arrays = {f.name: f for f in info.topics["logevent_arrays"].fields}
    assert all(f.count == 5 for f in arrays.values())
    # Enum_One, Enum_Two, ... count from 1; explicit values restart the count
    assert info.enumerations["Enum_One"] == 1
    assert info.enumerations["Enum_Three"] == 3
    assert info.enumerations["ValueEnum_Zero"] == 0
    assert info.enumerations["ValueEnum_Five"] == 5
    software_versions = {f.name: f for f in info.topics["logevent_softwareVersions"].fields}
    assert software_versions["cscVersion"].str_length == 256


def test_unknown_component(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InterfaceError, match="NoSuchComponent"):
        load_component_info("NoSuchComponent")


# -- malformed interface files --


def _copy_interfaces(tmp_path: pathlib.Path) -> pathlib.Path:
    target = tmp_path / "interfaces"
    shutil.copytree(get_interfaces_dir(), target)
    return target.resolve()


def _edit_xml(path: pathlib.Path, edit: Callable[[ElementTree.Element], None]) -> None:
    tree = ElementTree.parse(path)
    edit(tree.getroot())
    tree.write(path, encoding="unicode")


def _find_item(root: ElementTree.Element, efdb_topic: str, field: str) -> ElementTree.Element:
    for topic in root:
        if topic.findtext("EFDB_Topic") == efdb_topic:
            for item in topic.findall("item"):
                if item.findtext("EFDB_Name") == field:
                    return item
    raise AssertionError(f"{efdb_topic}.{field} not in the shipped file")


def _find_topic(root: ElementTree.Element, efdb_topic: str) -> ElementTree.Element:
    for topic in root:
        if topic.findtext("EFDB_Topic") == efdb_topic:
            return topic
    raise AssertionError(f"{efdb_topic} not in the shipped file")


def break_xml(d: pathlib.Path) -> pathlib.Path:
    path = d / "Test" / "Test_Events.xml"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # truncated: not well-formed
    return path


def unknown_idl_type(d: pathlib.Path) -> pathlib.Path:
    path = d / "Test" / "Test_Commands.xml"
    _edit_xml(
        path, lambda root: setattr(_find_item(root, "Test_command_wait", "duration").find("IDL_Type"), "text", "quad")
    )
    return path


def duplicate_field(d: pathlib.Path) -> pathlib.Path:
    path = d / "Test" / "Test_Commands.xml"
    _edit_xml(
        path, lambda root: setattr(_find_item(root, "Test_command_wait", "duration").find("EFDB_Name"), "text", "ack")
    )
    return path


def string_array(d: pathlib.Path) -> pathlib.Path:
    path = d / "Test" / "Test_Telemetry.xml"

    def edit(root: ElementTree.Element) -> None:
        item = _find_item(root, "Test_scalars", "string0")
        item.find("Count").text = "3"

    _edit_xml(path, edit)
    return path


def reserved_name(d: pathlib.Path) -> pathlib.Path:
    path = d / "Test" / "Test_Events.xml"
    _edit_xml(
        path,
        lambda root: setattr(_find_item(root, "Test_logevent_scalars", "int0").find("EFDB_Name"), "text", "private_x"),
    )
    return path


def unknown_generic(d: pathlib.Path) -> pathlib.Path:
    path = d / "SALSubsystems.xml"

    def edit(root: ElementTree.Element) -> None:
        for elt in root:
            if elt.findtext("Name") == "Test":
                elt.find("AddedGenerics").text = "csc, configurable, logevent_noSuchGeneric"
                return
        raise AssertionError("no Test in SALSubsystems.xml")

    _edit_xml(path, edit)
    return path


def wrong_subsystem(d: pathlib.Path) -> pathlib.Path:
    path = d / "Test" / "Test_Commands.xml"
    _edit_xml(path, lambda root: setattr(_find_topic(root, "Test_command_fault").find("Subsystem"), "text", "Tset"))
    return path


@pytest.mark.parametrize(
    "breaker, expected",
    [
        (break_xml, ["not well-formed XML"]),
        (unknown_idl_type, ["Test_command_wait", "'duration'", "IDL_Type", "'quad'"]),
        (duplicate_field, ["Test_command_wait", "duplicate field", "ack"]),
        (string_array, ["Test_scalars", "'string0'", "arrays of strings"]),
        (reserved_name, ["Test_logevent_scalars", "'private_x'", "reserved"]),
        (unknown_generic, ["'Test'", "AddedGenerics", "'logevent_noSuchGeneric'"]),
        (wrong_subsystem, ["Test_command_fault", "<Subsystem>", "'Tset'", "'Test'"]),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_malformed_interface(
    tmp_path: pathlib.Path, breaker: Callable[[pathlib.Path], pathlib.Path], expected: list[str]
) -> None:
    interfaces_dir = _copy_interfaces(tmp_path)
    # the pristine copy loads
    assert load_component_info("Test", interfaces_dir=interfaces_dir).name == "Test"
    broken = _copy_interfaces(tmp_path / "broken")
    path = breaker(broken)
    with pytest.raises(InterfaceError) as excinfo:
        load_component_info("Test", interfaces_dir=broken)
    message = str(excinfo.value)
    assert str(path) in message, message
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
    # other components in the same directory are unaffected unless the shared file broke
    if path.name != "SALSubsystems.xml":
        assert load_component_info("ATMCS", interfaces_dir=broken).name == "ATMCS"


def test_salobj_names_are_exported() -> None:
    """Code written for salobj finds every name it uses on the ``sal`` module."""
    names = (
        "Domain Remote Controller BaseCsc ConfigurableCsc State SalRetCode AckError AckTimeoutError ExpectedError "
        "set_summary_state current_tai CscCommander BaseCscTestCase TestCsc set_random_lsst_dds_partition_prefix"
    ).split()
    missing = [name for name in names if not hasattr(sal, name)]
    assert not missing, missing
