"""The pipeline registry: built-ins, simulation-only pipelines, and the entry-point group."""

from __future__ import annotations

import pathlib
import sys
import textwrap

import pytest

from lsst.ts.rapidanalysis.pipelines.base import Pipeline, PipelineContext
from lsst.ts.rapidanalysis.pipelines.registry import ENTRY_POINT_GROUP, PipelineRegistry


def test_simulation_only_pipelines_need_simulation_mode() -> None:
    assert "test.succeed" not in PipelineRegistry(simulation_mode=False).names
    assert {"test.succeed", "test.fail", "test.sleep"} <= set(PipelineRegistry(simulation_mode=True).names)
    assert "image_stats" in PipelineRegistry(simulation_mode=False).names


def test_unknown_pipeline_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"Unknown pipeline 'nope'; known pipelines: .*image_stats"):
        PipelineRegistry().get("nope")


def test_config_errors_name_the_field() -> None:
    pipeline = PipelineRegistry(simulation_mode=True).get("test.sleep")
    with pytest.raises(ValueError, match=r"duration: Input should be greater than or equal to 0"):
        pipeline.make_config({"duration": -1})
    with pytest.raises(ValueError, match=r"bogus: Extra inputs are not permitted"):
        pipeline.make_config({"bogus": 1})
    # Later layers override earlier ones field by field.
    assert pipeline.make_config({"duration": 2, "check_interval": 0.5}, {"duration": 3}).model_dump() == {
        "duration": 3.0,
        "check_interval": 0.5,
    }


def test_succeed_reports_requested_telemetry(tmp_path: pathlib.Path) -> None:
    pipeline = PipelineRegistry(simulation_mode=True).get("test.succeed")
    config = pipeline.make_config({"telemetry": {"spectrumMetrics": {"imageName": "AT_O_20251115_000001"}}})
    result = pipeline().run([], config, PipelineContext("job", tmp_path))
    assert [(t.topic, t.fields) for t in result.telemetry] == [
        ("spectrumMetrics", {"imageName": "AT_O_20251115_000001"})
    ]


@pytest.fixture
def plugin_distribution(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """An installed distribution (a real .dist-info on sys.path) that registers two pipelines."""
    package = tmp_path / "ra_plugin_example"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            from lsst.ts.rapidanalysis.pipelines.base import Pipeline, PipelineResult

            class Doubler(Pipeline):
                name = "plugin.doubler"
                description = "Counts its inputs twice"
                requires_inputs = False

                def run(self, inputs, config, context):
                    return PipelineResult(metrics={"twice": 2 * len(inputs)})

            NOT_A_PIPELINE = 42
            """
        )
    )
    dist_info = tmp_path / "ra_plugin_example-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: ra-plugin-example\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "doubler = ra_plugin_example:Doubler\n"
        "broken = ra_plugin_example:NOT_A_PIPELINE\n"
        "missing = ra_plugin_example_missing:Nothing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("ra_plugin_example", None)


def test_entry_point_pipelines_are_loaded(plugin_distribution: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = PipelineRegistry()
    assert "plugin.doubler" in registry.names
    pipeline = registry.get("plugin.doubler")
    assert issubclass(pipeline, Pipeline)
    result = pipeline().run(
        [pathlib.Path("a"), pathlib.Path("b")], pipeline.make_config(), PipelineContext("j", plugin_distribution)
    )
    assert result.metrics == {"twice": 4}
    # Broken plug-ins are reported and skipped, never fatal.
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "broken" in messages and "missing" in messages


def test_entry_points_can_be_turned_off(plugin_distribution: pathlib.Path) -> None:
    assert "plugin.doubler" not in PipelineRegistry(load_entry_points=False).names


def test_builtin_table_agrees_with_the_classes() -> None:
    """Built-ins are imported on first use: the table's names and simulation flags are the classes'."""
    from lsst.ts.rapidanalysis.pipelines.registry import BUILTIN_PIPELINES

    registry = PipelineRegistry(simulation_mode=True)
    for name, (_, _, simulation_only) in BUILTIN_PIPELINES.items():
        pipeline = registry.get(name)
        assert pipeline.name == name and pipeline.simulation_only == simulation_only
    with pytest.raises(ValueError, match="Two pipelines named 'sfm'"):

        class Impostor(Pipeline):
            name = "sfm"

            def run(self, inputs, config, context):  # pragma: no cover - never run
                raise AssertionError

        registry.add(Impostor)


def test_unknown_long_name_is_shortened_and_still_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as error:
        PipelineRegistry().get("x" * 100_000)
    message = str(error.value)
    assert len(message) < 500 and "(100000 characters)" in message and "image_stats" in message
