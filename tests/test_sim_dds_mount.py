"""The mount telemetry simulators (sim/mount_sim.py) on real DDS, and telemetry files (data/telemetry_file.py)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import math
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.data.telemetry_file import (
    read_telemetry,
    samples_to_table,
    telemetry_tables,
    write_telemetry,
)
from lsst.ts.rapidanalysis.sal import State
from lsst.ts.rapidanalysis.sim.camera_sim import SimClock
from lsst.ts.rapidanalysis.sim.mount_sim import (
    SIMONYI_SITE,
    AuxTelMountSimulator,
    AxisJitter,
    SiderealTrack,
    SimonyiMountSimulator,
    make_mount_simulator,
)

TIMEOUT = 10.0
#: Ten simulated seconds per wall second.
TIME_SCALE = 0.1
#: Wall seconds of telemetry per run (30 simulated seconds).
RUN_WALL = 3.0
#: Two elevations and two amplitudes (arcsec RMS; elevation gets half, the rotator double).
CASES = [(40.0, 0.3), (75.0, 2.0)]
ATMCS_TOPICS = ("mount_AzEl_Encoders", "mount_Nasmyth_Encoders", "measuredTorque")


def fit_rms_arcsec(t: np.ndarray, y: np.ndarray, degree: int) -> float:
    """As the mount-torque analysis: subtract a polynomial fit (t centred) and take the RMS, arcsec."""
    tc = (t - t[len(t) // 2]) / (t[-1] - t[0])
    coefficients = np.polynomial.polynomial.polyfit(tc, y, degree)
    residual = (y - np.polynomial.polynomial.polyval(tc, coefficients)) * 3600.0
    return float(np.sqrt(np.mean(residual**2)))


@contextlib.asynccontextmanager
async def listening(
    name: str, topics: tuple[str, ...]
) -> AsyncIterator[tuple[sal.Remote, dict[str, list[Any]], Callable[[], float]]]:
    """A Remote (own Domain) of ``name`` collecting every sample of ``topics`` and noting when each arrived."""
    domain = sal.Domain()
    remote = sal.Remote(domain, name, include=[*topics, "summaryState"])
    received: dict[str, list[Any]] = {topic: [] for topic in topics}
    loop = asyncio.get_running_loop()
    for topic in topics:
        getattr(remote, f"tel_{topic}").callback = received[topic].append
    try:
        await asyncio.wait_for(remote.start_task, TIMEOUT)
        yield remote, received, loop.time
    finally:
        await remote.close()
        await domain.close()


def window(truth: Any, start: float, end: float) -> tuple[float, float]:
    return truth.start_tai + start, truth.start_tai + end


def check_jitter(simulator: Any, series: dict[str, tuple[np.ndarray, np.ndarray]], t0: float, t1: float) -> None:
    """Fitting the received series recovers the injected jitter RMS within 5 %.

    The truth is the exact injected series over the same window. Its RMS scatters about the
    requested RMS (white noise and sine/noise cross terms over a finite window: about 3 % (1 sigma)
    for the 300 samples of 15 s at 20 Hz), so the requested RMS is checked to 15 %.
    """
    track = simulator.truth.tracks[-1]
    for axis, (t, y) in series.items():
        keep = (t >= t0) & (t < t1)
        degree = 2 if axis == "rotator" else 4
        measured = fit_rms_arcsec(t[keep], y[keep], degree)
        realised = simulator.truth.jitter_rms_arcsec(axis, t0, t1)
        requested = track.rms_arcsec[axis]
        assert measured == pytest.approx(realised, rel=0.05), (axis, measured, realised)
        assert measured == pytest.approx(requested, rel=0.15), (axis, measured, requested)
        # and the exact series: what was published is demand + the recorded jitter
        truth = simulator.truth.series(axis, t0, t1)
        np.testing.assert_allclose(truth["time"], t[keep])
        np.testing.assert_allclose(truth["actual"], y[keep], rtol=0, atol=1e-12)


# Pure pieces


def test_jitter_and_track_models() -> None:
    rng = np.random.default_rng(3)
    spec = AxisJitter.make(1.5, rng, n_sines=3, freq_range=(1.0, 8.0), sine_fraction=0.6)
    expected = math.sqrt(sum(a**2 / 2 for a in spec.amplitudes) + spec.noise_arcsec**2)
    assert expected == pytest.approx(1.5)
    assert all(1.0 < f < 8.0 for f in spec.frequencies)
    assert sorted(spec.frequencies) == list(spec.frequencies)  # one per band, bands ascending
    with pytest.raises(ValueError):
        AxisJitter.make(-1.0, rng)
    # a star put at (az, el) is there, and moves at a sidereal pace
    t0 = 1.8e9
    track = SiderealTrack.from_azel(350.0, 60.0, SIMONYI_SITE, t0)
    az, el, _ = track.azel(np.array([t0, t0 + 60.0]))
    assert az[0] == pytest.approx(350.0, abs=1e-9) and el[0] == pytest.approx(60.0, abs=1e-9)
    moved = math.hypot((az[1] - az[0]) * math.cos(math.radians(60.0)), el[1] - el[0]) * 3600
    assert 100 < moved < 15.05 * 60  # at most 15"/s (on the equator, at the pole 0)
    again = SiderealTrack(track.ra, track.dec, SIMONYI_SITE, t0)
    assert again.azel(np.array([t0 + 30.0]))[1][0] == pytest.approx(track.azel(np.array([t0 + 30.0]))[1][0])


# AuxTel (ATMCS)


@pytest.mark.parametrize("el, amplitude", CASES)
async def test_auxtel_telemetry_and_jitter(el: float, amplitude: float, tmp_path: pathlib.Path) -> None:
    jitter = {"azimuth": amplitude, "elevation": amplitude / 2, "rotator": 2 * amplitude}
    async with listening("ATMCS", ATMCS_TOPICS) as (remote, received, now):
        simulator = AuxTelMountSimulator(time_scale=TIME_SCALE, seed=int(el))
        async with simulator:
            state = await remote.evt_summaryState.aget(timeout=TIMEOUT)
            assert state.summaryState == State.ENABLED
            truth = simulator.start_tracking(az=200.0, el=el, jitter_arcsec=jitter, gaps=[(20.0, 22.5)])
            wall_start = now()
            await asyncio.sleep(RUN_WALL)
            wall = now() - wall_start
        rows = received["mount_AzEl_Encoders"]
        # one message a simulated second (ten a wall second), 100 samples each, on whole seconds
        stamps = np.array([r.cRIO_timestamp for r in rows])
        assert np.all(stamps == np.round(stamps))
        assert all(len(r.azimuthCalculatedAngle) == 100 == len(r.elevationCalculatedAngle) for r in rows)
        for topic in ATMCS_TOPICS[1:]:
            assert [r.cRIO_timestamp for r in received[topic]] == list(stamps)
        assert all(np.all(np.isnan(r.nasmyth1CalculatedAngle)) for r in received["mount_Nasmyth_Encoders"])
        assert all(np.all(np.isfinite(r.azimuthMotor1Torque)) for r in received["measuredTorque"])
        # the gap: the rows touching [start + 20, start + 22.5) are missing, and nothing else
        steps = np.diff(stamps)
        gap_start, gap_end = window(truth, 20.0, 22.5)
        assert sorted(set(steps)) == [1.0, float(np.max(steps))] and np.max(steps) >= 3.0
        assert not np.any((stamps + 0.99 >= gap_start) & (stamps < gap_end))
        dropped = simulator.truth.series("azimuth")
        dropped_times = dropped["time"][~dropped["published"]]
        assert dropped_times.min() >= math.floor(gap_start) and dropped_times.max() < math.ceil(gap_end)
        expected_rows = (wall / TIME_SCALE) - 3  # minus the gap
        assert expected_rows - 3 <= len(rows) <= expected_rows + 3

        # jitter recovered from what came over DDS (unpacked as the EFD does), in 15 s before the gap
        encoders = samples_to_table("lsst.sal.ATMCS.mount_AzEl_Encoders", rows)
        nasmyth = samples_to_table("lsst.sal.ATMCS.mount_Nasmyth_Encoders", received["mount_Nasmyth_Encoders"])
        assert len(encoders) == 100 * len(rows)
        np.testing.assert_allclose(np.diff(encoders["time"][:100]), 0.01, rtol=0, atol=1e-6)
        t0, t1 = window(truth, 2.0, 17.0)
        check_jitter(
            simulator,
            {
                "azimuth": (np.asarray(encoders["time"]), np.asarray(encoders["azimuthCalculatedAngle"])),
                "elevation": (np.asarray(encoders["time"]), np.asarray(encoders["elevationCalculatedAngle"])),
                "rotator": (np.asarray(nasmyth["time"]), np.asarray(nasmyth["nasmyth2CalculatedAngle"])),
            },
            t0,
            t1,
        )

        # ECSV round trip: the file holds exactly what was published
        path = tmp_path / "atmcs.ecsv"
        write_telemetry(path, simulator)
        tables = read_telemetry(path)
        assert sorted(tables) == sorted(f"lsst.sal.ATMCS.{t}" for t in ATMCS_TOPICS)
        from_file = tables["lsst.sal.ATMCS.mount_AzEl_Encoders"]
        assert from_file.colnames == ["time", "cRIO_timestamp", "azimuthCalculatedAngle", "elevationCalculatedAngle"]
        for name in from_file.colnames:
            np.testing.assert_array_equal(np.asarray(from_file[name]), np.asarray(encoders[name]))
        torque = tables["lsst.sal.ATMCS.measuredTorque"]
        assert {"azimuthMotor1Torque", "azimuthMotor2Torque", "elevationMotorTorque", "nasmyth2MotorTorque"} <= set(
            torque.colnames
        )
        assert np.all(np.isnan(tables["lsst.sal.ATMCS.mount_Nasmyth_Encoders"]["nasmyth1CalculatedAngle"]))


# Simonyi (MTMount + MTRotator)


@pytest.mark.parametrize("el, amplitude", CASES)
async def test_simonyi_telemetry_and_jitter(el: float, amplitude: float, tmp_path: pathlib.Path) -> None:
    jitter = {"azimuth": amplitude, "elevation": amplitude / 2, "rotator": 2 * amplitude}
    async with (
        listening("MTMount", ("azimuth", "elevation")) as (_, mount, now),
        listening("MTRotator", ("rotation", "motors")) as (_, rotator, _),
    ):
        simulator = SimonyiMountSimulator(time_scale=TIME_SCALE, seed=int(el))
        async with simulator:
            truth = simulator.start_tracking(az=30.0, el=el, jitter_arcsec=jitter, gaps=[(20.0, 22.5)])
            wall_start = now()
            await asyncio.sleep(RUN_WALL)
            wall = now() - wall_start
        assert len(rotator["motors"]) == len(rotator["rotation"])
        series = {}
        for topic, samples in (("azimuth", mount["azimuth"]), ("elevation", mount["elevation"])):
            t = np.array([s.actualPositionTimestamp for s in samples])
            # 20 Hz (simulated), every position with its own timestamp
            steps = np.diff(t)
            assert np.allclose(steps[steps < 1.0], 0.05, rtol=0, atol=1e-6)
            assert all(s.demandPositionTimestamp == s.timestamp == s.actualPositionTimestamp for s in samples)
            # the gap
            gap_start, gap_end = window(truth, 20.0, 22.5)
            assert not np.any((t >= gap_start) & (t < gap_end))
            assert np.max(steps) >= 2.5 - 0.05 and np.sum(steps > 0.06) == 1
            expected = (wall / TIME_SCALE - 2.5) * 20
            assert 0.85 * expected <= len(t) <= 1.15 * expected
            series[topic] = (t, np.array([s.actualPosition for s in samples]))
            # actual - demand is the injected jitter, exactly
            truth_series = simulator.truth.series(topic, published_only=True)
            keep = np.isin(truth_series["time"], t)
            np.testing.assert_allclose(
                np.array([s.actualPosition - s.demandPosition for s in samples]),
                truth_series["jitter"][keep],
                rtol=0,
                atol=1e-12,
            )
        rotation = rotator["rotation"]
        series["rotator"] = (np.array([s.timestamp for s in rotation]), np.array([s.actualPosition for s in rotation]))
        assert np.allclose(np.diff(series["rotator"][0])[:50], 0.05, rtol=0, atol=1e-6)
        assert all(len(m.torque) == 2 for m in rotator["motors"])

        t0, t1 = window(truth, 2.0, 17.0)
        check_jitter(simulator, series, t0, t1)

        # ECSV round trip, one file per topic, limited to a time range
        written = write_telemetry(tmp_path / "telemetry", simulator, start=t0, end=t1, per_topic=True)
        assert sorted(p.name for p in written) == sorted(
            f"lsst.sal.{t}.ecsv"
            for t in ("MTMount.azimuth", "MTMount.elevation", "MTRotator.rotation", "MTRotator.motors")
        )
        tables = read_telemetry(tmp_path / "telemetry")
        azimuth = tables["lsst.sal.MTMount.azimuth"]
        keep = (series["azimuth"][0] >= t0) & (series["azimuth"][0] < t1)
        np.testing.assert_array_equal(np.asarray(azimuth["time"]), series["azimuth"][0][keep])
        np.testing.assert_array_equal(np.asarray(azimuth["actualPosition"]), series["azimuth"][1][keep])
        for name in ("demandPosition", "demandPositionTimestamp", "actualPositionTimestamp", "actualTorque"):
            assert name in azimuth.colnames
        assert {"torque0", "torque1"} <= set(tables["lsst.sal.MTRotator.motors"].colnames)
        # the same as one file
        tables_one = read_telemetry(write_telemetry(tmp_path / "all.ecsv", simulator, start=t0, end=t1)[0])
        assert sorted(tables_one) == sorted(tables)
        for topic, table in tables.items():
            assert tables_one[topic].colnames == table.colnames
            for name in table.colnames:
                np.testing.assert_array_equal(np.asarray(tables_one[topic][name]), np.asarray(table[name]))


async def test_shared_clock_stop_and_pointing() -> None:
    """A mount on a camera's clock: tracking stops and holds still; pointing_at reports the demand."""
    clock = SimClock(TIME_SCALE)
    async with listening("MTMount", ("azimuth",)) as (_, received, _):
        simulator = make_mount_simulator("LSSTCam", clock=clock, az=100.0, el=50.0, jitter_arcsec=0.5)
        async with simulator:
            assert simulator.tracking
            track = simulator.truth.tracks[0]
            pointing = simulator.pointing_at(track.start_tai)
            assert pointing["az"] == pytest.approx(100.0) and pointing["el"] == pytest.approx(50.0)
            assert pointing["ra"] == pytest.approx(track.ra) and pointing["tracking"]
            await asyncio.sleep(0.5)
            simulator.stop_tracking()
            stop = simulator.truth.tracks[0].end_tai
            assert not simulator.tracking and math.isfinite(stop)
            await asyncio.sleep(0.5)
            parked = simulator.pointing_at(stop + 1.0)
            assert parked["tracking"] is False and parked["dec"] == pytest.approx(track.dec, abs=1e-6)
        samples = received["azimuth"]
        assert abs(samples[-1].timestamp - clock.now()) < 1.0 / TIME_SCALE
        held = [s for s in samples if s.timestamp >= stop]
        moving = [s for s in samples if s.timestamp < stop]
        assert len(held) > 10 and len(moving) > 10
        assert len({s.actualPosition for s in held}) == 1 and held[0].actualVelocity == 0.0
        assert len({s.demandPosition for s in moving}) == len(moving)
    with pytest.raises(ValueError):
        simulator.start_tracking(az=10.0)


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow is not installed")
def test_parquet_round_trip(tmp_path: pathlib.Path) -> None:
    tables = {
        "lsst.sal.MTRotator.rotation": samples_to_table(
            "lsst.sal.MTRotator.rotation",
            [{"timestamp": 1.0 + i / 20, "actualPosition": 0.1 * i, "demandPosition": 0.1 * i} for i in range(5)],
        )
    }
    path = write_telemetry(tmp_path / "t.parquet", telemetry_tables(tables))[0]
    back = read_telemetry(path)["lsst.sal.MTRotator.rotation"]
    np.testing.assert_array_equal(
        np.asarray(back["actualPosition"]), np.asarray(tables["lsst.sal.MTRotator.rotation"]["actualPosition"])
    )
