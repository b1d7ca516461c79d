"""Where raws come from: the camera's directory tree and the URLs of largeFileObjectAvailable.

The camera writes one file per detector and exposure::

    {root}/{instrument}/{dayObs}/{obsid}/{obsid}_{raft}_{sensor}.fits   (or .fits.fz)

`RawStore` maps data ids to those files, waits for files that are still being written, and turns
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
import warnings
from collections.abc import Iterable, Sequence

from astropy.io import fits

from .amp_geometry import amp_names
from .camera import Instrument, get_instrument
from .data_id import GROUP_ID_RE, OBSID_RE, DataId
from .fits_structure import FITS_BLOCK, count_whole_hdus

__all__ = ["RawStore", "MissingRawError", "RawUrlError", "RAW_SUFFIXES", "FITS_BLOCK"]

log = logging.getLogger(__name__)

#: File name endings of raws, in order of preference.
RAW_SUFFIXES: tuple[str, ...] = (".fits", ".fits.fz")
#: How many days either side of a group id's day to scan for its exposures.
GROUP_SCAN_DAYS = 1
_GROUP_CACHE_SIZE = 100_000
_DAY_DIR_RE = re.compile(r"^\d{8}$")
_RAW_NAME_RE = re.compile(
    r"^(?P<obsid>(?:AT|CC|MC)_[OCHPQS]_\d{8}_\d{6})"
    r"_(?P<raft>R[0-9X]{2})_(?P<sensor>S[0-9GWX][0-9X])"
    r"(?P<suffix>\.fits(?:\.fz)?)$"
)


class MissingRawError(ValueError):
    """No raw appeared for a data id (the message says which detectors and where they were looked for)."""


class RawUrlError(ValueError):
    """A URL that does not name a raw this store may read (wrong scheme, outside the root, ``..``)."""


@dataclasses.dataclass
class _Probe:
    """What the last poll saw of a file: its size, and whether it was found complete."""

    size: int
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
        """The path of a raw (``.fits``; see `existing_path` for ``.fits.fz``).

        Parameters
        ----------
        obsid : `str`
            Image name, e.g. ``MC_O_20251115_000226``.
        detector_id : `int`
            Detector id.

        Returns
        -------
        path : `pathlib.Path`

        Raises
        ------
        ValueError
            If the obsid is malformed or of another camera, or the detector does not exist.
        """
        detector = self.instrument.detector(detector_id)
        return self.exposure_dir(obsid) / f"{obsid}_{detector.name}{RAW_SUFFIXES[0]}"

    def existing_path(self, obsid: str, detector_id: int) -> pathlib.Path | None:
        """The raw of ``detector_id`` in ``obsid`` as it exists on disk (``.fits`` or ``.fits.fz``), or None."""
        base = self.path_for(obsid, detector_id)
        for suffix in RAW_SUFFIXES:
            candidate = base.with_name(base.name.removesuffix(RAW_SUFFIXES[0]) + suffix)
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
        """Every raw of ``obsid`` on disk, by detector id (``.fits`` preferred over ``.fits.fz``)."""
        found: dict[int, pathlib.Path] = {}
        try:
            entries = list(os.scandir(self.exposure_dir(obsid)))
        except (FileNotFoundError, NotADirectoryError):
            return found
        for entry in sorted(entries, key=lambda e: e.name.endswith(".fz")):
            match = _RAW_NAME_RE.match(entry.name)
            if match is None or match["obsid"] != obsid or not entry.is_file():
                continue
            detector = self.instrument.by_name.get(f"{match['raft']}_{match['sensor']}")
            if detector is not None:
                found.setdefault(detector.id, pathlib.Path(entry.path))
        return found

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
            if not _RAW_NAME_RE.match(path.name):
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    header = fits.getheader(path, 0)
            except Exception as e:  # being written, or corrupt: try another file
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
        """Whether a raw looks completely written: whole FITS blocks, and every HDU's data present.

        This reads the headers only. A file that is still growing may pass it between two HDUs:
        `wait_for` also requires every amplifier's HDU, or else the size to be stable across two polls.
        """
        return self._hdu_count(path) >= 1

    @staticmethod
    def _hdu_count(path: pathlib.Path) -> int:
        """HDUs of a file made of whole FITS blocks with every HDU's data present; 0 if it is not that."""
        return count_whole_hdus(path)

    def _expected_hdus(self, detector_id: int) -> int | None:
        """A complete raw's HDUs (the primary and one per amplifier), if the detector's layout is known."""
        detector = self.instrument.by_id.get(detector_id)
        try:
            return 1 + len(amp_names(detector.physical_type)) if detector is not None else None
        except (KeyError, ValueError):
            return None

    def _poll(self, paths: dict[int, pathlib.Path], probes: dict[pathlib.Path, _Probe]) -> dict[int, pathlib.Path]:
        """Of ``paths``, those complete.

        Complete at the first look when every amplifier's HDU is there, whole (the camera has
        written its last HDU: no need to wait and see). Otherwise (an amp missing, an unknown
        layout) when its size is the same as at the previous poll (``probes``) and `is_complete`.
        """
        complete = {}
        for detector_id, path in paths.items():
            try:
                size = path.stat().st_size
            except OSError:
                continue
            probe = probes.get(path)
            if probe is not None and probe.complete and probe.size == size:
                complete[detector_id] = path
                continue
            n_hdus = self._hdu_count(path) if probe is None or probe.size == size else 0
            expected = self._expected_hdus(detector_id)
            if (expected is not None and n_hdus >= expected) or (probe is not None and probe.size == size and n_hdus):
                probes[path] = _Probe(size, complete=True)
                complete[detector_id] = path
            else:
                probes[path] = _Probe(size)
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
            Seconds between looks. A file counts as complete when its headers and data blocks are
            all there and it has every amplifier's HDU (at the first look: a raw written before
            endReadout costs no wait), or, short of an amp, when its size is also the same on two
            consecutive looks.

        Returns
        -------
        paths : `dict` [`int`, `pathlib.Path`]
            The complete files by detector id: all requested, or what was complete at the timeout.

        Raises
        ------
        MissingRawError
            If no complete file appeared before the timeout (names the detectors and the path
            looked for).
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
            return seen, self._poll(seen, probes)

        while True:
            seen, complete = await asyncio.to_thread(look)
            if len(complete) == len(wanted):
                return complete
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.sleep(min(poll_interval, remaining))
        if complete:
            missing = _short_list(sorted(set(wanted) - set(complete)))
            log.warning(
                "%s: %d of %d raws after %g s; missing detectors %s",
                _describe(data_id), len(complete), len(wanted), timeout, missing,
            )  # fmt: skip
            return complete
        raise MissingRawError(self._missing_message(data_id, wanted, seen, timeout))

    def _missing_message(
        self, data_id: DataId, wanted: Sequence[int], seen: dict[int, pathlib.Path], timeout: float
    ) -> str:
        if data_id.obsid is not None:
            example = self.path_for(data_id.obsid, wanted[0])
            where = f"looked for {example}"
            if len(wanted) > 1:
                where += f" and {len(wanted) - 1} more in that directory"
        else:
            days = ", ".join(str(d) for d in self._group_days(data_id.group_id or ""))
            where = f"looked for exposures with GROUPID {data_id.group_id!r} in {days}"
        names = _short_list(f"{d} ({self.instrument.by_id[d].name})" for d in wanted)
        text = f"No raw of {_describe(data_id)} for detector(s) {names} within {timeout:g} s: {where}"
        if seen:
            text += f"; {len(seen)} file(s) exist but were still being written or are incomplete"
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
