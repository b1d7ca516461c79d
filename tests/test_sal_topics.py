"""Topic types and the write side: DDS names, private fields, defaults, rev codes, set/set_write."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import pathlib
import re
import shutil

import pytest

from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sal.idl_types import get_topic_type, rev_code
from lsst.ts.rapidanalysis.sal.xml_interface import PRIVATE_FIELDS, get_interfaces_dir, load_component_info
from sal_helpers import STD_TIMEOUT, random_index

PRIVATE_NAMES = [name for name, _, _ in PRIVATE_FIELDS]


# -- types (no DDS traffic) --


def test_private_fields_are_ts_sal_order() -> None:
    assert PRIVATE_NAMES == [
        "private_revCode",
        "private_sndStamp",
        "private_rcvStamp",
        "private_seqNum",
        "private_identity",
        "private_origin",
    ]


@pytest.mark.parametrize(
    "component, sal_name, indexed",
    [("Test", "logevent_scalars", True), ("ATCamera", "logevent_endReadout", False), ("Test", "ackcmd", True)],
)
def test_type_names_fields_and_defaults(component: str, sal_name: str, indexed: bool) -> None:
    info = load_component_info(component)
    assert info.indexed is indexed
    topic_type = get_topic_type(info.topics[sal_name], info.indexed)
    assert re.fullmatch(r"[0-9a-f]{8}", topic_type.rev_code)
    assert topic_type.dds_name == f"{component}_{sal_name}_{topic_type.rev_code}"
    assert topic_type.data_type.__idl_typename__ == f"{component}::{sal_name}_{topic_type.rev_code}"
    names = [f.name for f in dataclasses.fields(topic_type.data_type)]
    public = [f.name for f in info.topics[sal_name].fields]
    expected = PRIVATE_NAMES + (["salIndex"] if indexed else []) + public
    assert names == expected
    assert topic_type.field_names == tuple(public)
    # every field has a default, as salobj's DataType()
    data = topic_type.data_type()
    for field in info.topics[sal_name].fields:
        value = getattr(data, field.name)
        zero = {"string": "", "boolean": False, "float": 0.0, "double": 0.0}.get(field.idl_type, 0)
        if field.count > 1:
            assert value == [zero] * field.count, field.name
        else:
            assert value == zero and type(value) is type(zero), field.name
    assert data.private_seqNum == 0 and data.private_identity == ""


def test_array_defaults_are_independent() -> None:
    topic_type = get_topic_type(load_component_info("Test").topics["logevent_arrays"], True)
    a = topic_type.data_type()
    b = topic_type.data_type()
    a.int0[0] = 5
    assert b.int0 == [0] * 5


def test_rev_code_changes_with_the_layout() -> None:
    topic = load_component_info("Test").topics["command_setScalars"]
    base = rev_code(topic, True)
    assert rev_code(dataclasses.replace(topic), True) == base  # stable
    assert rev_code(topic, False) != base  # salIndex key or not
    fields = list(topic.fields)
    i = next(i for i, f in enumerate(fields) if f.name == "int0")
    variants = [
        dataclasses.replace(fields[i], idl_type="long long"),
        dataclasses.replace(fields[i], count=2),
        dataclasses.replace(fields[i], name="int1"),
    ]
    for variant in variants:
        changed = dataclasses.replace(topic, fields=tuple(fields[:i] + [variant] + fields[i + 1 :]))
        assert rev_code(changed, True) != base, variant
    assert rev_code(dataclasses.replace(topic, fields=topic.fields[:-1]), True) != base


def test_rev_code_changes_when_the_xml_changes(tmp_path: pathlib.Path) -> None:
    interfaces = tmp_path / "interfaces"
    shutil.copytree(get_interfaces_dir(), interfaces)
    path = interfaces / "Test" / "Test_Events.xml"
    text = path.read_text()
    # scalars.double0 becomes a float
    start = text.index("<EFDB_Topic>Test_logevent_scalars</EFDB_Topic>")
    at = text.index("<EFDB_Name>double0</EFDB_Name>", start)
    at = text.index("<IDL_Type>double</IDL_Type>", at)
    path.write_text(text[:at] + "<IDL_Type>float</IDL_Type>" + text[at + len("<IDL_Type>double</IDL_Type>") :])
    shipped = load_component_info("Test")
    changed = load_component_info("Test", interfaces_dir=interfaces)
    for name in ("logevent_scalars", "logevent_arrays", "logevent_summaryState"):
        old = get_topic_type(shipped.topics[name], True)
        new = get_topic_type(changed.topics[name], True)
        assert (old.dds_name != new.dds_name) is (name == "logevent_scalars"), name


# -- WriteTopic.set validation and set_write (real Controller and Remote) --


async def test_set_validation() -> None:
    index = random_index()
    async with sal.Controller("Test", index) as controller:
        evt = controller.evt_scalars
        with pytest.raises(AttributeError, match="noSuchField"):
            evt.set(noSuchField=1)
        bad_values = [
            dict(string0=5),
            dict(int0="3"),
            dict(int0=1.5),
            dict(byte0=256),
            dict(byte0=-1),
            dict(short0=2**15),
            dict(int0=2**31),
            dict(long0=-(2**31) - 1),
            dict(unsignedShort0=-1),
            dict(unsignedInt0=2**32),
            dict(longLong0=2**63),
            dict(double0="x"),
        ]
        for kwargs in bad_values:
            name = next(iter(kwargs))
            with pytest.raises(ValueError, match=name):
                evt.set(**kwargs)
        # a failed set changes nothing
        assert evt.data.int0 == 0 and evt.data.string0 == ""
        # in-range extremes are fine
        assert evt.set(byte0=255, short0=-(2**15), int0=2**31 - 1, unsignedInt0=2**32 - 1, longLong0=-(2**63))
        arrays = controller.evt_arrays
        with pytest.raises(ValueError, match="int0"):
            arrays.set(int0=[1, 2, 3])
        with pytest.raises(ValueError, match="int0"):
            arrays.set(int0=5)
        with pytest.raises(ValueError, match="byte0"):
            arrays.set(byte0=[0, 1, 2, 3, 300])
        # bounded string (softwareVersions.cscVersion is string<256>)
        versions = controller.evt_softwareVersions
        versions.set(cscVersion="x" * 256)
        with pytest.raises(ValueError, match="cscVersion"):
            versions.set(cscVersion="x" * 257)


async def test_float_out_of_range_is_rejected_by_set() -> None:
    """A float32 field given a value it cannot hold must fail in set (naming the field),
    not poison the sample so that every later write fails."""
    async with sal.Controller("Test", random_index()) as controller:
        evt = controller.evt_scalars
        with pytest.raises(ValueError, match="float0"):
            evt.set(float0=1e40)
        with pytest.raises(ValueError, match="float0"):
            controller.evt_arrays.set(float0=[0, 0, 0, 0, -1e39])
        # inf and nan are representable; the topic still writes
        evt.set(float0=math.inf)
        evt.set(float0=math.nan, double0=1e300)
        evt.write()


async def test_set_did_change_and_nan() -> None:
    async with sal.Controller("Test", random_index()) as controller:
        evt = controller.evt_scalars
        assert not evt.has_data
        assert evt.set(int0=0) is True  # first set counts as a change
        assert evt.set(int0=0) is False
        assert evt.set(int0=1) is True
        assert evt.set(double0=math.nan) is True
        assert evt.set(double0=math.nan) is False  # NaN equals NaN here
        arrays = controller.evt_arrays
        arrays.set(double0=[math.nan, 1, 2, 3, 4])
        assert arrays.set(double0=[math.nan, 1, 2, 3, 4]) is False
        assert arrays.set(double0=[math.nan, 1, 2, 3, 5]) is True
        # as salobj: only the first set counts as a change, so an unchanged set_write after set does not write
        result = evt.set_write(double0=math.nan)
        assert (result.did_change, result.was_written) == (False, False)
        assert evt.set_write(double0=0.5).was_written


async def test_event_set_write_only_on_change() -> None:
    index = random_index()
    async with (
        sal.Controller("Test", index) as controller,
        sal.Domain() as domain,
        sal.Remote(domain, "Test", index, readonly=True, include=["scalars"]) as remote,
    ):
        evt = controller.evt_scalars
        results = [
            evt.set_write(int0=1),  # first: written
            evt.set_write(int0=1),  # unchanged: not written
            evt.set_write(int0=1, force_output=True),  # forced
            evt.set_write(int0=2, force_output=False),  # changed but suppressed
            evt.set_write(int0=3),  # changed: written
        ]
        assert [(r.did_change, r.was_written) for r in results] == [
            (True, True),
            (False, False),
            (False, True),
            (True, False),
            (True, True),
        ]
        received = [await remote.evt_scalars.next(flush=False, timeout=STD_TIMEOUT) for _ in range(3)]
        # samples of one writer arrive in order: had an unchanged sample been written, it would be here
        assert [d.int0 for d in received] == [1, 1, 3]
        seq_nums = [d.private_seqNum for d in received]
        assert seq_nums == list(range(seq_nums[0], seq_nums[0] + 3))
        assert remote.evt_scalars.nqueued == 0
        for data in received:
            assert data.private_identity == f"Test:{index}"
            assert data.private_origin == controller.domain.origin
            assert data.salIndex == index
            assert data.private_revCode == remote.evt_scalars.rev_code
            assert 0 <= data.private_rcvStamp - data.private_sndStamp < 5


async def test_telemetry_set_write_always_writes() -> None:
    index = random_index()
    async with (
        sal.Controller("Test", index) as controller,
        sal.Domain() as domain,
        sal.Remote(domain, "Test", index, readonly=True, include=["scalars"]) as remote,
    ):
        for _ in range(3):
            result = controller.tel_scalars.set_write(int0=7)
            assert result.was_written
        received = [await remote.tel_scalars.next(flush=False, timeout=STD_TIMEOUT) for _ in range(3)]
        assert [d.int0 for d in received] == [7, 7, 7]


async def test_remote_command_cannot_write() -> None:
    index = random_index()
    async with sal.Domain() as domain, sal.Remote(domain, "Test", index) as remote:
        with pytest.raises(NotImplementedError):
            remote.cmd_setScalars.write()
        with pytest.raises(NotImplementedError):
            remote.cmd_setScalars.set_write(int0=1)
        with pytest.raises(AttributeError, match="noSuchField"):
            await remote.cmd_setScalars.set_start(noSuchField=1, timeout=1)


async def test_remote_include_exclude_readonly() -> None:
    index = random_index()
    async with sal.Domain() as domain:
        async with sal.Remote(domain, "Test", index, include=["scalars", "summaryState"]) as remote:
            assert hasattr(remote, "evt_scalars") and hasattr(remote, "tel_scalars")
            assert hasattr(remote, "evt_summaryState")
            assert not hasattr(remote, "evt_heartbeat") and not hasattr(remote, "tel_arrays")
            assert hasattr(remote, "cmd_start")  # include/exclude do not affect commands
        async with sal.Remote(domain, "Test", index, exclude=["heartbeat", "arrays"], readonly=True) as remote:
            assert not hasattr(remote, "evt_heartbeat") and not hasattr(remote, "evt_arrays")
            assert not hasattr(remote, "tel_arrays")
            assert hasattr(remote, "evt_logMessage") and hasattr(remote, "tel_scalars")
            assert not any(name.startswith("cmd_") for name in vars(remote))
        with pytest.raises(ValueError, match="include or exclude"):
            sal.Remote(domain, "Test", index, include=["scalars"], exclude=["arrays"])
        with pytest.raises(ValueError, match="not an indexed"):
            sal.Remote(domain, "ATCamera", 1)


async def test_salinfo_names_and_index_enum() -> None:
    async with sal.Domain() as domain:
        ra = sal.SalInfo(domain, "RapidAnalysis", 3)
        assert ra.name_index == "RapidAnalysis:3"
        assert ra.index_enum(3).name == "LSSTCam"
        assert {e.name: int(e) for e in ra.index_enum} == {"LATISS": 1, "LSSTComCam": 2, "LSSTCam": 3}
        test0 = sal.SalInfo(domain, "Test", 0)
        assert test0.name_index == "Test:0"  # indexed, even index 0
        assert test0.index_enum is None
        camera = sal.SalInfo(domain, "ATCamera")
        assert camera.name_index == "ATCamera"
        assert not camera.indexed
        assert camera.cmdtype("command_start") == camera.sal_topic_names.index("command_start")
        for salinfo in (ra, test0, camera):
            await salinfo.close()


async def test_partition_prefix_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LSST_DDS_PARTITION_PREFIX")
    with pytest.raises(RuntimeError, match="LSST_DDS_PARTITION_PREFIX"):
        sal.Domain()


async def test_keyless_writer_going_away_loses_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """A non-indexed component's writer leaving makes an invalid sample whose key cyclonedds
    cannot decode; that used to abort the whole take (and lose the valid samples with it)."""
    async with sal.Domain() as domain:
        remote = sal.Remote(domain, "ATCamera", readonly=True, include=["endReadout"])
        await remote.start_task
        controller = sal.Controller("ATCamera")
        await controller.start_task
        for i in range(5):
            controller.evt_endReadout.set_write(imageName=f"AT_O_20251115_{i:06d}", force_output=True)
        await controller.close()
        names = [(await remote.evt_endReadout.next(flush=False, timeout=10)).imageName for _ in range(5)]
        assert names == [f"AT_O_20251115_{i:06d}" for i in range(5)]
        await asyncio.sleep(0.2)
    failures = [r for r in caplog.records if "sample pump failed" in r.getMessage()]
    assert not failures, failures[0].exc_text
