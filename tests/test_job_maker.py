"""JobMaker unit tests: each split rule of ``dispatch/job_maker.py``, gather jobs, and the error
messages, with no DDS, no Dask, no CSC."""

from __future__ import annotations

import json

import pytest

from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.data.data_id import DataId
from lsst.ts.rapidanalysis.dispatch.focal_plane import spread_order
from lsst.ts.rapidanalysis.dispatch.job_maker import (
    GATHER_PRIORITY,
    JobMaker,
    JobRequestError,
    Split,
    check_file_id,
)
from lsst.ts.rapidanalysis.dispatch.jobs import Trigger
from lsst.ts.rapidanalysis.pipelines.registry import PipelineRegistry

COMCAM = get_instrument(2)
OBSID = "CC_O_20251115_000001"
NOW = 1_800_000_000.0
SCIENCE = tuple(d.id for d in COMCAM.science_detectors)


@pytest.fixture
def maker() -> JobMaker:
    pipelines = {
        "test.sleep": {"config": {"duration": 2.0}, "time_limit": 7.0},
        "sfm_gather": {"time_limit": 30.0},
    }
    return JobMaker(COMCAM, PipelineRegistry(simulation_mode=True), pipelines, 60.0, clock=lambda: NOW)


def test_split_rule(maker: JobMaker) -> None:
    # Per-detector: split with a gather, whatever asked; detector-parallel: split only when autonomous.
    assert maker.split("sfm", Trigger.COMMAND) == Split.VISIT
    assert maker.split("sfm", Trigger.AUTONOMOUS) == Split.VISIT
    assert maker.split("image_stats", Trigger.COMMAND) == Split.IMAGE
    assert maker.split("image_stats", Trigger.AUTONOMOUS) == Split.DETECTOR
    assert maker.split("image_stats", Trigger.CATCHUP) == Split.DETECTOR
    assert maker.split("test.sleep", Trigger.AUTONOMOUS) == Split.IMAGE
    assert maker.split("no-such-pipeline", Trigger.AUTONOMOUS) == Split.IMAGE  # make() says why


def test_image_pipeline_is_one_job_with_configuration_and_time_limit(maker: JobMaker) -> None:
    made = maker.request("test.sleep", json.dumps({"obsid": OBSID}), '{"check_interval": 0.5}', Trigger.COMMAND)
    assert made.visit is None and len(made.jobs) == 1
    job = made.jobs[0]
    assert job.pipeline == "test.sleep" and job.trigger == Trigger.COMMAND
    assert job.data_id == DataId("LSSTComCam", obsid=OBSID, day_obs=20251115, seq_num=1)
    assert job.config == {"duration": 2.0, "check_interval": 0.5}  # site defaults, then the override
    assert job.time_limit == 7.0 and job.submit_time == NOW and job.priority == 0
    assert made.ids == {"jobId": job.job_id}
    # A pipeline the configuration does not name: the default time limit, its own defaults.
    other = maker.make("test.succeed", {"obsid": OBSID}, Trigger.AUTONOMOUS, priority=-2).jobs[0]
    assert other.time_limit == 60.0 and other.priority == -2


def test_image_pipeline_ignores_the_selection(maker: JobMaker) -> None:
    made = maker.make("test.sleep", {"obsid": OBSID}, Trigger.AUTONOMOUS, selected=[1, 4])
    assert [j.data_id.detectors for j in made.jobs] == [None]


def test_per_detector_pipeline_is_one_job_per_detector_and_a_visit(maker: JobMaker) -> None:
    made = maker.request("sfm", json.dumps({"obsid": OBSID, "detectors": [4, 0, 8]}), "", Trigger.COMMAND)
    assert [j.data_id.detectors for j in made.jobs] == [(0,), (4,), (8,)]
    visit = made.visit
    assert visit is not None
    assert (visit.image_name, visit.pipeline, visit.gather_pipeline) == (OBSID, "sfm", "sfm_gather")
    assert visit.expected == (4, 0, 8) and visit.trigger == Trigger.COMMAND  # as asked
    assert visit.job_ids == {j.job_id: j.data_id.detectors[0] for j in made.jobs}
    assert made.ids == {"jobIds": [j.job_id for j in made.jobs], "imageName": OBSID, "gather": "sfm_gather"}
    # Made in reverse spread order: the newest (run first) is the first of the spread.
    by_sequence = sorted(made.jobs, key=lambda j: j.sequence)
    assert [j.data_id.detectors[0] for j in by_sequence] == list(reversed(spread_order(COMCAM, (0, 4, 8))))


def test_per_detector_pipeline_without_detectors_runs_on_the_science_detectors(maker: JobMaker) -> None:
    made = maker.make("sfm", {"obsid": OBSID}, Trigger.AUTONOMOUS)
    assert sorted(j.data_id.detectors[0] for j in made.jobs) == sorted(SCIENCE)
    assert made.visit is not None and made.visit.expected == SCIENCE


def test_selection_sets_the_detectors_of_a_split(maker: JobMaker) -> None:
    made = maker.make("sfm", {"obsid": OBSID}, Trigger.AUTONOMOUS, selected={7, 2})
    assert [j.data_id.detectors for j in made.jobs] == [(2,), (7,)]
    assert made.visit is not None and made.visit.expected == (2, 7)


def test_detector_parallel_pipeline(maker: JobMaker) -> None:
    # Autonomous: one job per selected detector, no gather.
    made = maker.make("image_stats", {"obsid": OBSID}, Trigger.AUTONOMOUS, selected=[3, 1])
    assert made.visit is None and [j.data_id.detectors for j in made.jobs] == [(1,), (3,)]
    # processData: one job on all the detectors it names.
    made = maker.request("image_stats", json.dumps({"obsid": OBSID, "detectors": [1, 3]}), "", Trigger.COMMAND)
    assert made.visit is None and [j.data_id.detectors for j in made.jobs] == [(1, 3)]


def test_catch_up_makes_no_visit(maker: JobMaker) -> None:
    made = maker.make("sfm", {"obsid": OBSID, "detectors": [5]}, Trigger.CATCHUP, priority=-2)
    assert made.visit is None and [j.data_id.detectors for j in made.jobs] == [(5,)]
    assert made.jobs[0].priority == -2 and made.jobs[0].trigger == Trigger.CATCHUP


def test_file_job(maker: JobMaker) -> None:
    job = maker.file_job("sfm", "GC101_O_20251115_000001", "/data/files/x.fits", Trigger.AUTONOMOUS)
    assert job.data_id == DataId("LSSTComCam", obsid="GC101_O_20251115_000001")
    assert job.inputs == ["/data/files/x.fits"] and job.pipeline == "sfm"
    with pytest.raises(JobRequestError, match="is not a plain name"):
        maker.file_job("sfm", "../etc/passwd", "/x", Trigger.AUTONOMOUS)
    with pytest.raises(JobRequestError, match="has no id"):
        maker.file_job("sfm", "", "/x", Trigger.AUTONOMOUS)
    assert check_file_id("a.b-c_1") == "a.b-c_1"


def test_gather_job_and_description(maker: JobMaker) -> None:
    visit = maker.make("sfm", {"obsid": OBSID, "detectors": [0, 4]}, Trigger.AUTONOMOUS).visit
    assert visit is not None
    visit.rows[4] = {"detector": 4, "psfFwhm": 0.7}
    visit.failed[0] = "no raw"
    job = maker.gather_job(visit)
    assert job.pipeline == "sfm_gather" and job.trigger == Trigger.AUTONOMOUS
    assert job.data_id.obsid == OBSID and job.data_id.detectors is None
    assert job.priority == GATHER_PRIORITY and job.time_limit == 30.0 and job.submit_time == NOW
    assert maker.gather_description(visit, partial=True, regather=False) == {
        "imageName": OBSID,
        "instrument": "LSSTComCam",
        "expected": [0, 4],
        "detectors": [{"detector": 4, "psfFwhm": 0.7}],
        "failed": {"0": "no raw"},
        "partial": True,
        "regather": False,
    }


@pytest.mark.parametrize(
    "pipeline, data_id, config, match",
    [
        ("nope", {"obsid": OBSID}, "", r"Unknown pipeline 'nope'; known pipelines: .*sfm"),
        ("sfm_gather", {"obsid": OBSID}, "", r"pipeline 'sfm_gather' is run by the CSC itself; it cannot be requested"),
        ("test.sleep", {"obsid": OBSID}, '{"duration": -1}', r"duration: Input should be greater than or equal to 0"),
        ("test.sleep", {"obsid": OBSID}, '{"bogus": 1}', r"bogus: Extra inputs are not permitted"),
        ("test.sleep", {"obsid": OBSID}, "{", r"config is not valid JSON \(.* at character 1\)"),
        ("test.sleep", {"obsid": OBSID}, "[1]", r"config must be a JSON object of pipeline settings, not '\[1\]'"),
        # Strict JSON: what Python's json would read as something else is refused.
        ("test.sleep", {"obsid": OBSID}, '{"duration": NaN}', r"config holds NaN, which is not a JSON value"),
        ("test.sleep", {"obsid": OBSID}, '{"duration": 1e999}', r"config holds the number '1e999', which is too"),
        ("test.sleep", {"obsid": OBSID}, '{"duration": 1, "duration": 2}', r"config gives key 'duration' twice"),
        ("test.sleep", {"obsid": OBSID}, '{"duration": 1\u0661}', r"config is not valid JSON"),
        ("test.sleep", {"obsid": "XX_O_1"}, "", r"^bad dataId: "),
        (
            "sfm",
            {"groupId": "2025-11-15T21:03:14"},
            "",
            r"pipeline 'sfm' runs per detector of one image: give obsid or dayObs\+seqNum, not a groupId",
        ),
    ],
)
def test_bad_requests_say_what_is_wrong(maker: JobMaker, pipeline: str, data_id: dict, config: str, match: str) -> None:
    with pytest.raises(JobRequestError, match=match):
        maker.request(pipeline, json.dumps(data_id), config, Trigger.COMMAND)


def test_bad_data_id_as_a_dict(maker: JobMaker) -> None:
    with pytest.raises(JobRequestError, match=r"^bad dataId: "):
        maker.make("sfm", {"obsid": OBSID, "detectors": [999]}, Trigger.AUTONOMOUS)
