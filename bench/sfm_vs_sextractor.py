"""Single-frame measurement (``sfm``) beside SExtractor on the same pixels: speed and accuracy against truth.

Measures, on this machine, in one run, for each scenario on a full-size LSSTCam detector
(R22_S11, E2V 4004 x 4096): seeings 0.5, 0.8, 1.2 and 2.0 arcsec (the default star field),
a crowded field (20 000 stars placed at random in the detector) and a bright, moonlit sky
(20 x the default sky rate), all 15 s r-band exposures with cosmic rays and saturated stars:

1. the raw is simulated once (``sim.raw_writer.simulate_detector``, fixed seed) with its truth;
   with ``--workdir`` it is kept there and reused by later runs (one folder per scenario);
2. **ours**: ``measure_detector`` (ISR, background, detection, adaptive moments, aperture
   photometry, PSF model, photometric calibration, metrics) is run once untimed (its catalogue
   is the one scored), and our post-ISR image is written for SExtractor;
3. **SExtractor** (Debian's ``source-extractor`` 2.25, single-threaded) on *our post-ISR image*,
   a float32 primary-HDU FITS file with ``GAIN = 1`` (the pixels are electrons) and
   ``SATURATE`` = the smallest amp's saturation in electrons: the default configuration
   (``source-extractor -d``: DETECT_THRESH/ANALYSIS_THRESH 1.5, DETECT_MINAREA 5, FILTER Y with
   ``default.conv``, deblending 32/0.005, cleaning) but for BACK_SIZE 128 (our background mesh),
   QUIET, larger MEMORY_OBJSTACK/PIXSTACK (so the crowded field cannot overflow the object
   stack; this changes no measurement) and an ASCII_HEAD catalogue of XWIN/YWIN, X/Y_IMAGE,
   FLUX_AUTO/FLUXERR_AUTO, FLUX_APER/FLUXERR_APER, FWHM_IMAGE, X2WIN/Y2WIN/XYWIN, FLAGS,
   FLUX_RADIUS; run once untimed (the catalogue scored);
4. then ``--repeat`` rounds, each timing ours then SExtractor back to back (so both see the same
   load on a shared machine): ours' wall time (``time.perf_counter``), CPU time
   (``time.process_time``: all threads of this process) and ISR time (``timings['isr']``), and the
   CPU time of ``load_image`` (the ISR alone) run once more; SExtractor's wall time around the
   subprocess and the child's CPU time (user + system, ``resource.getrusage(RUSAGE_CHILDREN)``
   deltas). Seconds shown are medians; each ratio is the median over rounds of that round's
   ours/SE. "noISR" is ours less its ISR (wall: less ``timings['isr']``; CPU: less the ISR-only
   run's CPU time) over SE.

The comparison is tilted in SExtractor's favour, on purpose: it gets the already-ISR'd image
(its time excludes reading a 16-amp raw and ISR), and does no PSF model, no reference-catalogue
match, no metrics; ours includes all of these. The ratio "ours w/o ISR / SE" takes the ISR out
of ours. Both read their input from the page cache (the files were just written or read).

Accuracy, both catalogues scored against the truth the same way:

* expected S/N of a truth star: S / √(S + A (sky·response + dark + RN²)), S = flux_e·response,
  A = the PSF's noise-equivalent area (truth ``psf.area_px``), RN the median amp read noise;
* **completeness** at S/N ≥ 10 and ≥ 50: the fraction of in-image, unsaturated truth stars of that
  expected S/N with a detection within 1.5 px;
* **spurious**: the fraction of detections with no truth star (any: faint, saturated, just off
  the edge) within 2 px and no cosmic-ray track within 2 px. The wings, bleed trails and
  deblended pieces of saturated stars are *not* excused: they count as spurious;
* **centroid RMS**: per-axis RMS of (measured − true) position of stars of expected S/N ≥ 50,
  unsaturated, matched within 1.5 px (ours: catalogue x, y; SE: XWIN/YWIN − 1, FITS being 1-based);
* **FWHM error**, each against the truth of what it estimates: ours ``psfFwhm`` against the
  adaptive-moment FWHM of the pixelised PSF (``psf.fwhm_from_sigma_arcsec``); SE's median
  FWHM_IMAGE of matched clean (FLAGS == 0) stars with SE S/N (FLUX_AUTO/FLUXERR_AUTO) 50-1000,
  times the pixel scale, against the optical FWHM (``psf.fwhm_arcsec``); and SE's windowed-moment
  FWHM, 2.3548 (X2WIN·Y2WIN − XYWIN²)^¼ × scale (median over the same stars), against
  ``fwhm_from_sigma_arcsec``. SE's windowed moments are the moments *under* a Gaussian window of
  about the PSF's own size (from FLUX_RADIUS), not adaptive moments corrected for the window: for
  a Gaussian that halves them, so expect about −25 to −30 % there — a difference of definition,
  not an SE error.

Our detections whose adaptive centroid drifted off the peak (a neighbour, noise) are placed at the
parabola-refined peak and flagged ``drifted``; they are scored like any other detection.

The machine is shared (2 cores, other processes): hence medians and ratios within one run.
Without ``source-extractor`` on PATH, ours still runs and the SE columns are blank.

Usage: ``python bench/sfm_vs_sextractor.py [--workdir DIR] [--repeat 3] [--scenarios seeing0.8,crowded] [--quick]``
"""

from __future__ import annotations

import os

# ruff: noqa: E402 (the imports below must follow the thread settings)
# One thread for numpy's BLAS, as in a Dask worker (distributed sets these for its workers), so
# that our CPU time is that of a single-threaded task like SExtractor's. Set before numpy loads.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse
import hashlib
import json
import math
import pathlib
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Any

import numpy as np
import scipy.spatial
from astropy.io import fits

from lsst.ts.rapidanalysis.pipelines.isr import load_image
from lsst.ts.rapidanalysis.pipelines.sfm import FWHM_PER_SIGMA, SfmConfig, SfmMeasurement, measure_detector
from lsst.ts.rapidanalysis.sim.raw_writer import simulate_detector
from lsst.ts.rapidanalysis.sim.scene import SceneConfig
from lsst.ts.rapidanalysis.sim.truth import read_truth, stars_table

INSTRUMENT = "LSSTCam"
DETECTOR = 94  # R22_S11, E2V 4004 x 4096
DEFAULT_SKY_RATE = 33.0  # LSSTCam's default sky, e-/s/pixel
#: Scenario name → (SceneConfig overrides, obsid sequence number).
SCENARIOS: dict[str, tuple[dict[str, Any], int]] = {
    "seeing0.5": ({"seeing_fwhm": 0.5}, 101),
    "seeing0.8": ({"seeing_fwhm": 0.8}, 102),
    "seeing1.2": ({"seeing_fwhm": 1.2}, 103),
    "seeing2.0": ({"seeing_fwhm": 2.0}, 104),
    "crowded": ({"seeing_fwhm": 0.8, "n_stars": 20_000}, 105),
    "moon": ({"seeing_fwhm": 0.8, "sky_rate": 20 * DEFAULT_SKY_RATE}, 106),
}
QUICK_SCENARIOS = ("seeing0.8", "crowded")
SEED = 5
MATCH_RADIUS = 1.5  # px: a truth star is detected
SPURIOUS_RADIUS = 2.0  # px: a detection is real
FWHM_TARGET = 2.0  # per cent
SE_EXE = "source-extractor"
SE_PARAMS = (
    "XWIN_IMAGE YWIN_IMAGE X_IMAGE Y_IMAGE FLUX_AUTO FLUXERR_AUTO FLUX_APER FLUXERR_APER FWHM_IMAGE "
    "X2WIN_IMAGE Y2WIN_IMAGE XYWIN_IMAGE FLAGS FLUX_RADIUS"
).split()
SE_SHARE = pathlib.Path("/usr/share/source-extractor")


# Simulation


def simulate(name: str, workdir: pathlib.Path) -> pathlib.Path:
    """The scenario's raw (simulated once; reused when its folder already holds it)."""
    overrides, seq = SCENARIOS[name]
    key = hashlib.sha1(json.dumps([overrides, seq, SEED, DETECTOR], sort_keys=True).encode()).hexdigest()[:8]
    root = workdir / f"{name}-{key}"
    done = root / "raw_path.txt"
    if done.exists():
        path = pathlib.Path(done.read_text().strip())
        if path.exists() and pathlib.Path(f"{path}.truth.json").exists():
            return path
    root.mkdir(parents=True, exist_ok=True)
    obsid = f"MC_O_20251115_{seq:06d}"
    raw = simulate_detector(INSTRUMENT, DETECTOR, root, obsid, scene=SceneConfig(**overrides), seed=SEED)
    done.write_text(str(raw.path))
    return raw.path


# Running ours and SExtractor


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_ours(path: pathlib.Path, config: SfmConfig) -> dict[str, float]:
    """One timed ``measure_detector`` and one timed ``load_image`` (the ISR alone, for its CPU time)."""
    c0, t0 = time.process_time(), time.perf_counter()
    measurement = measure_detector(path, config)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    c0 = time.process_time()
    load_image(path, config.isr_settings())
    isr_cpu = time.process_time() - c0
    isr = measurement.timings["isr"]
    return {"wall": wall, "cpu": cpu, "isr": isr, "wall_no_isr": wall - isr, "cpu_no_isr": max(cpu - isr_cpu, 0.0)}


def write_post_isr(measurement: SfmMeasurement, truth: dict[str, Any], path: pathlib.Path) -> int:
    """Our post-ISR image as a float32 primary HDU (NaN → 0: SExtractor has no NaN handling); NaN count."""
    image = measurement.isr.image.astype(np.float32, copy=True)
    bad = ~np.isfinite(image)
    image[bad] = 0.0
    header = fits.Header()
    header["BUNIT"] = "electron"
    header["GAIN"] = (1.0, "e-/ADU: the pixels are electrons")
    saturation = min(a["saturate_adu"] * a["gain"] for a in truth["amps"].values()) if truth.get("amps") else 2e5
    header["SATURATE"] = (float(saturation), "e-: smallest amp saturation")
    fits.PrimaryHDU(image, header).writeto(path, overwrite=True)
    return int(bad.sum())


def se_config(folder: pathlib.Path) -> pathlib.Path:
    """The default configuration with our changes (see the module docstring), in ``folder``."""
    default = subprocess.run([SE_EXE, "-d"], capture_output=True, text=True, check=True).stdout
    (folder / "bench.param").write_text("\n".join(SE_PARAMS) + "\n")
    changes = {
        "CATALOG_TYPE": "ASCII_HEAD",
        "PARAMETERS_NAME": str(folder / "bench.param"),
        "FILTER": "Y",
        "FILTER_NAME": str(SE_SHARE / "default.conv"),
        "STARNNW_NAME": str(SE_SHARE / "default.nnw"),
        "BACK_SIZE": "128",
        "VERBOSE_TYPE": "QUIET",
        "MEMORY_OBJSTACK": "60000",
        "MEMORY_PIXSTACK": "3000000",
    }
    lines = []
    for line in default.splitlines():
        words = line.split()
        if words and words[0] in changes:
            line = f"{words[0]:16s} {changes.pop(words[0])}"
        lines.append(line)
    lines.extend(f"{k:16s} {v}" for k, v in changes.items())
    path = folder / "bench.sex"
    path.write_text("\n".join(lines) + "\n")
    return path


def se_command(image: pathlib.Path, config: pathlib.Path) -> list[str]:
    catalog = image.with_suffix(".cat")
    return [SE_EXE, str(image), "-c", str(config), "-CATALOG_NAME", str(catalog), "-VERBOSE_TYPE", "QUIET"]


def time_se(command: list[str], folder: pathlib.Path) -> dict[str, float]:
    """One timed SExtractor run: wall time around the subprocess and the child's CPU time."""
    c0, t0 = cpu_children(), time.perf_counter()
    subprocess.run(command, check=True, cwd=folder, capture_output=True)
    return {"wall": time.perf_counter() - t0, "cpu": cpu_children() - c0}


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def read_se_catalog(path: pathlib.Path) -> dict[str, np.ndarray]:
    names, rows = [], []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            names.append(line.split()[2])
        elif line.strip():
            rows.append([float(v) for v in line.split()])
    data = np.array(rows, dtype=float).reshape(-1, len(names))
    return {name: data[:, i] for i, name in enumerate(names)}


# Scoring against truth


def expected_snr(truth: dict[str, Any], stars: Any) -> np.ndarray:
    signal = np.asarray(stars["flux_e"], float) * np.asarray(stars["response"], float)
    sky = truth["sky"]["level_e"] * np.asarray(stars["response"], float) + truth["sky"].get("dark_e", 0.0)
    read_noise = float(np.median([a["read_noise_e"] for a in truth["amps"].values()])) if truth.get("amps") else 0.0
    area = truth["psf"]["area_px"]
    return signal / np.sqrt(signal + area * (sky + read_noise**2))


def _segment_distance(px: np.ndarray, py: np.ndarray, cr: dict[str, list]) -> np.ndarray:
    """Distance of each point to the nearest cosmic-ray track (inf if none)."""
    best = np.full(px.size, np.inf)
    for x0, y0, x1, y1 in zip(cr.get("x0", []), cr.get("y0", []), cr.get("x1", []), cr.get("y1", []), strict=True):
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        t = np.clip(((px - x0) * dx + (py - y0) * dy) / length2, 0, 1) if length2 > 0 else np.zeros(px.size)
        best = np.minimum(best, np.hypot(px - (x0 + t * dx), py - (y0 + t * dy)))
    return best


def score(x: np.ndarray, y: np.ndarray, truth: dict[str, Any], stars: Any, snr: np.ndarray) -> dict[str, float | int]:
    """Completeness, spurious fraction and centroid RMS of detections at (x, y) (0-based)."""
    finite = np.isfinite(x) & np.isfinite(y)
    det = np.c_[x[finite], y[finite]]
    tx, ty = np.asarray(stars["x"], float), np.asarray(stars["y"], float)
    usable = np.asarray(stars["in_image"], bool) & ~np.asarray(stars["saturated"], bool) & np.isfinite(snr)
    out: dict[str, float | int] = {"n_det": int(x.size), "n_det_nan": int((~finite).sum())}
    if det.shape[0] == 0:
        return {**out, "compl10": 0.0, "compl50": 0.0, "spurious": math.nan, "centroid_rms": math.nan}
    distance, nearest = scipy.spatial.cKDTree(det).query(np.c_[tx, ty])
    matched = distance <= MATCH_RADIUS
    for level in (10, 50):
        sample = usable & (snr >= level)
        out[f"n{level}"] = int(sample.sum())
        out[f"compl{level}"] = float(matched[sample].mean()) if sample.any() else math.nan
    # Spurious: no truth star within 2 px and no cosmic-ray track within 2 px.
    to_truth, _ = scipy.spatial.cKDTree(np.c_[tx, ty]).query(det) if tx.size else (np.full(len(det), np.inf), None)
    to_cr = _segment_distance(det[:, 0], det[:, 1], truth.get("cosmic_rays", {}))
    spurious = (to_truth > SPURIOUS_RADIUS) & (to_cr > SPURIOUS_RADIUS)
    out["n_spurious"] = int(spurious.sum())
    out["spurious"] = float(spurious.mean())
    bright = usable & (snr >= 50) & matched
    dx = det[nearest[bright], 0] - tx[bright]
    dy = det[nearest[bright], 1] - ty[bright]
    out["centroid_rms"] = float(np.sqrt(np.mean(np.r_[dx, dy] ** 2))) if bright.any() else math.nan
    out["centroid_bias_x"] = float(np.mean(dx)) if bright.any() else math.nan
    out["centroid_bias_y"] = float(np.mean(dy)) if bright.any() else math.nan
    return out


def se_fwhm(se: dict[str, np.ndarray], truth: dict[str, Any], stars: Any) -> dict[str, float]:
    """SE FWHM_IMAGE and windowed-moment FWHM (arcsec, medians) of matched clean stars of S/N 50-1000."""
    scale = truth["psf"]["pixel_scale_arcsec"]
    x, y = se["XWIN_IMAGE"] - 1, se["YWIN_IMAGE"] - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(se["FLUXERR_AUTO"] > 0, se["FLUX_AUTO"] / se["FLUXERR_AUTO"], np.nan)
    tx, ty = np.asarray(stars["x"], float), np.asarray(stars["y"], float)
    distance, _ = scipy.spatial.cKDTree(np.c_[tx, ty]).query(np.c_[x, y]) if tx.size else (np.full(x.size, np.inf), 0)
    det = se["X2WIN_IMAGE"] * se["Y2WIN_IMAGE"] - se["XYWIN_IMAGE"] ** 2
    good = (se["FLAGS"] == 0) & (distance <= MATCH_RADIUS) & (snr >= 50) & (snr <= 1000) & (se["FWHM_IMAGE"] > 0)
    good &= np.isfinite(det) & (det > 0)
    if not good.any():
        return {"n": 0, "fwhm_image": math.nan, "fwhm_moments": math.nan}
    return {
        "n": int(good.sum()),
        "fwhm_image": float(np.median(se["FWHM_IMAGE"][good])) * scale,
        "fwhm_moments": float(np.median(FWHM_PER_SIGMA * det[good] ** 0.25)) * scale,
    }


def percent_error(value: float, true: float) -> float:
    return 100.0 * (value / true - 1.0) if math.isfinite(value) and true else math.nan


def run_scenario(
    name: str, workdir: pathlib.Path, repeat: int, se_available: bool, se_cfg: pathlib.Path | None
) -> dict[str, Any]:
    t0 = time.perf_counter()
    raw = simulate(name, workdir)
    sim_time = time.perf_counter() - t0
    truth = read_truth(raw)
    stars = stars_table(truth)
    snr = expected_snr(truth, stars) if len(stars) else np.zeros(0)
    row: dict[str, Any] = {"scenario": name, "sim_s": sim_time, "n_truth": int(np.sum(stars["in_image"]))}
    config = SfmConfig()
    measurement = measure_detector(raw, config)  # untimed warm-up; the one scored
    catalog = measurement.catalog
    row["ours"] = score(catalog.x, catalog.y, truth, stars, snr)
    row["ours"]["fwhm"] = measurement.metrics["psfFwhm"]
    row["ours"]["n_psf"] = int(measurement.psf_stars.size)
    row["ours"]["flags"] = measurement.flags
    row["ours"]["fwhm_err"] = percent_error(measurement.metrics["psfFwhm"], truth["psf"]["fwhm_from_sigma_arcsec"])
    row["truth_fwhm"] = truth["psf"]["fwhm_arcsec"]
    row["truth_fwhm_moments"] = truth["psf"]["fwhm_from_sigma_arcsec"]
    command = None
    if se_available and se_cfg is not None:
        image = raw.parent / "postisr.fits"
        row["n_nan_pixels"] = write_post_isr(measurement, truth, image)
        command = se_command(image, se_cfg)
        subprocess.run(command, check=True, cwd=image.parent, capture_output=True)  # untimed warm-up
        se = read_se_catalog(image.with_suffix(".cat"))
        row["se"] = score(se["XWIN_IMAGE"] - 1, se["YWIN_IMAGE"] - 1, truth, stars, snr)
        fwhm = se_fwhm(se, truth, stars)
        row["se"].update(
            n_fwhm=fwhm["n"],
            fwhm_image=fwhm["fwhm_image"],
            fwhm_moments=fwhm["fwhm_moments"],
            fwhm_image_err=percent_error(fwhm["fwhm_image"], truth["psf"]["fwhm_arcsec"]),
            fwhm_moments_err=percent_error(fwhm["fwhm_moments"], truth["psf"]["fwhm_from_sigma_arcsec"]),
        )
    del measurement
    # Timed runs, ours and SE alternately so that both see the same load; ratios are the medians
    # of each pair's ratio.
    ours_runs, se_runs = [], []
    for _ in range(repeat):
        ours_runs.append(time_ours(raw, config))
        if command is not None:
            se_runs.append(time_se(command, raw.parent))
    row["ours_time"] = medians(ours_runs)
    if se_runs:
        row["se_time"] = medians(se_runs)
        row["ratio"] = {}
        for key, base in (("wall", "wall"), ("cpu", "cpu"), ("wall_no_isr", "wall"), ("cpu_no_isr", "cpu")):
            pairs = [o[key] / e[base] for o, e in zip(ours_runs, se_runs, strict=True) if e[base] > 0]
            row["ratio"][key] = statistics.median(pairs) if pairs else math.nan
    return row


# Output


def _f(value: Any, fmt: str) -> str:
    """A number formatted, or "-" when missing or not finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:{fmt}}"


def _pair(a: Any, b: Any, fmt: str) -> str:
    return f"{_f(a, fmt)}/{_f(b, fmt)}"


def print_table(rows: list[dict[str, Any]], repeat: int, se_available: bool) -> None:
    # (top line, bottom line, width) of each column; pairs are "ours/SE".
    columns = (
        ("", "scenario", 10),
        ("truth", "stars", 6),
        ("detections", "ours/SE", 11),
        ("wall s", "ours/SE", 11),
        ("wall", "ratio", 5),
        ("CPU s", "ours/SE", 11),
        ("CPU", "ratio", 5),
        ("noISR", "wall", 5),
        ("noISR", "CPU", 5),
        ("compl S/N≥10", "% ours/SE", 12),
        ("compl S/N≥50", "% ours/SE", 12),
        ("spurious", "% ours/SE", 11),
        ("centroid RMS", "px ours/SE", 12),
        ("FWHM err %", "ours", 6),
        ("FWHM err %", "SE IMG", 6),
        ("FWHM err %", "SE mom", 6),
    )
    print(f"\nsfm vs SExtractor, LSSTCam R22_S11 (4004 x 4096), median of {repeat} timed runs")
    print(" ".join(f"{top:>{w}s}" if i else f"{top:{w}s}" for i, (top, _, w) in enumerate(columns)))
    print(" ".join(f"{bottom:>{w}s}" if i else f"{bottom:{w}s}" for i, (_, bottom, w) in enumerate(columns)))
    nan = math.nan
    for row in rows:
        ours, se = row["ours"], row.get("se", {})
        ot, st = row["ours_time"], row.get("se_time", {})
        se_wall, se_cpu, ratio = st.get("wall", nan), st.get("cpu", nan), row.get("ratio", {})
        cells = (
            row["scenario"],
            str(row["n_truth"]),
            _pair(ours["n_det"], se.get("n_det"), "d"),
            _pair(ot["wall"], se_wall, ".2f"),
            _f(ratio.get("wall"), ".2f"),
            _pair(ot["cpu"], se_cpu, ".2f"),
            _f(ratio.get("cpu"), ".2f"),
            _f(ratio.get("wall_no_isr"), ".2f"),
            _f(ratio.get("cpu_no_isr"), ".2f"),
            _pair(100 * ours["compl10"], 100 * se.get("compl10", nan), ".1f"),
            _pair(100 * ours["compl50"], 100 * se.get("compl50", nan), ".1f"),
            _pair(100 * ours["spurious"], 100 * se.get("spurious", nan), ".1f"),
            _pair(ours["centroid_rms"], se.get("centroid_rms", nan), ".3f"),
            _f(ours["fwhm_err"], "+.2f"),
            _f(se.get("fwhm_image_err", nan), "+.2f"),
            _f(se.get("fwhm_moments_err", nan), "+.2f"),
        )
        widths = [w for _, _, w in columns]
        print(" ".join(f"{c:>{w}s}" if i else f"{c:{w}s}" for i, (c, w) in enumerate(zip(cells, widths, strict=True))))
    print(
        "ratios are ours/SE; noISR: ours without its ISR / SE; FWHM err: ours psfFwhm and SE windowed moments vs "
        "the adaptive-moment truth, SE FWHM_IMAGE vs the optical FWHM"
    )
    print("\ndetails (FWHM in arcsec; truth: optical / adaptive-moment FWHM):")
    for row in rows:
        ours, se, ot = row["ours"], row.get("se", {}), row["ours_time"]
        bias = "centroid mean offset ours ({}, {})".format(
            _f(ours.get("centroid_bias_x"), "+.3f"), _f(ours.get("centroid_bias_y"), "+.3f")
        )
        if se:
            bias += " SE ({}, {})".format(_f(se.get("centroid_bias_x"), "+.3f"), _f(se.get("centroid_bias_y"), "+.3f"))
        print(
            f"  {row['scenario']}: truth {row['truth_fwhm']:.3f} / {row['truth_fwhm_moments']:.3f}; ours psfFwhm "
            f"{_f(ours['fwhm'], '.3f')} ({ours['n_psf']} PSF stars); SE FWHM_IMAGE {_f(se.get('fwhm_image'), '.3f')}, "
            f"windowed moments {_f(se.get('fwhm_moments'), '.3f')} ({se.get('n_fwhm', 0)} stars); "
            f"truth stars S/N≥10 {ours.get('n10', 0)}, ≥50 {ours.get('n50', 0)}"
        )
        print(
            f"    our ISR {ot['isr']:.2f} s; ours w/o ISR {ot['wall_no_isr']:.2f} s wall, "
            f"{ot['cpu_no_isr']:.2f} s CPU; "
            f"spurious ours {ours.get('n_spurious', 0)}, SE {se.get('n_spurious', '-')}; our detections without a "
            f"position (moments failed, not scored) {ours['n_det_nan']}; {bias} px; "
            f"simulation {row['sim_s']:.1f} s"
            + (f"; NaN pixels set to 0 for SE {row['n_nan_pixels']}" if row.get("n_nan_pixels") else "")
        )
        if ours["flags"]:
            print(f"    sfm flags: {'; '.join(ours['flags'])}")
    errors = [abs(r["ours"]["fwhm_err"]) if math.isfinite(r["ours"]["fwhm_err"]) else math.inf for r in rows]
    worst = max(errors)
    worst_name = rows[errors.index(worst)]["scenario"]
    verdict = "met" if worst <= FWHM_TARGET else "NOT met"
    print(
        f"\nsummary: max |our FWHM error| {_f(worst, '.2f') if math.isfinite(worst) else 'NaN'} % ({worst_name}) "
        f"against the {FWHM_TARGET:g} % target: {verdict}"
    )
    if se_available:
        slower = [r["scenario"] for r in rows if r["ratio"]["wall"] > 1]
        slower_cpu = [r["scenario"] for r in rows if r["ratio"]["cpu"] > 1]
        print(
            "summary: ours (raw → ISR → metrics) no slower than SExtractor (on the post-ISR image) in every scenario: "
            + ("yes" if not slower else f"no, slower in {', '.join(slower)}")
            + " (wall); "
            + ("yes" if not slower_cpu else f"no, slower in {', '.join(slower_cpu)}")
            + " (CPU)"
        )
    else:
        print(
            f"summary: no comparison: `{SE_EXE}` is not on PATH; it needs Debian's SExtractor "
            "(apt-get install source-extractor)"
        )


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=pathlib.Path, help="keep the simulated raws here and reuse them")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (after one untimed)")
    parser.add_argument("--scenarios", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--quick", action="store_true", help=f"smoke test: {', '.join(QUICK_SCENARIOS)}, repeat 1")
    args = parser.parse_args()
    names = list(SCENARIOS)
    repeat = max(1, args.repeat)
    if args.quick:
        names, repeat = list(QUICK_SCENARIOS), 1
    if args.scenarios:
        names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        unknown = [s for s in names if s not in SCENARIOS]
        if unknown:
            parser.error(f"unknown scenarios {unknown}: choose from {list(SCENARIOS)}")
    se_available = shutil.which(SE_EXE) is not None
    if not se_available:
        print(f"`{SE_EXE}` is not on PATH: timing ours only. The comparison needs Debian's SExtractor")
        print("(apt-get install source-extractor).")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sfm_vs_se_") as tmp:
        workdir = args.workdir or pathlib.Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        se_cfg = se_config(pathlib.Path(tmp)) if se_available else None
        rows = []
        for name in names:
            rows.append(run_scenario(name, workdir, repeat, se_available, se_cfg))
            print(f"  {name}: done at {time.perf_counter() - start:.0f} s", flush=True)
    print_table(rows, repeat, se_available)
    print(f"\nrun time {time.perf_counter() - start:.0f} s")
    summary = {
        r["scenario"]: {
            "wall_ratio": r.get("ratio", {}).get("wall"),
            "cpu_ratio": r.get("ratio", {}).get("cpu"),
            "ours_wall_s": r["ours_time"]["wall"],
            "fwhm_err_pct": r["ours"]["fwhm_err"],
            "compl10": r["ours"]["compl10"],
            "se_compl10": r.get("se", {}).get("compl10"),
            "compl50": r["ours"]["compl50"],
            "se_compl50": r.get("se", {}).get("compl50"),
        }
        for r in rows
    }
    print("JSON " + json.dumps(_json_safe(summary)))


if __name__ == "__main__":
    main()
