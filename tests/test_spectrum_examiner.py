"""The ``spectrum_examiner`` pipeline on LATISS dispersed raws from `sim/spectrum.py`, against their truth."""

from __future__ import annotations

import json
import math
import pathlib
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from fits_factory import write_raw
from lsst.ts.rapidanalysis.pipelines import spectrum_plot
from lsst.ts.rapidanalysis.pipelines.base import JobAborted, PipelineContext, PipelineError, PipelineResult
from lsst.ts.rapidanalysis.pipelines.fits_input import open_fits
from lsst.ts.rapidanalysis.pipelines.spectrum_examiner import (
    DEFAULT_GRATING_BOXES,
    ExtractionBox,
    SpectrumExaminerConfig,
    SpectrumExaminerPipeline,
    find_zeroth_order,
    fit_gaussian_rows,
    isr_lite,
    measure_spectrum,
)
from lsst.ts.rapidanalysis.sim.scene import SceneConfig
from lsst.ts.rapidanalysis.sim.spectrum import SpectrumConfig, simulate_dispersed
from lsst.ts.rapidanalysis.sim.truth import read_truth

XML = (
    pathlib.Path(__file__).parents[1]
    / "python/lsst/ts/rapidanalysis/interfaces/RapidAnalysis/RapidAnalysis_Telemetry.xml"
)
SCALE = 0.25  # data sections 127 x 500: a 1016 x 1000 image
#: A box for the small frames: the spectrum starts 100 px above the zeroth order and is 800 px long.
SMALL_BOX = {"offset": 100, "length": 1000, "half_width": 60, "background_width": 20}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small_spectrum(**overrides: object) -> SpectrumConfig:
    values: dict = dict(
        zeroth_order_x=500.0,
        zeroth_order_y=100.0,
        offset=100.0,
        length=800.0,
        ramp_start=40.0,
        ramp_end=60.0,
        lines=((300.0, 0.6, 6.0),),
    )
    values.update(overrides)
    return SpectrumConfig(**values)


def simulate_small(
    root: pathlib.Path,
    seq: int,
    *,
    exp_time: float = 20.0,
    seed: int = 0,
    scene: SceneConfig | None = None,
    **spectrum: object,
):
    return simulate_dispersed(
        root,
        f"AT_O_20251115_{seq:06d}",
        exp_time=exp_time,
        seed=seed,
        scale=SCALE,
        scene=scene,
        spectrum=small_spectrum(**spectrum),
    )


def run(
    path: pathlib.Path, tmp_path: pathlib.Path, is_cancelled=None, **overrides: object
) -> tuple[PipelineResult, PipelineContext]:
    config = SpectrumExaminerPipeline.make_config(overrides)
    context = PipelineContext(job_id="test-job", output_dir=tmp_path / "out", is_cancelled=is_cancelled)
    return SpectrumExaminerPipeline().run([path], config, context), context


def xml_fields(topic: str) -> dict[str, str]:
    """EFDB_Name -> IDL_Type of a RapidAnalysis telemetry topic."""
    for element in ET.parse(XML).getroot():
        if element.findtext("EFDB_Topic") == f"RapidAnalysis_{topic}":
            return {item.findtext("EFDB_Name"): item.findtext("IDL_Type") for item in element.findall("item")}
    raise AssertionError(f"no topic {topic} in {XML}")


@pytest.fixture(scope="module")
def full_frame(tmp_path_factory: pytest.TempPathFactory):
    """A full-size LATISS dispersed raw with the simulator's default star and spectrum, and its examination."""
    root = tmp_path_factory.mktemp("latiss_full")
    raw = simulate_dispersed(root, "AT_O_20251115_000100", exp_time=20.0, seed=11)
    t0 = time.perf_counter()
    result, _ = run(raw.path, root)
    print(f"\nspectrum_examiner on a full-size raw: {time.perf_counter() - t0:.2f} s")  # reported, not asserted
    return raw, result


def test_full_frame_against_truth(full_frame) -> None:
    raw, result = full_frame
    spec = raw.truth["spectrum"]
    m = result.metrics
    assert result.skipped == "" and result.image_name == "AT_O_20251115_000100"
    assert m["starCentroidX"] == pytest.approx(spec["zeroth_order"]["x"], abs=0.1)
    assert m["starCentroidY"] == pytest.approx(spec["zeroth_order"]["y"], abs=0.1)
    assert m["starPeakRate"] == pytest.approx(spec["zeroth_order"]["peak_rate_adu"], rel=0.05)
    assert m["starPeakAdu"] == pytest.approx(spec["zeroth_order"]["peak_rate_adu"] * 20.0, rel=0.05)
    assert m["continuumRate"] == pytest.approx(spec["continuum_rate_adu"], rel=0.02)
    assert m["continuumAdu"] == pytest.approx(spec["continuum_rate_adu"] * 20.0, rel=0.02)
    assert m["continuumPeakRate"] == pytest.approx(spec["continuum_peak_rate_adu"], rel=0.05)
    assert m["expTime"] == 20.0
    # Sky + dark (e-) at the mean gain, plus a little of the spectrum's light in the median.
    sky_adu = (raw.truth["sky"]["level_e"] + raw.truth["sky"]["dark_e"]) / spec["gain"]
    assert m["backgroundLevel"] == pytest.approx(sky_adu, abs=1.0)
    # The good section lies on the spectrum (truth rows with light) and covers most of it.
    rows = spec["rows"]
    y, profile = np.array(rows["y"]), np.array(rows["profile"])
    assert y[0] <= m["goodStart"] < m["goodEnd"] <= y[-1]
    assert m["nGoodRows"] >= np.count_nonzero(profile > 0.05)
    # FWHM before pixelisation, as truth gives it per row.
    truth_fwhm = float(np.median(rows["fwhm_px"]))
    assert m["fwhmMedian"] == pytest.approx(truth_fwhm, rel=0.03)
    assert m["fwhmBest"] <= m["fwhmMedian"] and m["fwhmBest"] == pytest.approx(truth_fwhm, rel=0.05)
    assert result.summary["flags"] == []
    json.loads(result.model_dump_json())
    json.dumps(result.summary, allow_nan=False)


def test_telemetry_matches_the_xml(full_frame) -> None:
    raw, result = full_frame
    (sample,) = result.telemetry
    assert sample.topic == "spectrumMetrics"
    fields = xml_fields("spectrumMetrics")
    assert list(sample.fields) == list(fields)
    python_type = {"string": str, "double": float, "int": int}
    for name, idl_type in fields.items():
        value = sample.fields[name]
        assert type(value) is python_type[idl_type], (name, value)
    assert sample.fields["grating"] == "holo4_003" and sample.fields["filter"] == "empty"
    assert sample.fields["imageName"] == "AT_O_20251115_000100"
    for name in fields:
        if name in result.metrics:
            assert sample.fields[name] == result.metrics[name]


def png_pixels(result: PipelineResult) -> np.ndarray:
    """The RGB pixels of a result's one PNG."""
    (product,) = result.products
    with Image.open(product.path) as png:
        return np.asarray(png.convert("RGB"))


def test_png_product(full_frame) -> None:
    _, result = full_frame
    (product,) = result.products
    png = pathlib.Path(product.path)
    assert png.name == "spectrum_examiner_AT_O_20251115_000100.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 20_000
    assert product.mime_type == "image/png" and "AT_O_20251115_000100" in product.description
    pixels = png_pixels(result)
    assert pixels.shape == (1000, 1000, 3)  # 10 x 10 inches at 100 dpi
    grey = pixels.mean(axis=2)
    assert 0.4 < np.mean(grey == 255) < 0.9  # a white page, with panels
    # The text box (the bottom right quarter) has text: black pixels.
    assert np.count_nonzero(grey[780:, 560:] < 64) > 1000


def test_figure_reused_draws_as_a_new_one(
    small_raw: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The figure is kept from image to image in a thread: each PNG is, pixel for pixel, the one a
    new figure draws, whatever was drawn before; a plot that fails discards the figure."""
    faint = simulate_small(tmp_path, 700, seed=5, zeroth_order_rate=2.0e4, continuum_rate=3.0)
    off = simulate_small(tmp_path, 701, seed=1, zeroth_order_y=960.0)  # the extraction box is off the detector
    paths = (small_raw, faint.path, off.path)

    def new_figure(path: pathlib.Path) -> np.ndarray:
        drawn: dict[str, np.ndarray] = {}
        # A new thread has no figure yet.
        thread = threading.Thread(
            target=lambda: drawn.update(png=png_pixels(run(path, tmp_path / "new", box=SMALL_BOX)[0]))
        )
        thread.start()
        thread.join()
        return drawn["png"]

    expected = {path: new_figure(path) for path in paths}
    for path in (*paths, small_raw, off.path, faint.path, small_raw):
        result, _ = run(path, tmp_path, box=SMALL_BOX)
        if path == faint.path:
            assert math.isnan(result.metrics["fwhmMedian"])  # panels without data
        if path == off.path:
            assert any("off the detector" in flag for flag in result.summary["flags"])
        np.testing.assert_array_equal(png_pixels(result), expected[path], err_msg=path.name)

    def broken(*args: object) -> None:
        raise RuntimeError("the histogram failed")

    monkeypatch.setattr(spectrum_plot, "_histogram", broken)
    with pytest.raises(RuntimeError, match="the histogram failed"):
        run(small_raw, tmp_path, box=SMALL_BOX)
    assert getattr(spectrum_plot._cache, "figure", None) is None
    monkeypatch.undo()
    result, _ = run(small_raw, tmp_path, box=SMALL_BOX)
    np.testing.assert_array_equal(png_pixels(result), expected[small_raw])


@pytest.mark.parametrize(
    ("zeroth_rate", "continuum_rate", "exp_time", "x", "y"),
    [
        (2.0e5, 2.0e4, 20.0, 500.0, 100.0),
        (6.0e4, 6.0e3, 10.0, 480.3, 110.4),  # off the pixel centre
        (2.5e4, 1.5e3, 30.0, 520.0, 90.0),
    ],
)
def test_rates_against_truth(
    tmp_path: pathlib.Path, zeroth_rate: float, continuum_rate: float, exp_time: float, x: float, y: float
) -> None:
    raw = simulate_small(
        tmp_path,
        200,
        exp_time=exp_time,
        seed=int(zeroth_rate) % 997,
        zeroth_order_rate=zeroth_rate,
        continuum_rate=continuum_rate,
        zeroth_order_x=x,
        zeroth_order_y=y,
    )
    result, _ = run(raw.path, tmp_path, box=SMALL_BOX, make_plot=False)
    spec = raw.truth["spectrum"]
    m = result.metrics
    assert m["starCentroidX"] == pytest.approx(x, abs=0.15) and m["starCentroidY"] == pytest.approx(y, abs=0.15)
    assert m["starPeakRate"] == pytest.approx(spec["zeroth_order"]["peak_rate_adu"], rel=0.05)
    assert m["continuumRate"] == pytest.approx(spec["continuum_rate_adu"], rel=0.05)
    if x == round(x):  # truth's continuum peak is that of a ridge centred on a pixel
        assert m["continuumPeakRate"] == pytest.approx(spec["continuum_peak_rate_adu"], rel=0.05)
    assert m["fwhmMedian"] == pytest.approx(float(np.median(spec["rows"]["fwhm_px"])), rel=0.05)
    assert m["nGoodRows"] > 600 and result.summary["flags"] == [] and result.products == []


def test_faint_spectrum_gives_nan_and_a_flag(tmp_path: pathlib.Path) -> None:
    """A star whose spectrum is lost in the noise: the star is measured, the spectrum metrics are NaN."""
    raw = simulate_small(tmp_path, 300, seed=5, zeroth_order_rate=2.0e4, continuum_rate=3.0)
    result, _ = run(raw.path, tmp_path, box=SMALL_BOX)
    m = result.metrics
    assert m["nGoodRows"] < 50
    for key in ("continuumRate", "continuumAdu", "fwhmMedian", "fwhmBest", "continuumPeakRate"):
        assert math.isnan(m[key]), key
    assert m["starPeakRate"] == pytest.approx(raw.truth["spectrum"]["zeroth_order"]["peak_rate_adu"], rel=0.1)
    flags = result.summary["flags"]
    assert any("not measured" in flag for flag in flags) and m["nFlags"] == len(flags)
    (sample,) = result.telemetry
    assert math.isnan(sample.fields["continuumRate"])
    assert result.summary["metrics"]["continuumRate"] is None  # JSON-able summary
    (product,) = result.products
    assert pathlib.Path(product.path).read_bytes()[:8] == PNG_MAGIC


def continuum_errors(raw, config: SpectrumExaminerConfig) -> tuple[float, float, float]:
    """(per-row signal-to-noise of the continuum, relative errors of the continuum and its peak pixel).

    The signal-to-noise is truth's row flux over the scatter of the measured plateau rows about it.
    """
    truth = raw.truth["spectrum"]
    with open_fits(raw.path) as hdul:
        isr = isr_lite(hdul, raw.path)
    star, _ = find_zeroth_order(isr.image)
    trace = measure_spectrum(isr.image, star, config.box, config, isr.saturated)
    to_rate = isr.mean_gain * truth["exp_time"]
    y, profile = np.array(truth["rows"]["y"]), np.array(truth["rows"]["profile"])
    on_plateau = np.isin(trace.rows, y[profile > 0.999])
    row_e = truth["continuum_rate_adu"] * to_rate
    snr = row_e / float(np.std(trace.row_flux[on_plateau] - row_e))
    return (
        snr,
        trace.continuum_e / to_rate / truth["continuum_rate_adu"] - 1,
        trace.continuum_peak_e / to_rate / truth["continuum_peak_rate_adu"] - 1,
    )


@pytest.mark.parametrize(("continuum_rate", "snr_range"), [(150.0, (20, 35)), (50.0, (7, 12))])
def test_continuum_unbiased_at_low_snr(tmp_path: pathlib.Path, continuum_rate: float, snr_range: tuple) -> None:
    """The plateau of a faint continuum, over noise realisations: no bias rising with the noise.

    The summit's estimator (98th percentile of a running median of the rows) is +2 % at a per-row
    S/N of 27 and +6 % at 10 on these frames.
    """
    config = SpectrumExaminerConfig(box=ExtractionBox(**SMALL_BOX))
    results = []
    for seed in range(4):
        raw = simulate_small(
            tmp_path, 310 + seed, exp_time=30.0, seed=100 + seed, zeroth_order_rate=2.0e4, continuum_rate=continuum_rate
        )
        results.append(continuum_errors(raw, config))
    snr, continuum, peak = np.array(results).T
    assert snr_range[0] < snr.mean() < snr_range[1]
    assert abs(continuum.mean()) < 0.005 and np.abs(continuum).max() < 0.015
    assert abs(peak.mean()) < 0.01 and np.abs(peak).max() < 0.02


def test_continuum_ignores_lines_and_cosmic_rays(tmp_path: pathlib.Path) -> None:
    """Deep absorption lines and many cosmic-ray tracks across the box do not move the plateau."""
    lines = ((200.0, 0.8, 4.0), (350.0, 0.5, 15.0), (500.0, 0.9, 3.0), (650.0, 0.3, 8.0))
    raw = simulate_small(
        tmp_path, 320, exp_time=30.0, seed=3, scene=CR_SCENE, zeroth_order_rate=2.0e5, continuum_rate=1.5e3, lines=lines
    )
    snr, continuum, peak = continuum_errors(raw, SpectrumExaminerConfig(box=ExtractionBox(**SMALL_BOX)))
    assert snr > 50
    assert continuum == pytest.approx(0.0, abs=0.003) and peak == pytest.approx(0.0, abs=0.005)


def test_saturated_zeroth_order_is_flagged(tmp_path: pathlib.Path) -> None:
    raw = simulate_small(tmp_path, 301, seed=6, zeroth_order_rate=2.0e6)
    assert raw.truth["saturation"]["n_saturated_pixels"] > 0
    result, _ = run(raw.path, tmp_path, box=SMALL_BOX, make_plot=False)
    assert result.metrics["starCentroidX"] == pytest.approx(500.0, abs=0.3)
    assert any("saturated" in flag for flag in result.summary["flags"])
    assert result.metrics["continuumRate"] == pytest.approx(raw.truth["spectrum"]["continuum_rate_adu"], rel=0.05)


def test_no_star_is_a_clear_failure(tmp_path: pathlib.Path) -> None:
    raw = simulate_small(tmp_path, 302, seed=7, zeroth_order_rate=0.0, continuum_rate=0.0)
    with pytest.raises(PipelineError, match="no zeroth-order star found") as info:
        run(raw.path, tmp_path, box=SMALL_BOX)
    assert info.value.exit_code == 2


#: Fifty times the default cosmic-ray rate: 20-35 tracks on a small 30 s frame.
CR_SCENE = SceneConfig(cosmic_ray_rate=1.0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_cosmic_rays_are_not_a_star(tmp_path: pathlib.Path, seed: int) -> None:
    """A starless dispersed image with cosmic rays: exit 2, saying why the candidates are not stars."""
    raw = simulate_small(
        tmp_path, 303, exp_time=30.0, seed=seed, scene=CR_SCENE, zeroth_order_rate=0.0, continuum_rate=0.0
    )
    assert len(raw.truth["cosmic_rays"]["x0"]) >= 15
    # Some tracks survive the binned detection's median filters (they did, and one was the star).
    star, reason = find_zeroth_order(isr_lite(open_fits(raw.path), raw.path).image)
    assert star is None and "none is a star" in reason
    with pytest.raises(PipelineError, match="no zeroth-order star found") as info:
        run(raw.path, tmp_path, box=SMALL_BOX)
    message = str(info.value)
    assert info.value.exit_code == 2
    assert "narrower than a star (min_star_fwhm 3 px; a cosmic ray is sharp" in message
    # The brightest candidate's size, in numbers, and where it is.
    assert re.search(r"the brightest round one, at \(\d+, \d+\), is \d+\.\d\d x \d+\.\d\d px", message)
    # Each track is under a pixel across: its narrower FWHM is far below a star's.
    minor = float(re.search(r"is (\d+\.\d\d) x", message).group(1))
    assert minor < 1.5


def test_pure_noise_is_not_a_star(tmp_path: pathlib.Path) -> None:
    raw = simulate_small(
        tmp_path,
        304,
        exp_time=30.0,
        seed=4,
        scene=SceneConfig(cosmic_ray_rate=0.0),
        zeroth_order_rate=0.0,
        continuum_rate=0.0,
    )
    with pytest.raises(PipelineError, match=r"no zeroth-order star found \(no source above 10 sigma\)") as info:
        run(raw.path, tmp_path, box=SMALL_BOX)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("seed", [0, 2])
def test_faint_star_among_brighter_cosmic_rays(tmp_path: pathlib.Path, seed: int) -> None:
    """A zeroth order near the detection limit (100 ADU/s for 30 s: peak ~3 sigma per pixel) is found,
    though cosmic rays are brighter round candidates."""
    raw = simulate_small(
        tmp_path, 305, exp_time=30.0, seed=seed, scene=CR_SCENE, zeroth_order_rate=100.0, continuum_rate=10.0
    )
    result, _ = run(raw.path, tmp_path, box=SMALL_BOX, make_plot=False)
    m, summary = result.metrics, result.summary
    assert m["starCentroidX"] == pytest.approx(500.0, abs=2.0) and m["starCentroidY"] == pytest.approx(100.0, abs=2.0)
    assert summary["nRejectedSources"] >= 1  # brighter cosmic rays, passed over
    psf_fwhm = raw.truth["spectrum"]["zeroth_order"]["fwhm_px"]
    assert summary["starMinorFwhm"] == pytest.approx(psf_fwhm, rel=0.3)
    assert 8 < summary["starSnr"] < 30


def test_star_thresholds_are_configurable(tmp_path: pathlib.Path) -> None:
    raw = simulate_small(tmp_path, 306, seed=1, zeroth_order_rate=6.0e4, continuum_rate=6.0e3)
    fwhm = raw.truth["spectrum"]["zeroth_order"]["fwhm_px"]
    result, _ = run(raw.path, tmp_path, box=SMALL_BOX, make_plot=False, min_star_fwhm=0.5 * fwhm)
    assert result.metrics["starCentroidX"] == pytest.approx(500.0, abs=0.15)
    with pytest.raises(
        PipelineError, match=r"is 9\.\d\d x 9\.\d\d px .*narrower than a star \(min_star_fwhm 20 px"
    ) as info:
        run(raw.path, tmp_path, box=SMALL_BOX, min_star_fwhm=20.0)
    assert info.value.exit_code == 2
    with pytest.raises(PipelineError, match=r"too faint \(min_star_snr 1e\+06\)"):
        run(raw.path, tmp_path, box=SMALL_BOX, min_star_snr=1e6)


@pytest.mark.parametrize(
    ("grating", "extra", "reason"),
    [
        ("empty", {}, "GRATING is 'empty'"),
        ("empty_1", {}, "not a dispersed image"),
        ("holo4_003", {"GRATING": "none"}, "GRATING is 'none'"),
        ("holo4_003", {"IMGTYPE": "FLAT"}, "IMGTYPE FLAT"),
        ("holo4_003", {"IMGTYPE": "bias"}, "IMGTYPE BIAS"),
    ],
)
def test_not_dispersed_is_skipped(tmp_path: pathlib.Path, grating: str, extra: dict, reason: str) -> None:
    spectrum = small_spectrum(zeroth_order_x=200.0, zeroth_order_y=50.0, offset=50.0, length=300.0, grating=grating)
    raw = simulate_dispersed(tmp_path, "AT_O_20251115_000400", scale=0.1, spectrum=spectrum, extra_headers=extra)
    result, context = run(raw.path, tmp_path)
    assert reason in result.skipped
    assert result.image_name == "AT_O_20251115_000400"
    assert result.telemetry == [] and result.products == [] and result.metrics == {}


def test_other_instrument_is_skipped(tmp_path: pathlib.Path) -> None:
    path = write_raw(tmp_path / "MC_O_20251115_000001_R22_S11.fits", scale=0.05)
    result, _ = run(path, tmp_path)
    assert "not a LATISS image" in result.skipped and result.telemetry == []


@pytest.fixture(scope="module")
def small_raw(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return simulate_small(tmp_path_factory.mktemp("latiss_small"), 500, seed=9).path


def test_truncated_file(small_raw: pathlib.Path, tmp_path: pathlib.Path) -> None:
    content = small_raw.read_bytes()
    for fraction in (0.1, 0.5, 0.9):
        path = tmp_path / f"cut_{fraction}.fits"
        path.write_bytes(content[: int(len(content) * fraction)])
        # Cut inside a data block, astropy says "truncated"; cut inside a header, the amps after it are gone.
        with pytest.raises(PipelineError, match=r"truncated") as info:
            run(path, tmp_path)
        assert info.value.exit_code == 3 and path.name in str(info.value)


def test_missing_amplifier(small_raw: pathlib.Path, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "missing_amp.fits"
    with fits.open(small_raw) as hdul:
        del hdul["Segment03"]
        hdul.writeto(path)
    with pytest.raises(PipelineError, match=r"amplifier HDU\(s\) Segment03 missing \(15 of 16 present\)") as info:
        run(path, tmp_path)
    assert info.value.exit_code == 3


@pytest.mark.parametrize("spell", [str.upper, str.lower, lambda name: f"{name.lower()}   "])
def test_extname_matched_as_fits_readers_match_it(
    small_raw: pathlib.Path, tmp_path: pathlib.Path, spell: Callable[[str], str]
) -> None:
    """EXTNAMEs compare case-insensitively and without trailing blanks (astropy's ``hdul["segment10"]``)."""
    path = tmp_path / "respelled.fits"
    with fits.open(small_raw) as hdul:
        for hdu in hdul[1:17]:
            hdu.header["EXTNAME"] = spell(hdu.header["EXTNAME"])
        assert hdul["segment10"].header["EXTNAME"].strip().upper() == "SEGMENT10"
        hdul.writeto(path)
    result, _ = run(path, tmp_path, box=SMALL_BOX, make_plot=False)
    expected, _ = run(small_raw, tmp_path, box=SMALL_BOX, make_plot=False)
    assert result.metrics == expected.metrics
    # A missing amp is still reported, by the camera's spelling of its name.
    with fits.open(path) as hdul:
        del hdul["segment03"]
        hdul.writeto(tmp_path / "respelled_missing.fits")
    with pytest.raises(PipelineError, match=r"amplifier HDU\(s\) Segment03 missing \(15 of 16 present\)") as info:
        run(tmp_path / "respelled_missing.fits", tmp_path)
    assert info.value.exit_code == 3


def test_missing_corrupt_and_no_input(tmp_path: pathlib.Path) -> None:
    with pytest.raises(PipelineError, match="does not exist") as info:
        run(tmp_path / "nothing.fits", tmp_path)
    assert info.value.exit_code == 3
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"this is not FITS" * 400)
    with pytest.raises(PipelineError, match="not a readable FITS file") as info:
        run(junk, tmp_path)
    assert info.value.exit_code == 3
    context = PipelineContext(job_id="j", output_dir=tmp_path)
    with pytest.raises(PipelineError, match="none was given") as info:
        SpectrumExaminerPipeline().run([], SpectrumExaminerPipeline.make_config(), context)
    assert info.value.exit_code == 3


def test_bad_pixels_in_an_amp(small_raw: pathlib.Path, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad_shape.fits"
    with fits.open(small_raw) as hdul:
        hdul["Segment12"].data = hdul["Segment12"].data[:100, :50].copy()
        hdul.writeto(path)
    with pytest.raises(PipelineError, match="amp Segment12: .* does not fit") as info:
        run(path, tmp_path)
    assert info.value.exit_code == 3


def test_wrong_header_datasec_is_flagged(small_raw: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """The shared ISR cuts a known sensor's amps by the camera geometry and flags a header that disagrees."""
    path = tmp_path / "bad_datasec.fits"
    with fits.open(small_raw) as hdul:
        hdul["Segment12"].header["DATASEC"] = "[4:9999,1:500]"
        hdul.writeto(path)
    result, _ = run(path, tmp_path, box=SMALL_BOX, make_plot=False)
    expected, _ = run(small_raw, tmp_path, box=SMALL_BOX, make_plot=False)
    assert any("Segment12 DATASEC [4:9999,1:500]" in flag for flag in result.summary["flags"])
    assert result.metrics["continuumRate"] == expected.metrics["continuumRate"]


def test_cancelled(small_raw: pathlib.Path, tmp_path: pathlib.Path) -> None:
    with pytest.raises(JobAborted):
        run(small_raw, tmp_path, is_cancelled=lambda: True)


def test_box_comes_from_the_grating(small_raw: pathlib.Path, tmp_path: pathlib.Path) -> None:
    config = SpectrumExaminerConfig()
    assert set(config.gratings) == set(DEFAULT_GRATING_BOXES) and config.box_for("holo4_003") == ExtractionBox()
    assert config.box_for("unknown_grating") == config.default_box
    box = ExtractionBox(**SMALL_BOX)
    result, _ = run(small_raw, tmp_path, gratings={"holo4_003": SMALL_BOX}, make_plot=False)
    assert result.summary["box"] == {"y0": 200, "y1": 1000, "x0": 440, "x1": 560}
    assert SpectrumExaminerPipeline.make_config({"box": SMALL_BOX}).box_for("holo4_003") == box
    # The summit's box (offset 400) only sees the upper part of this small frame's spectrum (rows 200-999).
    result, _ = run(small_raw, tmp_path, make_plot=False)
    assert result.summary["box"] == {"y0": 500, "y1": 1000, "x0": 400, "x1": 600}
    assert 500 <= result.metrics["goodStart"] < result.metrics["goodEnd"] <= 999
    with pytest.raises(ValueError, match="half_width"):
        SpectrumExaminerPipeline.make_config({"box": {"half_width": 1}})
    with pytest.raises(ValueError, match="Extra inputs"):
        SpectrumExaminerPipeline.make_config({"no_such_option": 1})


def test_ridge_line_follows_truth(tmp_path: pathlib.Path) -> None:
    """The stages one by one, on a slightly tilted trace off the pixel centre: the ridge is truth's x(y)."""
    raw = simulate_small(tmp_path, 600, seed=8, zeroth_order_x=480.3, dispersion_angle=1.5, continuum_rate=5e3)
    truth = read_truth(raw.path)["spectrum"]
    with open_fits(raw.path) as hdul:
        isr = isr_lite(hdul, raw.path)
    assert isr.mean_gain == pytest.approx(truth["gain"], rel=1e-9)
    star, reason = find_zeroth_order(isr.image)
    assert star is not None and reason == "" and star.elongation < 1.5
    config = SpectrumExaminerConfig(box=ExtractionBox(**SMALL_BOX))
    trace = measure_spectrum(isr.image, star, config.box, config, isr.saturated)
    y, x = np.array(truth["rows"]["y"]), np.array(truth["rows"]["x"])
    on_truth = np.isin(trace.rows, y) & trace.good
    assert np.count_nonzero(on_truth) > 600
    error = trace.ridge[on_truth] - x[np.searchsorted(y, trace.rows[on_truth])]
    assert abs(np.median(error)) < 0.02 and np.percentile(np.abs(error), 95) < 0.2
    assert trace.continuum_e / isr.mean_gain / 20.0 == pytest.approx(truth["continuum_rate_adu"], rel=0.05)


def test_fit_gaussian_rows_recovers_parameters() -> None:
    rng = np.random.default_rng(3)
    n, x = 500, np.arange(-20.0, 21.0)
    truth = np.column_stack(
        [rng.uniform(300, 5000, n), rng.uniform(-2, 2, n), rng.uniform(1.5, 6, n), rng.normal(0, 5, n)]
    )
    u = (x[None, :] - truth[:, 1:2]) / truth[:, 2:3]
    y = truth[:, 0:1] * np.exp(-0.5 * u * u) + truth[:, 3:4] + rng.normal(0, 1.0, (n, x.size))
    p0 = np.column_stack([y.max(axis=1), np.zeros(n), np.full(n, 3.0), np.zeros(n)])
    params, ok = fit_gaussian_rows(np.tile(x, (n, 1)), y, p0, max_sigma=20)
    assert ok.all()
    np.testing.assert_allclose(params[:, 2], truth[:, 2], rtol=0.02)
    np.testing.assert_allclose(params[:, 1], truth[:, 1], atol=0.05)
    np.testing.assert_allclose(params[:, 0], truth[:, 0], rtol=0.03, atol=2)
