"""Parse and validate the ``dataId`` of ``processData``: strict, and nothing path-like passes."""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from typing import Any

from .camera import Instrument
from .strict_json import StrictJsonError, loads_strict, quote

__all__ = ["DataId", "DataIdError", "parse_data_id", "OBSID_RE", "GROUP_ID_RE"]

# Every pattern is ASCII only ([0-9], never \d, which matches any script's digits) and anchored
# at the very end (\Z: $ also matches before a trailing newline), so that nothing but the exact
# form passes, whether it is used with match or fullmatch.

#: ``{CAMCODE}_{CONTROLLER}_{DAYOBS}_{SEQNUM:06d}``, e.g. ``MC_O_20251115_000226``.
OBSID_RE = re.compile(r"\A(?P<cam>AT|CC|MC)_(?P<controller>[OCHPQS])_(?P<day>[0-9]{8})_(?P<seq>[0-9]{6})\Z")
#: Rubin group ids are ISO-8601 TAI timestamps, optionally with a ``#n`` repeat suffix.
GROUP_ID_RE = re.compile(
    r"\A(?P<time>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?)(#[0-9]{1,4})?\Z"
)
_DETECTOR_NAME_RE = re.compile(r"\AR[0-9X]{2}_S[0-9GWX][0-9X]\Z")
_ALLOWED_KEYS = ("obsid", "groupId", "dayObs", "seqNum", "detectors")
_MAX_LEN = 4096
#: Detector ids are small; anything longer is rejected before it is looked up.
_MAX_DETECTOR_ID = 9999


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


def _json_type(value: Any) -> str:
    """What a JSON value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number written with a fraction or an exponent"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _flaw(text: str) -> str:
    """Why a string cannot be an identifier, when there is an obvious reason; else ""."""
    if text != text.strip():
        return "; it has white space (or a newline) before or after it"
    for i, char in enumerate(text):
        if not char.isascii():
            return f"; character {i} is {char!r}, which is not ASCII (digits must be 0-9)"
        if not char.isprintable():
            return f"; character {i} is {char!r}, a control character"
    return ""


def _check_day_obs(value: Any, where: str = "dayObs") -> int:
    if isinstance(value, str) and where == "dayObs":
        raise DataIdError(f"dayObs must be an integer YYYYMMDD (e.g. 20251115), not the string {quote(value)}")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise DataIdError(f"dayObs must be an integer YYYYMMDD (e.g. 20251115), not {_json_type(value)} {quote(value)}")
    text = str(value)
    if not re.fullmatch(r"[0-9]{8}", text):
        raise DataIdError(f"dayObs must be an integer YYYYMMDD (e.g. 20251115), not {quote(value)}")
    try:
        datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise DataIdError(f"dayObs {text} is not a real date") from None
    return int(text)


def _check_seq_num(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 999_999:
        what = "" if isinstance(value, int) and not isinstance(value, bool) else f"{_json_type(value)} "
        raise DataIdError(f"seqNum must be an integer 1–999999, not {what}{quote(value)}")
    return value


def _check_detectors(value: Any, instrument: Instrument) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise DataIdError(
            f"detectors must be a non-empty list of ids or Rxy_Sxy names, not {_json_type(value)} {quote(value)}"
        )
    ids = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise DataIdError(
                f"detector {quote(item)} must be an integer id or an Rxy_Sxy name, not {_json_type(item)}"
            )
        if isinstance(item, int) and not 0 <= item <= _MAX_DETECTOR_ID:
            raise DataIdError(
                f"detector id {quote(item)} is out of range: {instrument.name} has ids "
                f"{min(instrument.by_id)}–{max(instrument.by_id)}"
            )
        if isinstance(item, str) and not _DETECTOR_NAME_RE.match(item):
            raise DataIdError(f"detector name {quote(item)} is not of the form Rxy_Sxy (e.g. R22_S11){_flaw(item)}")
        try:
            ids.append(instrument.detector(item).id)
        except ValueError as e:
            raise DataIdError(str(e)) from None
    if len(set(ids)) != len(ids):
        raise DataIdError(f"detectors lists a detector twice: {quote(value)}")
    return tuple(ids)


def _check_group_id(value: Any) -> str:
    allowed = "an ISO timestamp such as 2025-11-15T21:03:14.123 (optionally with a #n repeat suffix)"
    if not isinstance(value, str):
        raise DataIdError(f"groupId {quote(value)} is not {allowed}: it must be a string, not {_json_type(value)}")
    match = GROUP_ID_RE.match(value)
    if match is None:
        raise DataIdError(f"groupId {quote(value)} is not {allowed}{_flaw(value)}")
    try:
        datetime.datetime.fromisoformat(match["time"])
    except ValueError:
        raise DataIdError(f"groupId {quote(value)} is not a real date and time") from None
    return value


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
    if not isinstance(text, str):
        raise DataIdError(f"dataId must be a string of JSON, not {type(text).__name__}")
    if len(text) > _MAX_LEN:
        raise DataIdError(f"dataId is longer than {_MAX_LEN} characters ({len(text)})")
    try:
        raw = loads_strict(text, "dataId")
    except StrictJsonError as e:
        raise DataIdError(str(e)) from None
    if not isinstance(raw, dict):
        raise DataIdError(
            f'dataId must be a JSON object such as {{"obsid": "MC_O_20251115_000226"}}, not {quote(text)}'
        )
    unknown = sorted(set(raw) - set(_ALLOWED_KEYS))
    if unknown:
        shown = ", ".join(k if k.isascii() and k.isprintable() and len(k) <= 40 else quote(k) for k in unknown)
        raise DataIdError(f"dataId has unknown key(s) {shown}; allowed: {', '.join(_ALLOWED_KEYS)}")
    has_obsid, has_group = "obsid" in raw, "groupId" in raw
    has_day_seq = "dayObs" in raw or "seqNum" in raw
    if has_obsid + has_group + has_day_seq != 1:
        raise DataIdError("dataId must give exactly one of: obsid, groupId, or dayObs with seqNum")
    detectors = _check_detectors(raw["detectors"], instrument) if "detectors" in raw else None
    if has_obsid:
        obsid = raw["obsid"]
        form = (
            f"{instrument.cam_code}_O_YYYYMMDD_NNNNNN "
            f"(camera code, controller O/C/H/P/Q/S, day, 6-digit sequence number; ASCII only)"
        )
        if not isinstance(obsid, str):
            raise DataIdError(
                f"obsid {quote(obsid)} is not of the form {form}: it must be a string, not {_json_type(obsid)}"
            )
        match = OBSID_RE.match(obsid)
        if match is None:
            raise DataIdError(f"obsid {quote(obsid)} is not of the form {form}{_flaw(obsid)}")
        if match["cam"] != instrument.cam_code:
            raise DataIdError(
                f"obsid {obsid!r} is for camera code {match['cam']}, but this CSC serves {instrument.name} "
                f"({instrument.cam_code})"
            )
        day_obs = _check_day_obs(match["day"], where="obsid")
        seq_num = _check_seq_num(int(match["seq"]))
        return DataId(instrument.name, obsid=obsid, day_obs=day_obs, seq_num=seq_num, detectors=detectors)
    if has_group:
        group_id = _check_group_id(raw["groupId"])
        return DataId(instrument.name, group_id=group_id, detectors=detectors)
    if "dayObs" not in raw or "seqNum" not in raw:
        raise DataIdError("dayObs and seqNum must be given together")
    day_obs = _check_day_obs(raw["dayObs"])
    seq_num = _check_seq_num(raw["seqNum"])
    obsid = f"{instrument.cam_code}_O_{day_obs}_{seq_num:06d}"
    return DataId(instrument.name, obsid=obsid, day_obs=day_obs, seq_num=seq_num, detectors=detectors)
