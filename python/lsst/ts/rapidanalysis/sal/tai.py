"""TAI time, as every SAL timestamp is (unix seconds on the TAI scale)."""

from __future__ import annotations

import datetime
import functools
import time

import erfa

__all__ = ["current_tai", "tai_from_utc", "utc_from_tai"]

_CLOCK_TAI = getattr(time, "CLOCK_TAI", 11)


@functools.lru_cache(maxsize=8)
def _tai_minus_utc_on(day: datetime.date) -> float:
    """TAI - UTC (leap seconds) on a UTC date, from the ERFA leap-second table."""
    return float(erfa.dat(day.year, day.month, day.day, 0.5))


def tai_from_utc(utc: float) -> float:
    """Convert UTC unix seconds to TAI unix seconds.

    Parameters
    ----------
    utc : `float`
        UTC time as unix seconds.

    Returns
    -------
    tai : `float`
        The same instant on the TAI scale.
    """
    day = datetime.datetime.fromtimestamp(utc, tz=datetime.UTC).date()
    return utc + _tai_minus_utc_on(day)


def utc_from_tai(tai: float) -> float:
    """Convert TAI unix seconds to UTC unix seconds (inverse of `tai_from_utc`)."""
    day = datetime.datetime.fromtimestamp(tai, tz=datetime.UTC).date()
    utc = tai - _tai_minus_utc_on(day)
    # In the TAI-UTC seconds after a leap second, the date of ``tai`` read as UTC is already
    # the next day, whose offset is one second too big: use the offset of the UTC date.
    utc_day = datetime.datetime.fromtimestamp(utc, tz=datetime.UTC).date()
    if utc_day != day:
        utc = tai - _tai_minus_utc_on(utc_day)
    return utc


def _system_tai_is_good() -> bool:
    # The kernel's TAI clock is only right if someone (chrony, ptp) set the TAI offset.
    try:
        return abs(time.clock_gettime(_CLOCK_TAI) - tai_from_utc(time.time())) < 1.1
    except OSError:
        return False


_USE_CLOCK_TAI = _system_tai_is_good()


def current_tai() -> float:
    """Return the current time as TAI unix seconds."""
    if _USE_CLOCK_TAI:
        return time.clock_gettime(_CLOCK_TAI)
    return tai_from_utc(time.time())
