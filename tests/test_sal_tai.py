"""TAI time: current_tai and the UTC <-> TAI conversions."""

from __future__ import annotations

import time

import pytest

from lsst.ts.rapidanalysis.sal import current_tai, tai_from_utc, utc_from_tai

#: 2017-01-01T00:00:00 UTC, just after the last leap second (TAI-UTC 36 → 37 s).
LEAP_2017 = 1483228800.0


def test_current_tai_is_37_s_ahead() -> None:
    # no leap second has been added since 2017 (none announced through 2026)
    for _ in range(5):
        before = time.time()
        tai = current_tai()
        after = time.time()
        assert before + 37 - 0.01 <= tai <= after + 37 + 0.01
    assert tai_from_utc(time.time()) - time.time() == pytest.approx(37, abs=0.01)


@pytest.mark.parametrize(
    "utc, offset",
    [
        (LEAP_2017 - 86400 * 365, 36),
        (LEAP_2017 - 1.0, 36),
        (LEAP_2017 - 0.5, 36),
        (LEAP_2017, 37),
        (LEAP_2017 + 1.0, 37),
        (1767225600.0, 37),  # 2026-01-01
        (1341100800.0 - 10, 34),  # just before the 2012-07-01 leap second
        (1341100800.0, 35),
    ],
)
def test_tai_from_utc(utc: float, offset: int) -> None:
    assert tai_from_utc(utc) - utc == offset


@pytest.mark.parametrize(
    "utc",
    [
        LEAP_2017 - 86400,
        LEAP_2017 - 40,
        LEAP_2017 - 36.5,  # TAI is already past midnight
        LEAP_2017 - 10,
        LEAP_2017 - 0.25,
        LEAP_2017,
        LEAP_2017 + 0.5,
        LEAP_2017 + 3600,
        1341100800.0 - 5,
        1767225600.0,
    ],
)
def test_round_trip(utc: float) -> None:
    tai = tai_from_utc(utc)
    assert utc_from_tai(tai) == pytest.approx(utc, abs=1e-6)
    assert tai_from_utc(utc_from_tai(tai)) == pytest.approx(tai, abs=1e-6)


def test_now_round_trip() -> None:
    now = time.time()
    assert utc_from_tai(tai_from_utc(now)) == pytest.approx(now, abs=1e-6)
    assert abs(utc_from_tai(current_tai()) - time.time()) < 0.01
