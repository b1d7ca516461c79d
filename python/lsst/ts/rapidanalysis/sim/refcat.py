"""A simulated sky of stars, and reference catalogs cut from it.

The sky is fixed by a seed: it is divided into cells (declination bands ``cell_deg`` high, each
cut into RA cells about as wide), and each cell's stars (a Poisson number for the density, uniform
over the cell's area, magnitudes from ``dN/dm ∝ 10^(slope m)`` between ``mag_bright`` and
``mag_faint``) are drawn from a generator seeded by ``(seed, band, cell)``. So any query of the
same region gives the same stars, whatever the pointing, and dithered exposures share stars.

A reference catalog is every star of the region down to ``mag_faint`` (well below what an
exposure detects), so zero points and completeness can be measured against it. Magnitudes are
in whatever band the exposure uses (one magnitude per star).
"""

from __future__ import annotations

import dataclasses
import io
import math
import pathlib
from typing import Any

import numpy as np
from astropy.table import Table

from ..atomic_file import write_atomic

__all__ = ["StarField", "reference_catalog", "field_reference_catalog", "write_refcat", "angular_distance_deg"]

_ID_BAND = 1 << 40
_ID_CELL = 1 << 20


@dataclasses.dataclass(frozen=True)
class StarField:
    """The simulated sky.

    Attributes
    ----------
    density : `float`
        Stars per square degree between ``mag_bright`` and ``mag_faint``.
    mag_bright, mag_faint : `float`
        Magnitude range.
    slope : `float`
        ``dN/dm ∝ 10^(slope m)`` (0.3 is typical of high-latitude star counts).
    seed : `int`
        The sky's seed.
    cell_deg : `float`
        Cell size (degrees).
    """

    density: float = 20000.0
    mag_bright: float = 16.0
    mag_faint: float = 25.0
    slope: float = 0.3
    seed: int = 0
    cell_deg: float = 0.1

    def __post_init__(self) -> None:
        if self.density < 0:
            raise ValueError(f"density must be >= 0, not {self.density}")
        if not self.mag_faint > self.mag_bright:
            raise ValueError(f"mag_faint ({self.mag_faint}) must be fainter than mag_bright ({self.mag_bright})")
        if not 0.001 <= self.cell_deg <= 10:
            raise ValueError(f"cell_deg must be in [0.001, 10], not {self.cell_deg}")

    def magnitudes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` magnitudes drawn from the magnitude distribution."""
        u = rng.random(n)
        if abs(self.slope) < 1e-9:
            return self.mag_bright + u * (self.mag_faint - self.mag_bright)
        a, b = 10 ** (self.slope * self.mag_bright), 10 ** (self.slope * self.mag_faint)
        return np.log10(a + u * (b - a)) / self.slope

    def _n_bands(self) -> int:
        return max(1, round(180.0 / self.cell_deg))

    def _band_edges(self, band: int) -> tuple[float, float]:
        height = 180.0 / self._n_bands()
        return -90.0 + band * height, -90.0 + (band + 1) * height

    def _n_ra(self, band: int) -> int:
        d0, d1 = self._band_edges(band)
        widest = math.cos(math.radians(min(abs(d0), abs(d1)))) if d0 * d1 > 0 else 1.0
        return max(1, min(_ID_CELL - 1, math.floor(360.0 * widest / (180.0 / self._n_bands()))))

    def _cell(self, band: int, cell: int) -> dict[str, np.ndarray]:
        d0, d1 = self._band_edges(band)
        n_ra = self._n_ra(band)
        width = 360.0 / n_ra
        s0, s1 = math.sin(math.radians(d0)), math.sin(math.radians(d1))
        area = math.radians(width) * (s1 - s0) * (180.0 / math.pi) ** 2
        rng = np.random.default_rng([self.seed, band, cell])
        n = int(rng.poisson(self.density * area))
        ra = (cell + rng.random(n)) * width
        dec = np.degrees(np.arcsin(s0 + rng.random(n) * (s1 - s0)))
        mag = self.magnitudes(rng, n)
        ids = band * _ID_BAND + cell * _ID_CELL + np.arange(n, dtype=np.int64)
        return {"id": ids, "ra": ra, "dec": dec, "mag": mag}

    def stars_in_cone(self, ra: float, dec: float, radius: float) -> dict[str, np.ndarray]:
        """Every star within ``radius`` degrees of (``ra``, ``dec``): columns id, ra, dec, mag."""
        n_bands = self._n_bands()
        height = 180.0 / n_bands
        lo = max(0, math.floor((dec - radius + 90.0) / height))
        hi = min(n_bands - 1, math.floor((dec + radius + 90.0) / height))
        parts = []
        for band in range(lo, hi + 1):
            d0, d1 = self._band_edges(band)
            n_ra = self._n_ra(band)
            width = 360.0 / n_ra
            max_abs = max(abs(d0), abs(d1))
            cos_dec = math.cos(math.radians(min(89.999, max_abs)))
            half = radius / cos_dec if radius / cos_dec < 180 and max_abs < 89.9 else 180.0
            cells: range | list[int]
            if half >= 180.0:
                cells = range(n_ra)
            else:
                first = math.floor(((ra - half) % 360.0) / width)
                count = math.floor(2 * half / width) + 2
                cells = sorted({(first + i) % n_ra for i in range(count)})
            for cell in cells:
                parts.append(self._cell(band, cell))
        if not parts:
            return _empty()
        stars = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        keep = angular_distance_deg(ra, dec, stars["ra"], stars["dec"]) <= radius
        return {key: value[keep] for key, value in stars.items()}


def _empty() -> dict[str, np.ndarray]:
    return {"id": np.zeros(0, np.int64), "ra": np.zeros(0), "dec": np.zeros(0), "mag": np.zeros(0)}


def angular_distance_deg(ra0: float, dec0: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """Great-circle distance (deg), haversine form."""
    ra0, dec0 = math.radians(ra0), math.radians(dec0)
    ra_r, dec_r = np.radians(ra), np.radians(dec)
    h = np.sin((dec_r - dec0) / 2) ** 2 + math.cos(dec0) * np.cos(dec_r) * np.sin((ra_r - ra0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))))


def reference_catalog(
    field: StarField,
    ra: float,
    dec: float,
    radius: float,
    *,
    band: str = "r",
    meta: dict | None = None,
) -> Table:
    """The reference catalog of a cone: columns ``id``, ``ra``, ``dec`` (deg), ``{band}_mag``.

    Parameters
    ----------
    field : `StarField`
        The sky.
    ra, dec, radius : `float`
        Cone centre and radius (degrees).
    band : `str`
        Name of the band the magnitudes are in.
    meta : `dict`, optional
        Extra metadata for the table.
    """
    stars = field.stars_in_cone(ra, dec, radius)
    order = np.argsort(stars["mag"], kind="stable")
    table = Table(
        {
            "id": stars["id"][order],
            "ra": stars["ra"][order],
            "dec": stars["dec"][order],
            f"{band}_mag": stars["mag"][order],
        }
    )
    table["ra"].unit = "deg"
    table["dec"].unit = "deg"
    table[f"{band}_mag"].unit = "mag"
    table.meta.update(
        {
            "band": band,
            "center_ra": float(ra),
            "center_dec": float(dec),
            "radius_deg": float(radius),
            "star_field": dataclasses.asdict(field),
            "note": "Every simulated star in the cone down to star_field.mag_faint (fainter than detection).",
        }
    )
    if meta:
        table.meta.update(meta)
    return table


def field_reference_catalog(
    instrument: Any,
    pointing: Any,
    scene: Any = None,
    *,
    radius: float | None = None,
) -> Table:
    """The reference catalog of a whole pointing: every star of the scene's sky in the instrument's field.

    Parameters
    ----------
    instrument : `lsst.ts.rapidanalysis.data.camera.Instrument` or `str`
        The instrument (sets the field radius).
    pointing : `lsst.ts.rapidanalysis.sim.focal_plane.Pointing` or `dict`
        Boresight ``ra``, ``dec`` (degrees).
    scene : `lsst.ts.rapidanalysis.sim.scene.SceneConfig`, optional
        The sky (density, magnitudes, seed) and band.
    radius : `float`, optional
        Cone radius (degrees); default the field radius plus 1 arcmin.
    """
    from .focal_plane import Pointing, get_optics
    from .scene import DEFAULT_POINTING, SceneConfig

    scene = scene or SceneConfig()
    point = Pointing.from_any(pointing, DEFAULT_POINTING)
    if radius is None:
        optics = get_optics(instrument)
        radius = optics.field_radius_mm * optics.plate_scale / 3600.0 + 1 / 60.0
    name = instrument if isinstance(instrument, str) else instrument.name
    return reference_catalog(
        scene.star_field(), point.ra, point.dec, radius, band=scene.band, meta={"instrument": name}
    )


def write_refcat(table: Table, path: pathlib.Path | str) -> pathlib.Path:
    """Write a reference catalog as ECSV (atomically: a temporary name, then a rename)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    table.write(text, format="ascii.ecsv")
    write_atomic(path, text.getvalue().encode())
    return path
