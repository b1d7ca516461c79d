"""Named pipelines: the built-ins plus the entry-point group ``lsst.ts.rapidanalysis.pipelines``."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from .base import Pipeline
from .image_stats import ImageStatsPipeline
from .mount_torque import MountTorquePipeline
from .sfm import SfmPipeline
from .sfm_gather import SfmGatherPipeline
from .spectrum_examiner import SpectrumExaminerPipeline
from .test_pipelines import FailPipeline, SleepPipeline, SucceedPipeline

__all__ = ["PipelineRegistry", "ENTRY_POINT_GROUP", "BUILTIN_PIPELINES"]

ENTRY_POINT_GROUP = "lsst.ts.rapidanalysis.pipelines"
BUILTIN_PIPELINES: tuple[type[Pipeline], ...] = (
    ImageStatsPipeline,
    SfmPipeline,
    SfmGatherPipeline,
    SpectrumExaminerPipeline,
    MountTorquePipeline,
    SucceedPipeline,
    FailPipeline,
    SleepPipeline,
)

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
        for pipeline in BUILTIN_PIPELINES:
            self.add(pipeline)
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
        if pipeline.name in self._pipelines and self._pipelines[pipeline.name] is not pipeline:
            raise ValueError(f"Two pipelines named {pipeline.name!r}")
        self._pipelines[pipeline.name] = pipeline

    @property
    def names(self) -> list[str]:
        """Known pipeline names, sorted."""
        return sorted(self._pipelines)

    def get(self, name: str) -> type[Pipeline]:
        """The pipeline class; ValueError listing the known names if there is none."""
        try:
            return self._pipelines[name]
        except KeyError:
            raise ValueError(f"Unknown pipeline {name!r}; known pipelines: {', '.join(self.names)}") from None
