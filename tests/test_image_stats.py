"""The ``image_stats`` pipeline on real FITS files written by `fits_factory`."""

from __future__ import annotations

import json
import math
import pathlib
import time

import numpy as np
import pytest
from astropy.io import fits

from fits_factory import AMP_NAMES, write_image, write_raw
from lsst.ts.rapidanalysis.pipelines.base import JobAborted, PipelineContext, PipelineError, PipelineResult
from lsst.ts.rapidanalysis.pipelines.image_stats import (
    ImageStatsConfig,
    ImageStatsPipeline,
    clipped_stats,
    clipped_std_bias,
    parse_section,
)
from lsst.ts.rapidanalysis.pipelines.registry import PipelineRegistry

SMALL = 0.08  # data sections of about 41 x 160 pixels


def run(inputs: list[pathlib.Path], tmp_path: pathlib.Path, **overrides: object) -> PipelineResult:
    config = ImageStatsPipeline.make_config(overrides)
    context = PipelineContext(job_id="test-job", output_dir=tmp_path / "out")
    return ImageStatsPipeline().run(inputs, config, context)


@pytest.fixture(scope="module")
def full_bias(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """One full-size E2V bias: 16 amps of 576 x 2048 int32, bias 1000 ADU, read noise 5 ADU."""
    path = tmp_path_factory.mktemp("full") / "MC_O_20251115_000001_R22_S11.fits"
    return write_raw(path, detector_type="E2V", bias=1000.0, read_noise_adu=5.0, seed=1)


def test_full_size_bias(full_bias: pathlib.Path, tmp_path: pathlib.Path) -> None:
    with fits.open(full_bias) as hdul:
        assert len(hdul) == 19 and hdul[1].data.shape == (2048, 576) and hdul[1].data.dtype.kind == "i"
        assert hdul[1].header["DATASEC"] == "[11:522,1:2002]"
    t0 = time.perf_counter()
    result = run([full_bias], tmp_path)
    print(f"image_stats on a full-size raw: {time.perf_counter() - t0:.2f} s")  # reported, not asserted

    metrics = result.metrics
    assert metrics["nDetectors"] == 1 and metrics["nAmps"] == 16 and metrics["nBadAmps"] == 0
    assert abs(metrics["overscanLevel"] - 1000.0) < 0.5
    # The integer rounding adds 1/12 ADU² of variance: 5.008 ADU.
    assert metrics["meanReadNoise"] == pytest.approx(5.0, rel=0.05)
    assert abs(metrics["medianLevel"]) < 0.5 and abs(metrics["meanLevel"]) < 0.5
    assert metrics["clippedStd"] == pytest.approx(5.0, rel=0.05)
    assert metrics["nSaturated"] == 0 and metrics["nFlags"] == 0
    assert result.image_name == "MC_O_20251115_000001"

    (row,) = result.detector_metrics
    assert row["detector"] == 94 and row["nAmps"] == 16
    amps = result.summary["detectors"][0]["amps"]
    assert amps["amp"] == list(AMP_NAMES)
    for level, noise in zip(amps["overscanLevel"], amps["readNoise"], strict=True):
        assert abs(level - 1000) < 0.5
        assert noise == pytest.approx(5.0, rel=0.05)
    assert result.summary["flags"] == []
    json.dumps(result.summary, allow_nan=False)
    json.loads(result.model_dump_json())

    (product,) = result.products
    png = pathlib.Path(product.path)
    assert png.parent == tmp_path / "out" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert product.mime_type == "image/png"


def test_itl_flat_per_amp_levels_and_saturation(tmp_path: pathlib.Path) -> None:
    biases = [900.0 + 10 * i for i in range(16)]
    path = write_raw(
        tmp_path / "flat.fits",
        detector_type="ITL",
        raft="R10",
        sensor="S11",
        bias=biases,
        signal=5000.0,
        gain=1.5,
        imgtype="FLAT",
        exptime=10.0,
        scale=SMALL,
        saturated_pixels=3,
        saturate=100000.0,
    )
    result = run([path], tmp_path)
    (row,) = result.detector_metrics
    assert row["detector"] == 31  # R10 id0 27 + S11
    amps = result.summary["detectors"][0]["amps"]
    np.testing.assert_allclose(amps["overscanLevel"], biases, atol=0.5)
    # Poisson noise of 5000 ADU x 1.5 e-/ADU, in ADU, with 5 ADU read noise.
    expected_std = math.sqrt(5000 / 1.5 + 25)
    assert row["clippedStd"] == pytest.approx(expected_std * clipped_std_bias(3.0), rel=0.05)
    assert result.metrics["medianLevel"] == pytest.approx(5000, abs=5)
    assert result.metrics["nSaturated"] == 16 * 3
    assert row["maxLevel"] > 90000
    assert result.summary["imageTypes"] == ["FLAT"]


def test_default_saturation(tmp_path: pathlib.Path) -> None:
    path = write_raw(tmp_path / "sat.fits", scale=SMALL, saturated_pixels=2)  # no SATURATE: 142857 applies
    assert run([path], tmp_path, make_plot=False).metrics["nSaturated"] == 32
    # The configuration overrides the header.
    assert run([path], tmp_path, make_plot=False, saturation=1e9).metrics["nSaturated"] == 0


def test_missing_amp_is_flagged(tmp_path: pathlib.Path) -> None:
    path = write_raw(tmp_path / "missing.fits", scale=SMALL, missing_amps=["Segment07"])
    result = run([path], tmp_path)
    assert result.metrics["nAmps"] == 15 and result.metrics["nBadAmps"] == 1
    assert abs(result.metrics["overscanLevel"] - 1000) < 0.5
    assert math.isfinite(result.metrics["meanReadNoise"])
    assert any("Segment07 missing" in flag and "missing.fits" in flag for flag in result.summary["flags"])
    assert result.metrics["nFlags"] == 1
    amps = result.summary["detectors"][0]["amps"]
    index = amps["amp"].index("Segment07")
    assert amps["overscanLevel"][index] is None and amps["readNoise"][index] is None
    assert result.detector_metrics[0]["nBadAmps"] == 1


def test_wavefront_sensor_has_eight_amps(tmp_path: pathlib.Path) -> None:
    path = write_raw(tmp_path / "wf.fits", detector_type="ITL_WF", raft="R00", sensor="SW0", scale=SMALL)
    result = run([path], tmp_path)
    assert result.detector_metrics[0]["detector"] == 191
    assert result.metrics["nAmps"] == 8 and result.summary["flags"] == []


def test_compressed_raw(tmp_path: pathlib.Path) -> None:
    path = write_raw(tmp_path / "c.fits.fz", scale=SMALL, compress=True, bias=1200.0)
    with fits.open(path) as hdul:
        assert isinstance(hdul[1], fits.CompImageHDU)
    result = run([path], tmp_path)
    assert abs(result.metrics["overscanLevel"] - 1200) < 0.5
    assert result.metrics["nAmps"] == 16


def test_several_detectors(tmp_path: pathlib.Path) -> None:
    a = write_raw(tmp_path / "a.fits", raft="R22", sensor="S11", scale=SMALL, seed=1)
    b = write_raw(tmp_path / "b.fits", raft="R22", sensor="S12", scale=SMALL, seed=2, read_noise_adu=8.0)
    result = run([a, b], tmp_path)
    assert [row["detector"] for row in result.detector_metrics] == [94, 95]
    assert result.metrics["nDetectors"] == 2 and result.metrics["nAmps"] == 32
    assert result.metrics["meanReadNoise"] == pytest.approx(6.5, rel=0.05)
    assert len(result.products) == 1


def test_single_hdu_image(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(3)
    data = (250.0 + 10.0 * rng.standard_normal((300, 400))).astype(np.float32)
    data[:5] = np.nan  # masked rows
    data[100, 100] = 1e6  # a cosmic ray
    path = write_image(tmp_path / "calexp.fits", data, {"RAFTBAY": "R22", "CCDSLOT": "S11", "INSTRUME": "LSSTCam"})
    result = run([path], tmp_path)
    (row,) = result.detector_metrics
    assert row["detector"] == 94
    assert row["medianLevel"] == pytest.approx(250, abs=0.5)
    assert row["meanLevel"] == pytest.approx(250, abs=0.5)
    assert row["clippedStd"] == pytest.approx(10 * clipped_std_bias(3.0), rel=0.03)
    assert row["maxLevel"] == 1e6
    assert math.isnan(row["overscanLevel"]) and math.isnan(row["readNoise"])
    assert row["nSaturated"] is None  # no SATURATE, not a raw: not checked
    assert result.summary["detectors"][0]["kind"] == "image"
    assert len(result.products) == 1


def test_single_hdu_without_identity_is_detector_0(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "plain.fits", np.arange(100, dtype=np.int16).reshape(10, 10))
    result = run([path], tmp_path, make_plot=False)
    assert result.detector_metrics[0]["detector"] == 0
    assert result.metrics["medianLevel"] == pytest.approx(49.5)
    assert result.products == []


def test_all_nan_image_fails(tmp_path: pathlib.Path) -> None:
    path = write_image(tmp_path / "nan.fits", np.full((20, 20), np.nan, dtype=np.float32))
    with pytest.raises(PipelineError, match=r"nan\.fits.*no finite pixels"):
        run([path], tmp_path)


def test_missing_file_fails(tmp_path: pathlib.Path) -> None:
    with pytest.raises(PipelineError, match=r"nothere\.fits does not exist"):
        run([tmp_path / "nothere.fits"], tmp_path)
    with pytest.raises(PipelineError, match="at least one input"):
        run([], tmp_path)


def test_corrupt_file_fails(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "garbage.fits"
    path.write_bytes(np.random.default_rng(0).bytes(10_000))
    with pytest.raises(PipelineError, match=r"garbage\.fits: not a readable FITS file"):
        run([path], tmp_path)
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    with pytest.raises(PipelineError, match=r"empty\.fits"):
        run([empty], tmp_path)


def test_truncated_file_fails(tmp_path: pathlib.Path) -> None:
    path = write_raw(tmp_path / "MC_O_20251115_000001_R22_S11.fits", scale=SMALL)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) * 2 // 3])
    with pytest.raises(PipelineError, match=r"MC_O_20251115_000001_R22_S11\.fits: FITS file is truncated"):
        run([path], tmp_path)


def test_amp_without_data_section_is_flagged(tmp_path: pathlib.Path) -> None:
    path = write_raw(tmp_path / "bad_amp.fits", scale=SMALL)
    with fits.open(path, mode="update") as hdul:
        hdul["Segment12"].header["DATASEC"] = "[11:9999,1:2002]"
    result = run([path], tmp_path)
    assert result.metrics["nBadAmps"] == 1
    assert any("Segment12" in flag and "does not fit" in flag for flag in result.summary["flags"])


def test_no_measurable_amp_fails(tmp_path: pathlib.Path) -> None:
    path = write_raw(tmp_path / "no_amps.fits", scale=SMALL, n_amps=1)
    with fits.open(path, mode="update") as hdul:
        hdul[1].header["DATASEC"] = "[garbage]"
    with pytest.raises(PipelineError, match=r"no_amps\.fits: no amplifier could be measured"):
        run([path], tmp_path)


def test_cancelled_job_raises_job_aborted(tmp_path: pathlib.Path) -> None:
    path = write_raw(tmp_path / "raw.fits", scale=SMALL)
    config = ImageStatsPipeline.make_config({})
    with pytest.raises(JobAborted):
        ImageStatsPipeline().run([path], config, PipelineContext("x", tmp_path, is_cancelled=lambda: True))

    # Cancelled in the middle of the amps: stops there.
    calls = []

    def cancel_after_five() -> bool:
        calls.append(1)
        return len(calls) > 5

    with pytest.raises(JobAborted):
        ImageStatsPipeline().run([path], config, PipelineContext("y", tmp_path, is_cancelled=cancel_after_five))
    assert len(calls) == 6


def test_config_validation() -> None:
    config = ImageStatsPipeline.make_config({"n_sigma_clip": 4, "histogram_bins": 50})
    assert isinstance(config, ImageStatsConfig) and config.n_sigma_clip == 4
    with pytest.raises(ValueError, match="n_sigma_clip"):
        ImageStatsPipeline.make_config({"n_sigma_clip": 0})
    with pytest.raises(ValueError, match="no_such_option"):
        ImageStatsPipeline.make_config({"no_such_option": 1})


def test_registered() -> None:
    assert PipelineRegistry(simulation_mode=False).get("image_stats") is ImageStatsPipeline


def test_clipped_stats() -> None:
    rng = np.random.default_rng(5)
    values = (100 + 3 * rng.standard_normal(200_001)).astype(np.float32)
    values[:1000] = 1e5  # outliers
    stats = clipped_stats(values, 3.0, 5)
    assert stats.mean == pytest.approx(100, abs=0.05)
    assert stats.std / clipped_std_bias(3.0) == pytest.approx(3, rel=0.01)
    assert stats.median == pytest.approx(float(np.median(values)))
    assert stats.n_used < values.size - 1000
    assert clipped_stats(np.array([2.0, 4.0])).median == 3.0
    assert clipped_stats(np.full(10, 7.0)) == clipped_stats(np.full(10, 7.0))
    assert clipped_stats(np.full(10, 7.0)).std == 0.0
    assert math.isnan(clipped_stats(np.array([])).mean)
    assert clipped_std_bias(3.0) == pytest.approx(0.986, abs=0.002)


def test_parse_section() -> None:
    assert parse_section("[11:522,1:2002]", (2048, 576)) == (slice(0, 2002), slice(10, 522))
    assert parse_section("[522:11,2002:1]", (2048, 576)) == (slice(0, 2002), slice(10, 522))
    with pytest.raises(ValueError, match="does not fit"):
        parse_section("[1:600,1:10]", (2048, 576))
    with pytest.raises(ValueError, match="not of the form"):
        parse_section("11:522", (2048, 576))


@pytest.mark.parametrize(
    ("instrument", "obsid", "raft", "sensor", "detector"),
    [
        ("LATISS", "AT_O_20251115_000007", "RXX", "S00", 0),
        ("LSSTComCam", "CC_O_20241120_000001", "R22", "S11", 4),
        ("LSSTCam", "MC_O_20251115_000001", "R44", "SG1", 202),
    ],
)
def test_detector_identity(
    tmp_path: pathlib.Path, instrument: str, obsid: str, raft: str, sensor: str, detector: int
) -> None:
    path = write_raw(
        tmp_path / "raw.fits", instrument=instrument, obsid=obsid, raft=raft, sensor=sensor, detector_type="ITL",
        scale=SMALL,
    )  # fmt: skip
    result = run([path], tmp_path, make_plot=False)
    assert result.detector_metrics[0]["detector"] == detector
    assert result.summary["flags"] == [] and result.image_name == obsid


def test_multi_extension_image_without_datasec(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "mef.fits"
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(np.ones((20, 20), np.float32)), fits.ImageHDU(np.zeros((5, 5)))]
    fits.HDUList(hdus).writeto(path)
    result = run([path], tmp_path, make_plot=False)
    assert result.metrics["medianLevel"] == 1.0
    assert result.summary["flags"] == ["mef.fits: measured HDU 1 only; image HDU(s) 2 ignored"]
    table_only = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("a", "E", array=[1.0])])]).writeto(
        table_only
    )
    with pytest.raises(PipelineError, match=r"table\.fits: no image data"):
        run([table_only], tmp_path)


def test_float_raw_with_nan_amp(tmp_path: pathlib.Path) -> None:
    """A float raw (e.g. already processed) with one all-NaN amp and some NaN pixels in another."""
    path = write_raw(tmp_path / "float.fits", scale=SMALL)
    with fits.open(path) as hdul:
        hdus = [hdu.copy() for hdu in hdul]
    for hdu in hdus[1:17]:
        hdu.data = hdu.data.astype(np.float32)
    hdus[3].data[:] = np.nan  # Segment12
    hdus[4].data[:10] = np.nan  # Segment13: first rows (data and overscan) NaN
    fits.HDUList(hdus).writeto(tmp_path / "float2.fits")
    result = run([tmp_path / "float2.fits"], tmp_path)
    assert result.metrics["nBadAmps"] == 1 and result.metrics["nAmps"] == 15
    flags = result.summary["flags"]
    assert any("Segment12" in f and "no finite pixels" in f for f in flags)
    assert any("Segment13" in f and "10 overscan rows" in f for f in flags)
    assert abs(result.metrics["overscanLevel"] - 1000) < 0.5
    assert result.metrics["meanReadNoise"] == pytest.approx(5, rel=0.05)
