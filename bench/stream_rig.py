"""A simulated LSSTCam stream at a CSC, as ``bench/keepup.py`` and ``bench/scale.py`` drive it.

The CSC runs in its own process; the bench follows it through a RapidAnalysis Remote (the topics
in `STREAM_TOPICS`) and the camera's ``endReadout``, and takes images with the MTCamera simulator
run in the bench's process, whose stream writer puts the raws on disk. Each bench keeps its own
watcher (what it records of each visit) and its own figures; this module is only the wiring.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
from typing import Any, Protocol

from benchlib import Interrupts, StopRun, await_csc_enabled
from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sim.camera_sim import CameraSimulator
from lsst.ts.rapidanalysis.sim.stream import StreamWriter

__all__ = ["STREAM_TOPICS", "StreamWatcher", "make_remotes", "start_camera", "await_autonomous", "take_visit"]

#: What a stream bench hears from the CSC.
STREAM_TOPICS = [
    "summaryState",
    "errorCode",
    "focalPlaneMode",
    "visitGathered",
    "sfmVisitMetrics",
    "poolStatus",
    "jobResult",
]
#: How long after ``takeImages`` ends its image's ``endReadout`` must have been heard (s).
END_READOUT_WAIT = 10.0


class StreamWatcher(Protocol):
    """What a bench's watcher has: a visit per ``endReadout`` heard, and the CSC's events."""

    visits: list[Any]
    mode: Any
    new_visit: asyncio.Event
    mode_seen: asyncio.Event

    def on_end_readout(self, data: Any) -> None: ...
    def on_focal_plane_mode(self, data: Any) -> None: ...
    def on_visit_gathered(self, data: Any) -> None: ...
    def on_job_result(self, data: Any) -> None: ...
    def on_visit_metrics(self, data: Any) -> None: ...
    def on_pool_status(self, data: Any) -> None: ...


def make_remotes(domain: sal.Domain, sal_index: int) -> tuple[sal.Remote, sal.Remote]:
    """The RapidAnalysis Remote (`STREAM_TOPICS`) and the MTCamera one (``endReadout``)."""
    ra = sal.Remote(domain, "RapidAnalysis", sal_index, include=STREAM_TOPICS)
    cam = sal.Remote(domain, "MTCamera", include=["endReadout"])
    return ra, cam


async def start_camera(
    ra: sal.Remote,
    cam: sal.Remote,
    watcher: StreamWatcher,
    writer: StreamWriter,
    raw_root: pathlib.Path,
    time_scale: float,
    interrupts: Interrupts,
    **camera_options: Any,
) -> tuple[CameraSimulator, str]:
    """Start the remotes, follow them with ``watcher``, start the MTCamera simulator.

    Returns the simulator (ENABLED; the caller closes it) and the dayObs it names images with:
    today's, fixed, so that the fast simulated clock does not roll the observing day mid-run.
    """
    await asyncio.gather(ra.start_task, cam.start_task)
    # Callbacks before the CSC publishes anything (setting one flushes what was queued).
    cam.evt_endReadout.callback = watcher.on_end_readout
    ra.evt_focalPlaneMode.callback = watcher.on_focal_plane_mode
    ra.evt_visitGathered.callback = watcher.on_visit_gathered
    ra.evt_jobResult.callback = watcher.on_job_result
    ra.tel_sfmVisitMetrics.callback = watcher.on_visit_metrics
    ra.tel_poolStatus.callback = watcher.on_pool_status
    day_obs = time.strftime("%Y%m%d", time.gmtime(sal.current_tai() - 12 * 3600))
    camera = CameraSimulator(
        "LSSTCam",
        writer=writer.write_exposure,
        raw_root=raw_root,
        time_scale=time_scale,
        day_obs_override=day_obs,
        initial_state=sal.State.ENABLED,
        **camera_options,
    )
    try:
        await camera.start_task
    except BaseException:
        with contextlib.suppress(Exception):
            await camera.close()
        raise
    interrupts.install()  # the camera simulator installed its own signal handlers
    return camera, day_obs


async def await_autonomous(
    ra: sal.Remote, process: asyncio.subprocess.Process, watcher: StreamWatcher, timeout: float = 180.0
) -> None:
    """Wait for the CSC to be ENABLED and to say its focal-plane mode; `StopRun` otherwise."""
    await await_csc_enabled(ra, process, timeout=timeout)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watcher.mode_seen.wait(), 60)
    if watcher.mode is None:
        raise StopRun("no focalPlaneMode within 60 s of ENABLED (autonomous processing not started?)")


async def take_visit(
    cam: sal.Remote, watcher: StreamWatcher, exp_time: float, obs_note: str, timeout: float
) -> tuple[Any, float]:
    """One image (``takeImages`` of one OBJECT exposure); its visit, once its ``endReadout`` is heard.

    Returns the watcher's new visit and how long ``takeImages`` took (s). `StopRun` if no
    ``endReadout`` is heard within `END_READOUT_WAIT` of the command's end.
    """
    n_before = len(watcher.visits)
    watcher.new_visit.clear()
    t_take = time.monotonic()
    await cam.cmd_takeImages.set_start(
        numImages=1,
        expTime=exp_time,
        shutter=True,
        sensors="",
        keyValueMap="imageType: OBJECT",
        obsNote=obs_note,
        timeout=timeout,
    )
    take_seconds = time.monotonic() - t_take
    deadline = time.monotonic() + END_READOUT_WAIT
    while len(watcher.visits) == n_before and time.monotonic() < deadline:
        watcher.new_visit.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher.new_visit.wait(), 1)
    if len(watcher.visits) == n_before:
        raise StopRun(
            f"no endReadout heard within {END_READOUT_WAIT:g} s of takeImages completing (visit {n_before + 1})"
        )
    return watcher.visits[-1], take_seconds
