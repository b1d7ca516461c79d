"""sfm_gather: visit metrics from detector rows, by the reference definitions; plots; bad inputs."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest
from astropy.io import fits

from lsst.ts.rapidanalysis.pipelines.base import PipelineContext, PipelineError
from lsst.ts.rapidanalysis.pipelines.sfm_gather import SfmGatherConfig, SfmGatherPipeline, visit_metrics

OBSID = "CC_O_20251115_000007"


def _rows(fwhms: list[float]) -> list[dict]:
    return [
        {
            "detector": i,
            "psfFwhm": f,
            "psfSigma": f / 0.2 / 2.3548,
            "e1": 0.01 * i,
            "e2": -0.02,
            "skyBg": 400.0 + i,
            "zeroPoint": 31.4,
            "expTime": 15.0,
            "nPsfStar": 10 + i,
            "effTime": 9.0,
            "airmass": 1.2,
            "band": "i",
        }
        for i, f in enumerate(fwhms)
    ]


def test_visit_metrics_follow_the_definitions() -> None:
    fwhm = [0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 0.75, 0.85, math.nan]
    rows = _rows(fwhm)
    metrics = visit_metrics(rows, airmass=1.2, band="i", witness=4)
    finite = np.array([f for f in fwhm if math.isfinite(f)])
    assert metrics["psfFwhmMean"] == pytest.approx(finite.mean())
    assert metrics["psfFwhmMedian"] == pytest.approx(np.median(finite))
    assert (metrics["psfFwhmMin"], metrics["psfFwhmMax"]) == (0.7, 1.2)
    p05, p95 = np.percentile(finite, [5, 95])
    assert metrics["psfGradient"] == pytest.approx(math.sqrt(p95**2 - p05**2))
    # FWHM x airmass^-0.6 x (753.55/500)^0.2 for i (ra-algorithms.md §2).
    assert metrics["psfFwhmStandardized"] == pytest.approx(np.median(finite) * 1.2**-0.6 * (753.55 / 500) ** 0.2)
    assert metrics["nPsfStarTotal"] == sum(10 + i for i in range(9))
    assert metrics["zeroPointRealMedian"] == pytest.approx(31.4 - 2.5 * math.log10(15.0))
    assert metrics["witnessPsfFwhm"] == 1.1
    assert metrics["skyBg_min"] == 400.0 and metrics["skyBg_max"] == 408.0


def _binned(path: pathlib.Path, detector: int) -> str:
    header = fits.Header({"DETECTOR": detector, "BINNING": 8})
    fits.PrimaryHDU(np.random.default_rng(detector).normal(500, 5, (125, 128)).astype(np.float32), header).writeto(path)
    return str(path)


def test_gather_pipeline_products_and_flags(tmp_path: pathlib.Path) -> None:
    rows = _rows([0.6, 0.7, 1.5, 0.8])  # a PSF gradient past the bad level
    visit = tmp_path / "visit.json"
    visit.write_text(
        json.dumps(
            {
                "imageName": OBSID,
                "instrument": "LSSTComCam",
                "expected": list(range(9)),
                "detectors": rows,
                "partial": True,
                "regather": False,
            }
        )
    )
    binned = [_binned(tmp_path / f"b{d}.fits", d) for d in range(3)]
    broken = tmp_path / "broken.fits"
    broken.write_bytes(b"not a fits file")
    context = PipelineContext("gather-1", tmp_path / "out")
    result = SfmGatherPipeline().run([visit, *binned, broken], SfmGatherConfig(), context)
    (sample,) = result.telemetry
    assert sample.topic == "sfmVisitMetrics" and sample.fields["partial"] is True
    assert sample.fields["nDetectors"] == 4 and sample.fields["imageName"] == OBSID
    assert result.summary["missingDetectors"] == [4, 5, 6, 7, 8]
    assert any("PSF gradient" in flag and "bad" in flag for flag in result.summary["flags"])
    assert any("broken.fits" in flag for flag in result.summary["flags"])
    assert len(result.products) == 2
    for product in result.products:
        assert pathlib.Path(product.path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gather_without_a_visit_description_fails_clearly(tmp_path: pathlib.Path) -> None:
    context = PipelineContext("gather-2", tmp_path / "out")
    with pytest.raises(PipelineError) as info:
        SfmGatherPipeline().run([tmp_path / "visit.json"], SfmGatherConfig(), context)
    assert info.value.exit_code == 3 and "visit description" in str(info.value)


def test_ellipticity_is_the_median_of_each_detectors_modulus() -> None:
    # e of opposite signs: a median e1, e2 pair would be near 0; each detector's |e| is 0.05 or 0.1.
    rows = [
        {"detector": 0, "e1": 0.03, "e2": 0.04},
        {"detector": 1, "e1": -0.03, "e2": -0.04},
        {"detector": 2, "e1": 0.0, "e2": -0.1},
        {"detector": 3, "e1": math.nan, "e2": 0.2},  # not measured: left out
    ]
    metrics = visit_metrics(rows, airmass=None, band=None, witness=None)
    assert metrics["ellipticityMedian"] == pytest.approx(0.05)
    assert math.isnan(visit_metrics([], airmass=None, band=None, witness=None)["ellipticityMedian"])
