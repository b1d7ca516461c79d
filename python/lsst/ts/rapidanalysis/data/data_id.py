"""Parse and validate the ``dataId`` of ``processData``: strict, and nothing path-like passes."""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from typing import Any

from .camera import Instrument

__all__ = ["DataId", "DataIdError", "parse_data_id", "OBSID_RE"]

#: ``{CAMCODE}_{CONTROLLER}_{DAYOBS}_{SEQNUM:06d}``, e.g. ``MC_O_20251115_000226``.
OBSID_RE = re.compile(r"^(?P<cam>AT|CC|MC)_(?P<controller>[OCHPQS])_(?P<day>\d{8})_(?P<seq>\d{6})$")
#: Rubin group ids are ISO-8601 TAI timestamps, optionally with a ``#n`` repeat suffix.
GROUP_ID_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(#\d{1,4})?$")
_DETECTOR_NAME_RE = re.compile(r"^R[0-9X]{2}_S[0-9GWX][0-9X]$")
_ALLOWED_KEYS = ("obsid", "groupId", "dayObs", "seqNum", "detectors")
_MAX_LEN = 4096


class DataIdError(ValueError):
    """A dataId is malformed; the message says what is wrong and what is allowed."""


@dataclasses.dataclass(frozen=True)
class DataId:
    """A validated data id.

    Attributes
    ----------
    instrument : `str`
        Instrument name.
    obsid : `str` or None
        Image name, when given (or derived from dayObs+seqNum).
    group_id : `str` or None
        Group id, when the request is by group.
    day_obs : `int` or None
        Observing day YYYYMMDD.
    seq_num : `int` or None
        Sequence number.
    detectors : `tuple` [`int`] or None
        Detector ids to process; None = the instrument's default selection.
    """

    instrument: str
    obsid: str | None = None
    group_id: str | None = None
    day_obs: int | None = None
    seq_num: int | None = None
    detectors: tuple[int, ...] | None = None

    def to_json(self) -> str:
        """Canonical JSON (what jobResult.dataId carries)."""
        out: dict[str, Any] = {}
        if self.obsid is not None:
            out["obsid"] = self.obsid
        if self.group_id is not None:
            out["groupId"] = self.group_id
        if self.day_obs is not None:
            out["dayObs"] = self.day_obs
            out["seqNum"] = self.seq_num
        if self.detectors is not None:
            out["detectors"] = list(self.detectors)
        return json.dumps(out, sort_keys=True)


def _check_day_obs(value: Any) -> int:
    text = str(value)
    if isinstance(value, bool) or not re.fullmatch(r"\d{8}", text):
        raise DataIdError(f"dayObs must be YYYYMMDD (e.g. 20251115), not {value!r}")
    try:
        datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise DataIdError(f"dayObs {value!r} is not a real date") from None
    return int(text)


def _check_seq_num(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 999_999:
        raise DataIdError(f"seqNum must be an integer 1–999999, not {value!r}")
    return value


def _check_detectors(value: Any, instrument: Instrument) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise DataIdError(f"detectors must be a non-empty list of ids or Rxy_Sxy names, not {value!r}")
    ids = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise DataIdError(f"detector {item!r} must be an integer id or an Rxy_Sxy name")
        if isinstance(item, str) and not _DETECTOR_NAME_RE.match(item):
            raise DataIdError(f"detector name {item!r} is not of the form Rxy_Sxy (e.g. R22_S11)")
        try:
            ids.append(instrument.detector(item).id)
        except ValueError as e:
            raise DataIdError(str(e)) from None
    if len(set(ids)) != len(ids):
        raise DataIdError(f"detectors lists a detector twice: {value!r}")
    return tuple(ids)


def parse_data_id(text: str, instrument: Instrument) -> DataId:
    """Parse the JSON ``dataId`` of a ``processData`` command.

    Parameters
    ----------
    text : `str`
        JSON object with ``obsid``, or ``groupId``, or ``dayObs`` and ``seqNum``; optionally
        ``detectors`` (list of ids or ``Rxy_Sxy`` names).
    instrument : `Instrument`
        The CSC's instrument (obsid camera codes and detectors must belong to it).

    Returns
    -------
    data_id : `DataId`

    Raises
    ------
    DataIdError
        With a message saying what is wrong and what is allowed.
    """
    if len(text) > _MAX_LEN:
        raise DataIdError(f"dataId is longer than {_MAX_LEN} characters")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataIdError(f"dataId is not valid JSON ({e.msg} at character {e.pos}): {text[:80]!r}") from None
    if not isinstance(raw, dict):
        raise DataIdError(
            f'dataId must be a JSON object such as {{"obsid": "MC_O_20251115_000226"}}, not {text[:80]!r}'
        )
    unknown = sorted(set(raw) - set(_ALLOWED_KEYS))
    if unknown:
        raise DataIdError(f"dataId has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_ALLOWED_KEYS)}")
    has_obsid, has_group = "obsid" in raw, "groupId" in raw
    has_day_seq = "dayObs" in raw or "seqNum" in raw
    if has_obsid + has_group + has_day_seq != 1:
        raise DataIdError("dataId must give exactly one of: obsid, groupId, or dayObs with seqNum")
    detectors = _check_detectors(raw["detectors"], instrument) if "detectors" in raw else None
    if has_obsid:
        obsid = raw["obsid"]
        match = OBSID_RE.match(obsid) if isinstance(obsid, str) else None
        if match is None:
            raise DataIdError(
                f"obsid {obsid!r} is not of the form {instrument.cam_code}_O_YYYYMMDD_NNNNNN "
                f"(camera code, controller O/C/H/P/Q/S, day, 6-digit sequence number)"
            )
        if match["cam"] != instrument.cam_code:
            raise DataIdError(
                f"obsid {obsid!r} is for camera code {match['cam']}, but this CSC serves {instrument.name} "
                f"({instrument.cam_code})"
            )
        day_obs = _check_day_obs(match["day"])
        seq_num = _check_seq_num(int(match["seq"]))
        return DataId(instrument.name, obsid=obsid, day_obs=day_obs, seq_num=seq_num, detectors=detectors)
    if has_group:
        group_id = raw["groupId"]
        if not isinstance(group_id, str) or not GROUP_ID_RE.match(group_id):
            raise DataIdError(f"groupId {group_id!r} is not an ISO timestamp such as 2025-11-15T21:03:14.123")
        return DataId(instrument.name, group_id=group_id, detectors=detectors)
    if "dayObs" not in raw or "seqNum" not in raw:
        raise DataIdError("dayObs and seqNum must be given together")
    day_obs = _check_day_obs(raw["dayObs"])
    seq_num = _check_seq_num(raw["seqNum"])
    obsid = f"{instrument.cam_code}_O_{day_obs}_{seq_num:06d}"
    return DataId(instrument.name, obsid=obsid, day_obs=day_obs, seq_num=seq_num, detectors=detectors)
