"""Single-frame measurement against simulated truth, and what the night can throw at it."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
from astropy.io import fits

from lsst.ts.rapidanalysis.dispatch.worker_task import run_job
from lsst.ts.rapidanalysis.pipelines.base import PipelineContext, PipelineError
from lsst.ts.rapidanalysis.pipelines.registry import PipelineRegistry
from lsst.ts.rapidanalysis.pipelines.sfm import SfmConfig, SfmPipeline, measure_detector
from lsst.ts.rapidanalysis.sal.xml_interface import load_component_info
from lsst.ts.rapidanalysis.sim.raw_writer import simulate_detector
from lsst.ts.rapidanalysis.sim.scene import SceneConfig
from lsst.ts.rapidanalysis.sim.truth import read_truth, stars_table

CAMERA = "LSSTCam"
DETECTOR = 94  # R22_S11, E2V


def _obsid(seq: int) -> str:
    return f"MC_O_20251115_{seq:06d}"


def _simulate(root: pathlib.Path, seq: int, scale: float = 0.5, **scene: object) -> pathlib.Path:
    defaults = dict(n_stars=400, mag_bright=16.0, mag_faint=23.0)
    defaults.update(scene)
    return simulate_detector(
        CAMERA, DETECTOR, root, _obsid(seq), scene=SceneConfig(**defaults), seed=seq, scale=scale
    ).path


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("sfm_raws")


@pytest.fixture(scope="module")
def nominal(root: pathlib.Path) -> pathlib.Path:
    return _simulate(root, 1, seeing_fwhm=0.8)


def _expected_zero_point(truth: dict) -> float:
    """The image holds flux x response (vignetting, PRNU): the zero point without a flat sees that."""
    stars = stars_table(truth)
    bright = (stars["mag"] < 20) & ~stars["saturated"] & stars["in_image"]
    return truth["zero_point_with_exptime"] + 2.5 * math.log10(float(np.median(stars["response"][bright])))


@pytest.mark.parametrize(
    ("seeing", "model", "e1", "e2"),
    [(0.6, "moffat", 0.0, 0.0), (0.8, "moffat", 0.08, -0.05), (1.4, "moffat", 0.0, 0.0), (1.0, "gaussian", 0.0, 0.1)],
)
def test_psf_and_photometry_match_truth(root: pathlib.Path, seeing: float, model: str, e1: float, e2: float) -> None:
    seq = 10 + int(seeing * 10) + (5 if model == "gaussian" else 0)
    path = _simulate(root, seq, seeing_fwhm=seeing, psf_model=model, e1=e1, e2=e2)
    truth = read_truth(path)
    m = measure_detector(path, SfmConfig())
    metrics = m.metrics
    psf = truth["psf"]
    assert metrics["psfFwhm"] == pytest.approx(psf["fwhm_from_sigma_arcsec"], rel=0.02)
    assert metrics["psfSigma"] == pytest.approx(psf["sigma_adaptive_px"], rel=0.02)
    assert metrics["e1"] == pytest.approx(psf["e1_adaptive"], abs=0.01)
    assert metrics["e2"] == pytest.approx(psf["e2_adaptive"], abs=0.01)
    assert metrics["psfArea"] == pytest.approx(psf["area_px"], rel=0.06)
    assert metrics["nPsfStar"] >= 10
    sky = truth["sky"]["level_e"] + truth["sky"]["dark_e"]
    assert metrics["skyBg"] == pytest.approx(sky, rel=0.01)
    assert metrics["postIsrPixelMedian"] == pytest.approx(sky, rel=0.02)
    noise = math.sqrt(sky + m.isr.read_noise**2)
    assert metrics["skyNoise"] == pytest.approx(noise, rel=0.05)
    assert m.isr.read_noise == pytest.approx(np.median([a["read_noise_e"] for a in truth["amps"].values()]), rel=0.05)
    assert metrics["zeroPoint"] == pytest.approx(_expected_zero_point(truth), abs=0.02)
    assert metrics["pixelScale"] == pytest.approx(psf["pixel_scale_arcsec"], rel=1e-3)
    assert abs(metrics["astromOffsetMean"]) < 0.1  # arcsec: centroids agree with the WCS
    assert math.isfinite(metrics["magLim"]) and 22 < metrics["magLim"] < 27
    assert m.flags == []


def test_centroids_match_truth(nominal: pathlib.Path) -> None:
    m = measure_detector(nominal, SfmConfig())
    stars = stars_table(read_truth(nominal))
    bright = stars[(stars["mag"] < 20) & ~stars["saturated"] & stars["in_image"]]
    catalog = m.catalog
    ok = np.isfinite(catalog.x)
    distance = np.hypot(catalog.x[ok][None, :] - bright["x"][:, None], catalog.y[ok][None, :] - bright["y"][:, None])
    nearest = distance.min(axis=1)
    assert np.mean(nearest < 1.0) > 0.95  # bright stars are found
    assert np.sqrt(np.mean(nearest[nearest < 1.0] ** 2)) < 0.05  # and placed to a twentieth of a pixel


def test_eff_time_from_the_reference_definition(nominal: pathlib.Path) -> None:
    metrics = measure_detector(nominal, SfmConfig()).metrics
    t = metrics["expTime"]
    # LSSTCam r-band fiducials (ra-algorithms.md §2): σ 1.56 px, B 32.95 e-/s, ZP 28.50.
    f = (metrics["psfSigma"] / 1.56) ** -2
    c = 10 ** (-0.8 * (28.50 - (metrics["zeroPoint"] - 2.5 * math.log10(t))))
    b = 32.95 / (metrics["skyBg"] / t)
    assert metrics["effTimePsfSigmaScale"] == pytest.approx(f)
    assert metrics["effTimeZeroPointScale"] == pytest.approx(c)
    assert metrics["effTimeSkyBgScale"] == pytest.approx(b)
    assert metrics["effTime"] == pytest.approx(f * c * b * t)


def test_bright_moon_sky(root: pathlib.Path) -> None:
    path = _simulate(root, 40, seeing_fwhm=0.9, sky_rate=700.0, mag_bright=15.0, mag_faint=21.0)
    truth = read_truth(path)
    metrics = measure_detector(path, SfmConfig()).metrics
    assert metrics["skyBg"] == pytest.approx(truth["sky"]["level_e"] + truth["sky"]["dark_e"], rel=0.01)
    assert metrics["psfFwhm"] == pytest.approx(truth["psf"]["fwhm_from_sigma_arcsec"], rel=0.03)
    assert metrics["zeroPoint"] == pytest.approx(_expected_zero_point(truth), abs=0.03)
    assert metrics["effTimeSkyBgScale"] < 0.1


def test_no_stars_is_nan_and_a_flag(root: pathlib.Path) -> None:
    path = _simulate(root, 41, n_stars=0, cosmic_ray_rate=0.0)
    m = measure_detector(path, SfmConfig())
    assert math.isnan(m.metrics["psfFwhm"]) and math.isnan(m.metrics["zeroPoint"])
    assert m.metrics["nPsfStar"] == 0
    assert any("PSF metrics are NaN" in flag for flag in m.flags)
    assert math.isfinite(m.metrics["skyBg"])


def test_all_saturated_is_flagged(root: pathlib.Path) -> None:
    path = _simulate(root, 42, n_stars=30, mag_bright=9.0, mag_faint=10.0, exp_time=30.0)
    assert all(read_truth(path)["stars"]["saturated"])
    m = measure_detector(path, SfmConfig())
    assert math.isnan(m.metrics["psfFwhm"])
    assert any("saturated" in flag for flag in m.flags), m.flags
    assert m.metrics["nSaturatedSource"] >= 20


def test_missing_amp_is_flagged_and_the_rest_measured(root: pathlib.Path, nominal: pathlib.Path) -> None:
    with fits.open(nominal) as hdul:
        kept = fits.HDUList([hdu.copy() for hdu in hdul if hdu.header.get("EXTNAME") != "Segment13"])
        target = root / "missing_amp.fits"
        kept.writeto(target, overwrite=True)
    m = measure_detector(target, SfmConfig(refcat=str(nominal) + ".refcat.ecsv"))
    assert any("Segment13" in flag for flag in m.flags)
    assert np.isnan(m.isr.image).mean() == pytest.approx(1 / 16, abs=0.01)
    truth = read_truth(nominal)
    assert m.metrics["psfFwhm"] == pytest.approx(truth["psf"]["fwhm_from_sigma_arcsec"], rel=0.02)
    assert m.metrics["zeroPoint"] == pytest.approx(_expected_zero_point(truth), abs=0.02)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing", "no_pixels"])
def test_unusable_files_are_a_clear_failure(root: pathlib.Path, nominal: pathlib.Path, damage: str) -> None:
    target = root / f"{damage}.fits"
    data = nominal.read_bytes()
    if damage == "truncated":
        target.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        target.write_bytes(np.random.default_rng(0).integers(0, 255, 100_000, dtype=np.uint8).tobytes())
    elif damage == "no_pixels":
        fits.PrimaryHDU(header=fits.getheader(nominal)).writeto(target, overwrite=True)
    with pytest.raises(PipelineError) as info:
        measure_detector(target, SfmConfig())
    assert info.value.exit_code == 3
    assert target.name in str(info.value) or str(target) in str(info.value)


def test_calibrated_image_with_and_without_wcs(root: pathlib.Path, nominal: pathlib.Path) -> None:
    reference = measure_detector(nominal, SfmConfig())
    header = fits.getheader(nominal)
    with_wcs = root / "calexp_wcs.fits"
    fits.PrimaryHDU(reference.isr.image, header).writeto(with_wcs, overwrite=True)
    m = measure_detector(with_wcs, SfmConfig(refcat=str(nominal) + ".refcat.ecsv"))
    assert not m.isr.was_raw
    assert m.metrics["psfFwhm"] == pytest.approx(reference.metrics["psfFwhm"], rel=1e-3)
    assert m.metrics["zeroPoint"] == pytest.approx(reference.metrics["zeroPoint"], abs=1e-3)

    bare = root / "calexp_bare.fits"
    fits.PrimaryHDU(reference.isr.image).writeto(bare, overwrite=True)
    m = measure_detector(bare, SfmConfig(pixel_scale=0.2))
    assert m.metrics["psfFwhm"] == pytest.approx(reference.metrics["psfSigma"] * 2.3548 * 0.2, rel=2e-3)
    assert math.isnan(m.metrics["zeroPoint"])
    assert any("no usable WCS" in flag for flag in m.flags)


def test_flat_removes_vignetting_from_the_zero_point(tmp_path: pathlib.Path) -> None:
    # Detector 0 (R01_S00) is near the edge of the field, where strong vignetting falls by a
    # quarter across the detector: without a flat the per-star zero points spread accordingly.
    scene = SceneConfig(n_stars=600, mag_bright=16.0, mag_faint=22.0, vignetting=0.5, prnu=0.01)
    flat = simulate_detector(
        CAMERA, 0, tmp_path, _obsid(2), scene=scene, img_type="FLAT", scale=0.5, write_response=True
    )
    # The master flat: the simulator's per-pixel response (vignetting x PRNU), normalised.
    response = fits.getdata(flat.path.with_name(flat.path.name + ".response.fits"))
    master = tmp_path / "flat_{detector}.fits"
    fits.PrimaryHDU(response / np.median(response)).writeto(str(master).format(detector="R01_S00"))
    science = simulate_detector(CAMERA, 0, tmp_path, _obsid(3), scene=scene, seed=3, scale=0.5).path
    truth = read_truth(science)
    without = measure_detector(science, SfmConfig())
    with_flat = measure_detector(science, SfmConfig(flat=str(master)))
    assert "flat" in with_flat.isr.steps
    expected = truth["zero_point_with_exptime"] + 2.5 * math.log10(float(np.median(response)))
    assert with_flat.metrics["zeroPoint"] == pytest.approx(expected, abs=0.02)
    assert without.metrics["zeroPointScatter"] > 0.03
    assert with_flat.metrics["zeroPointScatter"] < 0.5 * without.metrics["zeroPointScatter"]


def test_bias_is_skipped(root: pathlib.Path) -> None:
    bias = simulate_detector(CAMERA, DETECTOR, root, _obsid(50), img_type="BIAS", scale=0.25).path
    context = PipelineContext("job-bias", root / "out")
    result = SfmPipeline().run([bias], SfmConfig(), context)
    assert "BIAS" in result.skipped
    assert result.telemetry == [] and result.detector_metrics == []


def test_pipeline_result_feeds_the_interface(root: pathlib.Path, nominal: pathlib.Path) -> None:
    assert "sfm" in PipelineRegistry().names
    outcome = run_job("job-sfm", "sfm", [str(nominal)], {}, str(root / "job-sfm"), simulation_mode=False, in_dask=False)
    assert outcome.status == "succeeded" and outcome.result is not None, outcome.message
    result = outcome.result
    (sample,) = result.telemetry
    assert sample.topic == "sfmDetectorMetrics"
    topic = load_component_info("RapidAnalysis").topics["sfmDetectorMetrics"]
    assert set(sample.fields) == {field.name for field in topic.fields}
    assert sample.fields["imageName"] == _obsid(1)
    assert result.detector_metrics[0]["detector"] == DETECTOR
    binned_path = pathlib.Path(result.summary["detectors"][0]["binnedImage"])
    binned = fits.getdata(binned_path)
    assert binned.shape == (2002 // 8, 2048 // 8)
    assert fits.getheader(binned_path)["DETECTOR"] == DETECTOR


def test_bias_and_dark_masters_are_subtracted_and_cached(root: pathlib.Path, nominal: pathlib.Path) -> None:
    shape = measure_detector(nominal, SfmConfig()).isr.image.shape
    bias = root / "bias_R22_S11.fits"
    dark = root / "dark_R22_S11.fits"
    fits.PrimaryHDU(np.full(shape, 12.0, np.float32)).writeto(bias, overwrite=True)
    fits.PrimaryHDU(np.full(shape, 0.4, np.float32)).writeto(dark, overwrite=True)  # e-/s
    plain = measure_detector(nominal, SfmConfig()).metrics["skyBg"]
    config = SfmConfig(bias=str(root / "bias_{detector}.fits"), dark=str(root / "dark_{detector}.fits"))
    m = measure_detector(nominal, config)
    assert m.isr.steps[-2:] == ["bias", "dark"]
    dark_time = fits.getheader(nominal)["DARKTIME"]
    assert m.metrics["skyBg"] == pytest.approx(plain - 12.0 - 0.4 * dark_time, abs=0.5)
    # A master of the wrong size is a clear failure, not a broadcast or a crash.
    fits.PrimaryHDU(np.zeros((10, 10), np.float32)).writeto(dark, overwrite=True)
    with pytest.raises(PipelineError, match="dark master .* is 10x10"):
        measure_detector(nominal, config)
    with pytest.raises(PipelineError, match="does not exist"):
        measure_detector(nominal, SfmConfig(flat=str(root / "no_such_flat.fits")))
