"""parse_data_id: exactly the allowed forms pass; every malformed one fails saying what is wrong."""

from __future__ import annotations

import json

import pytest

from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.data.data_id import GROUP_ID_RE, OBSID_RE, DataId, DataIdError, parse_data_id

LATISS = get_instrument("LATISS")
LSSTCAM = get_instrument("LSSTCam")
OBSID = "AT_O_20251115_000001"
ARABIC_INDIC = "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"  # ٠..٩
FULL_WIDTH = "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19"  # ０..９


def in_script(digits: str, text: str) -> str:
    """``text`` with its ASCII digits written in another script's digits."""
    return "".join(digits[int(c)] if c.isascii() and c.isdigit() else c for c in text)


def test_good_forms() -> None:
    assert parse_data_id(json.dumps({"obsid": OBSID}), LATISS) == DataId(
        "LATISS", obsid=OBSID, day_obs=20251115, seq_num=1
    )
    assert parse_data_id('{"dayObs": 20251115, "seqNum": 7}', LATISS).obsid == "AT_O_20251115_000007"
    for group_id in ("2025-11-15T21:03:14", "2025-11-15T21:03:14.123456", "2025-11-15T21:03:14.1#12"):
        assert parse_data_id(json.dumps({"groupId": group_id}), LATISS).group_id == group_id
    data_id = parse_data_id(json.dumps({"obsid": "MC_O_20251115_000226", "detectors": ["R22_S11", 0]}), LSSTCAM)
    assert data_id.detectors == (94, 0)
    # Surrounding white space is JSON's, not the identifier's.
    assert parse_data_id(f' \n{{"obsid": "{OBSID}"}}\n', LATISS).obsid == OBSID


# (dataId text, what the message must say)
MALFORMED = {
    "obsid, trailing newline": (json.dumps({"obsid": OBSID + "\n"}), r"white space (or a newline)"),
    "obsid, leading space": (json.dumps({"obsid": " " + OBSID}), r"white space (or a newline)"),
    "obsid, trailing NUL": (json.dumps({"obsid": OBSID + "\0"}), r"character 20 is '\x00', a control character"),
    "obsid, Arabic-Indic digits": (
        json.dumps({"obsid": in_script(ARABIC_INDIC, OBSID)}, ensure_ascii=False),
        "character 5 is '\u0662', which is not ASCII (digits must be 0-9)",
    ),
    "obsid, full-width digits (escaped in JSON)": (
        json.dumps({"obsid": in_script(FULL_WIDTH, OBSID)}),
        "character 5 is '\uff12', which is not ASCII",
    ),
    "obsid, one non-ASCII digit": (
        json.dumps({"obsid": OBSID[:-1] + ARABIC_INDIC[1]}),
        "character 19 is '\u0661'",
    ),
    "obsid, lone surrogate": ('{"obsid": "\\ud800"}', r"obsid '\ud800' is not of the form AT_O_YYYYMMDD_NNNNNN"),
    "obsid, number": ('{"obsid": 20251115000001}', "it must be a string, not an integer"),
    "obsid, nested object": (json.dumps({"obsid": {"obsid": OBSID}}), "it must be a string, not an object"),
    "obsid, list": (json.dumps({"obsid": [OBSID]}), "it must be a string, not a list"),
    "obsid, null": ('{"obsid": null}', "it must be a string, not null"),
    "obsid, day not real": (json.dumps({"obsid": "AT_O_20251332_000001"}), "dayObs 20251332 is not a real date"),
    "obsid, seqNum 0": (json.dumps({"obsid": "AT_O_20251115_000000"}), "seqNum must be an integer 1–999999"),
    "groupId, trailing newline": (
        json.dumps({"groupId": "2025-11-15T21:03:14.123\n"}),
        "is not an ISO timestamp such as 2025-11-15T21:03:14.123 (optionally with a #n repeat suffix); it has white",
    ),
    "groupId, full-width digits": (
        json.dumps({"groupId": in_script(FULL_WIDTH, "2025-11-15T21:03:14")}),
        "character 0 is '\uff12', which is not ASCII",
    ),
    "groupId, Arabic-Indic repeat suffix": (
        json.dumps({"groupId": "2025-11-15T21:03:14#" + ARABIC_INDIC[3]}),
        "which is not ASCII",
    ),
    "groupId, not a real time": (json.dumps({"groupId": "2025-11-15T25:03:14"}), "is not a real date and time"),
    "groupId, path": (json.dumps({"groupId": "../../etc"}), "'../../etc' is not an ISO timestamp"),
    "groupId, number": ('{"groupId": 2025}', "it must be a string, not an integer"),
    "dayObs, string": ('{"dayObs": "20251115", "seqNum": 1}', "dayObs must be an integer YYYYMMDD"),
    "dayObs, string of non-ASCII digits": (
        json.dumps({"dayObs": in_script(ARABIC_INDIC, "20251115"), "seqNum": 1}),
        "dayObs must be an integer YYYYMMDD (e.g. 20251115), not the string",
    ),
    "dayObs, bool": ('{"dayObs": true, "seqNum": 1}', "not a boolean True"),
    "dayObs, float": ('{"dayObs": 20251115.0, "seqNum": 1}', "not a number written with a fraction"),
    "dayObs, 7 digits": ('{"dayObs": 2025111, "seqNum": 1}', "dayObs must be an integer YYYYMMDD"),
    "dayObs, negative": ('{"dayObs": -20251115, "seqNum": 1}', "dayObs must be an integer YYYYMMDD"),
    "dayObs, huge": ('{"dayObs": ' + "9" * 400 + ', "seqNum": 1}', "dayObs must be an integer YYYYMMDD"),
    "dayObs, nested": ('{"dayObs": {"y": 2025}, "seqNum": 1}', "not an object"),
    "seqNum, bool": ('{"dayObs": 20251115, "seqNum": true}', "seqNum must be an integer 1–999999, not a boolean"),
    "seqNum, float": ('{"dayObs": 20251115, "seqNum": 1.5}', "seqNum must be an integer 1–999999, not a number"),
    "seqNum, string": ('{"dayObs": 20251115, "seqNum": "1"}', "seqNum must be an integer 1–999999, not a string"),
    "seqNum, huge": ('{"dayObs": 20251115, "seqNum": ' + "9" * 400 + "}", "seqNum must be an integer 1–999999"),
    "seqNum, 1e400": ('{"dayObs": 20251115, "seqNum": 1e400}', "which is too large"),
    "seqNum, NaN": ('{"dayObs": 20251115, "seqNum": NaN}', "dataId holds NaN, which is not a JSON value"),
    "seqNum, Infinity": ('{"dayObs": 20251115, "seqNum": -Infinity}', "dataId holds -Infinity"),
    "detectors, bool": (json.dumps({"obsid": OBSID, "detectors": [True]}), "must be an integer id or an Rxy_Sxy"),
    "detectors, huge id": (
        json.dumps({"obsid": OBSID, "detectors": [10**30]}),
        "detector id 1000000000000000000000000000000 is out of range: LATISS has ids 0–0",
    ),
    "detectors, float": (json.dumps({"obsid": OBSID, "detectors": [0.0]}), "not a number written with a fraction"),
    "detectors, name with newline": (
        json.dumps({"obsid": OBSID, "detectors": ["R00_S00\n"]}),
        "is not of the form Rxy_Sxy (e.g. R22_S11); it has white space",
    ),
    "detectors, full-width name": (
        json.dumps({"obsid": OBSID, "detectors": [in_script(FULL_WIDTH, "R00_S00")]}),
        "which is not ASCII",
    ),
    "detectors, nested": (json.dumps({"obsid": OBSID, "detectors": [[0]]}), "not a list"),
    "detectors, not a list": (json.dumps({"obsid": OBSID, "detectors": {"0": 0}}), "not an object"),
    "detectors, empty": (json.dumps({"obsid": OBSID, "detectors": []}), "must be a non-empty list"),
    "unknown key": (json.dumps({"obsid": OBSID, "path": "/tmp"}), "unknown key(s) path; allowed: obsid, groupId"),
    "unknown key, lone surrogate": ('{"\\ud800": 1}', r"unknown key(s) '\ud800'; allowed"),
    "unknown key, NUL": ('{"obs\\u0000id": 1}', r"unknown key(s) 'obs\x00id'"),
    "unknown key, trailing newline": (json.dumps({"obsid\n": OBSID}), r"unknown key(s) 'obsid\n'"),
    "duplicate key": (f'{{"obsid": "{OBSID}", "obsid": "AT_O_20251115_000002"}}', "gives key 'obsid' twice"),
    "duplicate key, nested": (
        f'{{"obsid": "{OBSID}", "detectors": [{{"a": 1, "a": 2}}]}}',
        "gives key 'a' twice",
    ),
    "not JSON": ("obsid=AT_O_20251115_000001", "dataId is not valid JSON"),
    "empty": ("", "dataId is not valid JSON"),
    "list": (json.dumps([OBSID]), "must be a JSON object"),
    "too deep": ("[" * 2000 + "]" * 2000, "nested too deeply"),
    "too long": (json.dumps({"obsid": "x" * 100_000}), "dataId is longer than 4096 characters"),
    "two forms": (json.dumps({"obsid": OBSID, "seqNum": 1}), "exactly one of"),
}


@pytest.mark.parametrize("text, expected", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed(text: str, expected: str) -> None:
    with pytest.raises(DataIdError) as excinfo:
        parse_data_id(text, LATISS)
    message = str(excinfo.value)
    assert expected in message, message
    # The message can be sent over DDS and read: no lone surrogates, no control characters, short.
    message.encode("utf-8")
    assert message.isprintable(), ascii(message)
    assert len(message) < 400, message


def test_patterns_are_ascii_and_anchored_at_the_very_end() -> None:
    """Whoever uses OBSID_RE or GROUP_ID_RE (raw store, focal plane, simulator) with match gets
    exactly the form: no trailing newline, ASCII digits only."""
    assert OBSID_RE.match(OBSID)
    assert GROUP_ID_RE.match("2025-11-15T21:03:14.123#2")
    for bad in (OBSID + "\n", in_script(ARABIC_INDIC, OBSID), in_script(FULL_WIDTH, OBSID), "x" + OBSID):
        assert OBSID_RE.match(bad) is None, ascii(bad)
        assert OBSID_RE.search(bad) is None, ascii(bad)
    for bad in ("2025-11-15T21:03:14\n", in_script(FULL_WIDTH, "2025-11-15T21:03:14")):
        assert GROUP_ID_RE.match(bad) is None, ascii(bad)
