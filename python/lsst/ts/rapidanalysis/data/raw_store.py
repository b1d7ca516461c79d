"""Where raws come from: the camera's directory tree and the URLs of largeFileObjectAvailable.

The camera writes one file per detector and exposure::

    {root}/{instrument}/{dayObs}/{obsid}/{file name}

with the file names `lsst.ts.rapidanalysis.data.raw_names.raw_file_names` lists (LSSTCam and ComCam
``{obsid}_{raft}_{sensor}.fits``; LATISS ``{obsid}_R00_S00.fits`` since 2024, ``{obsid}.fits``
before; any of them ``.fits.fz`` when compressed). `RawStore` maps data ids to those files, waits
for files that are still being written (until every amplifier's HDU is whole), and turns
``file://`` URLs into paths, never letting a path outside the root through.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import os
import pathlib
import re
import time
import urllib.parse
from collections.abc import Iterable, Sequence

from .amp_geometry import amp_names
from .camera import Instrument, get_instrument
from .data_id import GROUP_ID_RE, OBSID_RE, DataId
from .fits_header import HeaderError, primary_header
from .fits_structure import FITS_BLOCK, FitsStructure, scan_fits
from .raw_names import RAW_SUFFIXES, parse_raw_file_name, raw_file_names

__all__ = [
    "RawStore",
    "MissingRawError",
    "RawUrlError",
    "RAW_SUFFIXES",
    "FITS_BLOCK",
    "raw_file_names",
    "parse_raw_file_name",
]

log = logging.getLogger(__name__)

#: How many days either side of a group id's day to scan for its exposures.
GROUP_SCAN_DAYS = 1
_GROUP_CACHE_SIZE = 100_000


class MissingRawError(ValueError):
    """No raw appeared for a data id (the message says which detectors and where they were looked for)."""


class RawUrlError(ValueError):
    """A URL that does not name a raw this store may read (wrong scheme, outside the root, ``..``)."""


@dataclasses.dataclass
class _Probe:
    """What the last look saw of a file, since when its size has not changed, and whether it was complete."""

    structure: FitsStructure
    changed_at: float
    complete: bool = False


class RawStore:
    """The raws of one instrument under a root directory.

    Parameters
    ----------
    root : `pathlib.Path` or `str`
        Root of the tree (the directory holding ``LSSTCam/``, ``LATISS/``, ...).
    instrument : `Instrument` or `str`
        The instrument (or its name).
    """

    def __init__(self, root: pathlib.Path | str, instrument: Instrument | str) -> None:
        self.root = pathlib.Path(root).expanduser().absolute()
        self.instrument = get_instrument(instrument) if isinstance(instrument, str) else instrument
        # GROUPID of each exposure directory already read (directories of finished exposures do not change).
        self._group_of_dir: dict[pathlib.Path, str] = {}

    @property
    def instrument_dir(self) -> pathlib.Path:
        """``{root}/{instrument}``."""
        return self.root / self.instrument.name

    def __repr__(self) -> str:
        return f"RawStore(root={str(self.root)!r}, instrument={self.instrument.name!r})"

    # Paths

    def _check_obsid(self, obsid: str) -> re.Match[str]:
        match = OBSID_RE.match(obsid) if isinstance(obsid, str) else None
        if match is None:
            raise ValueError(f"obsid {obsid!r} is not of the form {self.instrument.cam_code}_O_YYYYMMDD_NNNNNN")
        if match["cam"] != self.instrument.cam_code:
            raise ValueError(
                f"obsid {obsid!r} has camera code {match['cam']}, "
                f"not {self.instrument.cam_code} ({self.instrument.name})"
            )
        return match

    def exposure_dir(self, obsid: str) -> pathlib.Path:
        """``{root}/{instrument}/{dayObs}/{obsid}``, the directory of one exposure."""
        match = self._check_obsid(obsid)
        return self.instrument_dir / match["day"] / obsid

    def path_for(self, obsid: str, detector_id: int) -> pathlib.Path:
        """Where the camera writes a raw today (``.fits``; `existing_path` finds every other name).

        Parameters
        ----------
        obsid : `str`
            Image name, e.g. ``MC_O_20251115_000226``.
        detector_id : `int`
            Detector id.

        Returns
        -------
        path : `pathlib.Path`
            The first of `raw_file_names` in the exposure's directory: ``{obsid}_{raft}_{sensor}.fits``
            (LATISS ``{obsid}_R00_S00.fits``, as its camera names files since 2024).

        Raises
        ------
        ValueError
            If the obsid is malformed or of another camera, or the detector does not exist.
        """
        return self.exposure_dir(obsid) / raw_file_names(self.instrument, obsid, detector_id)[0]

    def candidate_paths(self, obsid: str, detector_id: int) -> list[pathlib.Path]:
        """Every path a raw of ``detector_id`` in ``obsid`` may have, the preferred first (`raw_file_names`).

        Raises
        ------
        ValueError
            If the obsid is malformed or of another camera, or the detector does not exist.
        """
        directory = self.exposure_dir(obsid)
        return [directory / name for name in raw_file_names(self.instrument, obsid, detector_id)]

    def existing_path(self, obsid: str, detector_id: int) -> pathlib.Path | None:
        """The raw of ``detector_id`` in ``obsid`` as it exists on disk, under any of its names, or None."""
        for candidate in self.candidate_paths(obsid, detector_id):
            if candidate.is_file():
                return candidate
        return None

    def _detector_ids(self, data_id: DataId, detectors: Sequence[int] | None) -> tuple[int, ...] | None:
        wanted = detectors if detectors is not None else data_id.detectors
        if wanted is None:
            return None
        for detector_id in wanted:
            self.instrument.detector(detector_id)  # ValueError naming what exists
        return tuple(wanted)

    def _scan_exposure(self, obsid: str) -> dict[int, pathlib.Path]:
        """Every raw of ``obsid`` on disk, by detector id (of several names, the preferred one)."""
        found: dict[int, tuple[int, pathlib.Path]] = {}
        try:
            entries = list(os.scandir(self.exposure_dir(obsid)))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        for entry in entries:
            parsed = parse_raw_file_name(self.instrument, entry.name)
            if parsed is None or parsed.obsid != obsid or not entry.is_file():
                continue
            best = found.get(parsed.detector_id)
            if best is None or parsed.preference < best[0]:
                found[parsed.detector_id] = (parsed.preference, pathlib.Path(entry.path))
        return {detector_id: path for detector_id, (_, path) in sorted(found.items())}

    # Look-up

    def find(self, data_id: DataId, detectors: Sequence[int] | None = None) -> dict[int, pathlib.Path]:
        """The raws of a data id that exist now.

        Parameters
        ----------
        data_id : `DataId`
            By obsid (or dayObs+seqNum, which carries the derived obsid), or by group id.
        detectors : sequence of `int`, optional
            Detector ids; default ``data_id.detectors``, and if that is None too, every detector
            whose file exists.

        Returns
        -------
        paths : `dict` [`int`, `pathlib.Path`]
            Existing files by detector id (detectors with no file are left out).

        Notes
        -----
        A group id is resolved by reading the primary headers (only) of the exposures of the
        group id's observing day ± `GROUP_SCAN_DAYS`; if several exposures share the group id, the
        newest (highest sequence number) is used. `obsids_for_group` lists them all.
        """
        wanted = self._detector_ids(data_id, detectors)
        obsid = self._obsid_of(data_id)
        if obsid is None:
            return {}
        if wanted is None:
            return self._scan_exposure(obsid)
        found = {}
        for detector_id in wanted:
            path = self.existing_path(obsid, detector_id)
            if path is not None:
                found[detector_id] = path
        return found

    def _obsid_of(self, data_id: DataId) -> str | None:
        if data_id.instrument != self.instrument.name:
            raise ValueError(f"data id is for {data_id.instrument}, but this store holds {self.instrument.name}")
        if data_id.obsid is not None:
            return data_id.obsid
        if data_id.group_id is not None:
            obsids = self.obsids_for_group(data_id.group_id)
            return obsids[-1] if obsids else None
        raise ValueError(f"data id {data_id.to_json()} has neither an obsid nor a group id")

    def obsids_for_group(self, group_id: str) -> list[str]:
        """The exposures (obsids, oldest first) whose primary header ``GROUPID`` is ``group_id``.

        Only the observing days around the group id's date are scanned, and only one primary
        header per exposure is read (cached once read).
        """
        if not GROUP_ID_RE.match(group_id):
            raise ValueError(f"groupId {group_id!r} is not an ISO timestamp such as 2025-11-15T21:03:14.123")
        obsids = []
        for day_dir in self._group_days(group_id):
            try:
                exposure_dirs = [e for e in os.scandir(day_dir) if e.is_dir()]
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in sorted(exposure_dirs, key=lambda e: e.name):
                if OBSID_RE.match(entry.name) and self._group_of(pathlib.Path(entry.path)) == group_id:
                    obsids.append(entry.name)
        return sorted(obsids, key=lambda o: (o.split("_")[2], o.split("_")[3]))

    def _group_days(self, group_id: str) -> list[pathlib.Path]:
        """Day directories to scan: the group id's dayObs (days roll over at 12:00 TAI) ± a day."""
        stamp = datetime.datetime.fromisoformat(group_id.split("#")[0])
        day_obs = (stamp - datetime.timedelta(hours=12)).date()
        days = [day_obs + datetime.timedelta(days=d) for d in range(-GROUP_SCAN_DAYS, GROUP_SCAN_DAYS + 1)]
        return [self.instrument_dir / day.strftime("%Y%m%d") for day in days]

    def _group_of(self, exposure_dir: pathlib.Path) -> str | None:
        """GROUPID of an exposure directory, from the primary header of one of its files."""
        if exposure_dir in self._group_of_dir:
            return self._group_of_dir[exposure_dir]
        for path in sorted(exposure_dir.iterdir(), key=lambda p: p.name.endswith(".fz")):
            if parse_raw_file_name(self.instrument, path.name) is None:
                continue
            try:
                header = primary_header(path)
            except HeaderError as e:  # being written, or corrupt: try another file
                log.debug("Cannot read the header of %s: %s", path, e)
                continue
            group = header.get("GROUPID")
            if group is not None:
                if len(self._group_of_dir) >= _GROUP_CACHE_SIZE:
                    self._group_of_dir.clear()
                self._group_of_dir[exposure_dir] = str(group)
                return str(group)
        return None

    # Waiting for files being written

    def is_complete(self, path: pathlib.Path) -> bool:
        """Whether a file is whole FITS: whole blocks, every HDU's header and data present, nothing after.

        This reads the headers only. A raw still being written passes it between two HDUs:
        `wait_for` also requires every amplifier's HDU.
        """
        return scan_fits(path).whole

    def expected_amps(self, detector_id: int) -> int | None:
        """Amplifier (image) HDUs of a whole raw of a detector (16; 8 for a wavefront sensor), if known."""
        detector = self.instrument.by_id.get(detector_id)
        try:
            return len(amp_names(detector.physical_type)) if detector is not None else None
        except (KeyError, ValueError):
            return None

    def _poll(
        self, paths: dict[int, pathlib.Path], probes: dict[pathlib.Path, _Probe], now: float
    ) -> dict[int, pathlib.Path]:
        """Of ``paths``, those complete; ``probes`` keeps what each look saw of each file.

        A raw is complete when every amplifier's image HDU is there, whole, and either the file
        ends there (at the first look: a raw written before endReadout costs no wait) or its size
        is the same as at the previous look (the tables after the amps never came). A raw short
        of an amplifier is never complete, however long it has stopped growing. Of a detector
        whose layout is unknown, a whole file of the same size on two looks is taken.
        """
        complete = {}
        for detector_id, path in paths.items():
            probe = probes.get(path)
            if probe is not None and probe.complete:
                try:
                    unchanged = path.stat().st_size == probe.structure.size
                except OSError:
                    unchanged = False
                if unchanged:
                    complete[detector_id] = path
                    continue
            structure = scan_fits(path)
            stable = probe is not None and probe.structure.size == structure.size
            expected = self.expected_amps(detector_id)
            if expected is None:
                done = structure.whole and stable
            else:
                done = structure.n_images >= expected and (structure.whole or stable)
            probes[path] = _Probe(structure, probe.changed_at if probe is not None and stable else now, done)
            if done:
                complete[detector_id] = path
        return complete

    async def wait_for(
        self,
        data_id: DataId,
        detectors: Sequence[int] | None = None,
        timeout: float = 10.0,
        poll_interval: float = 0.2,
    ) -> dict[int, pathlib.Path]:
        """Wait until the raws of every requested detector exist and are completely written.

        Parameters
        ----------
        data_id : `DataId`
            The image.
        detectors : sequence of `int`, optional
            Detector ids; default ``data_id.detectors``, and if that is None too, every detector
            of the instrument.
        timeout : `float`
            Seconds to wait at most.
        poll_interval : `float`
            Seconds between looks. A raw is complete when it holds every amplifier's HDU whole
            (`expected_amps` image HDUs; tables after them are not counted) and the file ends
            there, which a raw written before endReadout does at the first look; or, every amp
            there, when its size is also the same on two consecutive looks. A raw short of an
            amplifier is waited for until the timeout, never taken: a detector is never measured
            in part.

        Returns
        -------
        paths : `dict` [`int`, `pathlib.Path`]
            The complete files by detector id: all requested, or what was complete at the timeout
            (a warning names the others and how far they got).

        Raises
        ------
        MissingRawError
            If no complete file appeared before the timeout. The message names the detectors and
            the paths looked for, and of each file found but incomplete, how many of its
            amplifiers were there and whether it had stopped growing.
        """
        wanted = self._detector_ids(data_id, detectors)
        if wanted is None:
            wanted = tuple(self.instrument.by_id)
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, not {poll_interval}")
        deadline = time.monotonic() + max(timeout, 0.0)
        probes: dict[pathlib.Path, _Probe] = {}

        def look() -> tuple[dict[int, pathlib.Path], dict[int, pathlib.Path]]:
            # One thread hop per look: on the way from endReadout to the first job, each costs.
            seen = self.find(data_id, wanted)
            return seen, self._poll(seen, probes, time.monotonic())

        while True:
            seen, complete = await asyncio.to_thread(look)
            if len(complete) == len(wanted):
                return complete
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.sleep(min(poll_interval, remaining))
        incomplete = self._incomplete(seen, complete, probes, poll_interval)
        if complete:
            missing = _short_list(sorted(set(wanted) - set(complete)))
            log.warning(
                "%s: %d of %d raws after %g s; missing detectors %s%s",
                _describe(data_id), len(complete), len(wanted), timeout, missing,
                f" ({incomplete})" if incomplete else "",
            )  # fmt: skip
            return complete
        raise MissingRawError(self._missing_message(data_id, wanted, incomplete, timeout))

    def _incomplete(
        self,
        seen: dict[int, pathlib.Path],
        complete: dict[int, pathlib.Path],
        probes: dict[pathlib.Path, _Probe],
        poll_interval: float,
    ) -> str:
        """How far the files found but not complete got: amplifiers present, and whether they still grew."""
        now = time.monotonic()
        parts = []
        for detector_id, path in sorted(seen.items()):
            probe = probes.get(path)
            if detector_id in complete or probe is None:
                continue
            structure = probe.structure
            expected = self.expected_amps(detector_id)
            amps = (
                f"{structure.n_images} of {expected} amplifier HDUs whole"
                if expected is not None
                else f"{structure.n_hdus} whole HDUs (layout unknown)"
            )
            idle = now - probe.changed_at
            if idle >= poll_interval:
                growth = f"the file stopped growing at {structure.size} bytes {idle:.1f} s before the timeout"
            else:
                growth = f"the file was still growing ({structure.size} bytes at the last look)"
            parts.append(f"{path.name} has {amps}; {growth}")
        return "; ".join(parts[:3]) + (f"; ... ({len(parts)} in all)" if len(parts) > 3 else "")

    def _missing_message(self, data_id: DataId, wanted: Sequence[int], incomplete: str, timeout: float) -> str:
        if data_id.obsid is not None:
            candidates = self.candidate_paths(data_id.obsid, wanted[0])
            others = [p.name for p in candidates[1:] if p.name.endswith(RAW_SUFFIXES[0])]
            where = f"looked for {candidates[0]}"
            where += f" (or {', '.join(others)}, or .fits.fz)" if others else " (or .fits.fz)"
            if len(wanted) > 1:
                where += f" and {len(wanted) - 1} more detector(s) in that directory"
        else:
            days = ", ".join(str(d) for d in self._group_days(data_id.group_id or ""))
            where = f"looked for exposures with GROUPID {data_id.group_id!r} in {days}"
        names = _short_list(f"{d} ({self.instrument.by_id[d].name})" for d in wanted)
        text = f"no complete raw of {_describe(data_id)} for detector(s) {names} arrived within {timeout:g} s: {where}"
        if incomplete:
            text += f"; found but incomplete: {incomplete}"
        return text

    # URLs

    def resolve_url(self, url: str) -> pathlib.Path:
        """The path of a raw announced by URL (largeFileObjectAvailable).

        Parameters
        ----------
        url : `str`
            A ``file://`` URL of a file under the store root.

        Returns
        -------
        path : `pathlib.Path`
            Absolute, resolved path inside the root.

        Raises
        ------
        RawUrlError
            If the URL is not ``file://``, has a host other than localhost, contains ``..`` or
            a NUL, or resolves (following symbolic links) outside the root. ``s3://`` URLs raise
            it too, saying that S3 is not configured.
        """
        if not isinstance(url, str) or not url:
            raise RawUrlError(f"raw URL must be a non-empty string, not {url!r}")
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "s3":
            raise RawUrlError(
                f"cannot read {url!r}: S3 is not configured for the raw store (only file:// URLs under "
                f"{self.root} are supported)"
            )
        if scheme != "file":
            shown = f"scheme {scheme!r}" if scheme else "no scheme"
            raise RawUrlError(f"raw URL {url!r} has {shown}; only file:// URLs under {self.root} are accepted")
        if parts.netloc not in ("", "localhost"):
            raise RawUrlError(f"raw URL {url!r} names host {parts.netloc!r}; only local files are accepted")
        if parts.query or parts.fragment:
            raise RawUrlError(f"raw URL {url!r} must not have a query or fragment")
        raw_path = urllib.parse.unquote(parts.path)
        if "\x00" in raw_path:
            raise RawUrlError(f"raw URL {url!r} contains a NUL character")
        candidate = pathlib.PurePosixPath(raw_path)
        if ".." in candidate.parts:
            raise RawUrlError(f"raw URL {url!r} contains '..'; give the path of the file itself")
        if not candidate.is_absolute():
            raise RawUrlError(f"raw URL {url!r} does not hold an absolute path")
        root = self.root.resolve()
        resolved = pathlib.Path(candidate).resolve()
        if not resolved.is_relative_to(root):
            raise RawUrlError(f"raw URL {url!r} is outside the raw store root {root}")
        return resolved


def _describe(data_id: DataId) -> str:
    return data_id.obsid if data_id.obsid is not None else f"group {data_id.group_id}"


def _short_list(items: Iterable[object], limit: int = 10) -> str:
    items = list(items)
    text = ", ".join(str(i) for i in items[:limit])
    return text + (f", ... ({len(items)} in all)" if len(items) > limit else "")
