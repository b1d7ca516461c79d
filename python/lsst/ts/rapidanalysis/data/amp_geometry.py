"""The amplifier layout of the Rubin CCDs (obs_lsst), shared by the raw simulator and ISR.

Array orientation
-----------------
Everything here uses numpy order: an image ``a`` is indexed ``a[row, col]``, which is FITS
``[y, x]``; FITS sections such as ``DATASEC = '[11:522,1:2002]'`` are ``[x0:x1,y0:y1]``,
1-based and inclusive. `Box` holds 0-based ``x0, y0, width, height`` and `Box.slices` gives
``(rows, cols)`` slices.

Raw amplifier images
--------------------
A raw amp is 2048 rows x 576 columns (``ra-algorithms.md`` §6), in readout order (column 0 is the
first pixel read of each row, row 0 the first row read)::

    E2V: prescan 10 | data 512 | serial overscan 54     rows: data 2002 | parallel overscan 46
    ITL: prescan  3 | data 509 | serial overscan 64     rows: data 2000 | parallel overscan 48

The parallel overscan spans the data columns only; the serial overscan spans the data rows only.

Assembly: the DM stack's orientation, not the header's ``DETSEC``
------------------------------------------------------------------
Detector images here are oriented as the DM stack's cameraGeom assembles them (obs_lsst,
DM-36115): pixel ``x`` is the serial direction, pixel ``y`` the parallel one, and amp ``C1k``
(EXTNAME ``Segment1k``, HDU k+1, CHANNEL k+1) is in the **top** row, amp ``C0k`` (``Segment0k``,
HDU 16-k) in the bottom row. The camera's own ``CCD_SERPAR`` WCS (``CTYPE1B``/``CTYPE2B`` =
``CCD_S``/``CCD_P``, in every real amp header) says the same: ``Segment1k``'s first row read is
parallel coordinate 4000, at the top.

The header ``DETSEC`` the camera writes puts ``Segment1k`` in the *bottom* row instead: the DM
image is the ``DETSEC`` image flipped upside down. With ``w`` x ``h`` the data-section size and
``H = 2h`` the detector height (``h`` for ITL_WF)::

                 header DETSEC (what the camera writes)      DM placement (what we assemble)
    E2V C1k      [w(k+1):wk+1, 1:h]       x flipped          rows h..2h, x and y flipped
    E2V C0k      [wk+1:w(k+1), 2h:h+1]    y flipped          rows 0..h,  no flip
    ITL C1k      [w(k+1):wk+1, 1:h]       x flipped          rows h..2h, x and y flipped
    ITL C0k      [w(k+1):wk+1, 2h:h+1]    x and y flipped    rows 0..h,  x flipped

`dm_placement` turns any header ``DETSEC`` into the DM placement (a row ``y`` of the ``DETSEC``
image is row ``H - 1 - y`` of ours); `AmpGeometry.detsec` is what the camera writes. So the
assembled detector is 4004 x 4096 (rows x cols) for E2V, 4000 x 4072 for ITL and ITL_G, and
2000 x 4072 for ITL_WF (8 amps, C10-C17 only). ``DTV1/DTV2/DTM1_1/DTM2_2`` follow the IRAF
convention ``detector = DTM * image + DTV`` (1-based pixels) of the header ``DETSEC``, as the
camera writes them.

A ``scale`` below 1 shrinks the data section (for quick tests) while the prescan, the serial
overscan and the parallel overscan keep their real sizes (as ``tests/fits_factory.py`` does).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "AMP_HEIGHT",
    "AMP_WIDTH",
    "DETECTOR_TYPES",
    "AmpGeometry",
    "Box",
    "DetectorGeometry",
    "Section",
    "amp_names",
    "assemble",
    "assemble_hdus",
    "detector_rows_of",
    "disassemble",
    "dm_placement",
    "format_section",
    "get_geometry",
    "geometry_for_raw_shape",
    "parse_section",
    "section_box",
]

#: Columns and rows of a full-size raw amp (with prescan and overscans).
AMP_WIDTH = 576
AMP_HEIGHT = 2048
#: Physical detector types.
DETECTOR_TYPES = ("E2V", "ITL", "ITL_G", "ITL_WF")

# (prescan width, data width, data height) of the two CCD designs.
_DESIGN = {"E2V": (10, 512, 2002), "ITL": (3, 509, 2000)}
# Median gain (e-/ADU), read noise (e-) per physical type (ra-algorithms.md §6).
_ELECTRONICS = {"E2V": (1.48, 5.4), "ITL": (1.67, 6.4), "ITL_G": (1.46, 11.0), "ITL_WF": (1.25, 8.3)}
#: Default saturation (ADU) when a header has none (obs_lsst).
DEFAULT_SATURATION = 142857.0
_SECTION_RE = re.compile(r"^\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]$")


def _design(detector_type: str) -> str:
    if detector_type not in DETECTOR_TYPES:
        raise ValueError(f"unknown detector type {detector_type!r}; known: {', '.join(DETECTOR_TYPES)}")
    return "E2V" if detector_type == "E2V" else "ITL"


def amp_names(detector_type: str) -> tuple[str, ...]:
    """Amp names in HDU order: ``C10..C17`` then ``C07..C00`` (ITL_WF: ``C10..C17`` only)."""
    _design(detector_type)
    bottom = tuple(f"C1{k}" for k in range(8))
    return bottom if detector_type == "ITL_WF" else bottom + tuple(f"C0{k}" for k in range(7, -1, -1))


# Sections


@dataclasses.dataclass(frozen=True)
class Box:
    """A rectangle of pixels: 0-based ``x0`` (column), ``y0`` (row), ``width``, ``height``."""

    x0: int
    y0: int
    width: int
    height: int

    @property
    def x1(self) -> int:
        """One past the last column."""
        return self.x0 + self.width

    @property
    def y1(self) -> int:
        """One past the last row."""
        return self.y0 + self.height

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return (self.height, self.width)

    @property
    def slices(self) -> tuple[slice, slice]:
        """Numpy ``(rows, cols)`` slices."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def fits_section(self) -> str:
        """``[x0:x1,y0:y1]``, 1-based inclusive, unflipped."""
        return f"[{self.x0 + 1}:{self.x1},{self.y0 + 1}:{self.y1}]"


@dataclasses.dataclass(frozen=True)
class Section:
    """A parsed FITS section ``[x_start:x_end,y_start:y_end]`` (1-based, inclusive, order kept)."""

    x_start: int
    x_end: int
    y_start: int
    y_end: int

    @property
    def flip_x(self) -> bool:
        """The x range is reversed."""
        return self.x_end < self.x_start

    @property
    def flip_y(self) -> bool:
        """The y range is reversed."""
        return self.y_end < self.y_start

    @property
    def box(self) -> Box:
        """The rectangle covered (0-based), whatever the direction."""
        x0, x1 = sorted((self.x_start, self.x_end))
        y0, y1 = sorted((self.y_start, self.y_end))
        return Box(x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1)


def parse_section(text: str) -> Section:
    """Parse a FITS section ``[x0:x1,y0:y1]`` (1-based, inclusive; a reversed range is a flip).

    Raises
    ------
    ValueError
        If it is malformed or has a coordinate below 1.
    """
    match = _SECTION_RE.match(str(text).strip())
    if match is None:
        raise ValueError(f"section {text!r} is not of the form [x0:x1,y0:y1]")
    values = [int(g) for g in match.groups()]
    if min(values) < 1:
        raise ValueError(f"section {text!r} has a coordinate below 1")
    return Section(*values)


def section_box(text: str, shape: tuple[int, ...] | None = None) -> Box:
    """The 0-based `Box` of a FITS section; ValueError if it does not fit in ``shape`` (rows, cols)."""
    box = parse_section(text).box
    if shape is not None and (box.x1 > shape[-1] or box.y1 > shape[-2]):
        raise ValueError(f"section {text!r} does not fit in a {shape[-1]}x{shape[-2]} (x by y) image")
    return box


def format_section(x_start: int, x_end: int, y_start: int, y_end: int) -> str:
    """``[x_start:x_end,y_start:y_end]``."""
    return f"[{x_start}:{x_end},{y_start}:{y_end}]"


# Geometry


@dataclasses.dataclass(frozen=True)
class AmpGeometry:
    """One amplifier.

    Attributes
    ----------
    name : `str`
        ``C10`` .. ``C17``, ``C07`` .. ``C00``.
    extname : `str`
        ``Segment10`` .. ``Segment00``.
    hdu : `int`
        HDU index in the raw file (1-16).
    channel : `int`
        ``CHANNEL`` header value (1-16, equal to the HDU index).
    raw_shape : `tuple` [`int`, `int`]
        (rows, cols) of the raw amp image (2048 x 576 at full size).
    prescan, data, serial_overscan, parallel_overscan : `Box`
        Regions of the raw amp image. ``parallel_overscan`` spans the data columns.
    detector_box : `Box`
        Where the data section lands in the assembled detector image (DM orientation).
    flip_x, flip_y : `bool`
        Whether the data section is mirrored in x (columns) / y (rows) when assembled.
    detector_rows : `int`
        Rows of the assembled detector (for the header ``DETSEC``, which counts them upside down).
    gain : `float`
        Default gain (e-/ADU) of the physical type (median of the real amps).
    read_noise : `float`
        Default read noise (e-).
    """

    name: str
    extname: str
    hdu: int
    channel: int
    raw_shape: tuple[int, int]
    prescan: Box
    data: Box
    serial_overscan: Box
    parallel_overscan: Box
    detector_box: Box
    flip_x: bool
    flip_y: bool
    detector_rows: int
    gain: float
    read_noise: float

    @property
    def datasec(self) -> str:
        """``DATASEC``, e.g. ``[11:522,1:2002]``."""
        return self.data.fits_section()

    @property
    def detsec(self) -> str:
        """The header ``DETSEC`` the camera writes (reversed ranges for flips), e.g. ``[512:1,1:2002]``.

        Its rows count from the other end of the detector than ours (module docstring).
        """
        b = self.detector_box
        y0, y1 = self.detector_rows - b.y1, self.detector_rows - b.y0
        xs = (b.x1, b.x0 + 1) if self.flip_x else (b.x0 + 1, b.x1)
        ys = (y0 + 1, y1) if self.flip_y else (y1, y0 + 1)
        return format_section(*xs, *ys)

    def mosaic_cards(self) -> dict[str, int]:
        """``DTV1``, ``DTV2``, ``DTM1_1``, ``DTM2_2`` of the header ``DETSEC`` (IRAF: detector = DTM * image + DTV)."""
        detsec = parse_section(self.detsec)
        dx1, dy1 = self.data.x0 + 1, self.data.y0 + 1
        return {
            "DTV1": detsec.x_start + dx1 if detsec.flip_x else detsec.x_start - dx1,
            "DTV2": detsec.y_start + dy1 if detsec.flip_y else detsec.y_start - dy1,
            "DTM1_1": -1 if detsec.flip_x else 1,
            "DTM2_2": -1 if detsec.flip_y else 1,
        }

    def to_detector(self, data_section: np.ndarray) -> np.ndarray:
        """The data section (readout order) as oriented in the detector image (a view)."""
        return data_section[:: -1 if self.flip_y else 1, :: -1 if self.flip_x else 1]

    def from_detector(self, image: np.ndarray) -> np.ndarray:
        """This amp's data section in readout order, cut from an assembled image (a view)."""
        return self.to_detector(image[self.detector_box.slices])


@dataclasses.dataclass(frozen=True)
class DetectorGeometry:
    """The amps of one physical type (at some data-section size).

    Attributes
    ----------
    detector_type : `str`
        ``E2V``, ``ITL``, ``ITL_G`` or ``ITL_WF``.
    amps : `tuple` [`AmpGeometry`]
        In HDU order.
    data_width, data_height : `int`
        Size of an amp's data section.
    """

    detector_type: str
    amps: tuple[AmpGeometry, ...]
    data_width: int
    data_height: int

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the assembled image."""
        rows = 1 if len(self.amps) == 8 else 2
        return (rows * self.data_height, 8 * self.data_width)

    @property
    def detsize(self) -> str:
        """``DETSIZE``, e.g. ``[1:4096,1:4004]``."""
        rows, cols = self.shape
        return format_section(1, cols, 1, rows)

    @property
    def raw_shape(self) -> tuple[int, int]:
        """(rows, cols) of each raw amp."""
        return self.amps[0].raw_shape

    @property
    def is_full_size(self) -> bool:
        """Whether this is the real (unscaled) geometry."""
        return self.raw_shape == (AMP_HEIGHT, AMP_WIDTH)

    @functools.cached_property
    def by_name(self) -> dict[str, AmpGeometry]:
        """Amps by name (``C10``) and by EXTNAME (``Segment10``)."""
        out = {a.name: a for a in self.amps}
        out.update({a.extname: a for a in self.amps})
        return out

    def amp(self, name: str) -> AmpGeometry:
        """An amp by name or EXTNAME."""
        try:
            return self.by_name[name]
        except KeyError:
            raise ValueError(f"{self.detector_type} has no amp {name!r}") from None


def _build(detector_type: str, data_width: int, data_height: int) -> DetectorGeometry:
    design = _design(detector_type)
    prescan, full_width, full_height = _DESIGN[design]
    serial_os = AMP_WIDTH - prescan - full_width
    parallel_os = AMP_HEIGHT - full_height
    w, h = data_width, data_height
    raw_shape = (h + parallel_os, prescan + w + serial_os)
    gain, noise = _ELECTRONICS[detector_type]
    names = amp_names(detector_type)
    rows = h if len(names) == 8 else 2 * h
    amps = []
    for hdu, name in enumerate(names, start=1):
        k = int(name[2])
        # DM orientation (module docstring): C1k on top, read from the top edge; C0k below.
        top = name[1] == "1" and rows == 2 * h
        amps.append(
            AmpGeometry(
                name=name,
                extname=f"Segment{name[1:]}",
                hdu=hdu,
                channel=hdu,
                raw_shape=raw_shape,
                prescan=Box(0, 0, prescan, h),
                data=Box(prescan, 0, w, h),
                serial_overscan=Box(prescan + w, 0, serial_os, h),
                parallel_overscan=Box(prescan, h, w, parallel_os),
                detector_box=Box(w * k, h if top else 0, w, h),
                flip_x=not (name[1] == "0" and design == "E2V"),
                flip_y=name[1] == "1",
                detector_rows=rows,
                gain=gain,
                read_noise=noise,
            )
        )
    return DetectorGeometry(detector_type, tuple(amps), w, h)


@functools.cache
def get_geometry(detector_type: str, scale: float = 1.0) -> DetectorGeometry:
    """The amp geometry of a physical type.

    Parameters
    ----------
    detector_type : `str`
        ``E2V``, ``ITL``, ``ITL_G`` or ``ITL_WF``.
    scale : `float`
        Linear factor on the data-section size (``max(4, round(size * scale))``); the prescan and
        overscans keep their real sizes.
    """
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], not {scale}")
    _, full_width, full_height = _DESIGN[_design(detector_type)]
    return _build(detector_type, max(4, round(full_width * scale)), max(4, round(full_height * scale)))


def geometry_for_raw_shape(detector_type: str, raw_shape: tuple[int, ...]) -> DetectorGeometry:
    """The geometry whose raw amps have ``raw_shape`` (rows, cols), e.g. of a scaled test raw."""
    prescan, full_width, full_height = _DESIGN[_design(detector_type)]
    width = raw_shape[-1] - (AMP_WIDTH - full_width)
    height = raw_shape[-2] - (AMP_HEIGHT - full_height)
    if width < 1 or height < 1:
        raise ValueError(f"raw amp shape {tuple(raw_shape)} is too small for {detector_type}")
    return _build(detector_type, width, height)


# Assembly


def _as_geometry(detector_type: str | DetectorGeometry, scale: float) -> DetectorGeometry:
    return detector_type if isinstance(detector_type, DetectorGeometry) else get_geometry(detector_type, scale)


def assemble(
    amp_images: Mapping[str, np.ndarray],
    detector_type: str | DetectorGeometry,
    *,
    scale: float = 1.0,
    fill: float = np.nan,
) -> np.ndarray:
    """Place amp data sections in the detector image, flipping as ``DETSEC`` says.

    Parameters
    ----------
    amp_images : mapping [`str`, `numpy.ndarray`]
        By amp name (``C10``) or EXTNAME (``Segment10``): either the data section alone (readout
        order) or the whole raw amp, whose ``DATASEC`` is then cut out. Missing amps are left
        as ``fill``.
    detector_type : `str` or `DetectorGeometry`
        Physical type (or a geometry, e.g. from `geometry_for_raw_shape`).
    scale : `float`
        Data-section scale when ``detector_type`` is a name.
    fill : `float`
        Value of pixels of missing amps (integer inputs with a NaN fill give a float image).

    Returns
    -------
    image : `numpy.ndarray`
        The detector image, ``geometry.shape`` (e.g. 4004 x 4096 for E2V), dtype of the inputs
        (float64 if integers and ``fill`` is NaN).
    """
    geom = _as_geometry(detector_type, scale)
    if not amp_images:
        raise ValueError("no amp images to assemble")
    dtype = np.result_type(*[a.dtype for a in amp_images.values()])
    if np.isnan(fill) and not np.issubdtype(dtype, np.floating) and len(amp_images) < len(geom.amps):
        dtype = np.dtype(np.float64)
    image = np.full(geom.shape, fill, dtype=dtype) if len(amp_images) < len(geom.amps) else np.empty(geom.shape, dtype)
    for key, array in amp_images.items():
        amp = geom.amp(key)
        if array.shape == amp.data.shape:
            data = array
        elif array.shape == amp.raw_shape:
            data = array[amp.data.slices]
        else:
            raise ValueError(
                f"amp {key}: shape {array.shape} is neither the data section {amp.data.shape} nor the raw amp "
                f"{amp.raw_shape} of {geom.detector_type}"
            )
        image[amp.detector_box.slices] = amp.to_detector(data)
    return image


def disassemble(
    image: np.ndarray,
    detector_type: str | DetectorGeometry,
    *,
    scale: float = 1.0,
    key: str = "name",
) -> dict[str, np.ndarray]:
    """The inverse of `assemble`: each amp's data section, in readout order (copies).

    Parameters
    ----------
    image : `numpy.ndarray`
        Assembled detector image of shape ``geometry.shape``.
    detector_type : `str` or `DetectorGeometry`
        Physical type (or a geometry).
    scale : `float`
        Data-section scale when ``detector_type`` is a name.
    key : `str`
        ``name`` (``C10``) or ``extname`` (``Segment10``) for the keys.
    """
    geom = _as_geometry(detector_type, scale)
    if image.shape != geom.shape:
        raise ValueError(f"image shape {image.shape} is not the {geom.detector_type} detector shape {geom.shape}")
    if key not in ("name", "extname"):
        raise ValueError(f"key must be 'name' or 'extname', not {key!r}")
    return {getattr(a, key): np.ascontiguousarray(a.from_detector(image)) for a in geom.amps}


def detector_rows_of(detsecs: Iterable[Section], detsize: str | None = None) -> int:
    """Rows of a detector from its ``DETSIZE`` card, else from the union of its amps' ``DETSEC``."""
    if detsize:
        try:
            return parse_section(detsize).box.y1
        except ValueError:
            pass
    return max(d.box.y1 for d in detsecs)


def dm_placement(detsec: Section, detector_rows: int) -> tuple[Box, bool, bool]:
    """Where a header ``DETSEC`` puts an amp's data section in the DM-oriented detector image.

    Parameters
    ----------
    detsec : `Section`
        The amp's header ``DETSEC``.
    detector_rows : `int`
        Rows of the detector (`detector_rows_of`).

    Returns
    -------
    box : `Box`
        The rectangle it covers in our image.
    flip_x, flip_y : `bool`
        Whether the data section (readout order) is mirrored in x / y there.

    Raises
    ------
    ValueError
        If the ``DETSEC`` reaches past ``detector_rows``.
    """
    box = detsec.box
    if box.y1 > detector_rows:
        raise ValueError(f"DETSEC rows {box.y0 + 1}-{box.y1} are outside a detector of {detector_rows} rows")
    return Box(box.x0, detector_rows - box.y1, box.width, box.height), detsec.flip_x, not detsec.flip_y


def assemble_hdus(hdus: Iterable[Any], *, fill: float = np.nan) -> np.ndarray:
    """Assemble amps from their own ``DATASEC`` and ``DETSEC`` headers (any geometry), DM-oriented.

    Parameters
    ----------
    hdus : iterable
        Image HDUs (or objects with ``header`` and ``data``) with ``DATASEC`` and ``DETSEC``;
        others (the primary HDU, tables) are skipped. The detector size is the union of the
        ``DETSEC`` boxes (or the amps' ``DETSIZE``).
    fill : `float`
        Value of pixels no amp covers.

    Returns
    -------
    image : `numpy.ndarray`
        float64 detector image, oriented as the DM stack's cameraGeom (module docstring).
    """
    pieces = []
    detsize = None
    for hdu in hdus:
        header = getattr(hdu, "header", None)
        if header is None or "DATASEC" not in header or "DETSEC" not in header:
            continue
        data = hdu.data
        if data is None:
            continue
        datasec = section_box(header["DATASEC"], data.shape)
        detsec = parse_section(header["DETSEC"])
        if detsec.box.shape != datasec.shape:
            raise ValueError(f"DETSEC {header['DETSEC']} and DATASEC {header['DATASEC']} differ in size")
        detsize = detsize or header.get("DETSIZE")
        pieces.append((detsec, data[datasec.slices]))
    if not pieces:
        raise ValueError("no HDU with DATASEC and DETSEC to assemble")
    rows = detector_rows_of([d for d, _ in pieces], detsize)
    cols = max(d.box.x1 for d, _ in pieces)
    image = np.full((rows, cols), fill, dtype=np.float64)
    for detsec, data in pieces:
        box, flip_x, flip_y = dm_placement(detsec, rows)
        image[box.slices] = data[:: -1 if flip_y else 1, :: -1 if flip_x else 1]
    return image
