"""InputResolver unit tests: the rules of ``dispatch/inputs.py`` that need no raw to land, with no
DDS, no Dask, no CSC."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.data.data_id import DataId
from lsst.ts.rapidanalysis.data.image_listener import ImageArrival
from lsst.ts.rapidanalysis.data.raw_store import RawStore
from lsst.ts.rapidanalysis.dispatch.inputs import InputResolver
from lsst.ts.rapidanalysis.dispatch.jobs import Job, Trigger
from lsst.ts.rapidanalysis.pipelines.registry import PipelineRegistry

OBSID = "CC_O_20251115_000001"


def resolver(tmp_path: pathlib.Path, instrument: str = "LSSTComCam") -> InputResolver:
    inst = get_instrument(instrument)
    return InputResolver(
        inst,
        PipelineRegistry(simulation_mode=True),
        RawStore(tmp_path, inst),
        raw_wait_timeout=0.05,
        mount_telemetry_wait=0.05,
        output_dir_for=lambda job: str(tmp_path / "out" / job.job_id),
    )


def job(pipeline: str, detectors: tuple[int, ...] | None = None, **fields) -> Job:
    return Job(
        job_id="ra-1",
        pipeline=pipeline,
        data_id=DataId("LSSTComCam", obsid=OBSID, day_obs=20251115, seq_num=1, detectors=detectors),
        config={},
        trigger=Trigger.COMMAND,
        time_limit=10.0,
        submit_time=0.0,
        **fields,
    )


def test_inputs_set_by_the_csc_are_kept(tmp_path: pathlib.Path) -> None:
    assert asyncio.run(resolver(tmp_path).resolve(job("sfm", inputs=["/a/visit.json"]))) == ["/a/visit.json"]


def test_a_pipeline_that_needs_no_raw_gets_none(tmp_path: pathlib.Path) -> None:
    assert asyncio.run(resolver(tmp_path).resolve(job("test.succeed"))) == []


@pytest.mark.parametrize("pipeline", ["image_stats", "mount_torque"])
def test_a_raw_that_never_lands_is_a_value_error_naming_it(tmp_path: pathlib.Path, pipeline: str) -> None:
    with pytest.raises(ValueError, match=rf"no complete raw of {OBSID} for detector\(s\) 4 "):
        asyncio.run(resolver(tmp_path).resolve(job(pipeline, (4,))))


def test_witness_detector(tmp_path: pathlib.Path) -> None:
    assert resolver(tmp_path, "LSSTCam").witness_detector() == get_instrument("LSSTCam").by_name["R22_S11"].id
    assert resolver(tmp_path, "LATISS").witness_detector() == 0


def test_image_kind_from_the_announced_type(tmp_path: pathlib.Path) -> None:
    inputs = resolver(tmp_path)
    assert asyncio.run(inputs.image_kind(ImageArrival(OBSID, img_type="OBJECT"))) == "science"
    assert asyncio.run(inputs.image_kind(ImageArrival(OBSID, img_type="BIAS"))) == "calibration"
