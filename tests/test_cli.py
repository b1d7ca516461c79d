"""``rapid_analysis run``: pipelines run locally from the command line."""

from __future__ import annotations

import json
import pathlib

import pytest

from fits_factory import write_raw
from lsst.ts.rapidanalysis.cli import SUBCOMMANDS, main

SMALL = 0.05


@pytest.fixture
def raw(tmp_path: pathlib.Path) -> pathlib.Path:
    return write_raw(tmp_path / "MC_O_20251115_000042_R22_S11.fits", obsid="MC_O_20251115_000042", scale=SMALL)


def test_run_prints_summary(raw: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    out_dir = tmp_path / "products"
    assert main(["run", "image_stats", str(raw), "--output-dir", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "image_stats: 1 input file(s), job local-" in out
    assert "image: MC_O_20251115_000042" in out
    assert "overscanLevel" in out and "meanReadNoise" in out and "nSaturated" in out
    assert "detectors (1):" in out and "94" in out
    (png,) = out_dir.glob("*.png")
    assert str(png) in out


def test_run_json(raw: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["run", "image_stats", str(raw), "--json", "--output-dir", str(tmp_path / "o"), "--config", "{}"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["image_name"] == "MC_O_20251115_000042"
    assert abs(result["metrics"]["overscanLevel"] - 1000) < 0.5
    assert result["detector_metrics"][0]["detector"] == 94
    assert pathlib.Path(result["products"][0]["path"]).is_file()


def test_run_config_applies(raw: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    config_file = tmp_path / "config.json"
    config_file.write_text('{"make_plot": false}')
    for config in ('{"make_plot": false}', f"@{config_file}"):
        assert main(["run", "image_stats", str(raw), "--json", "--config", config]) == 0
        assert json.loads(capsys.readouterr().out)["products"] == []


def test_default_output_dir(
    raw: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", "image_stats", str(raw)]) == 0
    (job_dir,) = (tmp_path / "rapid_analysis_output").iterdir()
    assert job_dir.name.startswith("local-") and list(job_dir.glob("*.png"))


def test_unknown_pipeline(raw: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "no_such_pipeline", str(raw)]) == 2
    err = capsys.readouterr().err
    assert "Unknown pipeline 'no_such_pipeline'" in err and "image_stats" in err


def test_bad_config(raw: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "image_stats", str(raw), "--config", '{"n_sigma_clip": "lots"}']) == 2
    assert "n_sigma_clip" in capsys.readouterr().err
    assert main(["run", "image_stats", str(raw), "--config", '{"nope": 1}']) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["run", "image_stats", str(raw), "--config", "{not json"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["run", "image_stats", str(raw), "--config", "[1, 2]"]) == 2
    assert "JSON object" in capsys.readouterr().err
    assert main(["run", "image_stats", str(raw), "--config", "@/no/such/config.json"]) == 2
    assert "cannot read configuration file" in capsys.readouterr().err


def test_missing_inputs(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "image_stats", str(tmp_path / "a.fits"), str(tmp_path / "b.fits")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "a.fits" in err and "b.fits" in err
    assert main(["run", "image_stats", str(tmp_path)]) == 2
    assert "not regular files" in capsys.readouterr().err


def test_simulate_enables_test_pipelines(raw: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "test.succeed", str(raw)]) == 2
    assert "add --simulate" in capsys.readouterr().err
    code = main(["run", "test.succeed", str(raw), "--simulate", "--json", "--config", '{"value": 3.5}'])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == {"value": 3.5, "nInputs": 1}


def test_pipeline_error_exit_code(raw: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    config = '{"message": "no stars", "exit_code": 7}'
    assert main(["run", "test.fail", str(raw), "--simulate", "--config", config]) == 7
    assert "pipeline test.fail failed: no stars" in capsys.readouterr().err

    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"\0" * 5000)
    assert main(["run", "image_stats", str(garbage), "--output-dir", str(tmp_path / "o")]) == 3  # no usable input
    assert "garbage.fits" in capsys.readouterr().err


def test_crash_exit_code(raw: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    config = '{"crash": true, "message": "boom"}'
    assert main(["run", "test.fail", str(raw), "--simulate", "--config", config]) == 1
    assert "crashed: RuntimeError: boom" in capsys.readouterr().err


def test_usage(capsys: pytest.CaptureFixture) -> None:
    assert "run" in SUBCOMMANDS
    assert main(["--help"]) == 0
    assert "run" in capsys.readouterr().out
    assert main([]) == 2
    assert main(["run", "image_stats"]) == 2  # no INPUT
    assert "INPUT" in capsys.readouterr().err


def test_run_new_pipelines_on_simulated_files(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    """sfm, spectrum_examiner and mount_torque run by hand on files, as an observer re-runs them."""
    from lsst.ts.rapidanalysis.data.mount_telemetry import MountTelemetryBuffer
    from lsst.ts.rapidanalysis.sim.raw_writer import simulate_detector
    from lsst.ts.rapidanalysis.sim.scene import SceneConfig
    from lsst.ts.rapidanalysis.sim.spectrum import SpectrumConfig, simulate_dispersed

    science = simulate_detector(
        "LSSTCam", 94, tmp_path, "MC_O_20251115_000050", scene=SceneConfig(n_stars=200), scale=0.3
    ).path
    assert main(["run", "sfm", str(science), "--json", "--output-dir", str(tmp_path / "sfm")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["detector_metrics"][0]["detector"] == 94 and result["telemetry"][0]["topic"] == "sfmDetectorMetrics"

    spectrum = SpectrumConfig(zeroth_order_x=500.0, zeroth_order_y=100.0, offset=100.0, length=800.0)
    dispersed = simulate_dispersed(tmp_path, "AT_O_20251115_000051", exp_time=20.0, scale=0.25, spectrum=spectrum).path
    box = json.dumps({"box": {"offset": 100, "length": 1000, "half_width": 60, "background_width": 20}})
    assert (
        main(
            ["run", "spectrum_examiner", str(dispersed), "--json", "--config", box, "--output-dir", str(tmp_path / "s")]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["telemetry"][0]["topic"] == "spectrumMetrics" and result["telemetry"][0]["fields"]["nGoodRows"] > 50

    # A telemetry file with no samples in the window: a clear failure (exit code 3), not a crash.
    empty = tmp_path / "telemetry.ecsv"
    MountTelemetryBuffer().write(empty, 0.0, 1.0)
    code = main(["run", "mount_torque", str(dispersed), str(empty), "--output-dir", str(tmp_path / "m")])
    captured = capsys.readouterr()
    assert code == 3, captured
    assert "telemetry" in (captured.out + captured.err).lower()


def _imported_by(argv: list[str]) -> set[str]:
    """The modules a fresh interpreter has imported after ``rapid_analysis ARGV``."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from lsst.ts.rapidanalysis.cli import main\n"
        f"code = main({argv!r})\n"
        "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return set(done.stderr.split())


def test_help_imports_no_pipeline() -> None:
    """``--help`` and a usage error parse arguments only: no SciPy, astropy, matplotlib or pipeline."""
    for argv in (["--help"], ["frob"], ["run", "--help"]):
        modules = _imported_by(argv)
        heavy = {m for m in modules if m.split(".")[0] in ("scipy", "astropy", "matplotlib", "dask", "cyclonedds")}
        assert not heavy, (argv, sorted(heavy)[:5])
        assert not any(m.startswith("lsst.ts.rapidanalysis.pipelines.") for m in modules), argv


def test_pipeline_help_imports_that_pipeline_alone(capsys: pytest.CaptureFixture) -> None:
    modules = _imported_by(["run", "image_stats", "--help"])
    assert "lsst.ts.rapidanalysis.pipelines.image_stats" in modules
    for other in ("sfm", "sfm_gather", "spectrum_examiner", "mount_torque"):
        assert f"lsst.ts.rapidanalysis.pipelines.{other}" not in modules
    assert main(["run", "image_stats", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: rapid_analysis run" in out and "histogram_bins = 100" in out
    assert main(["run", "nope", "--help"]) == 2
    assert "Unknown pipeline 'nope'" in capsys.readouterr().err
