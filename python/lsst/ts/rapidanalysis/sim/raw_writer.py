"""Turn rendered electrons into camera-format raw FITS files, with truth and a reference catalog.

A raw (``ra-algorithms.md`` §6) is a primary HDU with the exposure's and the detector's keys and no
data, one int32 HDU per amp (``Segment10..17`` then ``Segment07..00``; 8 for ITL_WF) and the
``REB_COND`` and ``CONFIG_COND`` tables. Each amp is 2048 x 576 in readout order: the data section
holds ``electrons / gain``; every pixel (prescan, data, serial and parallel overscan) holds the
amp's bias level, a per-row bias structure (a random walk, the same along a row, which per-row
overscan subtraction removes) and Gaussian read noise; values are rounded and kept within the
18-bit ADC range. No serial CTI, crosstalk or non-linearity.

Files go into the raw-store layout ``{root}/{instrument}/{dayObs}/{obsid}/{obsid}_{raft}_{sensor}.fits``
(``.fits.fz`` when RICE-compressed), written under a temporary name and renamed, with
``{file}.truth.json`` (`lsst.ts.rapidanalysis.sim.truth`) and ``{file}.refcat.ecsv`` beside them.

As the camera writes them: no ``GAIN``, ``BIASSEC`` or ``SATURATE`` cards (ISR takes gains and
saturation from the camera description, whose values the simulator uses as truth), ``INSTRUME``
as the camera writes it (``LATISS``, ``ComCam``, ``LSSTCam``), header ``DETSEC`` in the camera's
convention (`lsst.ts.rapidanalysis.data.amp_geometry`). An amp saturates at its description's
saturation (ADU above bias), as well as at the scene's full well (electrons).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.io import fits

from ..atomic_file import write_atomic
from ..data.amp_geometry import DEFAULT_SATURATION, DetectorGeometry, get_geometry
from ..data.camera import CAMERA_WRITES_INSTRUME, Detector, Instrument, get_instrument
from ..data.camera_description import amp_electronics as described_electronics
from ..data.data_id import OBSID_RE
from ..data.raw_names import raw_file_names
from .focal_plane import (
    SITE,
    Pointing,
    altaz,
    detector_wcs,
    get_optics,
    mjd_from_tai,
    tai_iso,
    wcs_cards,
    zenith_pointing,
)
from .refcat import reference_catalog, write_refcat
from .scene import RenderedDetector, SceneConfig, image_class, pixel_response, render_detector
from .truth import truth_path, write_truth

__all__ = [
    "ADC_MAX",
    "AmpElectronics",
    "amp_electronics",
    "default_tai_start",
    "electrons_to_amps",
    "make_hdulist",
    "parse_obsid",
    "primary_header",
    "raw_path",
    "simulate_detector",
    "simulate_exposure",
    "SimulatedRaw",
    "detector_cards",
    "hdulist_bytes",
    "serpar_cards",
    "lsst_num",
    "electronics_truth",
]

#: Largest value of the 18-bit ADC.
ADC_MAX = 2**18 - 1
_ELECTRONICS_SEED = 314159
# CCD_TYPE as the camera writes it (the sensor model, not the DM stack's physical type).
_CCD_TYPE = {"E2V": "CCD250", "ITL": "3800C", "ITL_G": "3800C", "ITL_WF": "4400B"}
# LATISS's RAFTBAY and CCDSLOT, as its camera writes them (the DM stack says RXX_S00).
_LATISS_SLOT = ("R00", "S00")
_LSST_NUM = {
    "E2V": "E2V-CCD250-{:03d}",
    "ITL": "ITL-3800C-{:03d}",
    "ITL_G": "ITL-3800C-G{:03d}",
    "ITL_WF": "ITL-3800C-W{:03d}",
}


@dataclasses.dataclass(frozen=True)
class AmpElectronics:
    """Simulated electronics of one amp.

    Attributes
    ----------
    gain : `float`
        e-/ADU.
    read_noise : `float`
        e- rms.
    bias : `float`
        Bias level (ADU).
    saturate : `float`
        ``SATURATE`` (ADU above the bias).
    """

    gain: float
    read_noise: float
    bias: float
    saturate: float

    @property
    def read_noise_adu(self) -> float:
        """Read noise in ADU."""
        return self.read_noise / self.gain


def amp_electronics(
    instrument: Instrument | str,
    detector: Detector,
    geometry: DetectorGeometry | None = None,
    *,
    seed: int = _ELECTRONICS_SEED,
) -> dict[str, AmpElectronics]:
    """Gain, read noise, bias and saturation of each amp: the camera description's, bias by ``seed``.

    Gain and read noise are the camera description's per-amp values (`lsst.ts.rapidanalysis.data.
    camera_description`), which is what ISR assumes of a real raw; saturation is the description's
    (LSSTCam) or obs_lsst's default; bias levels lie in 15000-25000 ADU, fixed per detector.
    """
    instrument = get_instrument(instrument) if isinstance(instrument, str) else instrument
    geometry = geometry or get_geometry(detector.physical_type)
    described = described_electronics(instrument.name, detector.name)
    rng = np.random.default_rng([seed, int(instrument.sal_index), detector.id])
    out = {}
    for amp in geometry.amps:
        nominal = described[amp.name]
        bias = float(round(rng.uniform(15000, 25000)))
        saturate = nominal.saturation if math.isfinite(nominal.saturation) else DEFAULT_SATURATION
        out[amp.name] = AmpElectronics(nominal.gain, nominal.read_noise, bias, float(saturate))
    return out


def _row_structure(n_rows: int, rms: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth per-row bias wander with the given rms (ADU)."""
    if rms <= 0:
        return np.zeros(n_rows, dtype=np.float32)
    walk = np.cumsum(rng.standard_normal(n_rows))
    rows = np.arange(n_rows)
    walk -= np.polyval(np.polyfit(rows, walk, 1), rows)
    std = walk.std()
    return (walk * (rms / std if std > 0 else 0.0)).astype(np.float32)


def electrons_to_amps(
    image: np.ndarray,
    geometry: DetectorGeometry,
    electronics: dict[str, AmpElectronics],
    rng: np.random.Generator,
    *,
    row_bias_rms: float = 1.5,
) -> dict[str, np.ndarray]:
    """Raw int32 amp images (readout order, prescan and overscans included) from electrons.

    Parameters
    ----------
    image : `numpy.ndarray`
        Assembled detector image in electrons (``geometry.shape``).
    geometry : `DetectorGeometry`
        Amp layout.
    electronics : `dict` [`str`, `AmpElectronics`]
        Per amp name.
    rng : `numpy.random.Generator`
        For read noise and the row structure.
    row_bias_rms : `float`
        rms (ADU) of the per-row bias structure (0: none).

    Returns
    -------
    amps : `dict` [`str`, `numpy.ndarray`]
        By amp name, in HDU order.
    """
    if image.shape != geometry.shape:
        raise ValueError(f"image shape {image.shape} is not {geometry.detector_type}'s {geometry.shape}")
    out = {}
    for amp in geometry.amps:
        el = electronics[amp.name]
        raw = rng.standard_normal(amp.raw_shape, dtype=np.float32)
        raw *= np.float32(el.read_noise_adu)
        level = np.float32(el.bias) + _row_structure(amp.raw_shape[0], row_bias_rms, rng)
        raw += level[:, None]
        data = raw[amp.data.slices]
        data += amp.from_detector(image) * np.float32(1.0 / el.gain)
        # The amp saturates at SATURATE ADU above its bias (plus five read-noise sigmas, so that
        # every saturated pixel is at or above the level ISR compares with).
        ceiling = level[amp.data.slices[0]] + np.float32(el.saturate + 5.0 * el.read_noise_adu)
        np.minimum(data, ceiling[:, None], out=data)
        np.rint(raw, out=raw)
        np.clip(raw, 0, ADC_MAX, out=raw)
        out[amp.name] = raw.astype(np.int32)
    return out


# Headers


def parse_obsid(obsid: str, instrument: Instrument) -> tuple[str, str, int]:
    """(controller, dayObs 'YYYYMMDD', seqNum) of an obsid of ``instrument``; ValueError if malformed."""
    match = OBSID_RE.match(obsid) if isinstance(obsid, str) else None
    if match is None:
        raise ValueError(f"obsid {obsid!r} is not of the form {instrument.cam_code}_O_YYYYMMDD_NNNNNN")
    if match["cam"] != instrument.cam_code:
        raise ValueError(f"obsid {obsid!r} is not of {instrument.name} (camera code {instrument.cam_code})")
    return match["controller"], match["day"], int(match["seq"])


def default_tai_start(day_obs: str | int, seq_num: int) -> float:
    """TAI unix seconds of a plausible start: dayObs at 23:00 TAI plus 40 s per sequence number."""
    import datetime

    day = datetime.datetime.strptime(str(day_obs), "%Y%m%d").replace(tzinfo=datetime.UTC)
    return day.timestamp() + 23 * 3600 + (seq_num * 40.0) % 46000.0


def raw_path(
    root: pathlib.Path | str, instrument: Instrument, obsid: str, detector: Detector, compress: bool = False
) -> pathlib.Path:
    """``{root}/{instrument}/{dayObs}/{obsid}/`` and the name the camera writes today (`raw_file_names`)."""
    _, day_obs, _ = parse_obsid(obsid, instrument)
    name = raw_file_names(instrument, obsid, detector.id, suffixes=(".fits.fz" if compress else ".fits",))[0]
    return pathlib.Path(root) / instrument.name / day_obs / obsid / name


def lsst_num(instrument: Instrument, detector: Detector) -> str:
    """A plausible ``LSST_NUM`` (sensor serial) of a detector."""
    if instrument.name == "LATISS":
        return "ITL-3800C-068"
    return _LSST_NUM[detector.physical_type].format(detector.id)


def detector_cards(instrument: Instrument, detector: Detector, obsid: str) -> dict[str, Any]:
    """The primary-header cards that differ between the detectors of one exposure, as the camera writes them."""
    raft, slot = _LATISS_SLOT if instrument.name == "LATISS" else (detector.raft, detector.sensor)
    return {
        "RAFTBAY": raft,
        "CCDSLOT": slot,
        "LSST_NUM": lsst_num(instrument, detector),
        "CCD_SERN": f"{detector.id:05d}",
        "RAFTNAME": f"LCA-11021_RTM-{detector.id // 9:03d}",
        "IMAGETAG": hashlib.sha1(f"{obsid}/{detector.id}".encode()).hexdigest()[:16],
        "FILENAME": raw_file_names(instrument, obsid, detector.id)[0],
    }


def _filter_names(instrument: Instrument, band: str, grating: str | None) -> tuple[str, str]:
    optics = get_optics(instrument)
    if band in optics.filters:
        filter_name = optics.filters[band]
    elif band in optics.filters.values():
        filter_name = band
        band = next(b for b, f in optics.filters.items() if f == band)
    else:
        raise ValueError(f"{instrument.name} has no band {band!r}; known: {', '.join(optics.filters)}")
    return filter_name, band


def primary_header(
    instrument: Instrument,
    detector: Detector,
    geometry: DetectorGeometry,
    *,
    obsid: str,
    img_type: str,
    exp_time: float,
    tai_start: float | None = None,
    pointing: Pointing | dict | None = None,
    group_id: str | None = None,
    band: str = "r",
    grating: str | None = None,
    extra: dict[str, Any] | None = None,
) -> fits.Header:
    """The primary header of a raw: time, identity, site, pointing, sensor, filter, TAN WCS.

    Parameters
    ----------
    instrument, detector, geometry
        What the file holds.
    obsid : `str`
        ``{CAMCODE}_{CONTRLLR}_{DAYOBS}_{SEQNUM:06d}``.
    img_type : `str`
        ``IMGTYPE`` (BIAS, DARK, FLAT, OBJECT, ...).
    exp_time : `float`
        Seconds.
    tai_start : `float`, optional
        Shutter open, TAI unix seconds (default `default_tai_start`).
    pointing : `Pointing` or `dict`, optional
        Boresight (default a little east of the zenith at ``tai_start``).
    group_id : `str`, optional
        ``GROUPID`` (default DATE-BEG).
    band : `str`
        Band (``r``) or physical filter name (``r_57``, ``SDSSr_65mm``).
    grating : `str`, optional
        LATISS ``GRATING`` (default ``empty``).
    extra : `dict`, optional
        Further cards (override the defaults).
    """
    controller, day_obs, seq_num = parse_obsid(obsid, instrument)
    tai = float(tai_start) if tai_start is not None else default_tai_start(day_obs, seq_num)
    point = Pointing.from_any(pointing, zenith_pointing(tai, instrument))
    site = SITE[instrument.name]
    optics = get_optics(instrument)
    kind = image_class(img_type)
    end = tai + exp_time
    filter_name, band = _filter_names(instrument, band, grating)
    az0, el0, ha0, am0 = altaz(point.ra, point.dec, tai, site)
    az1, el1, ha1, am1 = altaz(point.ra, point.dec, end, site)

    def num(value: float, digits: int = 6) -> float | None:
        return round(value, digits) if math.isfinite(value) else None

    identity = detector_cards(instrument, detector, obsid)
    geo_x, geo_y, geo_z = _geocentric(site)
    cards: list[tuple[str, Any, str]] = [
        ("BINX", 1, ""),
        ("BINY", 1, ""),
        # The camera writes these two placeholders; nothing may read them as the electronics.
        ("CCDGAIN", 1.0, ""),
        ("CCDNOISE", 10.0, ""),
        ("DATE", tai_iso(end + 2.0), "File creation (TAI)"),
        ("MJD", mjd_from_tai(end + 2.0), "File creation (MJD TAI)"),
        ("DATE-OBS", tai_iso(tai), "Start of exposure (TAI)"),
        ("MJD-OBS", mjd_from_tai(tai), "Start of exposure (MJD TAI)"),
        ("DATE-TRG", tai_iso(tai - 0.05), "Trigger time (TAI)"),
        ("MJD-TRG", mjd_from_tai(tai - 0.05), ""),
        ("DATE-BEG", tai_iso(tai), "Shutter open (TAI)"),
        ("MJD-BEG", mjd_from_tai(tai), ""),
        ("DATE-END", tai_iso(end), "Shutter closed (TAI)"),
        ("MJD-END", mjd_from_tai(end), ""),
        ("TIMESYS", "TAI", "Time scale"),
        ("OBSID", obsid, "Image name"),
        ("GROUPID", group_id or tai_iso(tai), "Group of exposures"),
        ("BUNIT", "adu", ""),
        ("IMGTYPE", img_type.upper(), "Image type"),
        ("TESTTYPE", img_type.upper(), ""),
        ("CAMCODE", instrument.cam_code, "Camera code"),
        ("CONTRLLR", controller, "Controller (O = OCS)"),
        ("DAYOBS", day_obs, "Observing day (rolls over at 12:00 TAI)"),
        ("SEQNUM", seq_num, "Sequence number"),
        ("PROGRAM", "SIMULATION", ""),
        ("REASON", "simulation", ""),
        ("CURINDEX", 1, ""),
        ("MAXINDEX", 1, ""),
        ("TSTAND", "SIMULATION", ""),
        ("IMAGETAG", identity["IMAGETAG"], ""),
        ("OBSANNOT", "", ""),
        ("INSTRUME", CAMERA_WRITES_INSTRUME[instrument.name], ""),
        ("TELESCOP", optics.telescope, ""),
        ("OBS-LONG", site.longitude, "deg east"),
        ("OBS-LAT", site.latitude, "deg"),
        ("OBS-ELEV", site.elevation, "m"),
        ("OBSGEO-X", geo_x, "m"),
        ("OBSGEO-Y", geo_y, "m"),
        ("OBSGEO-Z", geo_z, "m"),
        ("OBJECT", "SIMULATED_FIELD" if kind == "sky" else img_type.upper(), ""),
        ("RA", point.ra, "Boresight RA (deg)"),
        ("DEC", point.dec, "Boresight Dec (deg)"),
        ("RASTART", point.ra, ""),
        ("DECSTART", point.dec, ""),
        ("RAEND", point.ra, ""),
        ("DECEND", point.dec, ""),
        ("ROTPA", point.rot_pa, "Rotation position angle (deg)"),
        ("ROTCOORD", "sky", ""),
        ("HASTART", num(ha0), "Hour angle (h)"),
        ("HAEND", num(ha1), ""),
        ("ELSTART", num(el0), "Elevation (deg)"),
        ("ELEND", num(el1), ""),
        ("AZSTART", num(az0), "Azimuth (deg)"),
        ("AZEND", num(az1), ""),
        ("AMSTART", num(am0), "Airmass"),
        ("AMEND", num(am1), ""),
        ("TRACKSYS", "RADEC", ""),
        ("RADESYS", "ICRS", ""),
        ("FOCUSZ", 0.0, ""),
        ("VIGNETTE", "NO", ""),
        ("VIGN_MIN", "NO", ""),
        ("CCD_MANU", detector.physical_type.split("_")[0], "CCD manufacturer"),
        ("CCD_TYPE", _CCD_TYPE[detector.physical_type], "CCD model"),
        ("CCDSLOT", identity["CCDSLOT"], ""),
        ("RAFTBAY", identity["RAFTBAY"], ""),
        ("FIRMWARE", "3139500e", ""),
        ("PLATFORM", instrument.name.lower(), ""),
        ("CONTNUM", "18ed9486", ""),
        ("DAQVERS", "R5-V13.4 2025-03-20T16:46:35Z (simulated)", ""),
        ("DAQPART", "camera", ""),
        ("DAQFOLD", "raw", ""),
        ("SEQFILE", "FP_sim.seq", ""),
        ("SEQNAME", "FP_sim.seq", ""),
        ("SEQCKSUM", "0", ""),
        ("LSST_NUM", identity["LSST_NUM"], ""),
        ("CCD_SERN", identity["CCD_SERN"], ""),
        ("REBNAME", "LCA-13574-000", ""),
        ("RAFTNAME", identity["RAFTNAME"], ""),
        ("FPVERS", "1.2.14", ""),
        ("IHVERS", "1.1.10", ""),
        ("HEADVER", 2, ""),
        ("FILTBAND", band, ""),
        ("FILTER", filter_name, "Physical filter"),
        ("FILTPOS", 1, ""),
        ("FILTSLOT", 1, ""),
    ]
    if instrument.name == "LATISS":
        cards.append(("GRATING", grating or "empty", "Disperser"))
    cards += [
        ("EXPTIME", float(exp_time), "Exposure time (s)"),
        ("DARKTIME", float(exp_time), "Dark time (s)"),
        ("SHUTTIME", float(exp_time) if kind not in ("bias", "dark") else 0.0, "Shutter open time (s)"),
        ("AIRTEMP", 9.7, "deg C"),
        ("PRESSURE", 74210.0, "Pa"),
        ("HUMIDITY", 11.2, "%"),
        ("WINDSPD", 5.9, "m/s"),
        ("WINDDIR", 5.5, "deg"),
        ("SEEING", None, ""),
        ("FILENAME", identity["FILENAME"], "Original file name"),
    ]
    header = fits.Header()
    for key, value, comment in cards:
        header[key] = (value, comment)
    if instrument.name == "LATISS":
        # LATISS raws carry a TAN WCS (sometimes a wrong one); LSSTCam's carry none, only the
        # pointing cards, from which the pipelines build it (pipelines/raw_wcs.py).
        header.extend(wcs_cards(detector_wcs(instrument, detector, geometry, point)), update=True)
    header["HIERARCH STUTTER ROWS"] = 0
    header["HIERARCH STUTTER DELAY"] = 0.0
    header["HIERARCH STUTTER NSHIFTS"] = 0
    header["SIMULATE"] = (True, "lsst.ts.rapidanalysis.sim")
    for key, value in (extra or {}).items():
        header[key] = value
    return header


def _geocentric(site: Any) -> tuple[float, float, float]:
    """OBSGEO-X/Y/Z (m) of a site (WGS84)."""
    a, f = 6378137.0, 1 / 298.257223563
    lat, lon = math.radians(site.latitude), math.radians(site.longitude)
    e2 = f * (2 - f)
    n = a / math.sqrt(1 - e2 * math.sin(lat) ** 2)
    r = (n + site.elevation) * math.cos(lat)
    z = (n * (1 - e2) + site.elevation) * math.sin(lat)
    return round(r * math.cos(lon), 2), round(r * math.sin(lon), 2), round(z, 2)


def serpar_cards(amp: Any) -> dict[str, Any]:
    """The camera's ``CCD_SERPAR`` WCS (key B) of an amp: raw pixel -> 1-based (serial, parallel) in the CCD.

    The camera writes it in every amp header; (serial, parallel) - 1 is the DM pixel (column, row).
    """
    box, data = amp.detector_box, amp.data
    s0 = box.x1 + data.x0 + 1 if amp.flip_x else box.x0 - data.x0
    p0 = box.y1 + data.y0 + 1 if amp.flip_y else box.y0 - data.y0
    return {
        "WCSNAMEB": "CCD_SERPAR",
        "CTYPE1B": "CCD_S",
        "CTYPE2B": "CCD_P",
        "PC1_1B": -1.0 if amp.flip_x else 1.0,
        "PC1_2B": 0.0,
        "PC2_1B": 0.0,
        "PC2_2B": -1.0 if amp.flip_y else 1.0,
        "CDELT1B": 1.0,
        "CDELT2B": 1.0,
        "CRPIX1B": 0.0,
        "CRPIX2B": 0.0,
        "CRVAL1B": float(s0),
        "CRVAL2B": float(p0),
    }


def _amp_header(amp, el: AmpElectronics, detsize: str) -> fits.Header:
    header = fits.Header()
    header["CHANNEL"] = amp.channel
    header["EXTNAME"] = amp.extname
    header["CCDSUM"] = "1 1"
    header["DATASEC"] = amp.datasec
    header["DETSEC"] = amp.detsec
    header["DETSIZE"] = detsize
    for key, value in amp.mosaic_cards().items():
        header[key] = value
    header["DTM1_2"] = 0.0
    header["DTM2_1"] = 0.0
    for key, value in serpar_cards(amp).items():
        header[key] = value
    # Like the camera, no GAIN, BIASSEC or SATURATE: they come from the camera description.
    return header


def make_hdulist(
    header: fits.Header,
    amps: dict[str, np.ndarray],
    geometry: DetectorGeometry,
    electronics: dict[str, AmpElectronics],
    *,
    compress: bool = False,
) -> fits.HDUList:
    """A raw's HDUs: primary, one per amp (RICE_1 with one-row tiles if ``compress``), two tables."""
    hdus: list[Any] = [fits.PrimaryHDU(header=header)]
    for amp in geometry.amps:
        amp_header = _amp_header(amp, electronics[amp.name], geometry.detsize)
        data = amps[amp.name]
        if compress:
            hdus.append(
                fits.CompImageHDU(data, amp_header, compression_type="RICE_1", tile_shape=(1, amp.raw_shape[1]))
            )
        else:
            hdus.append(fits.ImageHDU(data, amp_header))
    reb = fits.BinTableHDU.from_columns([fits.Column(name="REBTEMP", format="E", array=np.array([-40.0]))])
    reb.header["EXTNAME"] = "REB_COND"
    config = fits.BinTableHDU.from_columns(
        [fits.Column(name="SEQFILE", format="40A", array=np.array(["sim_sequencer.seq"]))]
    )
    config.header["EXTNAME"] = "CONFIG_COND"
    return fits.HDUList([*hdus, reb, config])


def hdulist_bytes(hdul: fits.HDUList) -> bytes:
    """The whole file as bytes."""
    buffer = io.BytesIO()
    hdul.writeto(buffer)
    return buffer.getvalue()


@dataclasses.dataclass
class SimulatedRaw:
    """What `simulate_detector` wrote.

    Attributes
    ----------
    path : `pathlib.Path`
        The raw.
    truth_path : `pathlib.Path` or None
        Its truth sidecar.
    refcat_path : `pathlib.Path` or None
        Its reference catalog.
    rendered : `RenderedDetector`
        The electron image (before digitisation) and truth.
    electronics : `dict` [`str`, `AmpElectronics`]
        Per amp.
    """

    path: pathlib.Path
    truth_path: pathlib.Path | None
    refcat_path: pathlib.Path | None
    rendered: RenderedDetector
    electronics: dict[str, AmpElectronics]

    @property
    def truth(self) -> dict[str, Any]:
        """The truth dict."""
        return self.rendered.truth


def electronics_truth(electronics: dict[str, AmpElectronics], row_bias_rms: float) -> dict[str, dict[str, float]]:
    """The ``amps`` section of the truth."""
    return {
        name: {
            "gain": el.gain,
            "read_noise_e": el.read_noise,
            "read_noise_adu": round(el.read_noise_adu, 5),
            "bias_adu": el.bias,
            "saturate_adu": el.saturate,
            "row_bias_rms_adu": row_bias_rms,
        }
        for name, el in electronics.items()
    }


def _refcat_for(rendered: RenderedDetector, scene: SceneConfig):
    """The reference catalog around a rendered detector: every sky star in and 1' around it."""
    truth = rendered.truth
    rows, cols = rendered.geometry.shape
    meta = {"instrument": truth["instrument"], "detector": truth["detector"]["id"], "obsid": truth.get("obsid")}
    if scene.n_stars is not None:
        from astropy.table import Table

        stars = truth["stars"]
        table = Table({"id": stars["id"], "ra": stars["ra"], "dec": stars["dec"], f"{scene.band}_mag": stars["mag"]})
        table.meta.update(meta | {"band": scene.band, "note": "the stars placed in this detector (n_stars mode)"})
        return table
    centre = rendered.wcs.all_pix2world([[(cols - 1) / 2 + 1, (rows - 1) / 2 + 1]], 1)[0]
    pixel_deg = get_optics(rendered.instrument).pixel_scale / 3600.0
    radius = math.hypot(rows, cols) / 2 * pixel_deg + 1 / 60.0
    return reference_catalog(scene.star_field(), float(centre[0]), float(centre[1]), radius, band=scene.band, meta=meta)


@dataclasses.dataclass
class RawParts:
    """What every simulated raw is made of before it is written: its path, primary header,
    amplifier data and electronics, and its truth (filled in with the file's identity)."""

    path: pathlib.Path
    header: fits.Header
    amps: Any
    electronics: Any
    truth: dict[str, Any]


def raw_parts(
    rendered: RenderedDetector,
    instrument: Instrument,
    detector: Detector,
    root: pathlib.Path | str,
    obsid: str,
    *,
    img_type: str,
    tai: float,
    pointing: Pointing,
    group_id: str | None,
    band: str,
    grating: str | None,
    extra_headers: dict[str, Any] | None,
    seed: int,
    row_bias_rms: float,
    compress: bool,
    truth_extra: dict[str, Any] | None = None,
) -> RawParts:
    """Turn a rendered detector into raw amplifiers, a primary header, a path and its truth.

    Shared by science, calibration and dispersed raws; ``truth_extra`` adds (or overrides)
    truth fields (e.g. the spectrum's filter and grating).
    """
    geometry = rendered.geometry
    electronics = amp_electronics(instrument, detector, geometry)
    rng = np.random.default_rng([seed, detector.id, 1])
    amps = electrons_to_amps(rendered.image, geometry, electronics, rng, row_bias_rms=row_bias_rms)
    header = primary_header(
        instrument,
        detector,
        geometry,
        obsid=obsid,
        img_type=img_type,
        exp_time=rendered.truth["exp_time"],
        tai_start=tai,
        pointing=pointing,
        group_id=group_id,
        band=band,
        grating=grating,
        extra=extra_headers,
    )
    path = raw_path(root, instrument, obsid, detector, compress)
    path.parent.mkdir(parents=True, exist_ok=True)
    truth = rendered.truth
    truth.update(
        obsid=obsid,
        file=path.name,
        tai_start=tai,
        amps=electronics_truth(electronics, row_bias_rms),
        filter=header["FILTER"],
    )
    truth.update(truth_extra or {})
    header["SIMSEED"] = (seed, "simulation seed")
    return RawParts(path, header, amps, electronics, truth)


def simulate_detector(
    instrument: Instrument | str,
    detector: Detector | int | str,
    root: pathlib.Path | str,
    obsid: str,
    *,
    scene: SceneConfig | None = None,
    img_type: str = "OBJECT",
    exp_time: float | None = None,
    pointing: Pointing | dict | None = None,
    tai_start: float | None = None,
    group_id: str | None = None,
    seed: int = 0,
    scale: float = 1.0,
    compress: bool = False,
    row_bias_rms: float = 1.5,
    write_truth_file: bool = True,
    write_refcat_file: bool = True,
    write_response: bool = False,
    grating: str | None = None,
    extra_headers: dict[str, Any] | None = None,
) -> SimulatedRaw:
    """Render one detector of an exposure and write its raw, truth and reference catalog.

    Parameters
    ----------
    instrument : `Instrument` or `str`
        The instrument.
    detector : `Detector`, `int` or `str`
        The detector.
    root : `pathlib.Path` or `str`
        Raw-store root (files go to ``{root}/{instrument}/{dayObs}/{obsid}/``).
    obsid : `str`
        Image name (its camera code must be the instrument's).
    scene : `SceneConfig`, optional
        The scene.
    img_type : `str`
        ``OBJECT``, ``BIAS``, ``DARK``, ``FLAT``, ...
    exp_time : `float`, optional
        Seconds (default ``scene.exp_time``; 0 for BIAS).
    pointing : `Pointing` or `dict`, optional
        Boresight (default: a little east of the zenith at ``tai_start``).
    tai_start : `float`, optional
        TAI unix seconds of the shutter opening (default from the obsid's day and number).
    group_id : `str`, optional
        ``GROUPID``.
    seed : `int`
        Seed of the exposure (noise, cosmic rays).
    scale : `float`
        Data-section scale (1 = full size).
    compress : `bool`
        RICE_1 tile compression (``.fits.fz``).
    row_bias_rms : `float`
        Per-row bias structure (ADU rms).
    write_truth_file, write_refcat_file : `bool`
        Write ``{file}.truth.json`` / ``{file}.refcat.ecsv``.
    write_response : `bool`
        Also write the per-pixel response as ``{file}.response.fits`` (flats' truth; float32).
    grating : `str`, optional
        LATISS grating (``GRATING``).
    extra_headers : `dict`, optional
        Extra primary-header cards.
    """
    instrument = get_instrument(instrument) if isinstance(instrument, str) else instrument
    if not isinstance(detector, Detector):
        detector = instrument.detector(detector)
    scene = scene or SceneConfig()
    _, day_obs, seq_num = parse_obsid(obsid, instrument)
    tai = float(tai_start) if tai_start is not None else default_tai_start(day_obs, seq_num)
    point = Pointing.from_any(pointing, zenith_pointing(tai, instrument))
    rendered = render_detector(
        instrument, detector, scene=scene, img_type=img_type, exp_time=exp_time, pointing=point, seed=seed, scale=scale
    )
    parts = raw_parts(
        rendered,
        instrument,
        detector,
        root,
        obsid,
        img_type=img_type,
        tai=tai,
        pointing=point,
        group_id=group_id,
        band=scene.band,
        grating=grating,
        extra_headers=extra_headers,
        seed=seed,
        row_bias_rms=row_bias_rms,
        compress=compress,
    )
    path, header, truth = parts.path, parts.header, parts.truth
    refcat_file = None
    if write_refcat_file and image_class(img_type) == "sky":
        refcat_file = path.with_name(path.name + ".refcat.ecsv")
        write_refcat(_refcat_for(rendered, scene), refcat_file)
        truth["refcat"] = refcat_file.name
    if write_response and image_class(img_type) == "flat":
        response_file = path.with_name(path.name + ".response.fits")
        response = pixel_response(instrument, detector, scene, scale=scale)
        write_atomic(response_file, hdulist_bytes(fits.HDUList([fits.PrimaryHDU(response)])))
        truth["response"]["file"] = response_file.name
    truth_file = None
    if write_truth_file:
        truth_file = write_truth(truth_path(path), truth)
        header["SIMTRUTH"] = (truth_file.name, "truth sidecar")
    hdul = make_hdulist(header, parts.amps, rendered.geometry, parts.electronics, compress=compress)
    write_atomic(path, hdulist_bytes(hdul))
    return SimulatedRaw(path, truth_file, refcat_file, rendered, parts.electronics)


def simulate_exposure(
    instrument: Instrument | str,
    root: pathlib.Path | str,
    obsid: str,
    *,
    detectors: Sequence[int] | None = None,
    scene: SceneConfig | None = None,
    img_type: str = "OBJECT",
    exp_time: float | None = None,
    pointing: Pointing | dict | None = None,
    tai_start: float | None = None,
    group_id: str | None = None,
    seed: int = 0,
    scale: float = 1.0,
    compress: bool = False,
    **kwargs: Any,
) -> dict[int, pathlib.Path]:
    """Render and write every selected detector of one exposure (see `simulate_detector`).

    ``detectors`` defaults to the instrument's science detectors. All detectors share the
    pointing, time and group id; each gets its own noise. Returns the raw paths by detector id.
    """
    instrument = get_instrument(instrument) if isinstance(instrument, str) else instrument
    ids = list(detectors) if detectors is not None else [d.id for d in instrument.science_detectors]
    _, day_obs, seq_num = parse_obsid(obsid, instrument)
    tai = float(tai_start) if tai_start is not None else default_tai_start(day_obs, seq_num)
    point = Pointing.from_any(pointing, zenith_pointing(tai, instrument))
    group = group_id or tai_iso(tai)
    out = {}
    for detector_id in ids:
        result = simulate_detector(
            instrument,
            detector_id,
            root,
            obsid,
            scene=scene,
            img_type=img_type,
            exp_time=exp_time,
            pointing=point,
            tai_start=tai,
            group_id=group,
            seed=seed,
            scale=scale,
            compress=compress,
            **kwargs,
        )
        out[detector_id] = result.path
    return out
