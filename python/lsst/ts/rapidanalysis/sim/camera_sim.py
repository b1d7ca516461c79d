"""Camera simulators: ATCamera, CCCamera, MTCamera and GenericCamera as real CSCs on DDS.

A `CameraSimulator` behaves, as far as Rapid Analysis can tell, like the camera CSC of one
instrument (``sal-conventions.md`` §7): ``takeImages`` integrates, reads out and announces each
image with ``startIntegration``, ``startReadout``, ``endReadout`` and ``endOfImageTelemetry``;
the raw files are on disk (written by an injected writer) before ``endReadout`` is published.
`GenericCameraSimulator` is an indexed GenericCamera (all-sky camera and the like) that writes
one FITS file per image and announces it with ``largeFileObjectAvailable``.

Time: every simulator runs on a `SimClock`. ``time_scale`` is wall-clock seconds per simulated
second (0.01 runs 100 times faster than real time): exposure and readout waits are scaled, and
every published timestamp is simulated TAI, so ``timestampStartOfReadout -
timestampAcquisitionStart`` equals the exposure time whatever the scale. With ``time_scale=1``
(the default) the simulated clock *is* the TAI clock. Give the camera and a mount simulator the
same clock to keep their timestamps consistent.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import inspect
import io
import math
import os
import pathlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .. import __version__
from ..atomic_file import write_atomic
from ..data.camera import CAMERA_COMPONENTS, Instrument, get_instrument
from ..data.image_listener import split_colon_list
from ..sal.base_csc import BaseCsc
from ..sal.enums import State
from ..sal.errors import ExpectedError
from ..sal.tai import current_tai
from ..sal.topics import ControllerCommand, ControllerEvent

__all__ = [
    "SimClock",
    "CameraSimulator",
    "GenericCameraSimulator",
    "CAMERA_COMPONENTS",
    "IMAGE_TYPES",
    "DEFAULT_READOUT_TIME",
    "day_obs_for_tai",
    "make_image_name",
    "parse_key_value_map",
    "call_writer",
    "RawWriter",
    "join_colon_list",
    "split_colon_list",
    "write_simple_fits",
    "run_camera_simulator",
]

#: SAL component of each instrument's camera.
_INSTRUMENT_OF_COMPONENT = {component: name for name, component in CAMERA_COMPONENTS.items()}
#: ``imageType`` values takeImages accepts (obs_lsst's IMGTYPE values).
IMAGE_TYPES: tuple[str, ...] = (
    "BIAS", "DARK", "FLAT", "OBJECT", "SKYEXP", "ENGTEST", "ACQ", "CWFS", "FOCUS", "STUTTERED", "SPOT", "SCIENCE",
)  # fmt: skip
#: Readout time of the Rubin cameras (s, simulated).
DEFAULT_READOUT_TIME = 2.0
#: Allowance (wall s) for the writer of one image, added to the ack timeout; also the write time limit.
DEFAULT_WRITE_TIMEOUT = 60.0
_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_GROUP_ID_RE = re.compile(r"^[\x21-\x7e]{1,128}$")

#: A camera's raw writer: ``writer(obsid, metadata)`` → files by detector id (sync or async).
#: A writer whose second parameter cannot be passed positionally (such as
#: ``StreamWriter.write_exposure(obsid, *, exp_time, img_type, ...)``) is called with the
#: metadata entries it names as keyword arguments instead.
RawWriter = Callable[..., Awaitable[dict[int, pathlib.Path]] | dict[int, pathlib.Path]]


class SimClock:
    """A simulated TAI clock that runs ``1 / time_scale`` times as fast as the wall clock.

    Parameters
    ----------
    time_scale : `float`
        Wall-clock seconds per simulated second (> 0); 0.1 runs ten times faster than real time.
    epoch_tai : `float`, optional
        Simulated TAI (unix seconds) at construction; default the current TAI. With
        ``time_scale == 1`` and no epoch, `now` is exactly `current_tai`.
    """

    def __init__(self, time_scale: float = 1.0, epoch_tai: float | None = None) -> None:
        if not (math.isfinite(time_scale) and time_scale > 0):
            raise ValueError(f"time_scale={time_scale!r} must be a finite number > 0")
        self.time_scale = float(time_scale)
        self._real_time = time_scale == 1.0 and epoch_tai is None
        self.epoch_tai = float(epoch_tai) if epoch_tai is not None else current_tai()
        self._mono0 = time.monotonic()

    def __repr__(self) -> str:
        return f"SimClock(time_scale={self.time_scale}, epoch_tai={self.epoch_tai:.3f})"

    def now(self) -> float:
        """The simulated time, TAI unix seconds."""
        if self._real_time:
            return current_tai()
        return self.epoch_tai + (time.monotonic() - self._mono0) / self.time_scale

    def wall_seconds(self, sim_seconds: float) -> float:
        """How long ``sim_seconds`` of simulated time take on the wall clock."""
        return sim_seconds * self.time_scale

    async def sleep(self, sim_seconds: float) -> None:
        """Sleep for ``sim_seconds`` of simulated time."""
        await asyncio.sleep(max(0.0, sim_seconds) * self.time_scale)

    async def sleep_until(self, tai: float) -> None:
        """Sleep until the simulated time is ``tai``."""
        await self.sleep(tai - self.now())


def day_obs_for_tai(tai: float) -> str:
    """The observing day ``YYYYMMDD`` of a TAI time: the TAI date 12 hours earlier (rolls at 12:00 TAI)."""
    stamp = datetime.datetime.fromtimestamp(tai, tz=datetime.UTC) - datetime.timedelta(hours=12)
    return stamp.strftime("%Y%m%d")


def make_image_name(source: str, controller: str, day_obs: str | int, seq_num: int) -> str:
    """``{source}_{controller}_{YYYYMMDD}_{NNNNNN}``, e.g. ``AT_O_20240813_000632``."""
    return f"{source}_{controller}_{day_obs}_{int(seq_num):06d}"


def _iso_tai(tai: float) -> str:
    """ISO-8601 (ms) of a TAI time, no zone: the form of Rubin group ids."""
    stamp = datetime.datetime.fromtimestamp(tai, tz=datetime.UTC).replace(tzinfo=None)
    return stamp.isoformat(timespec="milliseconds")


def parse_key_value_map(text: str) -> dict[str, str]:
    """Parse a takeImages ``keyValueMap``: ``key: value, key2: value2``.

    Items are separated by commas; each item's key ends at its first colon, so values may
    contain colons (ISO group ids do). Whitespace around keys and values is ignored.

    Raises
    ------
    ValueError
        If an item has no colon, a key is not an identifier, or a key repeats.
    """
    result: dict[str, str] = {}
    if not text.strip():
        return result
    for item in text.split(","):
        if not item.strip():
            raise ValueError(f"keyValueMap {text!r} has an empty item; use 'key: value, key2: value2'")
        key, sep, value = item.partition(":")
        key, value = key.strip(), value.strip()
        if not sep:
            raise ValueError(f"keyValueMap item {item.strip()!r} is not of the form 'key: value'")
        if not _KEY_RE.match(key):
            raise ValueError(f"keyValueMap key {key!r} is not an identifier (letters, digits, _; starts with a letter)")
        if key in result:
            raise ValueError(f"keyValueMap key {key!r} appears twice")
        result[key] = value
    return result


def join_colon_list(items: list[str]) -> str:
    """Join strings with ``:``, escaping ``\\`` and ``:`` inside them with a backslash.

    This is how ``additionalKeys``/``additionalValues`` are built (our reading of the CAP-572
    escaping: a group id such as ``2025-11-15T21:03:14.123`` becomes ``2025-11-15T21\\:03\\:14.123``).
    `split_colon_list` undoes it.
    """
    return ":".join(item.replace("\\", "\\\\").replace(":", "\\:") for item in items)


def _resolve_instrument(instrument: Instrument | str | int) -> Instrument:
    if isinstance(instrument, Instrument):
        return instrument
    if isinstance(instrument, str) and instrument in _INSTRUMENT_OF_COMPONENT:
        instrument = _INSTRUMENT_OF_COMPONENT[instrument]
    return get_instrument(instrument)


def _default_stream_writer(instrument: Instrument, raw_root: pathlib.Path) -> RawWriter:
    """``StreamWriter(instrument, raw_root).write_exposure`` (imported here, only when used)."""
    try:
        from .stream import StreamWriter
    except ImportError as e:
        raise RuntimeError(
            f"No writer given and lsst.ts.rapidanalysis.sim.stream is not available ({e}); "
            "pass writer=... (a callable writer(obsid, metadata) -> {detector id: path})"
        ) from e
    return StreamWriter(instrument, raw_root).write_exposure


def _writer_style(writer: Callable[..., Any]) -> tuple[str, frozenset[str] | None]:
    """("dict", None): call ``writer(obsid, metadata)``; ("kwargs", names): ``writer(obsid, **metadata[names])``."""
    try:
        signature = inspect.signature(writer)
    except (TypeError, ValueError):
        return "dict", None
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params):
        return "dict", None
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return "kwargs", None
    return "kwargs", frozenset(p.name for p in params if p.kind == p.KEYWORD_ONLY or p in positional[1:])


def _is_async_callable(func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    call = None if inspect.isroutine(func) else type(func).__call__
    return call is not None and inspect.iscoroutinefunction(call)


async def call_writer(writer: Callable[..., Any], obsid: str, metadata: Mapping[str, Any]) -> Any:
    """Call a writer (see `RawWriter`): awaited if async, else in a worker thread."""
    style, names = _writer_style(writer)
    if style == "dict":
        args: tuple[Any, ...] = (obsid, dict(metadata))
        kwargs: dict[str, Any] = {}
    else:
        args = (obsid,)
        kwargs = {k: v for k, v in metadata.items() if k != "obsid" and (names is None or k in names)}
    if _is_async_callable(writer):
        return await writer(*args, **kwargs)
    result = await asyncio.to_thread(writer, *args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def write_simple_fits(
    path: pathlib.Path, header: Mapping[str, Any], shape: tuple[int, int] = (128, 128), seed: int = 0
) -> pathlib.Path:
    """Write a small single-HDU FITS image (sky + noise + a few stars), e.g. a GenericCamera frame.

    Written to a temporary name and renamed, so that readers never see a partial file.
    """
    import numpy as np
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    ny, nx = shape
    image = rng.normal(1000.0, 10.0, size=shape)
    yy, xx = np.mgrid[0:ny, 0:nx]
    for _ in range(5):
        x0, y0, flux = rng.uniform(0, nx), rng.uniform(0, ny), rng.uniform(2e3, 2e4)
        image += flux / (2 * np.pi * 2.0**2) * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 2.0**2))
    hdu = fits.PrimaryHDU(np.clip(image, 0, 65535).astype(np.uint16))
    for key, value in header.items():
        hdu.header[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    write_atomic(path, buffer.getbuffer())
    return path


def _md5(path: pathlib.Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _BaseCameraSimulator(BaseCsc):
    """What the camera simulators share: takeImages, sequence numbers, the four image events."""

    valid_simulation_modes = (0, 1)
    simulation_help = "Accepted for compatibility; the simulator behaves the same in either mode."
    version = __version__
    #: imageIndex of the first image of a sequence (1 for the Rubin cameras, 0 for GenericCamera).
    image_index_base = 1

    # Topics every camera has (made by `Controller`; declared for type checkers).
    cmd_takeImages: ControllerCommand
    evt_endOfImageTelemetry: ControllerEvent
    evt_endReadout: ControllerEvent
    evt_startIntegration: ControllerEvent
    evt_startReadout: ControllerEvent

    def __init__(
        self,
        name: str,
        index: int | None,
        *,
        image_source: str,
        controller: str,
        time_scale: float,
        clock: SimClock | None,
        readout_time: float,
        start_seq_num: int,
        day_obs_override: str | int | None,
        write_timeout: float,
        initial_state: State | int | None,
        override: str,
        simulation_mode: int,
        check_if_duplicate: bool,
    ) -> None:
        if readout_time < 0:
            raise ValueError(f"readout_time={readout_time} must be >= 0")
        if start_seq_num < 1:
            raise ValueError(f"start_seq_num={start_seq_num} must be >= 1")
        if day_obs_override is not None and not re.fullmatch(r"\d{8}", str(day_obs_override)):
            raise ValueError(f"day_obs_override={day_obs_override!r} must be YYYYMMDD")
        if write_timeout <= 0:
            raise ValueError(f"write_timeout={write_timeout} must be > 0")
        self.clock = clock if clock is not None else SimClock(time_scale)
        self.image_source = image_source
        self.controller = controller
        self.readout_time = float(readout_time)
        self.day_obs_override: str | None = None if day_obs_override is None else str(day_obs_override)
        self.write_timeout = float(write_timeout)
        self._start_seq_num = int(start_seq_num)
        #: The last sequence number used on each observing day.
        self.last_seq_num: dict[str, int] = {}
        self._sequence_task: asyncio.Task | None = None
        super().__init__(
            name,
            index=index,
            initial_state=initial_state,
            override=override,
            simulation_mode=simulation_mode,
            check_if_duplicate=check_if_duplicate,
        )

    @property
    def time_scale(self) -> float:
        """Wall-clock seconds per simulated second."""
        return self.clock.time_scale

    # Sequence numbers

    def day_obs_for(self, tai: float) -> str:
        """The observing day of an image starting at ``tai`` (``day_obs_override`` if set)."""
        return self.day_obs_override if self.day_obs_override is not None else day_obs_for_tai(tai)

    def _existing_max_seq_num(self, day_obs: str) -> int:
        """Hook: the highest sequence number already used on ``day_obs`` on disk (0 if none)."""
        return 0

    def next_seq_num(self, day_obs: str) -> int:
        """Take the next sequence number of ``day_obs``.

        The first image the simulator takes gets ``start_seq_num``; later images of the same day
        count up from there; a new day starts at 1. Numbers already used on disk are skipped.
        """
        if day_obs in self.last_seq_num:
            seq_num = self.last_seq_num[day_obs] + 1
        elif not self.last_seq_num:
            seq_num = self._start_seq_num
        else:
            seq_num = 1
        seq_num = max(seq_num, self._existing_max_seq_num(day_obs) + 1)
        self.last_seq_num[day_obs] = seq_num
        return seq_num

    # takeImages

    def _check_take_images(self, data: Any) -> tuple[dict[str, str], str, str, list[int] | None]:
        """Validate takeImages; return (keyValueMap, imageType, groupId, detector ids or None)."""
        if data.numImages < 1:
            raise ExpectedError(f"numImages={data.numImages} must be >= 1")
        if not (math.isfinite(data.expTime) and data.expTime >= 0):
            raise ExpectedError(f"expTime={data.expTime} must be a finite number >= 0")
        try:
            key_values = parse_key_value_map(data.keyValueMap)
        except ValueError as e:
            raise ExpectedError(str(e)) from None
        default_type = "BIAS" if data.expTime == 0 else ("OBJECT" if data.shutter else "DARK")
        img_type = key_values.get("imageType", default_type).upper()
        if img_type not in IMAGE_TYPES:
            raise ExpectedError(
                f"keyValueMap imageType={key_values['imageType']!r} is not one of {', '.join(IMAGE_TYPES)}"
            )
        group_id = key_values.get("groupId", "")
        if group_id and not _GROUP_ID_RE.match(group_id):
            raise ExpectedError(f"keyValueMap groupId={group_id!r} must be 1-128 printable characters, no spaces")
        detectors = self._parse_sensors(data.sensors)
        return key_values, img_type, group_id, detectors

    def _parse_sensors(self, sensors: str) -> list[int] | None:
        """Hook: detector ids named by takeImages ``sensors`` ("" = all: None)."""
        return None

    def _ack_timeout(self, num_images: int, exp_time: float) -> float:
        per_image = self.clock.wall_seconds(exp_time + self.readout_time) + self.write_timeout
        return num_images * per_image + 5.0

    async def do_takeImages(self, data: Any) -> None:  # noqa: N802 (SAL name)
        """Take ``numImages`` images of ``expTime`` seconds, publishing the image events of each."""
        self.assert_enabled()
        key_values, img_type, group_id, detectors = self._check_take_images(data)
        self.cmd_takeImages.ack_in_progress(data, timeout=self._ack_timeout(data.numImages, data.expTime))
        self._sequence_task = asyncio.create_task(self._take_sequence(data, key_values, img_type, group_id, detectors))
        try:
            await self._sequence_task
        finally:
            self._sequence_task = None

    async def _take_sequence(
        self, data: Any, key_values: dict[str, str], img_type: str, group_id: str, detectors: list[int] | None
    ) -> None:
        # The images of one takeImages share a group id: the keyValueMap's, or the first image's start.
        group_id = group_id or _iso_tai(self.clock.now())
        key_values = {**key_values, "groupId": group_id}
        for i in range(data.numImages):
            await self._take_image(
                data, i, key_values=key_values, img_type=img_type, group_id=group_id, detectors=detectors
            )

    async def _take_image(
        self,
        data: Any,
        i: int,
        *,
        key_values: dict[str, str],
        img_type: str,
        group_id: str,
        detectors: list[int] | None,
    ) -> None:
        exp_time = float(data.expTime)
        tai_start = self.clock.now()
        day_obs = self.day_obs_for(tai_start)
        seq_num = self.next_seq_num(day_obs)
        image_name = make_image_name(self.image_source, self.controller, day_obs, seq_num)
        keys = {"imageType": img_type, **{k: v for k, v in key_values.items() if k != "imageType"}}
        common = dict(
            additionalKeys=join_colon_list(list(keys)),
            additionalValues=join_colon_list(list(keys.values())),
            imagesInSequence=int(data.numImages),
            imageName=image_name,
            imageIndex=i + self.image_index_base,
            imageSource=self.image_source,
            imageController=self.controller,
            imageDate=day_obs,
            imageNumber=seq_num,
            timestampAcquisitionStart=tai_start,
        )
        self._publish(
            self.evt_startIntegration,
            **common,
            exposureTime=exp_time,
            mode="NORMAL",
            timeout=exp_time + self.readout_time + 10.0,
        )
        await self.clock.sleep(exp_time)
        tai_readout = self.clock.now()
        self._publish(self.evt_startReadout, **common, exposureTime=exp_time, timestampStartOfReadout=tai_readout)
        extra_headers = {
            "OBSANNOT": _fits_text(data.obsNote),
            "CURINDEX": i + 1,
            "MAXINDEX": int(data.numImages),
            **{fits_key: _fits_text(key_values[key]) for key, fits_key in _FITS_KEYS.items() if key in key_values},
        }
        metadata = {
            "obsid": image_name,
            "exp_time": exp_time,
            "img_type": img_type,
            "group_id": group_id,
            "tai_start": tai_start,
            "tai_end": tai_start + exp_time,
            "day_obs": int(day_obs),
            "seq_num": seq_num,
            "shutter": bool(data.shutter),
            "detectors": detectors,
            "image_index": i + 1,
            "images_in_sequence": int(data.numImages),
            "key_value_map": dict(key_values),
            "obs_note": data.obsNote,
            "extra_headers": extra_headers,
        }
        files = await self._read_out(image_name, metadata)
        tai_end = self.clock.now()
        self._publish(self.evt_endReadout, **common, requestedExposureTime=exp_time, timestampEndOfReadout=tai_end)
        await self._announce_files(image_name, files, metadata)
        self._publish(
            self.evt_endOfImageTelemetry,
            **common,
            exposureTime=exp_time,
            imageTag=uuid.uuid4().hex,
            timestampDateObs=tai_start,
            timestampDateEnd=tai_start + exp_time,
            measuredShutterOpenTime=exp_time if data.shutter else 0.0,
            darkTime=tai_readout - tai_start,
            emulatedImage="",
        )

    async def _read_out(self, image_name: str, metadata: dict[str, Any]) -> Any:
        """Write the files while the readout time passes; return what the writer returned."""
        readout = asyncio.create_task(self.clock.sleep(self.readout_time))
        try:
            try:
                files = await asyncio.wait_for(self._write_files(image_name, metadata), self.write_timeout)
            except TimeoutError:
                raise ExpectedError(
                    f"Writing the files of {image_name} took longer than {self.write_timeout} s"
                ) from None
            except ExpectedError:
                raise
            except Exception as e:
                self.log.exception("Writing the files of %s failed", image_name)
                raise ExpectedError(f"Writing the files of {image_name} failed: {e!r}") from e
            await readout
        finally:
            readout.cancel()
        return files

    async def _write_files(self, image_name: str, metadata: dict[str, Any]) -> Any:
        """Hook: write the image's files."""
        return None

    async def _announce_files(self, image_name: str, files: Any, metadata: dict[str, Any]) -> None:
        """Hook: after endReadout (GenericCamera publishes largeFileObjectAvailable)."""

    def _publish(self, topic: Any, **fields: Any) -> None:
        """Write an event with the fields its interface has (the camera variants differ slightly)."""
        names = set(topic.topic_type.field_names)
        topic.set_write(**{k: v for k, v in fields.items() if k in names}, force_output=True)

    # State

    async def handle_summary_state(self) -> None:
        """Leaving ENABLED aborts an exposure sequence in progress."""
        if self.summary_state != State.ENABLED and self._sequence_task is not None:
            self._sequence_task.cancel()

    async def close_tasks(self) -> None:
        """Stop an exposure sequence in progress."""
        if self._sequence_task is not None:
            self._sequence_task.cancel()
        await super().close_tasks()


#: keyValueMap keys copied into the raw's primary header.
_FITS_KEYS = {"testType": "TESTTYPE", "reason": "REASON", "program": "PROGRAM"}


def _fits_text(value: str) -> str:
    """A string a FITS header card can hold: printable ASCII, at most 68 characters."""
    text = "".join(c if " " <= c <= "~" else "?" for c in value)
    return text[:68]


class CameraSimulator(_BaseCameraSimulator):
    """A simulated ATCamera, CCCamera or MTCamera (the camera of one instrument).

    Parameters
    ----------
    instrument : `str`, `int` or `Instrument`
        ``LATISS`` (→ ATCamera), ``LSSTComCam`` (→ CCCamera) or ``LSSTCam`` (→ MTCamera); the
        component name or the OCPS SAL index works too.
    writer : callable, optional
        Writes one image's raws: ``writer(obsid, metadata) -> {detector id: path}``, sync (run
        in a worker thread) or async. ``metadata`` holds ``obsid, exp_time, img_type, group_id,
        tai_start, tai_end, day_obs (int), seq_num, shutter, detectors (ids or None = all),
        image_index (1-based), images_in_sequence, key_value_map, obs_note, extra_headers``
        (FITS keys: OBSANNOT, CURINDEX, MAXINDEX, TESTTYPE/REASON/PROGRAM from keyValueMap) and
        ``pointing`` (what the ``pointing`` callable returned, or None). A writer whose second
        parameter is keyword-only, such as ``StreamWriter.write_exposure``, is called as
        ``writer(obsid, exp_time=..., img_type=..., ...)`` with the entries it accepts.
        Default: ``sim.stream.StreamWriter(instrument, raw_root).write_exposure`` if
        ``raw_root`` is given, else no files are written (events only).
    raw_root : path, optional
        Root of the raw tree (``{raw_root}/{instrument}/{dayObs}/{obsid}/...``). Used by the
        default writer, and to skip sequence numbers already on disk after a restart.
    time_scale : `float`
        Wall-clock seconds per simulated second (see `SimClock`); ignored if ``clock`` is given.
    clock : `SimClock`, optional
        The clock to use (share one with a mount simulator).
    readout_time : `float`
        Simulated readout time (s); the writer runs during it, and endReadout waits for both.
    start_seq_num : `int`
        Sequence number of the first image taken.
    day_obs_override : `str` or `int`, optional
        Use this observing day (YYYYMMDD) instead of the one of the clock.
    controller : `str`
        Image name controller code (``O`` = OCS).
    pointing : callable, optional
        ``pointing(tai_start)`` → anything; passed to the writer as ``pointing``
        (e.g. a mount simulator's ``pointing_at``).
    write_timeout : `float`
        Wall-clock limit on writing one image (also the ack timeout allowance per image).
    initial_state, override, simulation_mode, check_if_duplicate
        As `BaseCsc`.
    """

    def __init__(
        self,
        instrument: Instrument | str | int = "LSSTCam",
        *,
        writer: RawWriter | None = None,
        raw_root: str | pathlib.Path | None = None,
        time_scale: float = 1.0,
        clock: SimClock | None = None,
        readout_time: float = DEFAULT_READOUT_TIME,
        start_seq_num: int = 1,
        day_obs_override: str | int | None = None,
        controller: str = "O",
        pointing: Callable[[float], Any] | None = None,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
        initial_state: State | int | None = None,
        override: str = "",
        simulation_mode: int = 0,
        check_if_duplicate: bool = False,
    ) -> None:
        self.instrument = _resolve_instrument(instrument)
        if controller not in "OCHPQS" or len(controller) != 1:
            raise ValueError(f"controller={controller!r} must be one of O, C, H, P, Q, S")
        self.raw_root = pathlib.Path(raw_root).expanduser().absolute() if raw_root is not None else None
        if writer is None and self.raw_root is not None:
            writer = _default_stream_writer(self.instrument, self.raw_root)
        self.writer = writer
        self.pointing = pointing
        super().__init__(
            CAMERA_COMPONENTS[self.instrument.name],
            None,
            image_source=self.instrument.cam_code,
            controller=controller,
            time_scale=time_scale,
            clock=clock,
            readout_time=readout_time,
            start_seq_num=start_seq_num,
            day_obs_override=day_obs_override,
            write_timeout=write_timeout,
            initial_state=initial_state,
            override=override,
            simulation_mode=simulation_mode,
            check_if_duplicate=check_if_duplicate,
        )

    def _existing_max_seq_num(self, day_obs: str) -> int:
        if self.raw_root is None:
            return 0
        day_dir = self.raw_root / self.instrument.name / day_obs
        pattern = re.compile(rf"^{self.image_source}_{self.controller}_{day_obs}_(\d{{6}})$")
        try:
            numbers = [int(m[1]) for e in os.scandir(day_dir) if (m := pattern.match(e.name))]
        except (FileNotFoundError, NotADirectoryError):
            return 0
        return max(numbers, default=0)

    def _parse_sensors(self, sensors: str) -> list[int] | None:
        """``sensors``: detector names (``R22_S11``) or ids, separated by ``:`` or ``,``; "" = all."""
        items = [s.strip() for s in re.split(r"[:,]", sensors) if s.strip()]
        if not items:
            return None
        ids = []
        for item in items:
            try:
                detector = self.instrument.detector(int(item) if item.isdigit() else item)
            except ValueError as e:
                raise ExpectedError(f"sensors: {e}") from None
            ids.append(detector.id)
        return sorted(set(ids))

    async def _write_files(self, image_name: str, metadata: dict[str, Any]) -> dict[int, pathlib.Path]:
        if self.writer is None:
            return {}
        metadata["instrument"] = self.instrument.name
        metadata["pointing"] = self.pointing(metadata["tai_start"]) if self.pointing is not None else None
        result = await call_writer(self.writer, image_name, metadata)
        if result is None:
            return {}
        if not isinstance(result, Mapping):
            raise TypeError(f"the writer returned {type(result).__name__}, not a dict of detector id: path")
        return {int(k): pathlib.Path(v) for k, v in result.items()}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--instrument", default="LSSTCam", choices=sorted(CAMERA_COMPONENTS), help="the camera to simulate"
        )
        parser.add_argument("--raw-root", default=None, help="root of the raw tree the default writer writes")
        parser.add_argument("--time-scale", type=float, default=1.0, help="wall seconds per simulated second")
        parser.add_argument("--state", default="standby", choices=["standby", "disabled", "enabled"])

    @classmethod
    def add_kwargs_from_args(cls, args: argparse.Namespace, kwargs: dict[str, Any]) -> None:
        kwargs["instrument"] = args.instrument
        kwargs["raw_root"] = args.raw_root
        kwargs["time_scale"] = args.time_scale
        kwargs["initial_state"] = State[args.state.upper()]


class GenericCameraSimulator(_BaseCameraSimulator):
    """A simulated GenericCamera (indexed): one FITS file per image, announced by largeFileObjectAvailable.

    Per image: startIntegration, startReadout, the file is written, endReadout,
    largeFileObjectAvailable (``file://`` URL, generator ``GenericCamera:<index>``, md5
    checkSum, byteSize, mimeType ``image/fits``, id = image name), endOfImageTelemetry.
    Image names are ``GC<index>_O_YYYYMMDD_NNNNNN`` and imageIndex is 0-based, as in
    ts_genericcamera.

    Parameters
    ----------
    index : `int`
        SAL index.
    root : path
        Files go to ``{root}/GenericCamera/{index}/{dayObs}/{imageName}.fits``.
    writer : callable, optional
        ``writer(image_name, metadata) -> path`` (sync or async) instead of the built-in writer
        of a small synthetic frame (`write_simple_fits`); ``metadata`` also holds ``path``,
        where the built-in writer would write.
    image_shape : (`int`, `int`)
        Size of the built-in writer's frames.
    readout_time : `float`
        Simulated readout time (s); generic cameras read out fast.
    time_scale, clock, start_seq_num, day_obs_override, write_timeout, initial_state, override,
    simulation_mode, check_if_duplicate
        As `CameraSimulator`.
    """

    image_index_base = 0

    evt_largeFileObjectAvailable: ControllerEvent

    def __init__(
        self,
        index: int,
        root: str | pathlib.Path,
        *,
        writer: Callable[..., Any] | None = None,
        image_shape: tuple[int, int] = (128, 128),
        time_scale: float = 1.0,
        clock: SimClock | None = None,
        readout_time: float = 0.5,
        start_seq_num: int = 1,
        day_obs_override: str | int | None = None,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
        initial_state: State | int | None = None,
        override: str = "",
        simulation_mode: int = 0,
        check_if_duplicate: bool = False,
    ) -> None:
        self.root = pathlib.Path(root).expanduser().absolute()
        self.writer = writer
        self.image_shape = image_shape
        super().__init__(
            "GenericCamera",
            index,
            image_source=f"GC{index}",
            controller="O",
            time_scale=time_scale,
            clock=clock,
            readout_time=readout_time,
            start_seq_num=start_seq_num,
            day_obs_override=day_obs_override,
            write_timeout=write_timeout,
            initial_state=initial_state,
            override=override,
            simulation_mode=simulation_mode,
            check_if_duplicate=check_if_duplicate,
        )

    @property
    def generator(self) -> str:
        """``GenericCamera:<index>``, the largeFileObjectAvailable generator."""
        return f"GenericCamera:{self.salinfo.index}"

    def path_for(self, image_name: str, day_obs: str | int) -> pathlib.Path:
        """Where the built-in writer writes an image."""
        return self.root / "GenericCamera" / str(self.salinfo.index) / str(day_obs) / f"{image_name}.fits"

    def _existing_max_seq_num(self, day_obs: str) -> int:
        day_dir = self.root / "GenericCamera" / str(self.salinfo.index) / day_obs
        pattern = re.compile(rf"^{self.image_source}_O_{day_obs}_(\d{{6}})\.fits$")
        try:
            numbers = [int(m[1]) for e in os.scandir(day_dir) if (m := pattern.match(e.name))]
        except (FileNotFoundError, NotADirectoryError):
            return 0
        return max(numbers, default=0)

    async def _write_files(self, image_name: str, metadata: dict[str, Any]) -> pathlib.Path:
        path = self.path_for(image_name, metadata["day_obs"])
        metadata["path"] = path
        if self.writer is not None:
            result = await call_writer(self.writer, image_name, metadata)
            return pathlib.Path(result)
        header = {
            "OBSID": image_name,
            "INSTRUME": self.generator,
            "IMGTYPE": metadata["img_type"],
            "EXPTIME": metadata["exp_time"],
            "DATE-BEG": _iso_tai(metadata["tai_start"]),
            "DATE-END": _iso_tai(metadata["tai_end"]),
            "TIMESYS": "TAI",
            "GROUPID": metadata["group_id"],
            "DAYOBS": str(metadata["day_obs"]),
            "SEQNUM": metadata["seq_num"],
            "OBSANNOT": _fits_text(metadata["obs_note"]),
        }
        return await asyncio.to_thread(write_simple_fits, path, header, self.image_shape, metadata["seq_num"])

    async def _announce_files(self, image_name: str, files: Any, metadata: dict[str, Any]) -> None:
        def describe() -> tuple[str, int, str]:
            path = pathlib.Path(files).absolute()
            return path.as_uri(), path.stat().st_size, _md5(path)

        url, size, checksum = await asyncio.to_thread(describe)
        self.evt_largeFileObjectAvailable.set_write(
            url=url,
            generator=self.generator,
            version=1.0,
            byteSize=size,
            checkSum=checksum,
            mimeType="image/fits",
            id=image_name,
            force_output=True,
        )


def run_camera_simulator() -> None:
    """``run_camera_simulator --instrument LATISS --raw-root DIR``: run a camera simulator."""
    asyncio.run(CameraSimulator.amain(index=None))
