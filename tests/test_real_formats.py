"""Real camera raws and headers (``../shared/data/real-formats``) with a known scene: what ISR and
``sfm`` measure on them, judged by rules written independently of the code under test.

- Where each amp's pixels belong comes from the camera's own ``CCD_SERPAR`` WCS (``CTYPE2B`` =
  ``CCD_P``, the parallel coordinate) written in every real amp header, and from its header
  ``DETSEC`` columns; the project's `amp_geometry` is not used to build the scene.
- The gains a scene is written with are read here from the obs_lsst policy files beside the
  repository, not from the package.
- The truth is analytic: pixel-integrated Gaussian stars on a flat Poisson sky.
Every card of the real raws is kept; only their zeroed pixels are filled.
"""

from __future__ import annotations

import math
import pathlib
import re
import warnings

import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from scipy.special import erf

from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.data.camera_wcs import camera_wcs, pixel_scale
from lsst.ts.rapidanalysis.dispatch.autonomous import image_kind_of
from lsst.ts.rapidanalysis.pipelines.base import PipelineError
from lsst.ts.rapidanalysis.pipelines.fits_input import identify_detector, instrument_of
from lsst.ts.rapidanalysis.pipelines.isr import IsrSettings, load_image
from lsst.ts.rapidanalysis.pipelines.raw_wcs import checked_wcs
from lsst.ts.rapidanalysis.pipelines.sfm import SfmConfig, measure_detector
from real_raws import REAL_FORMATS, real_raw

# instrument -> (policy folder, raft key, sensor slot) of the real raw's detector
DETECTORS = {
    "LATISS": ("latiss", "RXX", "S00"),
    "LSSTCam": ("lsstCam", "R10", "S22"),
    "LSSTComCam": ("comCam", "R22", "S00"),
}
SKY_E = 1500.0
SIGMA_PX = 1.8
N_STARS = 300
_SECTION = re.compile(r"\[(\d+):(\d+),(\d+):(\d+)\]")


def policy_gains(instrument: str) -> dict[str, float]:
    """The obs_lsst policy's gains (e-/ADU) of the real raw's detector, by EXTNAME (``Segment10``)."""
    folder, raft, slot = DETECTORS[instrument]
    path = REAL_FORMATS / "policy" / folder / f"{raft}.yaml"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    amps = yaml.safe_load(path.read_text())[raft]["amplifiers"][slot]
    return {f"Segment{name[1:]}": float(values["gain"]) for name, values in amps.items()}


def section(text: str) -> tuple[int, int, int, int]:
    x0, x1, y0, y1 = (int(v) for v in _SECTION.match(text.replace(" ", "")).groups())
    return x0, x1, y0, y1


def dm_pixels(header: fits.Header) -> tuple[np.ndarray, np.ndarray]:
    """For an amp's data section: the DM row of each of its rows and the DM column of each of its columns.

    Rows from the camera's CCD_SERPAR WCS (``CCD_P`` - 1); columns from the header DETSEC.
    """
    dx0, dx1, dy0, dy1 = section(header["DATASEC"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        serpar = WCS(header, key="B")
    assert serpar.wcs.ctype[1] == "CCD_P"
    fits_rows = np.arange(dy0, dy1 + 1, dtype=float)
    _, p = serpar.all_pix2world(np.full_like(fits_rows, dx0), fits_rows, 1)
    dm_rows = np.rint(p).astype(int) - 1
    tx0, tx1, _, _ = section(header["DETSEC"])
    step = 1 if tx1 >= tx0 else -1
    dm_cols = tx0 - 1 + step * np.arange(dx1 - dx0 + 1)
    return dm_rows, dm_cols


def render_scene(
    shape: tuple[int, int], rng: np.random.Generator, covariance: tuple[float, float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free electrons: flat sky and pixel-integrated Gaussian stars; (image, star table x, y, flux).

    ``covariance`` (xx, yy, xy in px², DM pixel axes) makes the stars elliptical (then integrated
    over each pixel by 7 x 7 sub-pixel samples); round stars of `SIGMA_PX` otherwise.
    """
    rows, cols = shape
    image = np.full(shape, SKY_E, dtype=np.float64)
    gx, gy = np.meshgrid(np.linspace(60, cols - 60, 20), np.linspace(60, rows - 60, 20))
    pick = rng.choice(gx.size, N_STARS, replace=False)
    x = gx.ravel()[pick] + rng.uniform(-40, 40, N_STARS)
    y = gy.ravel()[pick] + rng.uniform(-40, 40, N_STARS)
    flux = 10 ** rng.uniform(4.7, 5.7, N_STARS)  # 50k-500k e-: far above the detection limit, unsaturated
    half = 12
    edges = np.arange(-half, half + 2) - 0.5
    norm = SIGMA_PX * math.sqrt(2.0)
    sub = (np.arange(7) + 0.5) / 7 - 0.5
    offsets = (np.arange(-half, half + 1)[:, None] + sub[None, :]).ravel()
    for xs, ys, f in zip(x, y, flux, strict=True):
        ix, iy = int(round(xs)), int(round(ys))
        if covariance is None:
            px = np.diff(0.5 * erf((ix + edges - xs) / norm))
            py = np.diff(0.5 * erf((iy + edges - ys) / norm))
            stamp = np.outer(py, px)
        else:
            sxx, syy, sxy = covariance
            inverse = np.linalg.inv([[sxx, sxy], [sxy, syy]])
            u, v = np.meshgrid(ix + offsets - xs, iy + offsets - ys)
            q = inverse[0, 0] * u * u + 2 * inverse[0, 1] * u * v + inverse[1, 1] * v * v
            density = np.exp(-0.5 * q) / (2 * math.pi * math.sqrt(sxx * syy - sxy * sxy)) / 49.0
            stamp = density.reshape(2 * half + 1, 7, 2 * half + 1, 7).sum(axis=(1, 3))
        image[iy - half : iy + half + 1, ix - half : ix + half + 1] += f * stamp
    return image, np.column_stack([x, y, flux])


def inject(
    instrument: str,
    target: pathlib.Path,
    seed: int = 7,
    primary: dict | None = None,
    covariance: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """Write the real raw of ``instrument`` to ``target`` with a known scene in its pixels; the star table.

    ``primary`` replaces primary-header cards (for a real header of another exposure);
    ``covariance`` makes the stars elliptical (`render_scene`).
    """
    rng = np.random.default_rng(seed)
    gains = policy_gains(instrument)
    with fits.open(real_raw(instrument)) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    amp_hdus = [h for h in hdul[1:] if "DATASEC" in h.header]
    rows = section(amp_hdus[0].header["DETSIZE"])[3]
    cols = section(amp_hdus[0].header["DETSIZE"])[1]
    truth_e, stars = render_scene((rows, cols), rng, covariance)
    observed_e = rng.poisson(truth_e).astype(np.float64)
    for hdu in amp_hdus:
        header = hdu.header
        assert not np.any(hdu.data), "the real raws come with zeroed pixels"
        gain = gains[header["EXTNAME"]]
        bias = rng.uniform(15000, 25000)
        data = bias + rng.normal(0.0, 7.0 / gain, hdu.data.shape)
        dx0, dx1, dy0, dy1 = section(header["DATASEC"])
        dm_rows, dm_cols = dm_pixels(header)
        data[dy0 - 1 : dy1, dx0 - 1 : dx1] += observed_e[np.ix_(dm_rows, dm_cols)] / gain
        hdu.data = np.rint(data).astype(np.int32)
    if primary:
        for key, value in primary.items():
            hdul[0].header[key] = value
    hdul.writeto(target)
    return stars


@pytest.mark.parametrize("instrument", list(DETECTORS))
def test_amp_placement_follows_the_camera_serpar_wcs(instrument: str, tmp_path: pathlib.Path) -> None:
    """Each amp's pixels land where the camera's own CCD_SERPAR WCS says (C1x on top, read from the top)."""
    target = tmp_path / "raw.fits"
    rng = np.random.default_rng(1)
    with fits.open(real_raw(instrument)) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    expected = np.zeros((4000, 4072))
    for index, hdu in enumerate(h for h in hdul[1:] if "DATASEC" in h.header):
        dx0, dx1, dy0, dy1 = section(hdu.header["DATASEC"])
        pattern = rng.integers(0, 1000, (dy1 - dy0 + 1, dx1 - dx0 + 1))
        data = np.full(hdu.data.shape, 20000, dtype=np.int32)
        data[dy0 - 1 : dy1, dx0 - 1 : dx1] += pattern + 2000 * index
        hdu.data = data
        dm_rows, dm_cols = dm_pixels(hdu.header)
        expected[np.ix_(dm_rows, dm_cols)] = pattern + 2000 * index
    hdul.writeto(target)
    isr = load_image(target, IsrSettings(do_parallel_overscan=False))
    gains = policy_gains(instrument)
    # Back to ADU with the gains ISR says it used: the placement alone is then compared, pixel by pixel.
    adu = isr.image.copy()
    for name, gain in isr.gains.items():
        assert gain == pytest.approx(gains[name], abs=1e-6)
    for hdu in (h for h in hdul[1:] if "DATASEC" in h.header):
        dm_rows, dm_cols = dm_pixels(hdu.header)
        adu[np.ix_(dm_rows, dm_cols)] /= isr.gains[hdu.header["EXTNAME"]]
    np.testing.assert_allclose(adu, expected, atol=1e-2)
    assert "C1x" not in isr.gain_source and isr.gain_source == "camera description (obs_lsst policy)"


@pytest.mark.parametrize("instrument", list(DETECTORS))
def test_sfm_measures_a_known_scene_on_a_real_raw(instrument: str, tmp_path: pathlib.Path) -> None:
    """Sky within 1 %, every injected star found (count within 5 %) where it was put, FWHM within 1 %."""
    path = tmp_path / "raw.fits"
    stars = inject(instrument, path)
    measurement = measure_detector(path, SfmConfig(refcat="", write_binned=False))
    metrics = measurement.metrics
    assert metrics["gainSource"] == "camera description (obs_lsst policy)"
    assert metrics["skyBg"] == pytest.approx(SKY_E, rel=0.01)
    assert metrics["nSource"] == pytest.approx(N_STARS, rel=0.05)
    truth_fwhm_px = 2.0 * math.sqrt(2.0 * math.log(2.0)) * math.sqrt(SIGMA_PX**2 + 1.0 / 12.0)
    assert metrics["psfFwhm"] / metrics["pixelScale"] == pytest.approx(truth_fwhm_px, rel=0.01)
    assert metrics["pixelScale"] == pytest.approx(pixel_scale(instrument))
    # Every star is found where it was put, in DM pixel coordinates.
    catalog = measurement.catalog
    found = np.column_stack([catalog.x, catalog.y])
    distance = np.min(np.hypot(found[:, None, 0] - stars[None, :, 0], found[:, None, 1] - stars[None, :, 1]), axis=0)
    assert np.mean(distance < 0.5) > 0.98, np.sort(distance)[-10:]
    # The flux, in electrons through the right per-amp gains, is recovered (aperture: 3 FWHM radius).
    nearest = np.argmin(np.hypot(found[:, None, 0] - stars[None, :, 0], found[:, None, 1] - stars[None, :, 1]), axis=0)
    ratio = catalog.flux[nearest] / stars[:, 2]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("instrument", ["LATISS", "LSSTCam"])
def test_psf_ellipticity_sign_in_dm_axes(instrument: str, tmp_path: pathlib.Path) -> None:
    """e1 and e2 are measured in the DM pixel axes the camera's CCD_SERPAR WCS defines.

    With the header-DETSEC orientation (y flipped) e2 would come out with the opposite sign.
    """
    sxx, syy, sxy = 3.6, 2.9, 0.45  # px², before the pixel's own 1/12
    path = tmp_path / "raw.fits"
    inject(instrument, path, covariance=(sxx, syy, sxy))
    metrics = measure_detector(path, SfmConfig(refcat="", write_binned=False)).metrics
    ixx, iyy = sxx + 1.0 / 12.0, syy + 1.0 / 12.0
    assert metrics["e1"] == pytest.approx((ixx - iyy) / (ixx + iyy), abs=0.005)
    assert metrics["e2"] == pytest.approx(2 * sxy / (ixx + iyy), abs=0.005)
    assert metrics["e2"] > 0.1


def test_wrong_header_datasec_does_not_move_pixels(tmp_path: pathlib.Path) -> None:
    """LATISS 2022 headers say DATASEC [1:509,1:2000] (real: AT_O_20220405_000348); the camera geometry wins."""
    path = tmp_path / "raw.fits"
    stars = inject("LATISS", path)
    with fits.open(path, mode="update") as hdul:
        for hdu in hdul[1:]:
            if "DATASEC" in hdu.header:
                hdu.header["DATASEC"] = "[1:509,1:2000]"
    measurement = measure_detector(path, SfmConfig(refcat="", write_binned=False))
    assert any("disagree with the camera geometry" in f and "[1:509,1:2000]" in f for f in measurement.flags)
    assert measurement.metrics["skyBg"] == pytest.approx(SKY_E, rel=0.01)
    found = np.column_stack([measurement.catalog.x, measurement.catalog.y])
    distance = np.min(np.hypot(found[:, None, 0] - stars[None, :, 0], found[:, None, 1] - stars[None, :, 1]), axis=0)
    assert np.mean(distance < 0.5) > 0.98


def test_a_wrong_header_wcs_is_replaced(tmp_path: pathlib.Path) -> None:
    """LATISS AT_O_20220405_000348's real header says 378″/px: the camera geometry's WCS is used instead."""
    header_path = REAL_FORMATS / "headers" / "latiss-AT_O_20220405_000348.yaml"
    if not header_path.is_file():
        pytest.skip(f"{header_path} is not present")
    cards = yaml.safe_load(header_path.read_text())
    primary = {}
    for key, value in cards.items():
        if key == "XTENSION":
            break
        if value is not None and key not in ("SIMPLE", "EXTEND", "COMMENT", "HISTORY", "BITPIX", "NAXIS"):
            primary[key] = value
    path = tmp_path / "AT_O_20220405_000348.fits"
    inject("LATISS", path, primary=primary)
    metrics = measure_detector(path, SfmConfig(refcat="", write_binned=False))
    m = metrics.metrics
    assert m["wcsSource"] == "camera geometry and pointing"
    assert m["pixelScale"] == pytest.approx(0.0957, rel=1e-3)
    truth_fwhm_px = 2.0 * math.sqrt(2.0 * math.log(2.0)) * math.sqrt(SIGMA_PX**2 + 1.0 / 12.0)
    assert m["psfFwhm"] == pytest.approx(truth_fwhm_px * 0.0957, rel=0.01)  # arcsec, not 4000″
    assert any("378" in flag and "not trusted" in flag for flag in metrics.flags), metrics.flags


def _fits_header(cards: dict) -> fits.Header:
    header = fits.Header()
    for key, value in cards.items():
        header[key] = value
    return header


def test_checked_wcs_rules() -> None:
    latiss, comcam = get_instrument("LATISS"), get_instrument("LSSTComCam")
    detector = comcam.detector("R22_S02")
    shape = (4000, 4072)
    good = camera_wcs(comcam, detector, shape, 150.0, -30.0, 20.0).to_header()
    pointing = {"RA": 150.0, "DEC": -30.0, "ROTPA": 20.0}
    trusted = checked_wcs(_fits_header({**dict(good), **pointing}), comcam, detector, shape)
    assert trusted.source == "header" and trusted.flags == [] and trusted.pixel_scale == pytest.approx(0.2002, rel=1e-3)
    # A boresight 10′ off the RA/DEC cards is not trusted.
    moved = checked_wcs(_fits_header({**dict(good), **pointing, "DEC": -30.2}), comcam, detector, shape)
    assert moved.source == "camera geometry and pointing" and "boresight" in moved.flags[0]
    # No WCS and no pointing (the 2018-2019 raws): none, at the camera's scale.
    bare = checked_wcs(_fits_header({}), latiss, latiss.detectors[0], shape)
    assert bare.wcs is None and bare.source == "none" and bare.pixel_scale == pytest.approx(0.0957, rel=1e-3)
    # A wrong scale without pointing cards: dropped, said so.
    wrong = dict(good)
    wrong.update({"CD1_1": good["PC1_1"] * 0.1 if "PC1_1" in good else 0.1, "CDELT1": 0.1, "CDELT2": 0.1})
    dropped = checked_wcs(_fits_header(wrong), comcam, detector, shape)
    assert dropped.wcs is None and any("not the camera's" in f for f in dropped.flags)


def test_the_real_2025_header_gets_a_camera_wcs() -> None:
    """LSSTCam MC_O_20250609_000578 (no WCS cards, RA/DEC/ROTPA): a WCS at 0.2″/px about its pointing."""
    path = REAL_FORMATS / "headers" / "lsstCam-MC_O_20250609_000578_R01_S01.yaml"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    cards = yaml.safe_load(path.read_text())
    header = _fits_header({k: cards[k] for k in ("RA", "DEC", "ROTPA", "INSTRUME", "RAFTBAY", "CCDSLOT")})
    camera = get_instrument("LSSTCam")
    checked = checked_wcs(header, camera, camera.detector("R01_S01"), (4000, 4072))
    assert checked.source == "camera geometry and pointing"
    assert checked.pixel_scale == pytest.approx(0.2, rel=0.01)
    # R01_S01 is ~1.5 deg from the boresight: the WCS puts its centre there, not at the boresight.
    ra, dec = checked.wcs.all_pix2world(2036, 2000, 0)
    distance = math.degrees(
        math.acos(
            math.sin(math.radians(dec)) * math.sin(math.radians(cards["DEC"]))
            + math.cos(math.radians(dec))
            * math.cos(math.radians(cards["DEC"]))
            * math.cos(math.radians(ra - cards["RA"]))
        )
    )
    assert 1.2 < distance < 1.8


def test_a_gain_calibration_overrides_the_description(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "raw.fits"
    inject("LSSTComCam", path)
    calibration = tmp_path / "gains_{detector}.yaml"
    (tmp_path / "gains_R22_S00.yaml").write_text("C10: 1.5\nSegment11: 1.25\n")
    isr = load_image(path, IsrSettings(gains=str(calibration)))
    assert isr.gains["Segment10"] == 1.5 and isr.gains["Segment11"] == 1.25
    assert isr.gains["Segment12"] == pytest.approx(policy_gains("LSSTComCam")["Segment12"])
    assert isr.gain_source == "camera description (obs_lsst policy) for 14 amps; gain calibration for 2 amps"
    (tmp_path / "gains_R22_S00.yaml").write_text("C10: -1\n")
    with pytest.raises(PipelineError, match="gain of C10 is -1, not a positive number") as error:
        load_image(path, IsrSettings(gains=str(calibration)))
    assert error.value.exit_code == 3
    with pytest.raises(PipelineError, match="gain calibration .*nowhere.yaml does not exist"):
        load_image(path, IsrSettings(gains=str(tmp_path / "nowhere.yaml")))


def test_extname_matched_as_fits_readers_do(tmp_path: pathlib.Path) -> None:
    """SEGMENT10 and segment07 are Segment10 and Segment07: no amp reported missing."""
    with fits.open(real_raw("LSSTComCam")) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    for hdu in hdul[1:]:
        if "DATASEC" in hdu.header:
            hdu.data = np.full(hdu.data.shape, 20000, dtype=np.int32)
            name = hdu.header["EXTNAME"]
            hdu.header["EXTNAME"] = name.upper() if name.endswith(("0", "2", "4", "6")) else name.lower()
    hdul.writeto(tmp_path / "raw.fits")
    isr = load_image(tmp_path / "raw.fits", IsrSettings())
    assert not any("missing" in flag for flag in isr.flags), isr.flags
    assert sorted(isr.gains) == sorted(policy_gains("LSSTComCam"))


@pytest.mark.parametrize(
    ("header_file", "kind"),
    [
        ("latiss-AT_O_20200128_000335.yaml", "dispersed"),  # ENGTEST through ronchi90lpmm
        ("latiss-AT_O_20220405_000348.yaml", "science"),  # OBJECT, GRATING empty_1
        ("latiss-AT_O_20240624_000106_R00_S00.yaml", "science"),  # CWFS: sfm skips it itself
        ("lsstCam-MC_O_20250609_000578_R01_S01.yaml", "science"),  # OBJECT
    ],
)
def test_image_kind_of_real_headers(header_file: str, kind: str) -> None:
    path = REAL_FORMATS / "headers" / header_file
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    cards = yaml.safe_load(path.read_text())
    instrument = instrument_of(cards)
    assert instrument is not None
    assert image_kind_of(instrument.name, cards.get("IMGTYPE"), cards.get("GRATING")) == kind


@pytest.mark.parametrize(
    ("img_type", "kind"),
    [(None, "science"), ("bias", "calibration"), ("DARK", "calibration"), ("Flat ", "calibration")]
    + [(t, "science") for t in ("OBJECT", "ENGTEST", "ACQ", "CWFS", "SKYEXP", "UNKNOWN")],
)
def test_every_real_imgtype_has_a_kind(img_type: str | None, kind: str) -> None:
    assert image_kind_of("LSSTCam", img_type) == kind
    assert image_kind_of("LATISS", img_type, "empty_1") == kind


def test_instrume_values_the_camera_wrote() -> None:
    for value, name in [
        ("LSST_ATISS", "LATISS"),
        ("LATISS", "LATISS"),
        ("lsstCam", "LSSTCam"),
        ("LSSTCam", "LSSTCam"),
        ("LSSTCamSim", "LSSTCam"),
        ("COMCAM", "LSSTComCam"),
        ("ComCam", "LSSTComCam"),
        ("ComCamSim", "LSSTComCam"),
    ]:
        assert instrument_of({"INSTRUME": value}).name == name, value
    assert instrument_of({"INSTRUME": "HSC"}) is None
    # The 2018 LATISS raw: INSTRUME LSST_ATISS, no RAFTBAY/CCDSLOT; its one detector all the same.
    header = fits.getheader(real_raw("LATISS"), 0)
    assert identify_detector(header)[:3] == (0, "RXX_S00", "ITL")


def test_focus_sweep_reads_focus_and_visit_from_real_latiss_headers(tmp_path: pathlib.Path) -> None:
    """focus_sweep on raws carrying the real LATISS primary headers: each visit's FOCUSZ and id as
    the headers give them (independently read from the YAML), and the CWFS image refused as not sky."""
    from lsst.ts.rapidanalysis.pipelines.base import PipelineContext
    from lsst.ts.rapidanalysis.pipelines.focus_sweep import FocusSweepConfig, FocusSweepPipeline

    names = ["latiss-AT_O_20200128_000335", "latiss-AT_O_20220405_000348", "latiss-AT_O_20240624_000106_R00_S00"]
    expected: dict[int, dict] = {}
    inputs = []
    for seed, name in enumerate(names):
        header_path = REAL_FORMATS / "headers" / f"{name}.yaml"
        if not header_path.is_file():
            pytest.skip(f"{header_path} is not present")
        cards = yaml.safe_load(header_path.read_text())
        primary = {}
        for key, value in cards.items():
            if key == "XTENSION":
                break
            if value is not None and key not in ("SIMPLE", "EXTEND", "COMMENT", "HISTORY", "BITPIX", "NAXIS"):
                primary[key] = value
        visit = int(cards["DAYOBS"]) * 100_000 + int(cards["SEQNUM"])
        expected[visit] = cards
        path = tmp_path / f"{cards['OBSID']}.fits"
        inject("LATISS", path, seed=seed, primary=primary)
        inputs.append(path)
    # FWHMs given (the pixels are not a sweep), so only the headers are read.
    config = FocusSweepConfig(visits=sorted(expected), visit_fwhm={v: 1.0 + 0.1 * i for i, v in enumerate(expected)})
    result = FocusSweepPipeline().run(inputs, config, PipelineContext("job-real", tmp_path / "out"))
    by_visit = {v["visit"]: v for v in result.summary["visits"]}
    assert set(by_visit) == set(expected)
    for visit, cards in expected.items():
        if cards["IMGTYPE"] == "CWFS":
            assert "CWFS" in by_visit[visit]["problem"], by_visit[visit]
        else:
            assert by_visit[visit]["focus"] == pytest.approx(cards["FOCUSZ"]), by_visit[visit]
            assert by_visit[visit]["obsid"] == cards["OBSID"] and not by_visit[visit]["problem"]
    # Two usable visits: flagged, never a best focus.
    assert not result.metrics["fitOk"] and result.metrics["bestFocus"] is None
