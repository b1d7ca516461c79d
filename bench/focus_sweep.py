"""``focus_sweep`` accuracy on simulated sweeps, over several seeds.

For each seed: a sweep is simulated (``sim.focus.simulate_focus_sweep``: ``--visits`` visits
``--step`` mm apart, centred on 0, a true best focus drawn uniformly within ± half a step of
+0.03 mm, ``k`` = ``--k`` arcsec/mm, seeing ``--seeing`` varying from visit to visit by
``--seeing-jitter`` (relative rms; 0: fixed); ``--detectors`` of LSSTCam at
``--scale`` of full size) and ``FocusSweepPipeline`` runs on its raws as a job would. Printed per
seed: the true and fitted best focus, the error in units of the step, the claimed uncertainty, the
pull (error / uncertainty), the fitted FWHM at best focus and the flags; then the worst and
RMS error in units of the step against the target (5 % of the step), the median pull, and the
time the pipeline took per visit.

    python bench/focus_sweep.py [--seeds 8] [--visits 7] [--step 0.1] [--seeing-jitter 0.03] [--scale 0.25]

Measured 2026-12-02 on the shared 2-core machine (7 visits, 3 detectors, scale 0.25, 150 stars):
fixed seeing, 6 seeds: worst error 0.0018 step, RMS 0.0012 step (uncertainties conservative,
median |pull| 0.14: the 0.5 % FWHM floor dominates); 3 % visit-to-visit seeing, 8 seeds: worst
0.029 step, RMS 0.016 step, median |pull| 0.45; target < 0.05 step met in both, no flags.
Full-size detectors (``--scale 1 --stars 1000 --visits 5``, one seed): error 0.0001 step,
1.6 s of pipeline per visit of 3 detectors (0.4 s at scale 0.25).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import tempfile
import time

import numpy as np

from lsst.ts.rapidanalysis.pipelines.base import PipelineContext
from lsst.ts.rapidanalysis.pipelines.focus_sweep import FocusSweepPipeline
from lsst.ts.rapidanalysis.sim.focus import simulate_focus_sweep, sweep_offsets
from lsst.ts.rapidanalysis.sim.scene import SceneConfig

TARGET = 0.05  # of the step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--visits", type=int, default=7)
    parser.add_argument("--step", type=float, default=0.1, help="mm between visits")
    parser.add_argument("--k", type=float, default=5.0, help="arcsec of FWHM per mm of defocus")
    parser.add_argument("--seeing", type=float, default=0.8, help="arcsec")
    parser.add_argument("--seeing-jitter", type=float, default=0.0, help="visit-to-visit seeing rms (fraction)")
    parser.add_argument("--detectors", default="94,90,98")
    parser.add_argument("--scale", type=float, default=0.25, help="fraction of a full-size detector")
    parser.add_argument("--stars", type=int, default=150, help="stars per detector")
    parser.add_argument("--workdir", type=pathlib.Path, default=None, help="keep the raws there (default: deleted)")
    args = parser.parse_args()
    if args.workdir is None:
        with tempfile.TemporaryDirectory(prefix="focus_bench_") as workdir:
            run(args, pathlib.Path(workdir))
    else:
        run(args, args.workdir)


def run(args: argparse.Namespace, workdir: pathlib.Path) -> None:
    """Simulate and measure the sweeps in ``workdir``; print the table and the summary."""
    detectors = [int(d) for d in args.detectors.split(",")]
    offsets = sweep_offsets(args.visits, args.step)
    scene = SceneConfig(n_stars=args.stars, mag_bright=16.0, mag_faint=22.0, seeing_fwhm=args.seeing)
    rng = np.random.default_rng(2026)
    print(
        f'focus_sweep: {args.seeds} sweeps of {args.visits} visits, step {args.step} mm, k {args.k}"/mm, '
        f'seeing {args.seeing}" (visit-to-visit rms {args.seeing_jitter:.0%}), '
        f"LSSTCam detectors {detectors} at scale {args.scale}, {args.stars} stars each"
    )
    print(f"{'seed':>4} {'z0 true':>9} {'z0 fit':>9} {'err/step':>9} {'sigma':>8} {'pull':>6} {'FWHM0':>6}  flags")
    errors, pulls, seconds = [], [], []
    for seed in range(args.seeds):
        z0 = 0.03 + rng.uniform(-0.5, 0.5) * args.step
        sweep = simulate_focus_sweep(
            workdir / f"seed{seed}",
            "LSSTCam",
            offsets=offsets,
            best_focus=round(float(z0), 5),
            k=args.k,
            scene=scene,
            detectors=detectors,
            scale=args.scale,
            seed=seed,
            seeing_jitter=args.seeing_jitter,
            first_seq=100,
        )
        config = FocusSweepPipeline.make_config({"visits": sweep.visits, "make_plot": False})
        start = time.perf_counter()
        result = FocusSweepPipeline().run(sweep.files, config, PipelineContext(f"bench-{seed}", workdir / "out"))
        seconds.append((time.perf_counter() - start) / len(sweep.visits))
        m = result.metrics
        truth = sweep.truth["best_focus_z_mm"]
        best = m["bestFocus"]
        flags = "; ".join(result.summary["flags"]) or "-"
        if best is None:
            print(f"{seed:>4} {truth:>9.5f} {'NaN':>9} {'':>9} {'':>8} {'':>6} {'':>6}  {flags}")
            errors.append(math.inf)
            continue
        error = (best - truth) / args.step
        pull = (best - truth) / m["bestFocusErr"]
        errors.append(error)
        pulls.append(pull)
        print(
            f"{seed:>4} {truth:>9.5f} {best:>9.5f} {error:>+9.4f} {m['bestFocusErr']:>8.5f} {pull:>+6.2f} "
            f"{m['fwhmAtBestFocus']:>6.3f}  {flags}"
        )
    finite = np.array([e for e in errors if math.isfinite(e)])
    n_failed = len(errors) - finite.size
    worst = float(np.max(np.abs(finite))) if finite.size else math.nan
    rms = float(np.sqrt(np.mean(finite**2))) if finite.size else math.nan
    print(
        f"best focus error: worst {worst:.4f} step, RMS {rms:.4f} step (target < {TARGET} step): "
        f"{'met' if finite.size and worst < TARGET and not n_failed else 'NOT met'}"
        + (f"; {n_failed} sweep(s) gave no best focus" if n_failed else "")
    )
    if pulls:
        print(f"median |pull| {float(np.median(np.abs(pulls))):.2f} (0.67 if the uncertainties were exact)")
    print(f"pipeline time per visit ({len(detectors)} detectors): median {float(np.median(seconds)):.2f} s")
    if args.workdir is not None:
        print(f"raws in {workdir}")


if __name__ == "__main__":
    main()
