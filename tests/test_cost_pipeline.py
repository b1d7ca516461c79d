"""``test.cost``: sfm's cost and result shape without its pixels (for bench/scale.py)."""

from __future__ import annotations

import json
import math
import pathlib
import statistics
import time

import pytest

from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.dispatch.worker_task import run_job
from lsst.ts.rapidanalysis.pipelines.base import JobAborted, PipelineContext
from lsst.ts.rapidanalysis.pipelines.registry import PipelineRegistry
from lsst.ts.rapidanalysis.pipelines.test_pipelines import (
    COST_MAX_RATIO,
    CostPipeline,
    detector_cost,
)
from lsst.ts.rapidanalysis.sal.xml_interface import load_component_info
from lsst.ts.rapidanalysis.sim.raw_writer import simulate_detector
from lsst.ts.rapidanalysis.sim.scene import SceneConfig
from lsst.ts.rapidanalysis.sim.stream import TINY_SCALE, StreamWriter

CAMERA = get_instrument("LSSTCam")
OBSID = "MC_O_20251115_000007"
DETECTOR = 94


@pytest.fixture(scope="module")
def sfm_raw(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("cost_raws")
    scene = SceneConfig(n_stars=200, mag_bright=16.0, mag_faint=22.0)
    return simulate_detector(CAMERA, DETECTOR, root, OBSID, scene=scene, seed=7, scale=0.25).path


def test_registered_in_simulation_mode_only_and_gathered_like_sfm() -> None:
    assert "test.cost" not in PipelineRegistry(simulation_mode=False).names
    pipeline = PipelineRegistry(simulation_mode=True).get("test.cost")
    assert pipeline is CostPipeline
    assert pipeline.per_detector and pipeline.gather_pipeline == "sfm_gather" and pipeline.requires_inputs


def test_cost_is_log_normal_about_one_second_and_repeats() -> None:
    costs = [detector_cost(f"MC_O_20251115_{seq:06d}", d.id) for seq in range(1, 11) for d in CAMERA.science_detectors]
    assert statistics.median(costs) == pytest.approx(1.0, rel=0.03)
    logs = [math.log(c) for c in costs]
    assert statistics.stdev(logs) == pytest.approx(0.2, rel=0.1)
    assert max(costs) <= COST_MAX_RATIO
    # The same image and detector cost the same every run; another seed is another night.
    assert detector_cost(OBSID, DETECTOR) == detector_cost(OBSID, DETECTOR)
    assert detector_cost(OBSID, DETECTOR) != detector_cost(OBSID, DETECTOR, seed=1)
    assert detector_cost(OBSID, DETECTOR, median=0) == 0.0
    assert detector_cost(OBSID, DETECTOR, median=2.0, sigma=0.0) == 2.0
    assert detector_cost(OBSID, DETECTOR, median=1.0, sigma=3.0, max_ratio=1.5) <= 1.5


def test_holds_the_slot_for_its_cost(sfm_raw: pathlib.Path, tmp_path: pathlib.Path) -> None:
    config = CostPipeline.make_config({"median": 0.3})
    expected = detector_cost(OBSID, DETECTOR, median=0.3)
    t0 = time.monotonic()
    result = CostPipeline().run([sfm_raw], config, PipelineContext("job", tmp_path))
    elapsed = time.monotonic() - t0
    assert expected <= elapsed < expected + 0.2
    assert result.summary["detectors"][0]["cost"] == pytest.approx(expected, abs=1e-4)


def test_abort_is_seen_while_it_waits(sfm_raw: pathlib.Path, tmp_path: pathlib.Path) -> None:
    t0 = time.monotonic()
    context = PipelineContext("job", tmp_path, is_cancelled=lambda: time.monotonic() - t0 > 0.2)
    config = CostPipeline.make_config({"median": 30, "sigma": 0, "check_interval": 0.05})
    with pytest.raises(JobAborted):
        CostPipeline().run([sfm_raw], config, context)
    assert time.monotonic() - t0 < 1.0


def test_result_has_sfms_shape(sfm_raw: pathlib.Path, tmp_path: pathlib.Path) -> None:
    real = run_job("job-sfm", "sfm", [str(sfm_raw)], {}, str(tmp_path / "sfm"), simulation_mode=True, in_dask=False)
    cost = run_job("job-cost", "test.cost", [str(sfm_raw)], {"median": 0}, str(tmp_path / "cost"), True, in_dask=False)
    assert real.status == cost.status == "succeeded", (real.message, cost.message)
    assert real.result is not None and cost.result is not None
    a, b = real.result, cost.result
    assert b.image_name == a.image_name == OBSID
    assert set(b.metrics) == set(a.metrics)
    assert [set(r) for r in b.detector_metrics] == [set(r) for r in a.detector_metrics]
    assert b.detector_metrics[0]["detector"] == DETECTOR
    assert [(t.topic, set(t.fields)) for t in b.telemetry] == [(t.topic, set(t.fields)) for t in a.telemetry]
    topic = load_component_info("RapidAnalysis").topics["sfmDetectorMetrics"]
    assert set(b.telemetry[0].fields) == {field.name for field in topic.fields}
    assert set(b.summary) == set(a.summary)
    (ours,), (theirs,) = b.summary["detectors"], a.summary["detectors"]
    assert set(ours) - {"cost"} == set(theirs)
    assert set(ours["metrics"]) == set(theirs["metrics"])
    assert set(ours["timings"]) == set(theirs["timings"])
    assert ours["binnedImage"] == ""  # no pixels: the gather makes no mosaic
    # The jobResult's result (JSON) is about as large as sfm's.
    size_real, size_cost = len(json.dumps(a.summary)), len(json.dumps(b.summary))
    assert 0.5 < size_cost / size_real < 2.0, (size_cost, size_real)


def test_sfm_gather_takes_its_rows(tmp_path: pathlib.Path) -> None:
    """A visit of test.cost rows (no binned images) is gathered into sfmVisitMetrics, plots and all."""
    root = tmp_path / "raw"
    detectors = [d.id for d in CAMERA.science_detectors[:20]]
    with StreamWriter(CAMERA, root, detectors=detectors, n_templates=1, scale=TINY_SCALE) as writer:
        paths = writer.write_exposure(OBSID, exp_time=30.0)
    rows = []
    for detector, path in sorted(paths.items()):
        outcome = run_job(f"j{detector}", "test.cost", [str(path)], {"median": 0}, str(tmp_path / "o"), True, False)
        assert outcome.result is not None, outcome.message
        rows.append(outcome.result.summary["detectors"][0]["metrics"])
    visit = tmp_path / "visit.json"
    visit.write_text(
        json.dumps(
            {"imageName": OBSID, "instrument": "LSSTCam", "expected": detectors, "detectors": rows, "partial": False}
        )
    )
    outcome = run_job("gather", "sfm_gather", [str(visit)], {}, str(tmp_path / "gather"), True, in_dask=False)
    assert outcome.status == "succeeded" and outcome.result is not None, outcome.message
    (sample,) = outcome.result.telemetry
    assert sample.topic == "sfmVisitMetrics"
    assert sample.fields["nDetectors"] == 20 and sample.fields["imageName"] == OBSID
    assert 0.6 < sample.fields["psfFwhmMedian"] < 1.0
    assert [pathlib.Path(p.path).name for p in outcome.result.products] == [f"sfm_focal_plane_{OBSID}.png"]
