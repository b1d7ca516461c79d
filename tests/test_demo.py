"""``rapid_analysis demo`` end to end: simulators, the CSC in its own process (autonomous), an observing sequence."""

from __future__ import annotations

import pathlib
import subprocess
import sys

from lsst.ts.rapidanalysis.results import open_results


def test_demo_runs_end_to_end(tmp_path: pathlib.Path) -> None:
    exe = pathlib.Path(sys.executable).parent / "rapid_analysis"
    workdir = tmp_path / "demo"
    completed = subprocess.run(
        [
            str(exe),
            "demo",
            "--instrument",
            "LATISS",
            "--images",
            "1",
            "--time-scale",
            "0.02",
            "--workdir",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    out = completed.stdout
    assert "RapidAnalysis ENABLED: 2 workers" in out, out
    assert "BIAS" in out and "OBJECT" in out, out
    # Autonomous: the CSC processed both images by itself.
    assert "image_stats on 1 detectors: ok" in out, out
    assert "sfm on 1 detectors + gather + mount_torque: ok" in out, out
    assert "FWHM" in out and "mount az/el RMS" in out, out
    assert "Results database:" in out, out
    # The page served while it ran, showing both images the camera took.
    assert "The page, live while the demo runs: http://127.0.0.1:" in out, out
    assert "The page: 2 of 2 images in the night table" in out, out
    assert f"rapid_analysis serve --output-root {workdir / 'products'}" in out, out
    # Then a focus sweep, as OCPS:101 would ask for it: best focus against the simulator's truth.
    assert "focus_sweep → best focus" in out and "truth" in out, out

    # What the summary points at exists: the raws the camera wrote, the plots, the database rows.
    raws = sorted((workdir / "raw" / "LATISS").rglob("AT_O_*_R00_S00.fits"))
    camera = [raw for raw in raws if int(raw.name.split("_")[3]) < 90000]
    sweep = [raw for raw in raws if int(raw.name.split("_")[3]) >= 90000]  # sim.focus numbers its visits so
    assert len(camera) == 2 and len(sweep) == 5, raws
    with open_results(workdir / "products" / "results.sqlite3") as db:
        jobs = db.jobs()
        assert set(jobs["state"]) == {"succeeded"}, jobs
        autonomous = jobs[jobs["trigger"] == "autonomous"]
        assert sorted(autonomous["pipeline"]) == ["image_stats", "mount_torque", "sfm", "sfm_gather"], jobs
        assert set(autonomous["image_name"]) == {raw.name.removesuffix("_R00_S00.fits") for raw in camera}
        (commanded,) = jobs[jobs["trigger"] == "command"]
        assert commanded["pipeline"] == "focus_sweep", jobs
        products = db.products()
        # The bias histogram, the focal-plane map, the mosaic, the mount plot and the focus curve.
        assert len(products) == 5 and all(pathlib.Path(p).exists() for p in products["path"]), products
