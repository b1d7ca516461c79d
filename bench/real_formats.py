"""``sfm`` on real camera raws holding a known scene: sky, source count, FWHM and flux against truth.

The three real raws of ``../shared/data/real-formats/raw`` (LATISS 2018, LSSTCam R10_S22 2019,
ComCam R22_S00 2019; every header card kept) get an analytic scene in their zeroed pixels: a flat
Poisson sky and pixel-integrated Gaussian stars, written with the obs_lsst policy's per-amp gains
where the camera's own CCD_SERPAR WCS puts each amp (``tests/test_real_formats.py`` builds them).
Each raw is measured twice in the same run: as shipped (gains from the camera description), and,
as the reference, with the description switched off (the nominal gain of the sensor type for
every amp: what the project did before). Ratios are measured / truth.

Usage: ``python bench/real_formats.py [--seeds 3]``
"""

from __future__ import annotations

import argparse
import math
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))

import test_real_formats as scene  # noqa: E402
from lsst.ts.rapidanalysis.pipelines import isr as isr_module  # noqa: E402
from lsst.ts.rapidanalysis.pipelines.sfm import SfmConfig, measure_detector  # noqa: E402

TRUTH_FWHM_PX = 2.0 * math.sqrt(2.0 * math.log(2.0)) * math.sqrt(scene.SIGMA_PX**2 + 1.0 / 12.0)


def _no_description(*args: object, **kwargs: object) -> None:
    raise ValueError("switched off for the reference run")


def measure(path: pathlib.Path, stars: np.ndarray, nominal: bool) -> dict[str, float]:
    original = isr_module.amp_electronics
    if nominal:
        isr_module.amp_electronics = _no_description  # type: ignore[assignment]
    try:
        start = time.process_time()
        result = measure_detector(path, SfmConfig(refcat="", write_binned=False))
        cpu = time.process_time() - start
    finally:
        isr_module.amp_electronics = original
    m, catalog = result.metrics, result.catalog
    dx = catalog.x[:, None] - stars[None, :, 0]
    dy = catalog.y[:, None] - stars[None, :, 1]
    distance = np.hypot(dx, dy)
    nearest = np.argmin(distance, axis=0)
    found = distance[nearest, np.arange(len(stars))] < 0.5
    return {
        "sky": m["skyBg"] / scene.SKY_E,
        "count": m["nSource"] / scene.N_STARS,
        "found": float(np.mean(found)),
        "fwhm": m["psfFwhm"] / m["pixelScale"] / TRUTH_FWHM_PX,
        "flux": float(np.median(catalog.flux[nearest[found]] / stars[found, 2])),
        "cpu": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="scenes per raw (different stars and noise)")
    args = parser.parse_args()
    print(f"{scene.N_STARS} stars, sky {scene.SKY_E:.0f} e-/px, sigma {scene.SIGMA_PX} px; measured / truth")
    print(f"{'raw':<12} {'gains':<12} {'sky':>8} {'count':>7} {'found':>7} {'FWHM':>8} {'flux':>7} {'cpu s':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for instrument in scene.DETECTORS:
            rows: dict[bool, list[dict[str, float]]] = {False: [], True: []}
            for seed in range(args.seeds):
                path = pathlib.Path(tmp) / f"{instrument}_{seed}.fits"
                stars = scene.inject(instrument, path, seed=seed + 11)
                for nominal in (False, True):
                    rows[nominal].append(measure(path, stars, nominal))
                path.unlink()
            for nominal, label in ((False, "description"), (True, "nominal")):
                med = {k: statistics.median(r[k] for r in rows[nominal]) for k in rows[nominal][0]}
                print(
                    f"{instrument:<12} {label:<12} {med['sky']:8.4f} {med['count']:7.3f} {med['found']:7.3f} "
                    f"{med['fwhm']:8.4f} {med['flux']:7.4f} {med['cpu']:6.2f}"
                )


if __name__ == "__main__":
    main()
