"""The mount-telemetry buffer (data/mount_telemetry.py): filling, bounding, windows, files, and DDS."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import pathlib

import numpy as np
import pytest

from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.data.mount_telemetry import (
    MountTelemetryBuffer,
    ParquetUnavailableError,
    parquet_available,
    read_telemetry_file,
    sample_fields,
    write_telemetry_file,
)
from lsst.ts.rapidanalysis.data.telemetry_file import read_telemetry, telemetry_tables
from lsst.ts.rapidanalysis.sal.testutils import set_random_lsst_dds_partition_prefix
from lsst.ts.rapidanalysis.sim.camera_sim import SimClock
from lsst.ts.rapidanalysis.sim.mount_sim import AuxTelMountSimulator, BaseMountSimulator, SimonyiMountSimulator

TIME_SCALE = 0.005
ENCODERS = "lsst.sal.ATMCS.mount_AzEl_Encoders"
AZIMUTH = "lsst.sal.MTMount.azimuth"
MOTORS = "lsst.sal.MTRotator.motors"


async def _track(cls: type[BaseMountSimulator], seconds: float) -> tuple[BaseMountSimulator, float]:
    clock = SimClock(TIME_SCALE)
    simulator = cls(clock=clock, seed=2)
    async with simulator:
        start = clock.now() + 1.0
        simulator.start_tracking(az=100.0, el=60.0, jitter_arcsec=0.5, start_tai=start)
        while True:
            times = [simulator.truth.series(axis)["time"] for axis in ("azimuth", "rotator")]
            if all(len(t) and t.max() > start + seconds for t in times):
                break
            await asyncio.sleep(0.05)
    return simulator, start


def simulate(cls: type[BaseMountSimulator], seconds: float) -> tuple[BaseMountSimulator, float]:
    saved = os.environ.get("LSST_DDS_PARTITION_PREFIX")
    os.environ.setdefault("LSST_DDS_PARTITION_PREFIX", "x")
    set_random_lsst_dds_partition_prefix()  # module-scoped fixtures run before the per-test isolation
    try:
        return asyncio.run(_track(cls, seconds))
    finally:
        if saved is None:
            os.environ.pop("LSST_DDS_PARTITION_PREFIX", None)
        else:
            os.environ["LSST_DDS_PARTITION_PREFIX"] = saved


def messages(simulator: BaseMountSimulator, topic: str) -> list[dict]:
    """The messages the simulator published on ``topic``, one dict of fields each (as samples arrive)."""
    columns = simulator.recorder.columns(topic)
    return [{name: values[j] for name, values in columns.items()} for j in range(len(next(iter(columns.values()))))]


@pytest.fixture(scope="module")
def auxtel() -> tuple[BaseMountSimulator, float]:
    return simulate(AuxTelMountSimulator, 40.0)


@pytest.fixture(scope="module")
def simonyi() -> tuple[BaseMountSimulator, float]:
    return simulate(SimonyiMountSimulator, 40.0)


def filled(simulator: BaseMountSimulator, **kwargs: float) -> MountTelemetryBuffer:
    buffer = MountTelemetryBuffer(**kwargs)
    for topic in simulator.recorder.topics:
        buffer.extend(topic, messages(simulator, topic))
    return buffer


def assert_same(columns: dict[str, dict[str, np.ndarray]], tables: dict) -> None:
    assert sorted(columns) == sorted(tables)
    for topic, table in tables.items():
        assert list(columns[topic]) == table.colnames, topic
        for name in table.colnames:
            np.testing.assert_array_equal(columns[topic][name], np.asarray(table[name]), err_msg=f"{topic}.{name}")


@pytest.mark.parametrize("telescope", ["auxtel", "simonyi"])
def test_window_is_what_was_published(telescope: str, request: pytest.FixtureRequest) -> None:
    """Packed ATMCS rows are unpacked to 100 Hz samples, MTRotator arrays split, EFD names kept."""
    simulator, start = request.getfixturevalue(telescope)
    buffer = filled(simulator)
    t0, t1 = start + 10.3, start + 25.7
    window = buffer.window(t0, t1, margin=1.5)
    # the simulator's own (recorder → table) conversion over the same closed interval
    assert_same(window, telemetry_tables(simulator, t0 - 1.5, t1 + 1.5 + 1e-9))
    for columns in window.values():
        assert columns["time"].min() >= t0 - 1.5 and columns["time"].max() <= t1 + 1.5
        assert np.all(np.diff(columns["time"]) >= 0)
    if telescope == "auxtel":
        encoders = window[ENCODERS]
        assert {"cRIO_timestamp", "azimuthCalculatedAngle", "elevationCalculatedAngle"} <= set(encoders)
        np.testing.assert_allclose(np.diff(encoders["time"]), 0.01, atol=1e-6)
        # every sample is demand + injected jitter (truth)
        truth = simulator.truth.series("azimuth", t0 - 1.5, t1 + 1.5 + 1e-9)
        np.testing.assert_allclose(encoders["azimuthCalculatedAngle"], truth["actual"], rtol=0, atol=1e-12)
    else:
        assert {"torque0", "torque1", "raw0", "current1"} <= set(window[MOTORS])
        assert {"actualPosition", "demandPosition", "actualPositionTimestamp"} <= set(window[AZIMUTH])
    # the table form, and topic selection
    tables = buffer.window_tables(t0, t1, topics=[topic for topic in window][:1])
    assert list(tables) == list(window)[:1]
    assert buffer.window(start + 1e6, start + 1e6 + 1) == {}


def test_buffer_is_bounded(simonyi: tuple[BaseMountSimulator, float], auxtel: tuple) -> None:
    simulator, start = simonyi
    buffer = filled(simulator, duration=10.0)
    first, last = buffer.time_range(AZIMUTH)
    assert last - first <= 10.0 + 1e-9 and last >= start + 40.0
    assert buffer.n_messages(AZIMUTH) == pytest.approx(10.0 * 20 + 1, abs=1)
    # a count bound as well, whatever the timestamps say (a stuck clock)
    stuck = MountTelemetryBuffer(duration=10.0, max_messages=50)
    for _ in range(500):
        stuck.append(AZIMUTH, {"timestamp": 5.0, "actualPosition": 1.0})
    assert stuck.n_messages(AZIMUTH) == 50 and stuck.n_messages() == 50
    # packed messages count by their last sample: 10 s keeps 10 or 11 one-second rows
    packed = filled(auxtel[0], duration=10.0)
    assert packed.n_messages(ENCODERS) in (10, 11)
    first, last = packed.time_range(ENCODERS)
    assert last - first <= 11.0
    packed.clear()
    assert packed.topics == [] and packed.time_range() is None


def test_file_round_trip(auxtel: tuple[BaseMountSimulator, float], tmp_path: pathlib.Path) -> None:
    simulator, start = auxtel
    buffer = filled(simulator)
    t0, t1 = start + 5.0, start + 20.0
    window = buffer.window(t0, t1, margin=1.0)
    (path,) = buffer.write(tmp_path / "window.ecsv", t0, t1, margin=1.0)
    assert path.suffix == ".ecsv"
    assert_same(read_telemetry_file(path), read_telemetry(path))
    back = read_telemetry_file(path)
    assert sorted(back) == sorted(window)
    for topic, columns in window.items():
        assert list(back[topic]) == list(columns)
        for name, values in columns.items():
            np.testing.assert_array_equal(back[topic][name], values, err_msg=f"{topic}.{name}")
    # a sub-window on reading
    inner = read_telemetry_file(path, t0, t0 + 2.0)
    assert inner[ENCODERS]["time"].min() >= t0 and inner[ENCODERS]["time"].max() <= t0 + 2.0
    # one file per topic
    written = buffer.write(tmp_path / "per_topic", t0, t1, margin=1.0, per_topic=True)
    assert sorted(p.name for p in written) == sorted(f"{topic}.ecsv" for topic in window)
    per_topic = read_telemetry_file(tmp_path / "per_topic")
    for topic, columns in window.items():
        np.testing.assert_array_equal(per_topic[topic]["azimuthCalculatedAngle" if topic == ENCODERS else "time"],
                                      columns["azimuthCalculatedAngle" if topic == ENCODERS else "time"])  # fmt: skip


def test_empty_window_writes_a_valid_file(tmp_path: pathlib.Path) -> None:
    buffer = MountTelemetryBuffer()
    (path,) = buffer.write(tmp_path / "nothing.ecsv", 100.0, 130.0, margin=1.0)
    assert path.exists() and read_telemetry_file(path) == {}
    (path,) = write_telemetry_file(tmp_path / "dir", {}, per_topic=True)
    assert read_telemetry_file(tmp_path / "dir") == {}
    with pytest.raises(FileNotFoundError):
        read_telemetry_file(tmp_path / "missing.ecsv")


def test_hexapod_sal_index_is_kept(tmp_path: pathlib.Path) -> None:
    """MTHexapod.application carries both hexapods: salIndex must survive to the file."""
    buffer = MountTelemetryBuffer(topics=["lsst.sal.MTHexapod.application"])
    for k in range(20):
        for index in (1, 2):
            buffer.append(
                "lsst.sal.MTHexapod.application",
                {"salIndex": index, "private_sndStamp": 1000.0 + k * 0.1, "private_seqNum": k, "error": [index] * 6},
            )
    (path,) = buffer.write(tmp_path / "hex.ecsv", 1000.0, 1002.0)
    columns = read_telemetry_file(path)["lsst.sal.MTHexapod.application"]
    assert sorted(set(columns["salIndex"])) == [1, 2]
    np.testing.assert_array_equal(columns["error3"], columns["salIndex"])
    assert "private_seqNum" not in columns and "private_sndStamp" in columns
    with pytest.raises(KeyError, match="not buffered"):
        buffer.append("lsst.sal.MTMount.azimuth", {"timestamp": 1.0})


def test_sample_fields_and_bad_samples() -> None:
    @dataclasses.dataclass
    class Sample:  # what a Remote hands over: a dataclass with private fields
        private_sndStamp: float
        private_seqNum: int
        salIndex: int
        cRIO_timestamp: float
        azimuthCalculatedAngle: list

    angles = [float(i) for i in range(100)]
    fields = sample_fields(Sample(3.0, 7, 0, 2.0, angles))
    assert set(fields) == {"private_sndStamp", "cRIO_timestamp", "azimuthCalculatedAngle"}
    angles[0] = -1.0  # a DDS buffer reused: the buffer holds its own copy
    assert fields["azimuthCalculatedAngle"][0] == 0.0 and fields["azimuthCalculatedAngle"].shape == (100,)
    buffer = MountTelemetryBuffer()
    buffer.append(ENCODERS, Sample(3.0, 7, 0, 2.0, angles))
    assert buffer.time_range(ENCODERS) == (2.0, pytest.approx(2.99))
    with pytest.raises(ValueError, match="EFD topic name"):
        buffer.append("MTMount.azimuth", {"timestamp": 1.0})
    with pytest.raises(ValueError, match="no time field"):
        buffer.append(AZIMUTH, {"actualPosition": 1.0})
    with pytest.raises(ValueError, match="not finite"):
        buffer.append(AZIMUTH, {"timestamp": math.nan})
    with pytest.raises(ValueError):
        MountTelemetryBuffer(duration=0)
    with pytest.raises(ValueError):
        buffer.window(10.0, 5.0)


@pytest.mark.skipif(parquet_available(), reason="pyarrow is installed: the no-pyarrow message cannot be checked")
def test_parquet_without_pyarrow_says_so(tmp_path: pathlib.Path) -> None:
    buffer = MountTelemetryBuffer()
    buffer.append(AZIMUTH, {"timestamp": 1.0, "actualPosition": 2.0})
    with pytest.raises(ParquetUnavailableError, match="pyarrow, which is not installed"):
        buffer.write(tmp_path / "window.parquet", 0.0, 2.0)
    assert not (tmp_path / "window.parquet").exists()
    (tmp_path / "other.parquet").write_bytes(b"PAR1")
    with pytest.raises(ParquetUnavailableError):
        read_telemetry_file(tmp_path / "other.parquet")


@pytest.mark.skipif(not parquet_available(), reason="pyarrow is not installed (Parquet telemetry files are optional)")
def test_parquet_round_trip(auxtel: tuple[BaseMountSimulator, float], tmp_path: pathlib.Path) -> None:
    simulator, start = auxtel
    buffer = filled(simulator)
    (path,) = buffer.write(tmp_path / "window.parquet", start + 5.0, start + 10.0)
    assert_same(read_telemetry_file(path), read_telemetry(path))


async def test_filled_from_dds(tmp_path: pathlib.Path) -> None:
    """The CSC's way: a Remote's callbacks append DDS samples; the window equals what was published."""
    topics = ("mount_AzEl_Encoders", "mount_Nasmyth_Encoders", "measuredTorque")
    buffer = MountTelemetryBuffer(duration=120.0)
    domain = sal.Domain()
    remote = sal.Remote(domain, "ATMCS", include=list(topics))
    try:
        for topic in topics:
            efd = f"lsst.sal.ATMCS.{topic}"
            getattr(remote, f"tel_{topic}").callback = lambda sample, efd=efd: buffer.append(efd, sample)
        await asyncio.wait_for(remote.start_task, 10.0)
        clock = SimClock(0.05)
        simulator = AuxTelMountSimulator(clock=clock, seed=4)
        async with simulator:
            start = clock.now() + 1.0
            simulator.start_tracking(az=10.0, el=45.0, jitter_arcsec=0.3, start_tai=start)
            await clock.sleep_until(start + 14.0)
        await asyncio.sleep(0.3)  # the last messages in flight
    finally:
        await remote.close()
        await domain.close()
    t0, t1 = start + 2.0, start + 12.0
    received = buffer.window(t0, t1)
    published = telemetry_tables(simulator, t0, t1 + 1e-9)
    assert sorted(received) == sorted(published)
    for topic, table in published.items():
        # DDS adds private_sndStamp; everything the simulator published is there, unchanged
        assert set(table.colnames) <= set(received[topic]) and "private_sndStamp" in received[topic]
        for name in table.colnames:
            np.testing.assert_array_equal(received[topic][name], np.asarray(table[name]), err_msg=f"{topic}.{name}")
    (path,) = buffer.write(tmp_path / "dds.ecsv", t0, t1)
    assert read_telemetry_file(path)[ENCODERS]["azimuthCalculatedAngle"].size in (1000, 1001)
