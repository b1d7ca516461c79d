"""``rapid_analysis demo`` end to end: simulators, the CSC in its own process, an observing sequence."""

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
    assert out.count("image_stats on 1 detectors: ok") == 2, out
    assert "Results database:" in out, out

    # What the summary points at exists: the raws the camera wrote, the plots, the database rows.
    raws = sorted((workdir / "raw" / "LATISS").rglob("AT_O_*_RXX_S00.fits"))
    assert len(raws) == 2, raws
    with open_results(workdir / "products" / "results.sqlite3") as db:
        jobs = db.jobs()
        assert len(jobs) == 2 and set(jobs["state"]) == {"succeeded"}, jobs
        assert set(jobs["image_name"]) == {raw.name.removesuffix("_RXX_S00.fits") for raw in raws}
        products = db.products()
        assert len(products) == 2 and all(pathlib.Path(p).exists() for p in products["path"]), products
