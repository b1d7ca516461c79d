"""``rapid_analysis simulate images|night``: make raws, or run a night's untriggered image stream.

``images`` renders exposures in full (stars, sky, cosmic rays, truth and reference catalog beside
each raw) into a raw store. ``night`` starts the camera simulator on DDS with the mount
simulator and takes images on a cadence, as the camera does at night, without asking anyone to
process them: what autonomous processing listens to.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import time

from ..data.camera import get_instrument
from ..sal import Domain, Remote
from ..sal.testutils import set_random_lsst_dds_partition_prefix

__all__ = ["add_simulate_arguments", "run_simulate"]

_IMAGE_TYPES = ("OBJECT", "BIAS", "DARK", "FLAT")


def _detectors(text: str | None) -> list[int] | None:
    return None if not text else [int(item) for item in text.split(",")]


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rapid_analysis simulate``."""
    kinds = parser.add_subparsers(dest="what", required=True, metavar="{images,night}")
    images = kinds.add_parser("images", help="render exposures (with truth) into a raw store")
    images.add_argument("root", type=pathlib.Path, help="raw store root")
    images.add_argument("--instrument", default="LSSTComCam", choices=["LATISS", "LSSTComCam", "LSSTCam"])
    images.add_argument("--day-obs", type=int, default=20251115, help="observing day YYYYMMDD")
    images.add_argument("--seq-num", type=int, default=1, help="first sequence number")
    images.add_argument("--count", type=int, default=1, help="number of exposures")
    images.add_argument("--detectors", help="comma list of detector ids (default: the science detectors)")
    images.add_argument("--img-type", default="OBJECT", choices=_IMAGE_TYPES)
    images.add_argument("--exp-time", type=float, default=15.0, help="s")
    images.add_argument("--seeing", type=float, default=0.8, help="PSF FWHM, arcsec")
    images.add_argument("--n-stars", type=int, default=None, help="stars per detector (default: a sky model)")
    images.add_argument("--dispersed", action="store_true", help="LATISS: a dispersed image (star + spectrum)")
    images.add_argument("--compress", action="store_true", help="RICE tile compression, as the camera writes")
    images.add_argument("--seed", type=int, default=0)

    night = kinds.add_parser("night", help="run the camera and mount simulators, taking images on a cadence")
    night.add_argument("root", type=pathlib.Path, help="raw store root")
    night.add_argument("--instrument", default="LSSTCam", choices=["LATISS", "LSSTComCam", "LSSTCam"])
    night.add_argument("--visits", type=int, default=10, help="images to take")
    night.add_argument("--cadence", type=float, default=34.0, help="s between image starts (simulated)")
    night.add_argument("--exp-time", type=float, default=30.0, help="s (simulated)")
    night.add_argument("--time-scale", type=float, default=1.0, help="wall seconds per simulated second")
    night.add_argument("--detectors", help="comma list of detector ids (default: the science detectors)")
    night.add_argument("--compress", action="store_true", help="RICE tile compression")
    night.add_argument(
        "--tiny",
        action="store_true",
        help="smallest raws (4 x 4 data pixels per amp; every amp HDU, card and name real): "
        "for dispatch benchmarks with the test.cost pipeline",
    )


def _simulate_images(args: argparse.Namespace) -> int:
    from .raw_writer import simulate_exposure
    from .scene import SceneConfig
    from .spectrum import simulate_dispersed
    from .stream import make_obsid

    instrument = get_instrument(args.instrument)
    if args.dispersed and instrument.name != "LATISS":
        print("--dispersed is for LATISS only")
        return 2
    scene = SceneConfig(seeing_fwhm=args.seeing, n_stars=args.n_stars, exp_time=args.exp_time)
    total_bytes, t0 = 0, time.perf_counter()
    for i in range(args.count):
        obsid = make_obsid(instrument, args.day_obs, args.seq_num + i)
        if args.dispersed:
            raw = simulate_dispersed(args.root, obsid, scene=scene, exp_time=args.exp_time, seed=args.seed + i)
            paths = {0: raw.path}
        else:
            paths = simulate_exposure(
                instrument,
                args.root,
                obsid,
                detectors=_detectors(args.detectors),
                scene=scene,
                img_type=args.img_type,
                exp_time=0.0 if args.img_type == "BIAS" else args.exp_time,
                seed=args.seed + i,
                compress=args.compress,
            )
        total_bytes += sum(p.stat().st_size for p in paths.values())
        first = paths[min(paths)]
        print(f"{obsid}: {len(paths)} detector file(s), e.g. {first} (truth: {first.name}.truth.json)")
    elapsed = time.perf_counter() - t0
    print(f"{total_bytes / 1e6:.0f} MB in {elapsed:.1f} s ({total_bytes / 1e6 / elapsed:.0f} MB/s, full rendering)")
    return 0


async def _simulate_night(args: argparse.Namespace) -> int:
    from .observatory import make_telescope
    from .stream import TINY_SCALE, StreamWriter

    instrument = get_instrument(args.instrument)
    detectors = _detectors(args.detectors) or [d.id for d in instrument.science_detectors]
    scale = TINY_SCALE if getattr(args, "tiny", False) else 1.0
    writer = StreamWriter(instrument, args.root, detectors=detectors, compress=args.compress, scale=scale)
    print(f"Rendering templates for {len(detectors)} {instrument.name} detectors ...", flush=True)
    writer.prepare("OBJECT", args.exp_time)
    telescope = make_telescope(instrument, writer.write_exposure, time_scale=args.time_scale)
    clock, camera_name = telescope.clock, telescope.camera_name
    async with Domain() as domain:
        cam = Remote(domain, camera_name, include=["endReadout"])
        await asyncio.gather(cam.start_task, telescope.start())
        print(
            f"{camera_name} and mount simulators running (DDS partition prefix "
            f"{os.environ['LSST_DDS_PARTITION_PREFIX']}); {args.visits} images every {args.cadence:g} s",
            flush=True,
        )
        t_start = clock.now()
        for visit in range(args.visits):
            await clock.sleep_until(t_start + visit * args.cadence)
            t0 = time.perf_counter()
            await cam.cmd_takeImages.set_start(
                numImages=1,
                expTime=args.exp_time,
                shutter=True,
                sensors="",
                keyValueMap="imageType: OBJECT",
                obsNote="simulated night",
                timeout=120 + args.exp_time * args.time_scale,
            )
            end = await cam.evt_endReadout.next(flush=False, timeout=60)
            written = writer.throughput()
            print(
                f"{end.imageName}: endReadout after {time.perf_counter() - t0:.1f} s wall; {written['files']} files "
                f"written at {written['mb_per_s']:.0f} MB/s",
                flush=True,
            )
        await cam.close()
    await telescope.close()
    writer.close()
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    """Entry of ``rapid_analysis simulate``."""
    if args.what == "images":
        return _simulate_images(args)
    if not os.environ.get("LSST_DDS_PARTITION_PREFIX"):
        set_random_lsst_dds_partition_prefix()
    os.environ.setdefault("LSST_SITE", "sim")
    return asyncio.run(_simulate_night(args))
