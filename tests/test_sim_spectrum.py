"""LATISS dispersed images (``sim/spectrum.py``): the zeroth order and the spectrum are where truth says."""

from __future__ import annotations

import pathlib
import time

import numpy as np
import pytest
from astropy.io import fits
from scipy.optimize import curve_fit

from lsst.ts.rapidanalysis.data.amp_geometry import get_geometry
from lsst.ts.rapidanalysis.data.raw_store import RawStore
from lsst.ts.rapidanalysis.sim.scene import SceneConfig
from lsst.ts.rapidanalysis.sim.spectrum import SpectrumConfig, render_dispersed, simulate_dispersed, spectrum_profile
from lsst.ts.rapidanalysis.sim.truth import read_truth

SKIP = 3


def overscan_subtracted(path: pathlib.Path, gains: dict[str, float]) -> tuple[np.ndarray, np.ndarray, fits.Header]:
    """(ADU image, gain image) after per-row serial-overscan subtraction, assembled by the geometry.

    ``gains`` by amp name (``C10``): raws carry no GAIN card, as the camera's.
    """
    with fits.open(path) as hdul:
        primary = hdul[0].header
        shape = hdul[1].data.shape
        from lsst.ts.rapidanalysis.data.amp_geometry import geometry_for_raw_shape

        geom = geometry_for_raw_shape(primary["CCD_MANU"], shape)
        adu = np.empty(geom.shape)
        gain = np.empty(geom.shape)
        for amp in geom.amps:
            hdu = hdul[amp.extname]
            data = hdu.data.astype(float)
            box = amp.serial_overscan
            level = np.median(data[: amp.data.height, box.x0 + SKIP : box.x1 - SKIP], axis=1)
            section = data[amp.data.slices] - level[:, None]
            adu[amp.detector_box.slices] = amp.to_detector(section)
            gain[amp.detector_box.slices] = gains[amp.name]
    return adu, gain, primary


@pytest.fixture(scope="module")
def dispersed(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("latiss")
    t0 = time.perf_counter()
    result = simulate_dispersed(root, "AT_O_20251115_000100", exp_time=20.0, seed=11)
    print(f"\nLATISS dispersed full frame: {time.perf_counter() - t0:.2f} s")  # reported, not asserted
    return result


def test_headers_and_file(dispersed) -> None:
    header = fits.getheader(dispersed.path, 0)
    assert header["INSTRUME"] == "LATISS" and header["FILTER"] == "empty" and header["GRATING"] == "holo4_003"
    assert f"{header['FILTER']}~{header['GRATING']}" == "empty~holo4_003"  # the physical_filter
    assert header["EXPTIME"] == 20.0 and header["IMGTYPE"] == "OBJECT"
    assert fits.getheader(dispersed.path, 1)["DETSIZE"] == "[1:4072,1:4000]" and header["CCD_MANU"] == "ITL"
    with fits.open(dispersed.path) as hdul:
        assert len(hdul) == 19 and hdul[16].header["DETSEC"] == get_geometry("ITL").amp("C00").detsec
    assert RawStore(dispersed.path.parents[3], "LATISS").existing_path("AT_O_20251115_000100", 0) == dispersed.path
    truth = read_truth(dispersed.path)
    assert truth["spectrum"]["config"]["grating"] == "holo4_003" and truth["grating"] == "holo4_003"


def test_zeroth_order_where_truth_says(dispersed) -> None:
    adu, gain, _ = overscan_subtracted(dispersed.path, {n: a["gain"] for n, a in dispersed.truth["amps"].items()})
    spec = dispersed.truth["spectrum"]
    z = spec["zeroth_order"]
    sky = spec["sky_rate_adu"] * spec["exp_time"]
    cx, cy = int(round(z["x"])), int(round(z["y"]))
    cut = adu[cy - 40 : cy + 41, cx - 40 : cx + 41] - np.median(adu[cy - 100 : cy - 60, cx - 40 : cx + 41])
    yy, xx = np.mgrid[-40:41, -40:41]
    w = np.clip(cut, 0, None) * (np.hypot(xx, yy) < 15)
    assert (w * xx).sum() / w.sum() + cx == pytest.approx(z["x"], abs=0.1)
    assert (w * yy).sum() / w.sum() + cy == pytest.approx(z["y"], abs=0.1)
    # peak pixel rate and total rate (ADU/s, at the nominal gain)
    ratio = spec["gain"] / gain[cy, cx]
    assert cut[40, 40] / spec["exp_time"] == pytest.approx(z["peak_rate_adu"] * ratio, rel=0.03)
    total = cut[np.hypot(xx, yy) < 40].sum() / spec["exp_time"]
    assert total == pytest.approx(z["rate_adu"] * ratio, rel=0.01)
    assert np.median(adu[100:300, 100:300]) == pytest.approx(sky * spec["gain"] / gain[200, 200] + 0.4, abs=2)


def test_spectrum_where_truth_says(dispersed) -> None:
    adu, gain, _ = overscan_subtracted(dispersed.path, {n: a["gain"] for n, a in dispersed.truth["amps"].items()})
    spec = dispersed.truth["spectrum"]
    rows = spec["rows"]
    t_exp = spec["exp_time"]
    y = np.array(rows["y"])
    x = np.array(rows["x"])
    assert y[0] == pytest.approx(spec["zeroth_order"]["y"] + spec["config"]["offset"], abs=1)
    assert spec["first_order_start"][1] == spec["zeroth_order"]["y"] + spec["config"]["offset"]
    electrons = adu * gain
    sky_e = (spec["sky_rate_e"] + 0.02) * t_exp
    # Ridge: the examiner's box (x = cx-100..cx+99) holds the spectrum; per-row argmax follows truth x(y).
    cx = int(round(spec["zeroth_order"]["x"]))
    box = electrons[y, cx - 100 : cx + 100]
    ridge = box.argmax(axis=1) + cx - 100
    bright = np.array(rows["profile"]) > 0.5
    assert np.median(np.abs(ridge[bright] - x[bright])) <= 1
    # Row sums (above sky) against truth's per-row rate, in 50-row blocks: within photon noise (+ read noise).
    sums = box.sum(axis=1) - 200 * sky_e
    expected = np.array(rows["rate_e"]) * t_exp
    for start in range(0, len(y) - 50, 50):
        block = slice(start, start + 50)
        noise = np.sqrt(np.sum(expected[block]) + 50 * 200 * (sky_e + 6.0**2 * 1.1))
        assert abs(sums[block].sum() - expected[block].sum()) < 5 * noise, start
    # Continuum rate in ADU/s on the plateau (away from the lines), at the nominal gain.
    profile = np.array(rows["profile"])
    plateau = profile > 0.999
    assert plateau.sum() > 500
    adu_rows = adu[y, cx - 100 : cx + 100].sum(axis=1) - 200 * sky_e / gain[y, cx]
    measured = np.median(adu_rows[plateau] * gain[y[plateau], cx] / spec["gain"]) / t_exp
    assert measured == pytest.approx(spec["continuum_rate_adu"], rel=0.01)
    # Lines are where they should be: the deepest rows.
    for position, depth, _ in spec["config"]["lines"]:
        i = int(np.argmin(np.abs(y - (spec["first_order_start"][1] + position))))
        window = sums[i - 3 : i + 4].mean()
        assert window / expected[i - 3 : i + 4].mean() == pytest.approx(1.0, abs=0.05)
        assert expected[i] == pytest.approx(spec["continuum_rate_e"] * t_exp * (1 - depth), rel=0.01)
    # Per-row Gaussian fit: FWHM as truth says (plus the pixel, 1/12 px²).
    fwhms = []
    for i in np.nonzero(plateau)[0][::97]:
        row = electrons[y[i], cx - 30 : cx + 31] - sky_e
        cols = np.arange(cx - 30, cx + 31)

        def gauss(c, a, x0, s):
            return a * np.exp(-0.5 * ((c - x0) / s) ** 2)

        (a, x0, s), _ = curve_fit(gauss, cols, row, p0=(row.max(), cx, 7.0))
        fwhms.append(2.3548 * np.sqrt(s**2 - 1 / 12))
        assert x0 == pytest.approx(x[i], abs=0.3)
    assert np.median(fwhms) == pytest.approx(np.median(np.array(rows["fwhm_px"])[plateau]), rel=0.03)


def test_tilted_and_custom_spectrum() -> None:
    """A tilted trace with a growing width, on a small frame, noise-free: truth matches the pixels exactly."""
    config = SpectrumConfig(
        zeroth_order_x=150,
        zeroth_order_y=60,
        offset=100,
        length=250,
        dispersion_angle=3.0,
        fwhm=6.0,
        fwhm_slope=8.0,
        lines=((120.0, 0.5, 5.0),),
        ramp_start=20,
        ramp_end=20,
        zeroth_order_rate=1e4,
        continuum_rate=1e4,
        sky_rate=0.0,
        grating="ronchi170lpmm",
    )
    scene = SceneConfig(dark_current=0.0, cosmic_ray_rate=0.0)
    rendered = render_dispersed(scene=scene, spectrum=config, exp_time=10.0, scale=0.1, noise=False)
    spec = rendered.truth["spectrum"]
    rows = spec["rows"]
    image = rendered.image
    for i in range(40, len(rows["y"]) - 40, 37):
        yv = rows["y"][i]
        cols = np.arange(image.shape[1])
        line = image[yv]
        centroid = (line * cols).sum() / line.sum()
        assert centroid == pytest.approx(rows["x"][i], abs=0.05)
        assert line.sum() == pytest.approx(rows["rate_e"][i] * 10.0, rel=0.01)
        sigma = np.sqrt((line * (cols - centroid) ** 2).sum() / line.sum())
        assert 2.3548 * sigma == pytest.approx(np.hypot(rows["fwhm_px"][i], 2.3548 * 0.272), rel=0.03)
    assert rows["fwhm_px"][-1] > rows["fwhm_px"][0] + 1.5
    np.testing.assert_allclose(spectrum_profile(config, np.array([-1.0, 200.0, 251.0])), [0.0, 1.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="grating"):
        SpectrumConfig(grating="prism")
    with pytest.raises(ValueError, match="outside"):
        render_dispersed(spectrum=SpectrumConfig(), scale=0.1)
