"""A generated night in a results database: what the page's tests, screenshots and benchmarks show.

Every row goes in through `ResultsDatabase`'s public write methods, as the CSC writes them: an
``ra_image`` row per visit, a job per detector with its per-detector metrics, a gather job per
visit with the visit metrics (the headline metrics among them), and the focal-plane map PNG of
some visits drawn by the real visit-plot code, under the output root.
"""

from __future__ import annotations

import datetime
import math
import os
import pathlib
import random
from typing import Any

from ..data.camera import get_instrument
from ..results.database import ResultsDatabase

__all__ = ["make_sample_night", "day_obs_start_tai"]

_PREFIX = {"LATISS": "AT", "LSSTComCam": "CC", "LSSTCam": "MC"}
_FILTERS = ("g", "r", "i", "z", "y")


def day_obs_start_tai(day_obs: int) -> float:
    """TAI unix seconds of 23:00 UTC on ``day_obs`` (evening twilight at Cerro Pachón)."""
    from ..sal.tai import tai_from_utc

    day = datetime.datetime.strptime(str(day_obs), "%Y%m%d").replace(hour=23, tzinfo=datetime.UTC)
    return tai_from_utc(day.timestamp())


def _visit_value(metric: str, rng: random.Random, t: float) -> float:
    """A plausible value of a visit metric, by its name (slowly varying with ``t`` in 0..1)."""
    name = metric.lower()
    if "fwhm" in name or "seeing" in name:
        return 0.75 + 0.25 * math.sin(3 * t) + rng.gauss(0, 0.04)
    if "ellip" in name or name.startswith("e1") or name.startswith("e2"):
        return abs(rng.gauss(0.06, 0.02))
    if "sky" in name:
        return 1500 + 800 * t + rng.gauss(0, 40)
    if "zero" in name:
        return 30.9 + rng.gauss(0, 0.05)
    if "efftime" in name or "eff_time" in name:
        return max(0.0, 27 - 8 * t + rng.gauss(0, 1.5))
    if "mount" in name or "impact" in name:
        return abs(rng.gauss(0.02, 0.015))
    if "continuum" in name or "spectrum" in name:
        return 1.0 + rng.gauss(0, 0.1)
    return rng.random()


def make_sample_night(
    database: ResultsDatabase,
    output_root: str | os.PathLike[str],
    *,
    instrument: str = "LSSTComCam",
    day_obs: int = 20251115,
    n_visits: int = 12,
    n_plots: int = 3,
    seed: int = 16,
    image_name_suffix: str = "",
) -> list[str]:
    """Write a night of visits into ``database`` and its plots under ``output_root``.

    Parameters
    ----------
    database : `ResultsDatabase`
        Where the rows go (opened with ``create=True``).
    output_root : `str` or path-like
        The products' root directory; plots go to ``<instrument>/<dayObs>/<image>/...``.
    instrument : `str`
        ``LATISS``, ``LSSTComCam`` or ``LSSTCam`` (every detector is processed).
    day_obs : `int`
        The night.
    n_visits : `int`
        Visits; most are science images, one a bias and, from 6 on, one failed and one partial.
    n_plots : `int`
        The last this many visits get a focal-plane map PNG (each takes ~0.3 s to draw).
    seed : `int`
        Random seed (the same night every time).
    image_name_suffix : `str`
        Appended to every image name (tests give names with markup to check escaping).

    Returns
    -------
    image_names : `list` [`str`]
        The visits' image names, in order.
    """
    from ..pipelines.visit_plots import plot_focal_plane
    from .queries import HEADLINE_METRICS

    camera = get_instrument(instrument)
    rng = random.Random(seed)
    root = pathlib.Path(output_root)
    start = day_obs_start_tai(day_obs)
    detectors = [d.id for d in camera.detectors]
    names: list[str] = []
    for i in range(n_visits):
        seq = i + 1
        image = f"{_PREFIX[instrument]}_O_{day_obs}_{seq:06d}{image_name_suffix}"
        names.append(image)
        t = i / max(1, n_visits - 1)
        obs_time = start + 45.0 * i
        end_readout = obs_time + 32.0
        is_bias = i == 0
        failed = n_visits >= 6 and i == 3
        partial = n_visits >= 6 and i == 4
        n_expected = len(detectors)
        done = detectors if not partial else detectors[: max(1, len(detectors) - 2)]
        state, reason = "complete", None
        if failed:
            done = []
            state, reason = "failed", "every detector job failed: exit code 3 (ISR: saturated amplifiers)"
        elif partial:
            state, reason = "partial", f"{len(detectors) - len(done)} detector(s) timed out after 30 s"
        first_detector = end_readout + rng.uniform(4.0, 9.0)
        visit_metrics = first_detector + rng.uniform(6.0, 14.0)
        with database.batch():
            database.record_image(
                instrument,
                image,
                day_obs=day_obs,
                seq_num=seq,
                image_type="BIAS" if is_bias else "SCIENCE",
                filter="none" if is_bias else _FILTERS[(i // 4) % len(_FILTERS)],
                exposure_time=0.0 if is_bias else 30.0,
                obs_time=obs_time,
                trigger="autonomous",
                end_readout_time=end_readout,
                first_detector_time=None if failed else first_detector,
                visit_metrics_time=None if failed or is_bias else visit_metrics,
                n_expected=n_expected,
                n_done=len(done),
                n_failed=n_expected if failed else 0,
                n_dropped=0,
                state=state,
                reason=reason,
            )
            rows: list[dict[str, Any]] = []
            pipeline = "image_stats" if is_bias else "sfm"
            for detector in detectors:
                job_id = f"RA{instrument[-3:]}-{day_obs}-{seq:04d}-{detector:03d}"
                ok = detector in done
                ended = first_detector + 0.02 * detector
                database.record_job(
                    job_id,
                    instrument=instrument,
                    pipeline=pipeline,
                    image_name=image,
                    data_id={"instrument": instrument, "dayObs": day_obs, "seqNum": seq, "detector": detector},
                    trigger="autonomous",
                    state="succeeded" if ok else ("failed" if failed else "timed_out"),
                    success=ok,
                    exit_code=0 if ok else (3 if failed else 4),
                    error_report="" if ok else (reason or ""),
                    submit_time=end_readout,
                    start_time=end_readout + 0.5,
                    end_time=ended,
                    duration=ended - end_readout - 0.5,
                )
                if not ok or is_bias:
                    continue
                x, y = (detector % 3) - 1, (detector // 3) % 3 - 1
                row = {
                    "detector": detector,
                    "psfFwhm": 0.8 + 0.25 * math.sin(3 * t) + 0.03 * (x * x + y * y) + rng.gauss(0, 0.02),
                    "e1": rng.gauss(0.02 * x, 0.01),
                    "e2": rng.gauss(0.02 * y, 0.01),
                    "skyBg": 1500 + 800 * t + rng.gauss(0, 30),
                    "zeroPoint": 30.9 + rng.gauss(0, 0.03),
                }
                rows.append(row)
                database.record_metrics(job_id, image, detector_metrics=[row])
            if failed or is_bias:
                continue
            gather_id = f"RA{instrument[-3:]}-{day_obs}-{seq:04d}-gather"
            database.record_job(
                gather_id,
                instrument=instrument,
                pipeline="sfm_gather",
                image_name=image,
                data_id={"instrument": instrument, "dayObs": day_obs, "seqNum": seq},
                trigger="autonomous",
                state="succeeded",
                success=True,
                exit_code=0,
                error_report="",
                submit_time=first_detector,
                start_time=first_detector + 0.1,
                end_time=visit_metrics,
                duration=visit_metrics - first_detector - 0.1,
            )
            visit = {metric: _visit_value(metric, rng, t) for metric in HEADLINE_METRICS.values()}
            visit["nDetectors"] = len(rows)
            database.record_metrics(gather_id, image, metrics=visit)
            if i >= n_visits - n_plots:
                directory = root / instrument / str(day_obs) / image / f"sfm_gather-{gather_id}"
                directory.mkdir(parents=True, exist_ok=True)
                path = plot_focal_plane(camera, rows, directory / "focal_plane.png", f"{image}: PSF FWHM", detectors)
                database.record_product(
                    gather_id,
                    image,
                    path,
                    url=f"file://{path}",
                    mime_type="image/png",
                    byte_size=path.stat().st_size,
                    description="focal-plane map: PSF FWHM and ellipticity",
                    created=visit_metrics,
                )
    return names
