"""Simulated raws (``sim/raw_writer.py``, ``sim/scene.py``): real files, headers, and recoverable truth."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import time
import warnings
from typing import Any

import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from lsst.ts.rapidanalysis.data.amp_geometry import assemble_hdus, get_geometry, parse_section
from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.data.data_id import DataId
from lsst.ts.rapidanalysis.data.raw_store import RawStore
from lsst.ts.rapidanalysis.pipelines.fits_input import identify_detector, instrument_of
from lsst.ts.rapidanalysis.pipelines.raw_wcs import checked_wcs
from lsst.ts.rapidanalysis.sim.raw_writer import SimulatedRaw, serpar_cards, simulate_detector, simulate_exposure
from lsst.ts.rapidanalysis.sim.refcat import field_reference_catalog
from lsst.ts.rapidanalysis.sim.scene import SceneConfig, adaptive_moments, pixel_response, render_detector
from lsst.ts.rapidanalysis.sim.truth import read_truth, stars_table
from real_raws import REAL_FORMATS

CAMERA = get_instrument("LSSTCam")
_REAL_HEADER = REAL_FORMATS / "headers" / "lsstCam-MC_O_20250609_000578_R01_S01.yaml"
_REAL_CARDS = yaml.safe_load(_REAL_HEADER.read_text()) if _REAL_HEADER.is_file() else {}
_SPLIT = list(_REAL_CARDS).index("XTENSION") if _REAL_CARDS else 0
#: The primary-header keys of a real LSSTCam raw (checksums and FITS structure aside).
REAL_PRIMARY_KEYS = [k for k in list(_REAL_CARDS)[:_SPLIT] if k not in ("SIMPLE", "EXTEND", "COMMENT")]
#: The amp-header keys of a real raw that describe the amp (compression, checksums and the
#: camera's other coordinate systems aside: only CCD_SERPAR, key B, is written).
REAL_AMP_KEYS = [
    k
    for k in list(_REAL_CARDS)[_SPLIT:]
    if not k.startswith(("Z", "T", "XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "CHECKSUM", "DATASUM"))
    and not (
        k[-1] in "ACRFEQ"
        and k[:-1].rstrip("0123456789_").endswith(("WCSNAME", "CTYPE", "PC", "CDELT", "CRPIX", "CRVAL"))
    )
    and k not in ("BSCALE", "BZERO", "INHERIT")
]
OBSID = "MC_O_20251115_000042"
OVERSCAN_SKIP = 3


class _Amp:
    def __init__(self, header: fits.Header, data: np.ndarray) -> None:
        self.header, self.data = header, data


def isr_electrons(path: pathlib.Path, gains: dict[str, float]) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-row serial-overscan median (skipping 3 columns each side) subtracted, times the amp's gain, assembled.

    ``gains`` by amp name (``C10``): real raws, and so ours, carry no GAIN card.
    """
    amps = []
    with fits.open(path) as hdul:
        primary = hdul[0].header
        for hdu in hdul[1:]:
            if "DATASEC" not in hdu.header:
                continue
            data = hdu.data.astype(np.float64)
            geom = get_geometry(primary["CCD_MANU"])  # full-size layout: region widths never scale
            prescan = geom.amps[0].prescan.width
            x0 = prescan + (data.shape[1] - prescan - geom.amps[0].serial_overscan.width)
            height = data.shape[0] - geom.amps[0].parallel_overscan.height
            overscan = np.median(data[:height, x0 + OVERSCAN_SKIP : data.shape[1] - OVERSCAN_SKIP], axis=1)
            data[:height] -= overscan[:, None]
            amps.append(_Amp(hdu.header, data * gains["C" + hdu.header["EXTNAME"][-2:]]))
    return assemble_hdus(amps), dict(primary)


def truth_gains(result: SimulatedRaw) -> dict[str, float]:
    """Each amp's gain, as the simulation's truth has it."""
    return {name: amp["gain"] for name, amp in result.truth["amps"].items()}


def check_headers(path: pathlib.Path, detector_id: int, obsid: str = OBSID, scale: float = 1.0) -> fits.Header:
    detector = CAMERA.detector(detector_id)
    geom = get_geometry(detector.physical_type, scale)
    with fits.open(path) as hdul:
        primary = hdul[0].header
        for key in (
            "OBSID GROUPID DAYOBS SEQNUM CAMCODE CONTRLLR IMGTYPE EXPTIME DARKTIME DATE-OBS DATE-BEG DATE-END "
            "MJD-OBS MJD-BEG MJD-END TIMESYS INSTRUME TELESCOP OBS-LONG OBS-LAT OBS-ELEV RA DEC ROTPA AZSTART "
            "AZEND ELSTART ELEND AMSTART FILTER FILTBAND CCD_MANU CCD_TYPE CCDSLOT RAFTBAY HEADVER FILENAME"
        ).split():
            assert key in primary, key
        # Every card of a real LSSTCam raw's primary header (MC_O_20250609_000578), and, like it, no WCS.
        for key in REAL_PRIMARY_KEYS:
            assert key in primary, key
        assert "CTYPE1" not in primary and "CD1_1" not in primary and "DETSIZE" not in primary
        assert primary["FILENAME"] == path.name.removesuffix(".fz")
        models = {"E2V": "CCD250", "ITL": "3800C", "ITL_G": "3800C", "ITL_WF": "4400B"}
        assert primary["CCD_TYPE"] == models[detector.physical_type]
        assert primary["OBSID"] == obsid and path.name.startswith(obsid)
        assert path.name.split(".")[0] == f"{obsid}_{primary['RAFTBAY']}_{primary['CCDSLOT']}"
        assert f"{primary['RAFTBAY']}_{primary['CCDSLOT']}" == detector.name
        cam, controller, day, seq = obsid.split("_")
        assert (primary["CAMCODE"], primary["CONTRLLR"], primary["DAYOBS"], primary["SEQNUM"]) == (
            cam,
            controller,
            day,
            int(seq),
        )
        assert primary["TIMESYS"] == "TAI" and primary["HEADVER"] == 2 and primary["INSTRUME"] == "LSSTCam"
        # Like the camera's raws: gains and saturation come from the camera description, not cards.
        assert not any(k in h.header for h in hdul for k in ("GAIN", "SATURATE", "BIASSEC"))
        assert primary["MJD-END"] > primary["MJD-BEG"] or primary["EXPTIME"] == 0
        amp_hdus = [h for h in hdul if h.header.get("XTENSION") in ("IMAGE", "BINTABLE") and "DATASEC" in h.header]
        assert [h.header["EXTNAME"] for h in amp_hdus] == [a.extname for a in geom.amps]
        for hdu, amp in zip(amp_hdus, geom.amps, strict=True):
            assert hdu.header["DATASEC"] == amp.datasec and hdu.header["DETSEC"] == amp.detsec
            assert hdu.header["DETSIZE"] == geom.detsize
            for key in REAL_AMP_KEYS:
                assert key in hdu.header, key
            assert hdu.header["CHANNEL"] == amp.channel
            assert hdu.data.shape == amp.raw_shape and hdu.data.dtype.kind == "i"
            assert all(hdu.header[k] == v for k, v in amp.mosaic_cards().items())
        assert [h.name for h in hdul[-2:]] == ["REB_COND", "CONFIG_COND"]
        return primary.copy()


def header_wcs(header: fits.Header) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # the primary HDU has no data axes
        return WCS(header)


def pipeline_wcs(path: pathlib.Path) -> WCS:
    """The WCS the pipelines use: LSSTCam raws carry none, only RA/DEC/ROTPA (pipelines/raw_wcs.py)."""
    header = fits.getheader(path, 0)
    instrument = instrument_of(header)
    detector = instrument.detector(identify_detector(header)[1])
    detsize = parse_section(fits.getheader(path, 1)["DETSIZE"]).box
    checked = checked_wcs(header, instrument, detector, (detsize.height, detsize.width))
    assert checked.source in ("header", "camera geometry and pointing"), checked
    return checked.wcs


def fitsverify(path: pathlib.Path) -> None:
    exe = shutil.which("fitsverify")
    if exe is None:
        return
    out = subprocess.run([exe, "-q", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "verification OK" in out.stdout, out.stdout + out.stderr


def check_truth_recoverable(result: SimulatedRaw) -> None:
    """ISR of the raw gives back the rendered electrons to within the read noise; stars are where truth says."""
    truth = result.truth
    image, primary = isr_electrons(result.path, truth_gains(result))
    rendered = result.rendered
    geom = rendered.geometry
    residual = image - rendered.image
    for amp in geom.amps:
        el = truth["amps"][amp.name]
        r = residual[amp.detector_box.slices]
        # read noise, rounding to whole ADU, and the per-row overscan median's error (48-58 columns)
        expected = np.sqrt(el["read_noise_e"] ** 2 * (1 + 1.6 / 48) + el["gain"] ** 2 / 12)
        assert np.std(r) == pytest.approx(expected, rel=0.05), amp.name
        assert abs(np.mean(r)) < 0.3, amp.name

    # WCS: truth RA/Dec -> truth x, y (0-based) within 0.1 px
    stars = stars_table(truth)
    wcs = pipeline_wcs(result.path)
    x, y = wcs.all_world2pix(stars["ra"], stars["dec"], 0)
    assert np.max(np.hypot(x - stars["x"], y - stars["y"])) < 0.1

    # Aperture photometry of isolated, bright, unsaturated stars
    fwhm_px = truth["psf"]["fwhm_px"]
    radius = 5 * fwhm_px
    rows, cols = image.shape
    inside = stars[stars["in_image"]]
    bright = inside[(inside["flux_e"] > 1e5) & ~inside["saturated"]]
    ratios = []
    yy, xx = np.mgrid[-45:46, -45:46]
    dist = np.hypot(xx, yy)
    for star in bright:
        cx, cy = int(round(star["x"])), int(round(star["y"]))
        if not (50 < cx < cols - 50 and 50 < cy < rows - 50):
            continue
        others = inside[
            (np.hypot(inside["x"] - star["x"], inside["y"] - star["y"]) < 45) & (inside["id"] != star["id"])
        ]
        if len(others) and others["flux_e"].max() > 0.01 * star["flux_e"]:
            continue
        cut = image[cy - 45 : cy + 46, cx - 45 : cx + 46]
        d = np.hypot(xx + cx - star["x"], yy + cy - star["y"])
        sky = np.median(cut[(dist > 30) & (dist < 44)])
        flux = (cut[d < radius] - sky).sum()
        ratios.append(flux / (star["flux_e"] * star["response"]))
        # centroid within 0.1 px
        w = np.clip(cut - sky, 0, None) * (d < 2 * fwhm_px)
        assert (w * (xx + cx)).sum() / w.sum() == pytest.approx(star["x"], abs=0.1)
        assert (w * (yy + cy)).sum() / w.sum() == pytest.approx(star["y"], abs=0.1)
    assert len(ratios) >= 3, "too few isolated bright stars to test"
    assert np.median(ratios) == pytest.approx(1.0, abs=0.02)
    assert np.all(np.abs(np.array(ratios) - 1) < 0.05), ratios


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("raws")


@pytest.mark.parametrize(("detector_id", "physical_type"), [(94, "E2V"), (0, "ITL"), (203, "ITL_WF"), (189, "ITL_G")])
def test_full_size_raw(raw_root: pathlib.Path, detector_id: int, physical_type: str) -> None:
    """One full-size raw per physical type: headers, fitsverify, ISR recovers the electrons and the stars."""
    assert CAMERA.detector(detector_id).physical_type == physical_type
    scene = SceneConfig(star_density=30000.0) if physical_type == "ITL_WF" else SceneConfig()
    t0 = time.perf_counter()
    result = simulate_detector(CAMERA, detector_id, raw_root, OBSID, scene=scene, seed=detector_id)
    print(f"{physical_type} full-size render + write: {time.perf_counter() - t0:.2f} s")  # reported, not asserted
    assert result.path.stat().st_size % 2880 == 0
    check_headers(result.path, detector_id)
    fitsverify(result.path)
    truth = read_truth(result.path)
    assert truth["detector"]["id"] == detector_id and truth["obsid"] == OBSID and truth["file"] == result.path.name
    assert set(truth["amps"]) == {a.name for a in result.rendered.geometry.amps}
    assert truth["psf"]["fwhm_arcsec"] == pytest.approx(0.8)
    check_truth_recoverable(result)
    # The raw store finds it.
    store = RawStore(raw_root, CAMERA)
    assert store.existing_path(OBSID, detector_id) == result.path and store.is_complete(result.path)


def test_refcat_next_to_truth(raw_root: pathlib.Path) -> None:
    result = simulate_detector(CAMERA, 95, raw_root, OBSID, scene=SceneConfig(), seed=5, scale=0.25)
    truth = result.truth
    assert truth["refcat"] == result.refcat_path.name and result.refcat_path.parent == result.path.parent
    refcat = Table.read(result.refcat_path, format="ascii.ecsv")
    assert {"id", "ra", "dec", "r_mag"} <= set(refcat.colnames) and refcat.meta["band"] == "r"
    stars = stars_table(truth)
    inside = stars[stars["in_image"]]
    assert set(inside["id"]) <= set(refcat["id"])
    # Deeper than anything detectable at 15 s, and the same magnitudes as the truth.
    assert refcat["r_mag"].max() > 24.5
    by_id = dict(zip(refcat["id"], refcat["r_mag"], strict=True))
    assert all(abs(by_id[i] - m) < 1e-3 for i, m in zip(inside["id"], inside["mag"], strict=True))
    # The whole field's catalog (LSSTCam: ~10 deg²) holds the detector's stars too.
    field = field_reference_catalog(CAMERA, truth["pointing"], radius=1.0)
    assert set(inside["id"]) <= set(field["id"]) and len(field) > 10 * len(refcat)
    # The fixed sky: another exposure at the same pointing sees the same stars at the same places.
    again = simulate_detector(
        CAMERA, 95, raw_root, "MC_O_20251115_000043", seed=6, scale=0.25, pointing=truth["pointing"]
    )
    assert again.truth["stars"]["id"] == truth["stars"]["id"] and again.truth["stars"]["x"] == truth["stars"]["x"]


def test_rice_compressed_is_lossless(tmp_path: pathlib.Path) -> None:
    plain = simulate_detector(CAMERA, 30, tmp_path / "a", OBSID, seed=3, scale=0.2)
    packed = simulate_detector(CAMERA, 30, tmp_path / "b", OBSID, seed=3, scale=0.2, compress=True)
    assert packed.path.name.endswith(".fits.fz") and packed.path.stat().st_size < plain.path.stat().st_size
    fitsverify(packed.path)
    with fits.open(plain.path) as a, fits.open(packed.path) as b:
        assert len(a) == len(b) == 19
        for hdu_a, hdu_b in zip(a[1:17], b[1:17], strict=True):
            assert isinstance(hdu_b, fits.CompImageHDU)
            assert hdu_b.header["EXTNAME"] == hdu_a.header["EXTNAME"]
            assert hdu_b.header["DETSEC"] == hdu_a.header["DETSEC"]
            assert hdu_b.data.dtype.kind == "i"
            np.testing.assert_array_equal(hdu_a.data, hdu_b.data)
    with fits.open(packed.path, disable_image_compression=True) as raw:
        for hdu in raw[1:17]:
            assert (hdu.header["ZCMPTYPE"], hdu.header["ZTILE1"], hdu.header["ZTILE2"]) == (
                "RICE_1",
                hdu.header["ZNAXIS1"],
                1,
            )
    assert RawStore(tmp_path / "b", CAMERA).existing_path(OBSID, 30) == packed.path


def test_bias_dark_flat(tmp_path: pathlib.Path) -> None:
    scene = SceneConfig(flat_level=40000.0, prnu=0.01)
    bias = simulate_detector(CAMERA, 94, tmp_path, "MC_O_20251115_000001", img_type="BIAS", scale=0.2, seed=1)
    dark = simulate_detector(
        CAMERA, 94, tmp_path, "MC_O_20251115_000002", img_type="DARK", exp_time=30.0, scene=scene, scale=0.2, seed=2
    )
    flat = simulate_detector(
        CAMERA,
        94,
        tmp_path,
        "MC_O_20251115_000003",
        img_type="FLAT",
        exp_time=5.0,
        scene=scene,
        scale=0.2,
        seed=3,
        write_response=True,
    )
    for result, img_type in ((bias, "BIAS"), (dark, "DARK"), (flat, "FLAT")):
        header = fits.getheader(result.path, 0)
        assert header["IMGTYPE"] == img_type and result.truth["img_type"] == img_type
        assert result.refcat_path is None and result.truth["stars"] == {}
    assert fits.getheader(bias.path, 0)["EXPTIME"] == 0.0
    b, _ = isr_electrons(bias.path, truth_gains(bias))
    assert abs(np.mean(b)) < 0.3 and np.std(b) < 8
    with fits.open(bias.path) as hdul:  # raw bias level is the truth's
        level = np.median(hdul["Segment13"].data)
        assert level == pytest.approx(bias.truth["amps"]["C13"]["bias_adu"], abs=2)
    d, _ = isr_electrons(dark.path, truth_gains(dark))
    assert np.median(d) == pytest.approx(0.02 * 30, abs=0.2)
    f, _ = isr_electrons(flat.path, truth_gains(flat))
    response = fits.getdata(flat.path.with_name(flat.path.name + ".response.fits"))
    assert flat.truth["response"]["file"].endswith(".response.fits")
    np.testing.assert_allclose(response, pixel_response(CAMERA, CAMERA.detector(94), scene, scale=0.2))
    flattened = f / response
    assert np.median(flattened) == pytest.approx(40000 + 0.02 * 5, rel=0.002)
    # Dividing by the response removes the PRNU: what is left is photon and read noise.
    assert np.std(flattened) < 1.1 * np.sqrt(40000 + 5.4**2) < 0.5 * np.std(f)


def test_saturation_and_bleed(tmp_path: pathlib.Path) -> None:
    scene = SceneConfig(n_stars=40, mag_bright=11.0, mag_faint=13.0, cosmic_ray_rate=0.0)
    result = render_detector(CAMERA, 94, scene=scene, seed=4, scale=0.5)
    stars = stars_table(result.truth)
    assert stars["saturated"].sum() > 10
    image = result.image
    full_well = scene.full_well
    assert image.max() <= full_well
    assert result.truth["saturation"]["n_saturated_pixels"] == int((image >= full_well).sum())
    # Bleed trails run along columns: a saturated star's column is saturated far beyond its core.
    candidates = stars[stars["saturated"] & stars["in_image"]]
    star = candidates[np.argmax(candidates["flux_e"])]
    cx, cy = int(round(star["x"])), int(round(star["y"]))
    column = image[:, cx] >= full_well
    row = image[cy, :] >= full_well
    assert column.sum() > 3 * row.sum()
    # The charge is kept (less what ran off the ends of the half-columns).
    noiseless = render_detector(CAMERA, 94, scene=scene, seed=4, scale=0.5, noise=False)
    assert noiseless.image.sum() == pytest.approx(image.sum(), rel=0.01)


def test_psf_truth_matches_the_pixels() -> None:
    """Adaptive moments of a noise-free star match the truth's; ellipticity and FWHM variation show up."""
    scene = SceneConfig(
        n_stars=20,
        mag_bright=17,
        mag_faint=17.5,
        e1=0.08,
        e2=-0.05,
        seeing_fwhm=0.9,
        fwhm_gradient=(0.2, 0.0),
        e1_gradient=(0.0, 0.02),
        cosmic_ray_rate=0.0,
        apply_response=False,
    )
    for detector, psf_model in (("R22_S11", "moffat"), ("R20_S10", "gaussian")):
        s = scene.model_copy(update={"psf_model": psf_model})
        rendered = render_detector(CAMERA, detector, scene=s, seed=1, scale=0.25, noise=False)
        truth = rendered.truth
        sky = truth["sky"]["level_e"] + truth["sky"]["dark_e"]
        stars = stars_table(truth)
        star = stars[stars["in_image"]][np.argmin(np.hypot(stars["x"] - 260, stars["y"] - 250)[stars["in_image"]])]
        cx, cy = int(round(star["x"])), int(round(star["y"]))
        cut = rendered.image[cy - 30 : cy + 31, cx - 30 : cx + 31] - sky
        m = adaptive_moments(cut)
        psf = truth["psf"]
        # The truth at the detector centre; the star is within ~200 px of it (FWHM changes < 0.1 % there).
        assert m["sigma"] == pytest.approx(psf["sigma_adaptive_px"], rel=0.01)
        assert m["e1"] == pytest.approx(psf["e1"], abs=0.005) and m["e2"] == pytest.approx(psf["e2"], abs=0.005)
        assert m["x"] + cx - 30 == pytest.approx(star["x"], abs=0.01)
        if psf_model == "gaussian":  # a pixel-integrated Gaussian: sigma² ~ (FWHM/2.3548)² + 1/12 (weighting aside)
            assert m["sigma"] ** 2 == pytest.approx((psf["fwhm_px"] / 2.3548) ** 2 + 1 / 12, rel=0.02)
    # Field dependence: R20 is at x = -127 mm (-0.7 deg): FWHM smaller by 0.2 arcsec/deg x 0.7 deg, e1 unchanged
    # along x; R22_S11 is on the axis.
    centre = render_detector(CAMERA, "R22_S11", scene=scene, scale=0.05, noise=False).truth["psf"]
    west = render_detector(CAMERA, "R20_S11", scene=scene, scale=0.05, noise=False).truth["psf"]
    north = render_detector(CAMERA, "R42_S11", scene=scene, scale=0.05, noise=False).truth["psf"]
    assert centre["fwhm_arcsec"] == pytest.approx(0.9)
    assert west["fwhm_arcsec"] == pytest.approx(0.9 - 0.2 * 254 * 20.0059 / 3600, rel=1e-6)
    assert north["e1"] == pytest.approx(0.08 + 0.02 * 254 * 20.0059 / 3600, rel=1e-6)


def test_exposure_of_several_detectors(tmp_path: pathlib.Path) -> None:
    obsid = "MC_O_20251115_000077"
    paths = simulate_exposure(
        CAMERA,
        tmp_path,
        obsid,
        detectors=[90, 94, 98],
        seed=2,
        scale=0.1,
        pointing={"ra": 10.0, "dec": -45.0, "rot_pa": 30.0},
    )
    assert set(paths) == {90, 94, 98}
    headers = [check_headers(p, d, obsid, scale=0.1) for d, p in paths.items()]
    assert len({h["GROUPID"] for h in headers}) == 1 and len({h["DATE-BEG"] for h in headers}) == 1
    assert {(h["RA"], h["DEC"], h["ROTPA"]) for h in headers} == {(10.0, -45.0, 30.0)}
    # All detectors share one projection: the boresight is CRVAL everywhere; each star's WCS position matches.
    for p in paths.values():
        truth = json.loads(p.with_name(p.name + ".truth.json").read_text())
        wcs = pipeline_wcs(p)
        assert tuple(wcs.wcs.crval) == pytest.approx((10.0, -45.0))
        stars = stars_table(truth)
        if len(stars):
            x, y = wcs.all_world2pix(stars["ra"], stars["dec"], 0)
            assert np.max(np.hypot(x - stars["x"], y - stars["y"])) < 0.1
    found = RawStore(tmp_path, CAMERA).find(DataId("LSSTCam", obsid=obsid))
    assert set(found) == {90, 94, 98}


def test_other_instruments(tmp_path: pathlib.Path) -> None:
    latiss = simulate_detector(
        "LATISS", 0, tmp_path, "AT_O_20251115_000005", seed=1, scale=0.1, scene=SceneConfig(band="r")
    )
    header = fits.getheader(latiss.path, 0)
    assert header["INSTRUME"] == "LATISS" and header["FILTER"] == "SDSSr_65mm" and header["GRATING"] == "empty"
    assert header["RAFTBAY"] == "R00" and header["CCDSLOT"] == "S00"  # as LATISS's camera writes them
    assert abs(header_wcs(header).proj_plane_pixel_scales()[0].to_value("arcsec") - 0.095695) < 1e-6
    assert all(1.0 < a["gain"] < 1.15 for a in latiss.truth["amps"].values())
    comcam = simulate_detector(
        "LSSTComCam", 4, tmp_path, "CC_O_20251115_000005", seed=1, scale=0.1, scene=SceneConfig(band="i")
    )
    header = fits.getheader(comcam.path, 0)
    assert header["FILTER"] == "i_06" and header["FILTBAND"] == "i" and header["CAMCODE"] == "CC"
    assert abs(pipeline_wcs(comcam.path).proj_plane_pixel_scales()[0].to_value("arcsec") - 0.20018) < 1e-6
    with pytest.raises(ValueError, match="not of LATISS"):
        simulate_detector("LATISS", 0, tmp_path, "MC_O_20251115_000005", scale=0.1)


def test_itl_amp_cards_are_the_cameras() -> None:
    """Segment10 of an ITL detector: every geometry card as in the real 2025 LSSTCam raw's header."""
    if not _REAL_CARDS:
        pytest.skip(f"{_REAL_HEADER} is not present")
    amp = get_geometry("ITL").amp("Segment10")
    real = dict(list(_REAL_CARDS.items())[_SPLIT:])
    ours = {"DATASEC": amp.datasec, "DETSEC": amp.detsec, "DETSIZE": get_geometry("ITL").detsize}
    ours.update(amp.mosaic_cards())
    ours.update(serpar_cards(amp))
    for key, value in ours.items():
        assert real[key] == value, key


def test_render_speed_report() -> None:
    """A 4k x 4k frame with 500 stars (printed, not asserted: see the benchmarks)."""
    t0 = time.perf_counter()
    rendered = render_detector(CAMERA, 94, scene=SceneConfig(n_stars=500), seed=9)
    elapsed = time.perf_counter() - t0
    print(f"render E2V 4004x4096 with 500 stars: {elapsed:.2f} s")
    assert rendered.truth["n_stars_in_image"] == 500
