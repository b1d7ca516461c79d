"""The amplifier layout (``data/amp_geometry.py``) against the obs_lsst sections of ``ra-algorithms.md`` §6."""

from __future__ import annotations

import numpy as np
import pytest

from fits_factory import Geometry as FactoryGeometry
from lsst.ts.rapidanalysis.data.amp_geometry import (
    AMP_HEIGHT,
    AMP_WIDTH,
    DETECTOR_TYPES,
    amp_names,
    assemble,
    assemble_hdus,
    disassemble,
    geometry_for_raw_shape,
    get_geometry,
    parse_section,
    section_box,
)
from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.sim.focal_plane import detector_center_mm


def detsec_reference(detector_type: str, extname: str) -> str:
    """DETSEC exactly as ``ra-algorithms.md`` §6 writes it, for k = 0..7."""
    k = int(extname[-1])
    if detector_type == "E2V":
        w, h = 512, 2002
        if extname.startswith("Segment1"):
            return f"[{w * (k + 1)}:{w * k + 1},1:{h}]"
        return f"[{w * k + 1}:{w * (k + 1)},{2 * h}:{h + 1}]"
    w, h = 509, 2000
    if extname.startswith("Segment1"):
        return f"[{w * (k + 1)}:{w * k + 1},1:{h}]"
    return f"[{w * (k + 1)}:{w * k + 1},{2 * h}:{h + 1}]"


@pytest.mark.parametrize("detector_type", DETECTOR_TYPES)
def test_sections_match_reference(detector_type: str) -> None:
    geom = get_geometry(detector_type)
    n_amps = 8 if detector_type == "ITL_WF" else 16
    assert len(geom.amps) == n_amps
    assert [a.extname for a in geom.amps][:8] == [f"Segment1{k}" for k in range(8)]
    if n_amps == 16:
        assert [a.extname for a in geom.amps][8:] == [f"Segment0{k}" for k in range(7, -1, -1)]
    design = "E2V" if detector_type == "E2V" else "ITL"
    for hdu, amp in enumerate(geom.amps, start=1):
        assert amp.hdu == hdu and amp.channel == hdu
        assert amp.name == "C" + amp.extname[-2:]
        assert amp.raw_shape == (AMP_HEIGHT, AMP_WIDTH) == (2048, 576)
        assert amp.datasec == ("[11:522,1:2002]" if design == "E2V" else "[4:512,1:2000]")
        assert amp.detsec == detsec_reference(design, amp.extname)
        # The regions tile the raw amp: prescan | data | serial overscan across, data | parallel overscan down.
        assert amp.prescan.width + amp.data.width + amp.serial_overscan.width == AMP_WIDTH
        assert amp.data.height + amp.parallel_overscan.height == AMP_HEIGHT
        assert amp.serial_overscan.x1 == AMP_WIDTH and amp.parallel_overscan.y1 == AMP_HEIGHT
    expected = {"E2V": (4004, 4096), "ITL": (4000, 4072), "ITL_G": (4000, 4072), "ITL_WF": (2000, 4072)}
    assert geom.shape == expected[detector_type]
    rows, cols = geom.shape
    assert geom.detsize == f"[1:{cols},1:{rows}]"


def test_region_sizes() -> None:
    e2v, itl = get_geometry("E2V").amps[0], get_geometry("ITL").amps[0]
    assert (e2v.prescan.width, e2v.data.width, e2v.serial_overscan.width) == (10, 512, 54)
    assert (e2v.data.height, e2v.parallel_overscan.height, e2v.parallel_overscan.x0) == (2002, 46, 10)
    assert (itl.prescan.width, itl.data.width, itl.serial_overscan.width) == (3, 509, 64)
    assert (itl.data.height, itl.parallel_overscan.height, itl.parallel_overscan.x0) == (2000, 48, 3)


@pytest.mark.parametrize("scale", [1.0, 0.1])
@pytest.mark.parametrize("detector_type", ["E2V", "ITL"])
def test_agrees_with_fits_factory(detector_type: str, scale: float) -> None:
    """The test-raw writer was written independently from the same reference: same sections."""
    ours, theirs = get_geometry(detector_type, scale), FactoryGeometry(detector_type, scale)
    for amp in ours.amps:
        assert amp.datasec == theirs.datasec()
        assert amp.detsec == theirs.detsec(amp.extname)
        assert amp.raw_shape == (theirs.amp_height, theirs.amp_width)


def test_flips_place_first_read_pixel() -> None:
    """The first pixel read by each amp is at its header DETSEC start corner, counted upside down.

    The DM orientation (obs_lsst cameraGeom, DM-36115) is the header-DETSEC image flipped in y:
    row ``y`` (1-based) of DETSEC is row ``H + 1 - y`` of ours.
    """
    for detector_type in ("E2V", "ITL", "ITL_WF"):
        geom = get_geometry(detector_type)
        height = geom.shape[0]
        amps = {}
        for amp in geom.amps:
            data = np.zeros(amp.data.shape, dtype=np.int32)
            data[0, 0] = amp.hdu
            amps[amp.name] = data
        image = assemble(amps, geom)
        rows, cols = np.nonzero(image)
        where = {int(image[r, c]): (r, c) for r, c in zip(rows, cols, strict=True)}
        assert len(where) == len(geom.amps)
        for amp in geom.amps:
            row, col = where[amp.hdu]
            detsec = parse_section(amp.detsec)
            assert (col + 1, height - row) == (detsec.x_start, detsec.y_start), amp.name
    # C1k on top, read from the top edge; C0k below, read from the bottom edge.
    e2v, itl = get_geometry("E2V"), get_geometry("ITL")
    assert (e2v.amp("C00").flip_x, e2v.amp("C00").flip_y) == (False, False)
    assert (itl.amp("C00").flip_x, itl.amp("C00").flip_y) == (True, False)
    assert (e2v.amp("C10").flip_x, e2v.amp("C10").flip_y) == (True, True)
    assert (itl.amp("C10").flip_x, itl.amp("C10").flip_y) == (True, True)
    assert e2v.amp("C10").detector_box.y0 == 2002 and e2v.amp("C00").detector_box.y0 == 0
    # C10 and C00 are at the left (x = 1), C17 and C07 at the right.
    assert e2v.amp("C10").detector_box.x0 == 0 and e2v.amp("C07").detector_box.x1 == 4096


@pytest.mark.parametrize("detector_type", DETECTOR_TYPES)
def test_mosaic_cards_map_datasec_to_detsec(detector_type: str) -> None:
    for amp in get_geometry(detector_type).amps:
        cards = amp.mosaic_cards()
        datasec, detsec = parse_section(amp.datasec), parse_section(amp.detsec)
        for x_img, x_det in ((datasec.x_start, detsec.x_start), (datasec.x_end, detsec.x_end)):
            assert cards["DTM1_1"] * x_img + cards["DTV1"] == x_det
        for y_img, y_det in ((datasec.y_start, detsec.y_start), (datasec.y_end, detsec.y_end)):
            assert cards["DTM2_2"] * y_img + cards["DTV2"] == y_det


@pytest.mark.parametrize("detector_type", DETECTOR_TYPES)
def test_assemble_disassemble_round_trip(detector_type: str) -> None:
    geom = get_geometry(detector_type, 0.05)
    rng = np.random.default_rng(1)
    image = rng.normal(size=geom.shape)
    amps = disassemble(image, geom)
    assert list(amps) == list(amp_names(detector_type))
    np.testing.assert_array_equal(assemble(amps, geom), image)
    by_ext = disassemble(image, detector_type, scale=0.05, key="extname")
    np.testing.assert_array_equal(assemble(by_ext, detector_type, scale=0.05), image)
    # Whole raw amps: DATASEC is cut out.
    raws = {}
    for amp in geom.amps:
        raw = np.full(amp.raw_shape, -1.0)
        raw[amp.data.slices] = amps[amp.name]
        raws[amp.name] = raw
    np.testing.assert_array_equal(assemble(raws, geom), image)


def test_assemble_hdus_uses_headers() -> None:
    """Assembly from header DATASEC/DETSEC equals geometry-based assembly."""

    class Hdu:
        def __init__(self, header: dict, data: np.ndarray) -> None:
            self.header, self.data = header, data

    for detector_type in ("E2V", "ITL_WF"):
        geom = get_geometry(detector_type, 0.1)
        rng = np.random.default_rng(2)
        raws = {a.name: rng.integers(0, 1000, a.raw_shape).astype(np.int32) for a in geom.amps}
        hdus = [Hdu({"SIMPLE": True}, None)]
        hdus += [Hdu({"DATASEC": a.datasec, "DETSEC": a.detsec}, raws[a.name]) for a in geom.amps]
        np.testing.assert_array_equal(assemble_hdus(hdus), assemble(raws, geom))


def test_missing_amps_and_errors() -> None:
    geom = get_geometry("ITL", 0.05)
    amps = disassemble(np.ones(geom.shape), geom)
    del amps["C03"]
    image = assemble(amps, geom)
    assert np.isnan(image[geom.amp("C03").detector_box.slices]).all()
    assert np.isfinite(image).sum() == image.size - geom.data_width * geom.data_height
    with pytest.raises(ValueError, match="neither"):
        assemble({"C10": np.zeros((3, 3))}, geom)
    with pytest.raises(ValueError, match="no amp"):
        geom.amp("C20")
    with pytest.raises(ValueError, match="unknown detector type"):
        get_geometry("CMOS")
    with pytest.raises(ValueError, match="not of the form"):
        parse_section("[1:2,3]")
    with pytest.raises(ValueError, match="does not fit"):
        section_box("[1:600,1:10]", (2048, 576))


def test_section_parsing() -> None:
    s = parse_section("[512:1, 4004:2003]")
    assert (s.flip_x, s.flip_y) == (True, True)
    assert s.box.slices == (slice(2002, 4004), slice(0, 512))


def test_geometry_for_raw_shape() -> None:
    for detector_type in DETECTOR_TYPES:
        for scale in (1.0, 0.2):
            geom = get_geometry(detector_type, scale)
            again = geometry_for_raw_shape(detector_type, geom.raw_shape)
            assert again.shape == geom.shape and [a.detsec for a in again.amps] == [a.detsec for a in geom.amps]


def test_focal_plane_positions() -> None:
    """Raft centres at multiples of 127 mm, CCDs at ±42.25 mm; R01 at (-127, -254)."""
    camera = get_instrument("LSSTCam")
    assert detector_center_mm(camera, camera.detector("R22_S11")) == (0.0, 0.0, 0.0)
    x, y, _ = detector_center_mm(camera, camera.detector("R01_S00"))
    assert (x, y) == (-127 - 42.25, -254 - 42.25)
    x, y, _ = detector_center_mm(camera, camera.detector("R43_S22"))
    assert (x, y) == (127 + 42.25, 254 + 42.25)
    comcam = get_instrument("LSSTComCam")
    assert detector_center_mm(comcam, comcam.detector("R22_S01"))[:2] == (0.0, -42.25)
    # Corner sensors lie beyond the science rafts, in the right corner.
    for raft, sx, sy in (("R00", -1, -1), ("R04", 1, -1), ("R40", -1, 1), ("R44", 1, 1)):
        for slot in ("SG0", "SG1", "SW0", "SW1"):
            x, y, _ = detector_center_mm(camera, camera.detector(f"{raft}_{slot}"))
            assert x * sx > 190 and y * sy > 190
