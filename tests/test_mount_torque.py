"""The ``mount_torque`` pipeline on telemetry from the mount simulators and raws from the raw writer.

Every accuracy check compares with the simulator's truth (the exact injected jitter series and
the requested amplitudes), never with the pipeline's own output.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import pathlib
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import pytest
from astropy.table import Table

from lsst.ts.rapidanalysis.data.mount_telemetry import MountTelemetryBuffer, write_telemetry_file
from lsst.ts.rapidanalysis.data.telemetry_file import read_telemetry, telemetry_tables
from lsst.ts.rapidanalysis.pipelines.base import JobAborted, PipelineContext, PipelineError, PipelineResult
from lsst.ts.rapidanalysis.pipelines.mount_torque import (
    MOUNT_METRICS_FIELDS,
    MountTorqueConfig,
    MountTorquePipeline,
)
from lsst.ts.rapidanalysis.sal.testutils import set_random_lsst_dds_partition_prefix
from lsst.ts.rapidanalysis.sim.camera_sim import SimClock
from lsst.ts.rapidanalysis.sim.mount_sim import AuxTelMountSimulator, BaseMountSimulator, SimonyiMountSimulator
from lsst.ts.rapidanalysis.sim.raw_writer import simulate_detector

#: 200 simulated seconds per wall second: the simulators catch up in batches.
TIME_SCALE = 0.005
EXP_TIME = 12.0
#: (elevation deg, azimuth jitter RMS arcsec): elevation jitter is 0.7x, rotator 2x.
AUXTEL_CASES = [(35.0, 0.1), (35.0, 1.0), (70.0, 0.3), (82.0, 2.0)]
SIMONYI_CASES = [(35.0, 0.02), (35.0, 0.3), (70.0, 0.05), (82.0, 1.0)]
#: Gap (s after the shutter opens) injected in the extra last exposure.
GAP = (4.0, 6.5)
INTERFACE = (
    pathlib.Path(__file__).parents[1]
    / "python/lsst/ts/rapidanalysis/interfaces/RapidAnalysis/RapidAnalysis_Telemetry.xml"
)
FIELD_RADIUS = {"LATISS": 280.0, "LSSTCam": 8500.0}
ARCSEC_PER_RAD = 180.0 * 3600.0 / math.pi


@dataclasses.dataclass
class Exposure:
    """One simulated exposure: its files and the injected truth over its window."""

    instrument: str
    raw: pathlib.Path
    telemetry: pathlib.Path
    begin: float
    end: float
    el: float
    requested: dict[str, float]
    realised: dict[str, float]
    gap: bool


@dataclasses.dataclass
class Run:
    simulator: BaseMountSimulator
    buffer: MountTelemetryBuffer
    exposures: list[Exposure]
    root: pathlib.Path


def fill_buffer(simulator: BaseMountSimulator) -> MountTelemetryBuffer:
    """What the CSC's buffer would hold: every message the simulator published, one sample dict each."""
    buffer = MountTelemetryBuffer(duration=3600.0)
    for topic in simulator.recorder.topics:
        columns = simulator.recorder.columns(topic)
        for j in range(len(next(iter(columns.values())))):
            buffer.append(topic, {name: values[j] for name, values in columns.items()})
    return buffer


def jitter_of(amplitude: float) -> dict[str, float]:
    return {"azimuth": amplitude, "elevation": 0.7 * amplitude, "rotator": 2.0 * amplitude}


async def _simulate(cls: type[BaseMountSimulator], cases: list[tuple[float, float]]) -> tuple[Any, list]:
    """Track each case in turn (EXP_TIME s exposures 1 s after each track starts), plus a gapped one."""
    clock = SimClock(TIME_SCALE)
    simulator = cls(clock=clock, seed=11)
    windows = []
    async with simulator:
        t = clock.now() + 2.0
        for k, (el, amplitude) in enumerate([*cases, (55.0, cases[1][1])]):
            gapped = k == len(cases)
            gaps = [(1.0 + GAP[0], 1.0 + GAP[1])] if gapped else []
            simulator.start_tracking(
                az=150.0 + 20 * k, el=el, jitter_arcsec=jitter_of(amplitude), start_tai=t, gaps=gaps
            )
            windows.append((t + 1.0, t + 1.0 + EXP_TIME, el, amplitude, gapped))
            t += EXP_TIME + 3.0
        while True:  # until every stream has produced samples past the last window
            done = [simulator.truth.series(axis)["time"] for axis in ("azimuth", "rotator")]
            if all(len(x) and x.max() > t for x in done):
                break
            await asyncio.sleep(0.05)
    return simulator, windows


def simulate_run(
    cls: type[BaseMountSimulator], cases: list[tuple[float, float]], instrument: str, root: pathlib.Path
) -> Run:
    """Simulated telemetry and one raw (header) per exposure, written as the CSC would hand them over."""
    saved = os.environ.get("LSST_DDS_PARTITION_PREFIX")
    os.environ.setdefault("LSST_DDS_PARTITION_PREFIX", "x")
    set_random_lsst_dds_partition_prefix()  # module-scoped: the per-test isolation fixture is not in force yet
    try:
        simulator, windows = asyncio.run(_simulate(cls, cases))
    finally:
        if saved is None:
            os.environ.pop("LSST_DDS_PARTITION_PREFIX", None)
        else:
            os.environ["LSST_DDS_PARTITION_PREFIX"] = saved
    code, detector = ("AT", 0) if instrument == "LATISS" else ("MC", 94)
    buffer = fill_buffer(simulator)
    exposures = []
    for k, (begin, end, _, amplitude, gapped) in enumerate(windows):
        obsid = f"{code}_O_20260115_{k + 1:06d}"
        raw = simulate_detector(
            instrument,
            detector,
            root,
            obsid,
            scale=0.02,
            exp_time=end - begin,
            tai_start=begin,
            pointing=simulator.pointing_at(begin),
            write_truth_file=False,
            write_refcat_file=False,
        ).path
        # as the CSC does: the exposure window of its buffer, with margins, to a file
        telemetry = buffer.write(root / f"{obsid}.ecsv", begin, end, margin=2.0)[0]
        realised = {}
        for axis in ("azimuth", "elevation", "rotator"):
            jitter = simulator.truth.series(axis, begin, end, published_only=True)["jitter"]
            realised[axis] = float(np.sqrt(np.mean(jitter**2)) * 3600.0)
        true_el = float(np.mean(simulator.truth.series("elevation", begin, end)["demand"]))
        exposures.append(
            Exposure(instrument, raw, telemetry, begin, end, true_el, jitter_of(amplitude), realised, gapped)
        )
    return Run(simulator, buffer, exposures, root)


@pytest.fixture(scope="module")
def auxtel(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return simulate_run(AuxTelMountSimulator, AUXTEL_CASES, "LATISS", tmp_path_factory.mktemp("auxtel"))


@pytest.fixture(scope="module")
def simonyi(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return simulate_run(SimonyiMountSimulator, SIMONYI_CASES, "LSSTCam", tmp_path_factory.mktemp("simonyi"))


def run(inputs: list[pathlib.Path], tmp_path: pathlib.Path, **overrides: Any) -> PipelineResult:
    overrides.setdefault("make_plot", False)
    config = MountTorquePipeline.make_config(overrides)
    context = PipelineContext(job_id="test-job", output_dir=tmp_path / "out")
    return MountTorquePipeline().run(inputs, config, context)


def expected_impact(exposure: Exposure) -> dict[str, float]:
    """The image-impact quantities from the injected jitter (the definitions of ra-algorithms.md §4)."""
    truth = exposure.realised
    image_az = truth["azimuth"] * math.cos(math.radians(exposure.el))
    image_el = truth["elevation"]
    image_rot = truth["rotator"] * FIELD_RADIUS[exposure.instrument] / ARCSEC_PER_RAD
    return {
        "imageAzRms": image_az,
        "imageElRms": image_el,
        "imageRotRms": image_rot,
        "imageAzElRms": math.hypot(image_az, image_el),
        "imageImpactRms": math.sqrt(image_az**2 + image_el**2 + image_rot**2),
        "jitterRms": math.hypot(truth["azimuth"], truth["elevation"]),
    }


def check_accuracy(exposure: Exposure, result: PipelineResult) -> None:
    assert not result.skipped
    (sample,) = result.telemetry
    fields = sample.fields
    for axis, name in (("azimuth", "azRms"), ("elevation", "elRms"), ("rotator", "rotRms")):
        assert fields[name] == pytest.approx(exposure.realised[axis], rel=0.05), (axis, fields[name], exposure)
        # the realised RMS of a few seconds scatters about the requested one
        assert fields[name] == pytest.approx(exposure.requested[axis], rel=0.25), (axis, fields[name], exposure)
    for name, value in expected_impact(exposure).items():
        assert fields[name] == pytest.approx(value, rel=0.05), (name, fields[name], value)
    assert result.metrics["imageImpactRms"] == pytest.approx(fields["imageImpactRms"])
    assert result.metrics["imageAzElRms"] == pytest.approx(fields["imageAzElRms"])


# Accuracy against the injected jitter


@pytest.mark.parametrize("case", range(len(AUXTEL_CASES)))
def test_auxtel_accuracy(auxtel: Run, case: int, tmp_path: pathlib.Path) -> None:
    exposure = auxtel.exposures[case]
    result = run([exposure.raw, exposure.telemetry], tmp_path)
    check_accuracy(exposure, result)
    fields = result.telemetry[0].fields
    assert fields["telescope"] == "AuxTel" and fields["imageName"] == result.image_name != ""
    assert fields["camHexRms"] == 0.0 and fields["m2HexRms"] == 0.0
    assert fields["expTime"] == pytest.approx(EXP_TIME)
    # 100 Hz, no gap: the largest interval is one sample period
    assert fields["maxTelemetryGap"] == pytest.approx(0.01, abs=0.002)
    # graded on the az/el part against 0.25"/0.40" (RTP)
    graded = expected_impact(exposure)["imageAzElRms"]
    level = "bad" if graded > 0.40 else "warning" if graded > 0.25 else "ok"
    assert fields["status"].startswith(f"{level}: imageAzElRms")
    assert result.summary["axes"]["azimuth"]["nSamples"] == pytest.approx(EXP_TIME * 100, abs=2)


@pytest.mark.parametrize("case", range(len(SIMONYI_CASES)))
def test_simonyi_accuracy(simonyi: Run, case: int, tmp_path: pathlib.Path) -> None:
    exposure = simonyi.exposures[case]
    result = run([exposure.raw, exposure.telemetry], tmp_path)
    check_accuracy(exposure, result)
    fields = result.telemetry[0].fields
    assert fields["telescope"] == "Simonyi"
    # no hexapod telemetry in the file: not measured, and said so
    assert math.isnan(fields["camHexRms"]) and math.isnan(fields["m2HexRms"])
    assert "no hexapod telemetry" in fields["status"]
    assert fields["maxTelemetryGap"] == pytest.approx(0.05, abs=0.005)
    # the rotator's 8500" lever arm makes it count: the two image-impact values differ
    assert fields["imageImpactRms"] > fields["imageAzElRms"]
    graded = expected_impact(exposure)["imageImpactRms"]
    level = "bad" if graded > 0.10 else "warning" if graded > 0.05 else "ok"
    assert fields["status"].startswith(f"{level}: imageImpactRms")
    axes = result.summary["axes"]
    assert abs(axes["azimuth"]["timeShift"]) <= 1e-3 and axes["azimuth"]["method"] == "demand"
    # the sidereal-model check agrees with the simulator's sidereal track (no note, RMS ~ jitter)
    assert "sidereal" not in fields["status"]
    assert axes["azimuth"]["modelRms"] < 10.0 and axes["rotator"]["modelRms"] < 15.0


def test_mount_metrics_fields_are_the_interface(auxtel: Run, tmp_path: pathlib.Path) -> None:
    """The telemetry sample has exactly the fields of RapidAnalysis mountMetrics, of the right types."""
    root = ET.parse(INTERFACE).getroot()
    topic = next(t for t in root if t.findtext("EFDB_Topic") == "RapidAnalysis_mountMetrics")
    types = {item.findtext("EFDB_Name"): item.findtext("IDL_Type") for item in topic.findall("item")}
    assert tuple(types) == MOUNT_METRICS_FIELDS
    exposure = auxtel.exposures[0]
    (sample,) = run([exposure.raw, exposure.telemetry], tmp_path).telemetry
    assert sample.topic == "mountMetrics"
    assert set(sample.fields) == set(types)
    python_type = {"string": str, "double": float, "int": int, "long": int, "boolean": bool}
    for name, idl_type in types.items():
        assert type(sample.fields[name]) is python_type[idl_type], (name, sample.fields[name])


# Skips


def test_bias_and_short_exposures_are_skipped(auxtel: Run, simonyi: Run, tmp_path: pathlib.Path) -> None:
    exposure = auxtel.exposures[0]
    bias = simulate_detector(
        "LATISS", 0, tmp_path, "AT_O_20260115_000100", scale=0.02, img_type="BIAS", tai_start=exposure.begin,
        write_truth_file=False, write_refcat_file=False,
    ).path  # fmt: skip
    result = run([bias, exposure.telemetry], tmp_path)
    assert "BIAS" in result.skipped and "not tracking" in result.skipped
    assert not result.telemetry and not result.metrics and not result.products
    assert result.summary["status"].startswith("skipped: ")
    # a skipped exposure needs no telemetry at all
    assert run([bias], tmp_path).skipped

    exposure = simonyi.exposures[0]
    short = simulate_detector(
        "LSSTCam", 94, tmp_path, "MC_O_20260115_000100", scale=0.02, exp_time=1.0, tai_start=exposure.begin,
        write_truth_file=False, write_refcat_file=False,
    ).path  # fmt: skip
    result = run([short, exposure.telemetry], tmp_path)
    assert "min_exp_time" in result.skipped and "1 s" in result.skipped
    # the floor is configurable
    measured = run([short, exposure.telemetry], tmp_path, min_exp_time=0.5)
    assert not measured.skipped and measured.telemetry[0].fields["expTime"] == pytest.approx(1.0)

    # an AuxTel dark named slew_icrs is measured (RTP), other darks are not
    for target, skipped in (("slew_icrs", False), ("dark", True)):
        dark = simulate_detector(
            "LATISS", 0, tmp_path, "AT_O_20260115_000101", scale=0.02, img_type="DARK", exp_time=EXP_TIME,
            tai_start=auxtel.exposures[0].begin, write_truth_file=False, write_refcat_file=False,
            extra_headers={"OBJECT": target},
        ).path  # fmt: skip
        assert bool(run([dark, auxtel.exposures[0].telemetry], tmp_path).skipped) is skipped


# Gaps and missing telemetry


@pytest.mark.parametrize("telescope", ["auxtel", "simonyi"])
def test_gap_is_reported(telescope: str, request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> None:
    data: Run = request.getfixturevalue(telescope)
    exposure = data.exposures[-1]
    assert exposure.gap
    result = run([exposure.raw, exposure.telemetry], tmp_path)
    fields = result.telemetry[0].fields
    gap_length = GAP[1] - GAP[0]
    # AuxTel drops whole 1 s rows touching the gap: up to 2 s more
    assert gap_length - 0.1 <= fields["maxTelemetryGap"] <= gap_length + (2.1 if telescope == "auxtel" else 0.2)
    assert "telemetry gap of" in fields["status"]
    gaps = [g for c in result.summary["coverage"] for g in c["gaps"]]
    assert gaps and all(GAP[0] - 1.1 <= g["start"] <= GAP[0] + 0.1 for g in gaps)
    assert result.metrics["nGaps"] == len(gaps)
    # nothing interpolated: the RMS is that of the samples received, and still right
    check_accuracy(exposure, result)
    assert result.summary["axes"]["azimuth"]["nSamples"] < (EXP_TIME - gap_length + 0.5) * (
        100 if telescope == "auxtel" else 20
    )


def test_window_not_covered(simonyi: Run, tmp_path: pathlib.Path) -> None:
    """Telemetry that starts 5 s after the shutter opened: measured, and the hole is reported."""
    exposure = simonyi.exposures[1]
    late = simonyi.buffer.write(tmp_path / "late.ecsv", exposure.begin + 5.0, exposure.end)[0]
    fields = run([exposure.raw, late], tmp_path).telemetry[0].fields
    assert fields["maxTelemetryGap"] == pytest.approx(5.0, abs=0.06)
    assert "telemetry gap of 5.0" in fields["status"] and "at +0.00 s" in fields["status"]


def test_no_telemetry_is_exit_code_3(auxtel: Run, simonyi: Run, tmp_path: pathlib.Path) -> None:
    exposure = simonyi.exposures[0]
    # a telemetry file of another exposure
    other = simonyi.exposures[2].telemetry
    with pytest.raises(PipelineError, match="no Simonyi mount telemetry") as info:
        run([exposure.raw, other], tmp_path)
    assert info.value.exit_code == 3
    # the AuxTel telemetry for a Simonyi image
    with pytest.raises(PipelineError) as info:
        run([exposure.raw, auxtel.exposures[0].telemetry], tmp_path)
    assert info.value.exit_code == 3
    # an empty telemetry file (what the CSC's buffer writes when it has nothing)
    empty = write_telemetry_file(tmp_path / "empty.ecsv", {})[0]
    with pytest.raises(PipelineError, match="no Simonyi mount telemetry") as info:
        run([exposure.raw, empty], tmp_path)
    assert info.value.exit_code == 3
    # no telemetry file at all, or one that does not exist
    for inputs in ([exposure.raw], [exposure.raw, tmp_path / "missing.ecsv"]):
        with pytest.raises(PipelineError) as info:
            run(inputs, tmp_path)
        assert info.value.exit_code == 3
    # one topic missing (no rotator): named
    tables = read_telemetry(exposure.telemetry)
    del tables["lsst.sal.MTRotator.rotation"]
    path = write_telemetry_file(tmp_path / "norot.ecsv", tables)[0]
    with pytest.raises(PipelineError, match="MTRotator.rotation") as info:
        run([exposure.raw, path], tmp_path)
    assert info.value.exit_code == 3


def test_corrupt_fits_is_exit_code_3(auxtel: Run, tmp_path: pathlib.Path) -> None:
    exposure = auxtel.exposures[0]
    garbage = tmp_path / "AT_O_20260115_000200_RXX_S00.fits"
    garbage.write_bytes(os.urandom(5000))
    truncated = tmp_path / "AT_O_20260115_000201_RXX_S00.fits"
    truncated.write_bytes(exposure.raw.read_bytes()[:1500])  # in the middle of the primary header
    for path in (garbage, truncated, tmp_path / "missing.fits"):
        with pytest.raises(PipelineError) as info:
            run([path, exposure.telemetry], tmp_path)
        assert info.value.exit_code == 3, path


# Hexapods, products, configuration


def test_simonyi_hexapods(simonyi: Run, tmp_path: pathlib.Path) -> None:
    """Hexapod errors in the file add to imageImpactRms (SU coefficients), not to imageAzElRms."""
    exposure = simonyi.exposures[2]
    tables = read_telemetry(exposure.telemetry)
    t = np.arange(exposure.begin - 1.0, exposure.end + 1.0, 0.1)
    rng = np.random.default_rng(5)
    rows = []
    injected = {1: (2.0, 0.5 / 3600), 2: (1.0, 0.1 / 3600)}  # XY error RMS (um), UV error RMS (deg)
    for index, (xy, uv) in injected.items():
        errors = [xy * rng.standard_normal(len(t)) for _ in range(3)] + [
            uv * rng.standard_normal(len(t)) for _ in range(3)
        ]
        rows.append(
            Table({"time": t, "salIndex": np.full(len(t), index), **{f"error{k}": e for k, e in enumerate(errors)}})
        )
    hexapod = Table(np.concatenate([np.asarray(r.as_array()) for r in rows]))
    hexapod.sort("time")
    tables["lsst.sal.MTHexapod.application"] = hexapod
    path = write_telemetry_file(tmp_path / "with_hexapods.ecsv", tables)[0]
    without = run([exposure.raw, exposure.telemetry], tmp_path).telemetry[0].fields
    fields = run([exposure.raw, path], tmp_path).telemetry[0].fields

    def truth(index: int, c_xy: float, c_uv: float) -> float:
        keep = (hexapod["salIndex"] == index) & (hexapod["time"] >= exposure.begin) & (hexapod["time"] <= exposure.end)
        mean_sq = [
            np.mean((c * np.asarray(hexapod[name][keep]) * scale) ** 2)
            for name, c, scale in (
                ("error0", c_xy, 1),
                ("error1", c_xy, 1),
                ("error3", c_uv, 3600),
                ("error4", c_uv, 3600),
            )
        ]
        return 0.2 / 10 * math.sqrt(sum(mean_sq))

    assert fields["camHexRms"] == pytest.approx(truth(1, 1.00, 4.92), rel=1e-9)
    assert fields["m2HexRms"] == pytest.approx(truth(2, 1.13, 37.26), rel=1e-9)
    assert fields["imageImpactRms"] == pytest.approx(
        math.sqrt(without["imageImpactRms"] ** 2 + fields["camHexRms"] ** 2 + fields["m2HexRms"] ** 2)
    )
    assert fields["imageAzElRms"] == pytest.approx(without["imageAzElRms"])
    assert "hexapod" not in fields["status"]


@pytest.mark.parametrize("telescope", ["auxtel", "simonyi"])
def test_png_product(telescope: str, request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> None:
    data: Run = request.getfixturevalue(telescope)
    exposure = data.exposures[-1]  # the one with a gap, shaded in the plot
    result = run([exposure.raw, exposure.telemetry], tmp_path, make_plot=True)
    (product,) = result.products
    path = pathlib.Path(product.path)
    assert product.mime_type == "image/png" and path.parent == tmp_path / "out"
    assert path.name == f"mount_torque_{result.image_name}.png"
    data_bytes = path.read_bytes()
    assert data_bytes[:8] == b"\x89PNG\r\n\x1a\n" and len(data_bytes) > 20_000


def test_inputs_in_any_order_and_cancellation(auxtel: Run, tmp_path: pathlib.Path) -> None:
    exposure = auxtel.exposures[0]
    forward = run([exposure.raw, exposure.telemetry], tmp_path).telemetry[0].fields
    backward = run([exposure.telemetry, exposure.raw], tmp_path).telemetry[0].fields
    assert forward["azRms"] == backward["azRms"]
    config = MountTorquePipeline.make_config({})
    context = PipelineContext("job", tmp_path, is_cancelled=lambda: True)
    with pytest.raises(JobAborted):
        MountTorquePipeline().run([exposure.raw, exposure.telemetry], config, context)


def test_config() -> None:
    config = MountTorquePipeline.make_config({})
    assert isinstance(config, MountTorqueConfig)
    assert (config.az_el_fit_order, config.rot_fit_order, config.min_exp_time) == (4, 2, 1.99)
    assert (config.auxtel_warning_arcsec, config.auxtel_bad_arcsec) == (0.25, 0.40)
    assert (config.simonyi_warning_arcsec, config.simonyi_bad_arcsec) == (0.05, 0.10)
    assert config.field_radius_arcsec["LSSTCam"] == 8500.0 and config.field_radius_arcsec["LATISS"] == 280.0
    with pytest.raises(ValueError, match="auxtel_bad_arcsec"):
        MountTorquePipeline.make_config({"auxtel_bad_arcsec": 0.1})
    with pytest.raises(ValueError, match="no_such_field"):
        MountTorquePipeline.make_config({"no_such_field": 1})
    with pytest.raises(ValueError, match="simonyi_graded_quantity"):
        MountTorquePipeline.make_config({"simonyi_graded_quantity": "azRms"})


def test_telemetry_tables_of_run_are_what_was_written(auxtel: Run) -> None:
    """The file the buffer wrote holds what the simulator recorded over the window and margins."""
    exposure = auxtel.exposures[0]
    written = read_telemetry(exposure.telemetry)
    recorded = telemetry_tables(auxtel.simulator, exposure.begin - 2.0, exposure.end + 2.0 + 1e-9)
    assert sorted(written) == sorted(recorded)
    for topic, table in recorded.items():
        assert written[topic].colnames == table.colnames
        for name in table.colnames:
            np.testing.assert_array_equal(np.asarray(written[topic][name]), np.asarray(table[name]), err_msg=name)


def test_model_check_and_replacement(simonyi: Run, tmp_path: pathlib.Path) -> None:
    """A header RA/DEC the mount did not track: noted; with replace_with_model, SU's replacement."""
    exposure = simonyi.exposures[1]
    pointing = simonyi.simulator.pointing_at(exposure.begin)
    wrong = simulate_detector(
        "LSSTCam", 94, tmp_path, "MC_O_20260115_000300", scale=0.02, exp_time=exposure.end - exposure.begin,
        tai_start=exposure.begin, pointing={"ra": pointing["ra"] + 60.0, "dec": -80.0},
        write_truth_file=False, write_refcat_file=False,
    ).path  # fmt: skip
    result = run([wrong, exposure.telemetry], tmp_path)
    fields = result.telemetry[0].fields
    assert "is not a sidereal track of RA/DEC" in fields["status"]
    # by default the demand-based errors stand: still the injected jitter
    assert fields["azRms"] == pytest.approx(exposure.realised["azimuth"], rel=0.05)
    replaced = run([wrong, exposure.telemetry], tmp_path, replace_with_model=True)
    axes = replaced.summary["axes"]
    assert axes["azimuth"]["method"] == "model" or axes["elevation"]["method"] == "model"
    assert replaced.telemetry[0].fields["jitterRms"] > 10 * fields["jitterRms"]


def test_filter_bad_values_and_several_raws(simonyi: Run, tmp_path: pathlib.Path) -> None:
    from lsst.ts.rapidanalysis.pipelines.mount_torque import filter_bad_values

    rng = np.random.default_rng(1)
    series = 0.01 * rng.standard_normal(500)
    spikes = [50, 51, 200, 401]
    series[spikes] += 5.0
    filtered, n = filter_bad_values(series, 0.1, 3)
    assert n == len(spikes) and np.max(np.abs(filtered)) < 0.1
    # a lasting step is accepted after max_consecutive replaced values
    step = np.concatenate([np.zeros(10), np.ones(10)])
    filtered, n = filter_bad_values(step, 0.1, 3)
    assert n == 3 and filtered[-1] == 1.0
    # several raws of one exposure (other detectors): the first one's header is used
    exposure = simonyi.exposures[0]
    other = simulate_detector(
        "LSSTCam", 90, tmp_path, exposure.raw.name[:20], scale=0.02, exp_time=exposure.end - exposure.begin,
        tai_start=exposure.begin, write_truth_file=False, write_refcat_file=False,
    ).path  # fmt: skip
    result = run([exposure.raw, other, exposure.telemetry], tmp_path, filter_bad_values=True)
    fields = result.telemetry[0].fields
    assert fields["nReplacedAz"] == 0 and fields["azRms"] == pytest.approx(exposure.realised["azimuth"], rel=0.05)
    with pytest.raises(PipelineError) as info:
        run([exposure.raw, exposure.telemetry, exposure.telemetry], tmp_path)
    assert info.value.exit_code == 3
