"""Write raws as fast as the disk allows: a camera's stream from a few pre-rendered templates.

Rendering a detector takes about a second, so a 189-detector LSSTCam visit cannot be rendered
every 34 s on a small machine. `StreamWriter` instead renders ``n_templates`` raws per physical
type (and image class and exposure time) once, keeps each one's amp HDUs and tables encoded as
FITS bytes, and for every new exposure writes each selected detector's file as a freshly made
primary header (the exposure's OBSID, GROUPID, DAYOBS, SEQNUM, IMGTYPE, EXPTIME, DATE-*/MJD-*,
pointing, RAFTBAY/CCDSLOT and the detector's own TAN WCS) followed by a template's bytes.

Each file is written under a temporary name in its directory and renamed into place, so a watcher
never sees half a file; its truth sidecar (``{file}.truth.json``) is renamed into place before it.

Truth of stream frames: the pixels are a template's, so the sidecar's ``template`` section is that
template's truth: its star positions (x, y) are where the stars are in the pixels, and their
RA/Dec are those of the *template's* pointing and detector (``template.pointing``,
``template.detector``), not of the WCS in this file's header. Amp gains and bias levels are the
template's too. Use `lsst.ts.rapidanalysis.sim.raw_writer.simulate_exposure` when the sky must
match the header.

Run ``python -m lsst.ts.rapidanalysis.sim.stream --instrument LSSTCam --visits 3`` to measure MB/s.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import pathlib
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.io import fits

from ..atomic_file import write_atomic
from ..data.amp_geometry import get_geometry
from ..data.camera import Detector, Instrument, get_instrument
from .focal_plane import Pointing, tai_iso, wcs_params, zenith_pointing
from .raw_writer import (
    amp_electronics,
    default_tai_start,
    detector_cards,
    electronics_truth,
    electrons_to_amps,
    hdulist_bytes,
    make_hdulist,
    parse_obsid,
    primary_header,
    raw_path,
)
from .scene import SceneConfig, image_class, render_detector
from .truth import truth_path

__all__ = ["StreamWriter", "make_obsid", "main", "TINY_SCALE"]

_CONTROLLERS = "OCHPQS"
_MB = 1e6
#: The smallest data-section scale: 4 x 4 data pixels per amp (`get_geometry`'s floor). Prescan
#: and overscans keep their real sizes, so a file keeps every amp HDU, the tables, the real cards
#: and names, and consistent DATASEC/DETSEC/DETSIZE: what the raw store checks (whole, every amp
#: there) is real. About 0.3 MB a file, 56 MB an LSSTCam visit instead of 14.3 GB: for benchmarks
#: of the dispatch (``test.cost``), not of the measurement.
TINY_SCALE = 1e-3


def make_obsid(instrument: Instrument | str, day_obs: int | str, seq_num: int, controller: str = "O") -> str:
    """``{CAMCODE}_{CONTRLLR}_{DAYOBS}_{SEQNUM:06d}``, e.g. ``MC_O_20251115_000226``."""
    instrument = get_instrument(instrument) if isinstance(instrument, str) else instrument
    day = str(day_obs)
    if len(day) != 8 or not day.isdigit():
        raise ValueError(f"day_obs must be YYYYMMDD, not {day_obs!r}")
    if controller not in _CONTROLLERS or len(controller) != 1:
        raise ValueError(f"controller must be one of {', '.join(_CONTROLLERS)}, not {controller!r}")
    if not 0 <= int(seq_num) <= 999_999:
        raise ValueError(f"seq_num must be in 0..999999, not {seq_num}")
    return f"{instrument.cam_code}_{controller}_{day}_{int(seq_num):06d}"


@dataclasses.dataclass
class _Template:
    """One pre-rendered raw: everything after the primary HDU, encoded, and its truth."""

    key: tuple[str, str, float]
    index: int
    detector: Detector
    data: bytes
    truth_json: str


class _HeaderTemplate:
    """A primary header as card images, some of which are replaced per detector (fast: no astropy Header)."""

    def __init__(self, header: fits.Header) -> None:
        self.images = [card.image for card in header.cards]
        self.index = {card.keyword: i for i, card in enumerate(header.cards)}
        self.comments = {card.keyword: card.comment for card in header.cards}

    def render(self, values: dict[str, Any], extra: list[tuple[str, Any, str]]) -> bytes:
        """The header bytes (END and padding included) with ``values`` replaced and ``extra`` cards added."""
        images = list(self.images)
        for key, value in values.items():
            images[self.index[key]] = fits.Card(key, value, self.comments.get(key, "")).image
        images += [fits.Card(key, value, comment).image for key, value, comment in extra]
        text = "".join(images) + "END".ljust(80)
        return text.ljust(-(-len(text) // 2880) * 2880).encode("ascii")


@dataclasses.dataclass
class _Stats:
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    exposures: int = 0

    def as_dict(self) -> dict[str, float]:
        return {
            "exposures": self.exposures,
            "files": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 4),
            "mb_per_s": round(self.bytes / _MB / self.seconds, 1) if self.seconds > 0 else float("nan"),
        }


class StreamWriter:
    """Write exposures of many detectors quickly, from pre-rendered templates.

    Parameters
    ----------
    instrument : `Instrument` or `str`
        The camera.
    root : `pathlib.Path`
        Raw-store root: files go to ``{root}/{instrument}/{dayObs}/{obsid}/``.
    detectors : sequence of `int`, optional
        Detector ids to write (default: every detector of the instrument).
    scene : `SceneConfig`, optional
        Scene of the templates.
    n_templates : `int`
        Templates per (physical type, image class, exposure time).
    compress : `bool`
        Write RICE_1-compressed ``.fits.fz`` files.
    seed : `int`
        Seed of the templates.
    scale : `float`
        Data-section scale (1 = full size), for tests.
    write_truth : `bool`
        Write ``{file}.truth.json`` beside each raw.
    n_threads : `int`
        Threads writing files in parallel.
    fsync : `bool`
        fsync each file before renaming it (durable, slower).
    eager : `bool`
        Render the OBJECT templates at ``scene.exp_time`` now (others are rendered on first use).
    """

    def __init__(
        self,
        instrument: Instrument | str,
        root: pathlib.Path | str,
        *,
        detectors: Sequence[int] | None = None,
        scene: SceneConfig | None = None,
        n_templates: int = 4,
        compress: bool = False,
        seed: int = 0,
        scale: float = 1.0,
        write_truth: bool = True,
        n_threads: int = 4,
        fsync: bool = False,
        eager: bool = True,
    ) -> None:
        self.instrument = get_instrument(instrument) if isinstance(instrument, str) else instrument
        self.root = pathlib.Path(root)
        ids = list(detectors) if detectors is not None else [d.id for d in self.instrument.detectors]
        if not ids:
            raise ValueError("no detectors selected")
        self.detectors: tuple[Detector, ...] = tuple(self.instrument.detector(int(i)) for i in ids)
        if n_templates < 1:
            raise ValueError(f"n_templates must be >= 1, not {n_templates}")
        self.scene = scene or SceneConfig()
        self.n_templates = int(n_templates)
        self.compress = bool(compress)
        self.seed = int(seed)
        self.scale = float(scale)
        self.write_truth = bool(write_truth)
        self.n_threads = max(1, int(n_threads))
        self.fsync = bool(fsync)
        self._templates: dict[tuple[str, str, float], list[_Template]] = {}
        self._lock = threading.Lock()
        self._exposures = 0
        self._last = _Stats()
        self._total = _Stats()
        self.template_seconds = 0.0
        self._executor = concurrent.futures.ThreadPoolExecutor(self.n_threads, thread_name_prefix="stream-writer")
        if eager:
            self.prepare("OBJECT", self.scene.exp_time)

    def close(self) -> None:
        """Stop the writer threads."""
        self._executor.shutdown(wait=True)

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    # Templates

    @property
    def physical_types(self) -> tuple[str, ...]:
        """Physical types of the selected detectors."""
        return tuple(sorted({d.physical_type for d in self.detectors}))

    def _key(self, physical_type: str, img_type: str, exp_time: float) -> tuple[str, str, float]:
        kind = image_class(img_type)
        return physical_type, kind, 0.0 if kind == "bias" else round(float(exp_time), 3)

    def prepare(self, img_type: str = "OBJECT", exp_time: float | None = None) -> float:
        """Render the templates of an image type and exposure time for every physical type; seconds taken."""
        exp_time = self.scene.exp_time if exp_time is None else float(exp_time)
        start = time.perf_counter()
        for physical_type in self.physical_types:
            self._templates_for(self._key(physical_type, img_type, exp_time), img_type)
        return time.perf_counter() - start

    def _templates_for(self, key: tuple[str, str, float], img_type: str) -> list[_Template]:
        with self._lock:
            found = self._templates.get(key)
            if found is not None:
                return found
            start = time.perf_counter()
            physical_type, kind, exp_time = key
            members = [d for d in self.detectors if d.physical_type == physical_type]
            templates = []
            for index in range(self.n_templates):
                detector = members[(index * len(members)) // self.n_templates]
                templates.append(self._render_template(key, index, detector, img_type))
            self._templates[key] = templates
            self.template_seconds += time.perf_counter() - start
            return templates

    def _render_template(self, key: tuple[str, str, float], index: int, detector: Detector, img_type: str) -> _Template:
        _, kind, exp_time = key
        seed = self.seed * 1000 + index
        tai = default_tai_start("20250101", index)
        pointing = zenith_pointing(tai, self.instrument)
        rendered = render_detector(
            self.instrument,
            detector,
            scene=self.scene,
            img_type=img_type,
            exp_time=exp_time,
            pointing=pointing,
            seed=seed,
            scale=self.scale,
        )
        geometry = rendered.geometry
        electronics = amp_electronics(self.instrument, detector, geometry)
        amps = electrons_to_amps(rendered.image, geometry, electronics, np.random.default_rng([seed, detector.id, 1]))
        header = fits.Header()
        hdul = make_hdulist(header, amps, geometry, electronics, compress=self.compress)
        encoded = hdulist_bytes(hdul)
        primary_size = len(hdul[0].header.tostring())
        data = encoded[primary_size:]
        if not data.startswith(b"XTENSION"):
            raise RuntimeError("template encoding: the first extension does not follow the primary header")
        truth = rendered.truth
        truth["amps"] = electronics_truth(electronics, 1.5)
        truth["template_index"] = index
        truth["tai_start"] = tai
        return _Template(key, index, detector, data, json.dumps(truth, separators=(",", ":")))

    # Writing

    def write_exposure(
        self,
        obsid: str,
        *,
        exp_time: float,
        img_type: str = "OBJECT",
        group_id: str | None = None,
        tai_start: float | None = None,
        pointing: dict | Pointing | None = None,
        extra_headers: dict | None = None,
    ) -> dict[int, pathlib.Path]:
        """Write every selected detector's raw of one exposure.

        Parameters
        ----------
        obsid : `str`
            Image name (see `make_obsid`).
        exp_time : `float`
            Seconds (``EXPTIME``; templates are rendered for it on first use).
        img_type : `str`
            ``IMGTYPE``; BIAS, DARK and FLAT get their own templates, everything else sky ones.
        group_id : `str`, optional
            ``GROUPID`` (default DATE-BEG).
        tai_start : `float`, optional
            TAI unix seconds of the shutter opening (default from the obsid).
        pointing : `dict` or `Pointing`, optional
            ``{"ra", "dec", "rot_pa"}`` (degrees); default a little east of the zenith.
        extra_headers : `dict`, optional
            Extra primary-header cards.

        Returns
        -------
        paths : `dict` [`int`, `pathlib.Path`]
            The files written, by detector id.
        """
        _, day_obs, seq_num = parse_obsid(obsid, self.instrument)
        tai = float(tai_start) if tai_start is not None else default_tai_start(day_obs, seq_num)
        point = Pointing.from_any(pointing, zenith_pointing(tai, self.instrument))
        group = group_id or tai_iso(tai)
        exp_time = 0.0 if image_class(img_type) == "bias" else float(exp_time)
        templates = {
            t: self._templates_for(self._key(t, img_type, exp_time), img_type)
            for t in {d.physical_type for d in self.detectors}
        }
        counter = self._exposures
        self._exposures += 1
        start = time.perf_counter()
        bases = {}
        for detector in self.detectors:
            if detector.physical_type not in bases:
                geometry = get_geometry(detector.physical_type, self.scale)
                header = primary_header(
                    self.instrument,
                    detector,
                    geometry,
                    obsid=obsid,
                    img_type=img_type,
                    exp_time=exp_time,
                    tai_start=tai,
                    pointing=point,
                    group_id=group,
                    band=self.scene.band,
                    extra=extra_headers,
                )
                bases[detector.physical_type] = _HeaderTemplate(fits.PrimaryHDU(header=header).header)
        exposure = {
            "obsid": obsid,
            "img_type": img_type.upper(),
            "exp_time": exp_time,
            "tai_start": tai,
            "group_id": group,
            "pointing": point.as_dict(),
        }
        jobs = []
        for detector in self.detectors:
            choices = templates[detector.physical_type]
            template = choices[(detector.id + counter) % len(choices)]
            jobs.append(
                self._executor.submit(
                    self._write_one, detector, template, bases[detector.physical_type], point, exposure
                )
            )
        paths: dict[int, pathlib.Path] = {}
        n_bytes = 0
        for detector, job in zip(self.detectors, jobs, strict=True):
            path, size = job.result()
            paths[detector.id] = path
            n_bytes += size
        elapsed = time.perf_counter() - start
        self._last = _Stats(len(paths), n_bytes, elapsed, 1)
        self._total = _Stats(
            self._total.files + len(paths),
            self._total.bytes + n_bytes,
            self._total.seconds + elapsed,
            self._total.exposures + 1,
        )
        return paths

    def _write_one(
        self, detector: Detector, template: _Template, base: _HeaderTemplate, point: Pointing, exposure: dict
    ) -> tuple[pathlib.Path, int]:
        geometry = get_geometry(detector.physical_type, self.scale)
        obsid = exposure["obsid"]
        values: dict[str, Any] = detector_cards(self.instrument, detector, obsid)
        if "CRPIX1" in base.index:  # a camera that writes a WCS (LATISS)
            crpix, cd = wcs_params(self.instrument, detector, geometry, point)
            values.update(
                CRPIX1=crpix[0],
                CRPIX2=crpix[1],
                CD1_1=float(cd[0, 0]),
                CD1_2=float(cd[0, 1]),
                CD2_1=float(cd[1, 0]),
                CD2_2=float(cd[1, 1]),
            )
        path = raw_path(self.root, self.instrument, obsid, detector, self.compress)
        path.parent.mkdir(parents=True, exist_ok=True)
        extra: list[tuple[str, Any, str]] = [
            ("SIMTEMPL", template.index, "stream template index (pixels from a template)")
        ]
        if self.write_truth:
            truth_file = truth_path(path)
            extra.append(("SIMTRUTH", truth_file.name, "truth sidecar"))
            info = {
                **exposure,
                "file": path.name,
                "detector": {"id": detector.id, "name": detector.name, "physical_type": detector.physical_type},
                "from_template": True,
                "note": (
                    "Pixels are those of 'template': its stars' x, y are where they are in these pixels, but "
                    "their RA/Dec belong to the template's pointing and detector, not to this header's WCS; "
                    "gains and bias levels are the template's."
                ),
            }
            text = json.dumps(info, separators=(",", ":"))
            self._write_atomic(truth_file, [f'{text[:-1]},"template":{template.truth_json}}}'.encode()])
        primary = base.render(values, extra)
        self._write_atomic(path, [primary, template.data])
        return path, len(primary) + len(template.data)

    def _write_atomic(self, path: pathlib.Path, chunks: list[bytes]) -> None:
        # The shared writer takes the header and the template's pixels as separate chunks, so the
        # (tens of MB) pixel buffer is written as it is, never copied into one bytes object.
        write_atomic(path, chunks, fsync=self.fsync)

    def throughput(self, cumulative: bool = False) -> dict[str, float]:
        """Files, bytes, seconds and MB/s (1 MB = 1e6 B) of the last exposure (or all of them)."""
        return (self._total if cumulative else self._last).as_dict()


def _free_bytes(path: pathlib.Path) -> int:
    return shutil.disk_usage(path).free


def main(argv: Sequence[str] | None = None) -> int:
    """Measure the stream's write speed: ``--visits`` exposures of every selected detector."""
    parser = argparse.ArgumentParser(
        prog="python -m lsst.ts.rapidanalysis.sim.stream",
        description="Write simulated raw visits from templates and print the MB/s.",
    )
    parser.add_argument("--instrument", default="LSSTCam", help="LATISS, LSSTComCam or LSSTCam")
    parser.add_argument("--visits", type=int, default=3, help="exposures to write")
    parser.add_argument("--root", type=pathlib.Path, default=None, help="raw-store root (default: a temporary dir)")
    parser.add_argument("--keep", action="store_true", help="keep the files (default: delete each visit)")
    parser.add_argument("--all-detectors", action="store_true", help="also guider and wavefront sensors")
    parser.add_argument("--compress", action="store_true", help="RICE_1-compressed .fits.fz")
    parser.add_argument("--n-templates", type=int, default=4)
    parser.add_argument("--exp-time", type=float, default=15.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--fsync", action="store_true", help="fsync every file (durable throughput)")
    parser.add_argument("--no-truth", action="store_true", help="do not write truth sidecars")
    parser.add_argument("--scale", type=float, default=1.0, help="data-section scale (1 = full size)")
    parser.add_argument(
        "--tiny", action="store_true", help=f"smallest raws: 4 x 4 data pixels per amp (--scale {TINY_SCALE:g})"
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.scale = TINY_SCALE

    instrument = get_instrument(args.instrument)
    detectors = instrument.detectors if args.all_detectors else instrument.science_detectors
    owned = args.root is None
    root = pathlib.Path(tempfile.mkdtemp(prefix="ra_stream_")) if owned else args.root
    root.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        writer = StreamWriter(
            instrument,
            root,
            detectors=[d.id for d in detectors],
            scene=SceneConfig(exp_time=args.exp_time),
            n_templates=args.n_templates,
            compress=args.compress,
            scale=args.scale,
            write_truth=not args.no_truth,
            n_threads=args.threads,
            fsync=args.fsync,
        )
        print(
            f"{instrument.name}: {len(detectors)} detectors, {args.n_templates} templates per type "
            f"({', '.join(writer.physical_types)}) rendered in {time.perf_counter() - start:.1f} s; root {root}"
        )
        with writer:
            for visit in range(args.visits):
                obsid = make_obsid(instrument, 20251115, visit + 1)
                need = len(detectors) * 80 * _MB
                if _free_bytes(root) < 1.2 * need:
                    print(f"not enough free disk for another visit ({need / 1e9:.1f} GB)", file=sys.stderr)
                    return 1
                paths = writer.write_exposure(obsid, exp_time=args.exp_time)
                stats = writer.throughput()
                print(
                    f"visit {visit + 1} {obsid}: {stats['files']} files, {stats['bytes'] / 1e9:.2f} GB in "
                    f"{stats['seconds']:.2f} s = {stats['mb_per_s']:.0f} MB/s"
                )
                if not args.keep:
                    shutil.rmtree(next(iter(paths.values())).parent)
            total = writer.throughput(cumulative=True)
            print(
                f"all: {total['files']} files, {total['bytes'] / 1e9:.2f} GB in {total['seconds']:.2f} s = "
                f"{total['mb_per_s']:.0f} MB/s"
            )
    finally:
        if owned and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
