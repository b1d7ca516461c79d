"""``focus_sweep``: the simulator's focus offsets, the fit against truth, each flag, the multi-visit
inputs of ``dispatch/inputs.py``, the request rule and the command line (small images, no DDS, no
Dask); and once through a CSC (DDS, a LocalCluster, the results database)."""

from __future__ import annotations

import asyncio
import json
import math
import pathlib
import unittest

import numpy as np
import pytest
from astropy.io import fits

from lsst.ts.rapidanalysis.cli import main
from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.data.data_id import DataId
from lsst.ts.rapidanalysis.data.raw_store import RawStore
from lsst.ts.rapidanalysis.dispatch.inputs import InputResolver
from lsst.ts.rapidanalysis.dispatch.job_maker import JobMaker, JobRequestError, Split
from lsst.ts.rapidanalysis.dispatch.jobs import Job, Trigger
from lsst.ts.rapidanalysis.pipelines.base import PipelineContext, PipelineResult
from lsst.ts.rapidanalysis.pipelines.focus_sweep import (
    DEFAULT_DETECTORS,
    FocusSweepConfig,
    FocusSweepPipeline,
    fit_focus_curve,
)
from lsst.ts.rapidanalysis.pipelines.registry import PipelineRegistry
from lsst.ts.rapidanalysis.results.database import open_results
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from lsst.ts.rapidanalysis.sal.xml_interface import load_component_info
from lsst.ts.rapidanalysis.sim.focus import FocusSweep, simulate_focus_sweep, sweep_offsets
from lsst.ts.rapidanalysis.sim.scene import SceneConfig
from lsst.ts.rapidanalysis.sim.truth import read_truth
from test_csc import STD_TIMEOUT, RapidAnalysisTestMixin

CAMERA = "LSSTCam"
SCALE = 0.25  # 1024 x 1001 pixels a detector
SCENE = SceneConfig(n_stars=150, mag_bright=16.0, mag_faint=22.0, seeing_fwhm=0.8)
STEP = 0.1


def _sweep(root: pathlib.Path, first_seq: int, **kwargs: object) -> FocusSweep:
    options: dict = dict(scene=SCENE, scale=SCALE, first_seq=first_seq, best_focus=0.037, k=5.0)
    options.update(kwargs)
    return simulate_focus_sweep(root, CAMERA, **options)


def _run(files: list[pathlib.Path], tmp: pathlib.Path, **config: object) -> PipelineResult:
    pipeline = FocusSweepPipeline()
    return pipeline.run(files, FocusSweepPipeline.make_config(config), PipelineContext("job-1", tmp / "out"))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("focus_raws")


@pytest.fixture(scope="module")
def sweep(root: pathlib.Path) -> FocusSweep:
    """7 visits at 0.1 mm steps, -0.3 to +0.3 mm, 3 detectors, z0 = +0.037 mm."""
    return _sweep(root, 100, offsets=sweep_offsets(7, STEP), detectors=(94, 90, 98), seed=1)


@pytest.fixture(scope="module")
def result(sweep: FocusSweep, tmp_path_factory: pytest.TempPathFactory) -> PipelineResult:
    return _run(sweep.files, tmp_path_factory.mktemp("focus_out"), visits=sweep.visits)


# The simulator


def test_simulator_writes_focusz_and_the_focus_truth(sweep: FocusSweep) -> None:
    for visit, z in zip(sweep.visits, sweep.offsets, strict=True):
        for path in sweep.paths[visit].values():
            assert fits.getheader(path)["FOCUSZ"] == pytest.approx(z)
            focus = read_truth(path)["focus"]
            assert focus["focus_z_mm"] == pytest.approx(z) and focus["best_focus_z_mm"] == 0.037
            expected = math.hypot(0.8, 5.0 * (z - 0.037))
            assert focus["fwhm_arcsec"] == pytest.approx(expected)
            assert read_truth(path)["psf"]["fwhm_arcsec"] == pytest.approx(expected)
    assert sweep.truth["step_mm"] == pytest.approx(STEP)
    assert sweep.truth_path is not None and json.loads(sweep.truth_path.read_text())["best_focus_z_mm"] == 0.037
    assert sweep.data_id == {"dayObs": 20251115, "seqNum": 106}


def test_defocus_broadens_in_quadrature() -> None:
    scene = SceneConfig(seeing_fwhm=0.7, focus_z=0.3, best_focus_z=-0.1, defocus_fwhm_per_mm=4.0)
    fwhm, _, _ = scene.psf_at(0.0, 0.0)
    assert float(fwhm) == pytest.approx(math.hypot(0.7, 1.6))
    assert float(SceneConfig(seeing_fwhm=0.7).psf_at(0.0, 0.0)[0]) == pytest.approx(0.7)  # no defocus by default


# Accuracy


def test_best_focus_within_5_percent_of_the_step(result: PipelineResult, sweep: FocusSweep) -> None:
    metrics = result.metrics
    assert result.summary["flags"] == []
    assert metrics["fitOk"] == 1 and metrics["nVisits"] == 7 and metrics["nVisitsRequested"] == 7
    error = abs(metrics["bestFocus"] - sweep.truth["best_focus_z_mm"])
    assert error < 0.05 * STEP, (metrics["bestFocus"], metrics["bestFocusErr"])
    assert 0 < metrics["bestFocusErr"] < 0.05 * STEP
    # sfm's psfFwhm (2.3548 x the adaptive-moment sigma) of the truth's PSF at best focus
    truth_at_best = min(read_truth(p)["psf"]["fwhm_from_sigma_arcsec"] for p in sweep.paths[sweep.visits[3]].values())
    assert metrics["fwhmAtBestFocus"] < truth_at_best  # the sweep's best visit is 0.037 mm off
    assert metrics["fwhmAtBestFocus"] == pytest.approx(truth_at_best, rel=0.05)
    # k of the moments' FWHM is the optical k times (moments FWHM / optical FWHM), ~1.1 for this Moffat
    assert 5.0 < metrics["defocusCoefficient"] < 6.0
    assert metrics["curvature"] == pytest.approx(metrics["defocusCoefficient"] ** 2)


def test_result_products_telemetry_and_summary(result: PipelineResult, sweep: FocusSweep) -> None:
    assert result.image_name == sweep.obsids[-1]
    (product,) = result.products
    assert pathlib.Path(product.path).is_file() and product.path.endswith(".png")
    (sample,) = result.telemetry
    assert sample.topic == "focusSweepResult"
    fields = {f.name for f in load_component_info("RapidAnalysis").topics["focusSweepResult"].fields}
    assert set(sample.fields) <= fields
    assert sample.fields["fitOk"] is True and sample.fields["bestFocus"] == result.metrics["bestFocus"]
    assert sample.fields["visits"] == ",".join(map(str, sweep.visits))
    visits = result.summary["visits"]
    assert [v["focus"] for v in visits] == pytest.approx(sweep.offsets)
    assert all(v["source"] == "measured" and v["detectors"] == [90, 94, 98] for v in visits)
    json.dumps(result.summary, allow_nan=False)  # JSON for jobResult.result


# Flags


def test_fewer_than_3_visits(sweep: FocusSweep, tmp_path: pathlib.Path) -> None:
    files = [p for v in sweep.visits[2:4] for p in sweep.paths[v].values()]
    result = _run(files, tmp_path)
    assert result.metrics["fitOk"] == 0 and result.metrics["bestFocus"] is None
    assert result.metrics["nVisits"] == 2
    assert any("only 2 usable visit(s)" in f for f in result.summary["flags"])
    assert result.telemetry[0].fields["fitOk"] is False and "only 2" in result.telemetry[0].fields["flags"]
    assert pathlib.Path(result.products[0].path).is_file()  # the plot still shows what there is


def test_a_listed_visit_without_raws_is_not_usable(sweep: FocusSweep, tmp_path: pathlib.Path) -> None:
    files = [p for v in sweep.visits[:4] for p in sweep.paths[v].values()]
    result = _run(files, tmp_path, visits=sweep.visits[:5], make_plot=False)
    assert result.metrics["nVisits"] == 4 and result.metrics["nVisitsRequested"] == 5
    assert any(f"visit {sweep.visits[4]}: no raw of it" in f for f in result.summary["flags"])


def test_minimum_outside_the_swept_range(root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    # z0 = 0.037 mm; the sweep only covers 0.2 .. 0.5 mm
    sweep = _sweep(root, 200, offsets=[0.2, 0.3, 0.4, 0.5], detectors=(94,), seed=2, write_truth_file=False)
    result = _run(sweep.files, tmp_path, visits=sweep.visits)
    assert result.metrics["fitOk"] == 0 and result.metrics["bestFocus"] is None
    assert any("outside the swept range" in f for f in result.summary["flags"]), result.summary["flags"]
    assert result.summary["extrapolatedBestFocus"] < 0.2  # which way to sweep next
    assert result.telemetry[0].fields["bestFocus"] is None  # written as NaN, never a number


def test_flat_curve(root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    # k = 0: the focus does not change the PSF
    sweep = _sweep(root, 300, offsets=sweep_offsets(5, STEP), k=0.0, detectors=(94,), seed=3, write_truth_file=False)
    result = _run(sweep.files, tmp_path, visits=sweep.visits)
    assert result.metrics["fitOk"] == 0 and result.metrics["bestFocus"] is None
    flags = " ".join(result.summary["flags"])
    assert "is flat" in flags or "not positive" in flags, flags


def test_negative_curvature_and_exact_fits() -> None:
    z = np.array([-0.2, -0.1, 0.0, 0.1, 0.2])
    hump = np.sqrt(2.0 - 20 * z**2)
    fit = fit_focus_curve(z, hump, 0.005 * hump)
    assert not fit.ok and math.isnan(fit.best_focus)
    assert "not positive" in fit.flags[0]
    three = np.array([-0.1, 0.0, 0.1])
    fwhm = np.sqrt(0.64 + 25 * (three - 0.02) ** 2)
    fit = fit_focus_curve(three, fwhm, 0.005 * fwhm)
    assert fit.ok and fit.best_focus == pytest.approx(0.02, abs=1e-6)
    assert any("3 visits" in f for f in fit.flags)
    fit = fit_focus_curve([0.0, 0.0, 0.1], [1.0, 1.0, 1.2], [0.01] * 3)
    assert not fit.ok and "distinct focus" in fit.flags[0]


def test_noisy_points_give_a_scaled_uncertainty() -> None:
    rng = np.random.default_rng(5)
    z = np.linspace(-0.3, 0.3, 7)
    fwhm = np.sqrt(0.64 + 25 * (z - 0.01) ** 2) * (1 + 0.03 * rng.standard_normal(z.size))
    fit = fit_focus_curve(z, fwhm, 0.005 * fwhm)  # errors claimed 6x too small
    assert fit.ok and fit.chi2_reduced > 4
    assert abs(fit.best_focus - 0.01) < 3 * fit.best_focus_err  # the error was scaled up by sqrt(chi2)


def test_given_fwhm_is_not_measured_again(sweep: FocusSweep, tmp_path: pathlib.Path) -> None:
    files = [sweep.paths[v][94] for v in sweep.visits]
    given = {v: math.hypot(0.8, 5 * (z - 0.037)) for v, z in zip(sweep.visits, sweep.offsets, strict=True)}
    result = _run(files, tmp_path, visit_fwhm=given, make_plot=False)
    assert all(v["source"] == "given" and v["detectors"] == [] for v in result.summary["visits"])
    assert result.metrics["bestFocus"] == pytest.approx(0.037, abs=1e-4)
    assert result.metrics["fwhmAtBestFocus"] == pytest.approx(0.8, rel=1e-3)


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="not dayObs"):
        FocusSweepPipeline.make_config({"visits": [42]})
    with pytest.raises(ValueError, match="not a real date"):
        FocusSweepPipeline.make_config({"visits": [2025133100001]})
    with pytest.raises(ValueError, match="twice"):
        FocusSweepPipeline.make_config({"visits": [2025111500001, 2025111500001]})
    with pytest.raises(ValueError, match="min_visits"):
        FocusSweepPipeline.make_config({"min_visits": 2})
    with pytest.raises(ValueError, match="sfm"):
        FocusSweepPipeline.make_config({"sfm": {"no_such_setting": 1}})
    config = FocusSweepPipeline.make_config({"visit_fwhm": {"2025111500001": 0.9}})
    assert isinstance(config, FocusSweepConfig) and config.visit_fwhm == {2025111500001: 0.9}


# Requests and inputs (dispatch)


def _resolver(root: pathlib.Path, timeout: float = 0.05) -> InputResolver:
    instrument = get_instrument(CAMERA)
    return InputResolver(
        instrument,
        PipelineRegistry(),
        RawStore(root, instrument),
        raw_wait_timeout=timeout,
        mount_telemetry_wait=0.05,
        output_dir_for=lambda job: str(root / "out" / job.job_id),
    )


def _job(visits: list[int], data_id: DataId, config: dict | None = None) -> Job:
    made = FocusSweepPipeline.make_config({"visits": visits, **(config or {})})
    return Job(
        job_id="ra-1",
        pipeline="focus_sweep",
        data_id=data_id,
        config=made.model_dump(mode="json"),
        trigger=Trigger.COMMAND,
        time_limit=60.0,
        submit_time=0.0,
    )


def _last(sweep: FocusSweep, detectors: tuple[int, ...] | None = None) -> DataId:
    day, seq = sweep.data_id["dayObs"], sweep.data_id["seqNum"]
    return DataId(CAMERA, obsid=sweep.obsids[-1], day_obs=day, seq_num=seq, detectors=detectors)


def test_request_makes_one_job_with_the_visits(sweep: FocusSweep) -> None:
    maker = JobMaker(get_instrument(CAMERA), PipelineRegistry(), {}, 60.0, clock=lambda: 0.0)
    assert maker.split("focus_sweep", Trigger.COMMAND) == Split.IMAGE
    made = maker.request(
        "focus_sweep", json.dumps(sweep.data_id), json.dumps({"visits": sweep.visits}), Trigger.COMMAND
    )
    (job,) = made.jobs
    assert made.visit is None and job.config["visits"] == sweep.visits
    assert job.data_id.obsid == sweep.obsids[-1]
    with pytest.raises(JobRequestError, match="visits"):
        maker.request("focus_sweep", json.dumps(sweep.data_id), '{"visits": [1]}', Trigger.COMMAND)


def test_inputs_are_the_raws_of_every_visit(sweep: FocusSweep, root: pathlib.Path) -> None:
    files = asyncio.run(_resolver(root).resolve(_job(sweep.visits, _last(sweep))))
    assert files == [str(p) for p in sweep.files]
    assert DEFAULT_DETECTORS[CAMERA] == (94, 90, 98)


def test_inputs_for_the_detectors_the_data_id_names(sweep: FocusSweep, root: pathlib.Path) -> None:
    files = asyncio.run(_resolver(root).resolve(_job(sweep.visits[:3], _last(sweep, (94,)))))
    # the dataId's visit is part of the sweep even when the list leaves it out
    assert files == [str(sweep.paths[v][94]) for v in sweep.visits[:3] + [sweep.visits[-1]]]
    files = asyncio.run(_resolver(root).resolve(_job(sweep.visits, _last(sweep), {"detectors": [98]})))
    assert files == [str(sweep.paths[v][98]) for v in sweep.visits]


def test_missing_visits_are_left_out_and_none_is_an_error(sweep: FocusSweep, root: pathlib.Path) -> None:
    missing = 2025111500999
    files = asyncio.run(_resolver(root).resolve(_job([*sweep.visits[:2], missing], _last(sweep, (94,)))))
    assert files == [str(sweep.paths[v][94]) for v in (*sweep.visits[:2], sweep.visits[-1])]
    nowhere = DataId(CAMERA, obsid="MC_O_20251116_000001", day_obs=20251116, seq_num=1)
    with pytest.raises(ValueError, match="MC_O_20251116_000002"):
        asyncio.run(_resolver(root).resolve(_job([2025111600002], nowhere)))


# The command line


def test_cli_runs_it(sweep: FocusSweep, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    files = [str(sweep.paths[v][94]) for v in sweep.visits]
    config = json.dumps({"make_plot": False})
    assert main(["run", "focus_sweep", *files, "--json", "--output-dir", str(tmp_path), "--config", config]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["fitOk"] == 1
    assert abs(out["metrics"]["bestFocus"] - 0.037) < 0.05 * STEP


def test_one_outlier_is_left_out() -> None:
    z = np.linspace(-0.3, 0.3, 7)
    fwhm = np.sqrt(0.64 + 25 * (z - 0.02) ** 2)
    fwhm[5] *= 1.3  # a gust of wind
    fit = fit_focus_curve(z, fwhm, 0.005 * fwhm)
    assert fit.ok and fit.rejected == [5] and "left out" in fit.flags[0]
    assert fit.best_focus == pytest.approx(0.02, abs=1e-6)
    assert math.isnan(fit.residuals[5]) and len(fit.residuals) == 7
    kept = fit_focus_curve(z, fwhm, 0.005 * fwhm, outlier_threshold=0)
    assert kept.rejected == [] and abs(kept.best_focus - 0.02) > 0.005  # what the outlier does when kept
    five = fit_focus_curve(z[:5], fwhm[:5], 0.005 * fwhm[:5])
    assert five.rejected == []  # too few visits to tell an outlier from the curve


class FocusSweepCscTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    csc_index = 3  # LSSTCam

    async def test_process_data_runs_a_sweep(self) -> None:
        """processData as OCPS:101 sends it: the last visit as dataId, every visit in config."""
        sweep = await asyncio.to_thread(
            _sweep, self.root / "raw", 500, offsets=sweep_offsets(5, STEP), detectors=(94,), seed=4
        )
        async with self.enabled_csc(warm=True):
            job_id = await self.process(
                "focus_sweep", sweep.data_id, {"visits": sweep.visits, "detectors": [94]}, timeout=STD_TIMEOUT
            )
            (result,) = await self.job_results([job_id], timeout=120)
            assert result.success and result.pipeline == "focus_sweep", result.errorReport
            assert result.imageName == sweep.obsids[-1]
            details = json.loads(result.result)
            assert not details.get("publication"), details["publication"]
            sample = await self.remote.tel_focusSweepResult.next(flush=False, timeout=STD_TIMEOUT)
            assert sample.fitOk and sample.nVisits == 5 and sample.imageName == sweep.obsids[-1]
            assert abs(sample.bestFocus - sweep.truth["best_focus_z_mm"]) < 0.05 * STEP
            assert sample.visits == ",".join(map(str, sweep.visits))
            with open_results(self.database_path) as db:
                metrics = db.metrics(job_id=job_id, per_detector=False)
                assert metrics["bestFocus"][0] == pytest.approx(sample.bestFocus)
                assert metrics["fitOk"][0] == 1
