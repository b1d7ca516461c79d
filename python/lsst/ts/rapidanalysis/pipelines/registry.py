"""Named pipelines: the built-ins plus the entry-point group ``lsst.ts.rapidanalysis.pipelines``."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from .base import Pipeline

__all__ = ["PipelineRegistry", "ENTRY_POINT_GROUP", "BUILTIN_PIPELINES"]

ENTRY_POINT_GROUP = "lsst.ts.rapidanalysis.pipelines"
#: The built-in pipelines: name -> (module of this package, class, simulation only). A pipeline's
#: module (SciPy, matplotlib and all) is imported only when the pipeline is first asked for, so
#: the command line and a worker pay only for the pipelines they run.
BUILTIN_PIPELINES: dict[str, tuple[str, str, bool]] = {
    "image_stats": ("image_stats", "ImageStatsPipeline", False),
    "sfm": ("sfm", "SfmPipeline", False),
    "sfm_gather": ("sfm_gather", "SfmGatherPipeline", False),
    "spectrum_examiner": ("spectrum_examiner", "SpectrumExaminerPipeline", False),
    "mount_torque": ("mount_torque", "MountTorquePipeline", False),
    "focus_sweep": ("focus_sweep", "FocusSweepPipeline", False),
    "test.succeed": ("test_pipelines", "SucceedPipeline", True),
    "test.fail": ("test_pipelines", "FailPipeline", True),
    "test.sleep": ("test_pipelines", "SleepPipeline", True),
    "test.cost": ("test_pipelines", "CostPipeline", True),
}

log = logging.getLogger(__name__)


class PipelineRegistry:
    """Look up pipelines by name.

    Parameters
    ----------
    simulation_mode : `bool`
        Include the simulation-only (test) pipelines.
    load_entry_points : `bool`
        Also load pipelines registered by other packages.
    """

    def __init__(self, simulation_mode: bool = False, load_entry_points: bool = True) -> None:
        self.simulation_mode = simulation_mode
        self._pipelines: dict[str, type[Pipeline]] = {}
        self._builtin = {
            name: (module, cls)
            for name, (module, cls, simulation_only) in BUILTIN_PIPELINES.items()
            if simulation_mode or not simulation_only
        }
        if load_entry_points:
            for entry_point in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    pipeline = entry_point.load()
                    self.add(pipeline)
                except Exception as e:  # a broken plug-in must not take the CSC down
                    log.error("Could not load pipeline entry point %s: %s", entry_point.name, e)

    def add(self, pipeline: type[Pipeline]) -> None:
        """Register a pipeline class (simulation-only ones only in simulation mode)."""
        if not (isinstance(pipeline, type) and issubclass(pipeline, Pipeline)):
            raise TypeError(f"{pipeline!r} is not a Pipeline subclass")
        if pipeline.simulation_only and not self.simulation_mode:
            return
        if (pipeline.name in self._pipelines and self._pipelines[pipeline.name] is not pipeline) or (
            pipeline.name in self._builtin and self._load_builtin(pipeline.name) is not pipeline
        ):
            raise ValueError(f"Two pipelines named {pipeline.name!r}")
        self._pipelines[pipeline.name] = pipeline

    @property
    def names(self) -> list[str]:
        """Known pipeline names, sorted."""
        return sorted(set(self._pipelines) | set(self._builtin))

    def get(self, name: str) -> type[Pipeline]:
        """The pipeline class; ValueError listing the known names if there is none."""
        if name in self._pipelines:
            return self._pipelines[name]
        if name in self._builtin:
            return self._load_builtin(name)
        shown = repr(name) if len(name) <= 80 else f"{name[:60]!r}… ({len(name)} characters)"
        raise ValueError(f"Unknown pipeline {shown}; known pipelines: {', '.join(self.names)}")

    def _load_builtin(self, name: str) -> type[Pipeline]:
        module, cls = self._builtin[name]
        pipeline = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
        if pipeline.name != name:  # the table above and the class disagree: a bug here, said plainly
            raise RuntimeError(f"built-in pipeline {module}.{cls} is named {pipeline.name!r}, not {name!r}")
        self._pipelines[name] = pipeline
        return pipeline
