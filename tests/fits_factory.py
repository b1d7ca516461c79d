"""Write camera-format raw FITS files (and plain images) for tests.

The layout follows obs_lsst (``ra-algorithms.md`` §6): a primary HDU with the identity keys and
no data, then one int32 HDU per amplifier (``Segment10..17`` then ``Segment07..00``) with
``EXTNAME``, ``CHANNEL``, ``DATASEC`` and ``DETSEC``, then the ``REB_COND`` and ``CONFIG_COND``
tables. Every amp holds ``bias`` plus Gaussian read noise; the data section adds ``signal`` (ADU,
with Poisson noise through ``gain``).
"""

from __future__ import annotations

import datetime
import pathlib
from collections.abc import Sequence

import numpy as np
from astropy.io import fits

__all__ = ["AMP_NAMES", "Geometry", "geometry", "write_raw", "write_image", "raw_file_name"]

#: Amp EXTNAMEs in HDU order: the bottom row C10..C17, then the top row C07..C00.
AMP_NAMES: tuple[str, ...] = tuple(f"Segment1{k}" for k in range(8)) + tuple(f"Segment0{k}" for k in range(7, -1, -1))

# (prescan width, data width, data height) of a full-size raw amp (576 x 2048 with the overscans).
_FULL = {"E2V": (10, 512, 2002), "ITL": (3, 509, 2000)}
_AMP_WIDTH, _AMP_HEIGHT = 576, 2048


class Geometry:
    """The amp geometry of a (possibly scaled) raw.

    Parameters
    ----------
    detector_type : `str`
        ``E2V`` or ``ITL`` (``ITL_G``/``ITL_WF`` use the ITL geometry).
    scale : `float`
        Linear factor on the data section; prescan and serial overscan keep their widths and the
        parallel overscan its height, so a scaled raw still has a realistic overscan.
    """

    def __init__(self, detector_type: str, scale: float = 1.0) -> None:
        base = "E2V" if detector_type == "E2V" else "ITL"
        self.base_type = base
        prescan, width, height = _FULL[base]
        self.prescan = prescan
        self.data_width = max(4, round(width * scale))
        self.data_height = max(4, round(height * scale))
        self.overscan_width = _AMP_WIDTH - prescan - width
        self.amp_width = prescan + self.data_width + self.overscan_width
        self.amp_height = self.data_height + (_AMP_HEIGHT - height)

    def datasec(self) -> str:
        """``DATASEC`` (1-based, inclusive)."""
        return f"[{self.prescan + 1}:{self.prescan + self.data_width},1:{self.data_height}]"

    def detsec(self, amp_name: str) -> str:
        """``DETSEC`` of an amp (reversed ranges are flips)."""
        w, h = self.data_width, self.data_height
        k = int(amp_name[-1])
        flipped = f"{w * (k + 1)}:{w * k + 1}"
        if amp_name.startswith("Segment1"):
            return f"[{flipped},1:{h}]"
        x = f"{w * k + 1}:{w * (k + 1)}" if self.base_type == "E2V" else flipped  # E2V top row: no x flip
        return f"[{x},{2 * h}:{h + 1}]"


def geometry(detector_type: str = "E2V", scale: float = 1.0) -> Geometry:
    """The amp geometry for ``detector_type`` at ``scale``."""
    return Geometry(detector_type, scale)


def raw_file_name(obsid: str, raft: str, sensor: str, compress: bool = False) -> str:
    """``{OBSID}_{RAFTBAY}_{CCDSLOT}.fits`` (``.fits.fz`` when compressed)."""
    return f"{obsid}_{raft}_{sensor}.fits" + (".fz" if compress else "")


def _primary_header(
    *,
    obsid: str,
    raft: str,
    sensor: str,
    detector_type: str,
    imgtype: str,
    exptime: float,
    group_id: str | None,
    instrument: str,
    geom: Geometry,
    n_amps_expected: int,
) -> fits.Header:
    cam_code, controller, day_obs, seq = obsid.split("_")
    day = datetime.datetime.strptime(day_obs, "%Y%m%d")
    date_obs = (day + datetime.timedelta(hours=23, minutes=int(seq) % 60)).isoformat(timespec="milliseconds")
    header = fits.Header()
    header["DATE-OBS"] = (date_obs, "TAI")
    header["TIMESYS"] = "TAI"
    header["OBSID"] = obsid
    header["GROUPID"] = group_id or date_obs
    header["BUNIT"] = "adu"
    header["IMGTYPE"] = imgtype
    header["CAMCODE"] = cam_code
    header["CONTRLLR"] = controller
    header["DAYOBS"] = day_obs
    header["SEQNUM"] = int(seq)
    header["INSTRUME"] = instrument
    header["TELESCOP"] = "Simonyi Survey Telescope" if instrument != "LATISS" else "Rubin Auxiliary Telescope"
    header["CCD_MANU"] = detector_type.split("_")[0]
    header["CCD_TYPE"] = detector_type
    header["RAFTBAY"] = raft
    header["CCDSLOT"] = sensor
    header["LSST_NUM"] = f"{detector_type.split('_')[0]}-TEST-{raft}{sensor}"
    header["HEADVER"] = 2
    n_rows = 2 if n_amps_expected == 16 else 1
    header["DETSIZE"] = f"[1:{8 * geom.data_width},1:{n_rows * geom.data_height}]"
    header["FILTBAND"] = "r"
    header["FILTER"] = "r_57"
    header["EXPTIME"] = float(exptime)
    header["DARKTIME"] = float(exptime)
    return header


def write_raw(
    path: str | pathlib.Path,
    *,
    detector_type: str = "E2V",
    bias: float | Sequence[float] = 1000.0,
    gain: float = 1.5,
    read_noise_adu: float = 5.0,
    signal: float = 0.0,
    seed: int = 0,
    obsid: str = "MC_O_20251115_000001",
    raft: str = "R22",
    sensor: str = "S11",
    imgtype: str = "BIAS",
    exptime: float = 0.0,
    group_id: str | None = None,
    instrument: str = "LSSTCam",
    n_amps: int | None = None,
    missing_amps: Sequence[str] = (),
    scale: float = 1.0,
    saturated_pixels: int = 0,
    saturate: float | None = None,
    compress: bool = False,
) -> pathlib.Path:
    """Write a camera-format raw and return its path.

    Parameters
    ----------
    path : `str` or `pathlib.Path`
        File to write (a directory: the standard file name is used in it).
    detector_type : `str`
        ``E2V``, ``ITL``, ``ITL_G`` or ``ITL_WF`` (8 amps).
    bias : `float` or sequence of `float`
        Bias level in ADU (one per amp, in HDU order, if a sequence).
    gain : `float`
        e-/ADU, for the Poisson noise of ``signal``.
    read_noise_adu : `float`
        Gaussian read noise in ADU.
    signal : `float`
        Signal in ADU added to the data section (with Poisson noise).
    seed : `int`
        Random seed.
    obsid, raft, sensor, imgtype, exptime, group_id, instrument
        Primary header values (``group_id`` defaults to DATE-OBS).
    n_amps : `int`, optional
        Write only the first ``n_amps`` amps (default all: 16, or 8 for ITL_WF).
    missing_amps : sequence of `str`
        EXTNAMEs of amps to leave out.
    scale : `float`
        Linear factor on the data-section size, for quick tests.
    saturated_pixels : `int`
        Number of pixels per amp set to the saturation level, in the data section.
    saturate : `float`, optional
        Write this ``SATURATE`` in each amp header (default: none, i.e. 142857 applies).
    compress : `bool`
        Write RICE_1 tile-compressed amps (one tile per row), as the camera does.

    Returns
    -------
    path : `pathlib.Path`
    """
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / raw_file_name(obsid, raft, sensor, compress)
    path.parent.mkdir(parents=True, exist_ok=True)
    geom = Geometry(detector_type, scale)
    all_amps = AMP_NAMES[:8] if detector_type == "ITL_WF" else AMP_NAMES
    amps = [a for a in all_amps[: n_amps if n_amps is not None else len(all_amps)] if a not in missing_amps]
    biases = [float(bias)] * len(all_amps) if np.isscalar(bias) else [float(b) for b in bias]  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    x0, x1, y1 = geom.prescan, geom.prescan + geom.data_width, geom.data_height
    hdus: list[fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU | fits.BinTableHDU] = [
        fits.PrimaryHDU(
            header=_primary_header(
                obsid=obsid,
                raft=raft,
                sensor=sensor,
                detector_type=detector_type,
                imgtype=imgtype,
                exptime=exptime,
                group_id=group_id,
                instrument=instrument,
                geom=geom,
                n_amps_expected=len(all_amps),
            )
        )
    ]
    for name in amps:
        index = all_amps.index(name)
        pixels = rng.standard_normal((geom.amp_height, geom.amp_width), dtype=np.float32)
        pixels *= read_noise_adu
        pixels += biases[index]
        if signal:
            electrons = rng.poisson(signal * gain, size=(y1, x1 - x0))
            pixels[:y1, x0:x1] += electrons / gain
        data = np.rint(pixels).astype(np.int32)
        if saturated_pixels:
            level = int(saturate if saturate is not None else 142857)
            flat = data[:y1, x0:x1].reshape(-1)
            flat[rng.choice(flat.size, saturated_pixels, replace=False)] = level
            data[:y1, x0:x1] = flat.reshape(y1, x1 - x0)
        header = fits.Header()
        header["EXTNAME"] = name
        header["CHANNEL"] = index + 1
        header["DATASEC"] = geom.datasec()
        header["DETSEC"] = geom.detsec(name)
        header["DTV1"] = 0
        header["DTV2"] = 0
        if saturate is not None:
            header["SATURATE"] = float(saturate)
        if compress:
            hdus.append(fits.CompImageHDU(data, header, compression_type="RICE_1", tile_shape=(1, geom.amp_width)))
        else:
            hdus.append(fits.ImageHDU(data, header))
    reb = fits.BinTableHDU.from_columns([fits.Column(name="REBTEMP", format="E", array=np.array([-40.0]))])
    reb.header["EXTNAME"] = "REB_COND"
    config = fits.BinTableHDU.from_columns([fits.Column(name="SEQFILE", format="20A", array=np.array(["seq.seq"]))])
    config.header["EXTNAME"] = "CONFIG_COND"
    fits.HDUList([*hdus, reb, config]).writeto(path, overwrite=True)
    return path


def write_image(
    path: str | pathlib.Path,
    data: np.ndarray,
    header: dict[str, object] | None = None,
) -> pathlib.Path:
    """Write a single-HDU (already calibrated) image with optional primary header cards."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu = fits.PrimaryHDU(data)
    for key, value in (header or {}).items():
        hdu.header[key] = value
    hdu.writeto(path, overwrite=True)
    return path
