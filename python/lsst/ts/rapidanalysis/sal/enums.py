"""Enumerations shared by every SAL component (same names and values as ts_salobj)."""

from __future__ import annotations

import enum

__all__ = ["State", "SalRetCode", "DefaultIndex"]


class State(enum.IntEnum):
    """Summary state of a CSC (values as ts_xml ``SummaryStates``)."""

    DISABLED = 1
    ENABLED = 2
    FAULT = 3
    OFFLINE = 4
    STANDBY = 5


class SalRetCode(enum.IntEnum):
    """Command acknowledgement codes (values as ts_salobj / SAL)."""

    OK = 0
    ERR = -1
    ERROR = -1
    STATE_DISABLED = 1
    STATE_ENABLED = 2
    STATE_FAULT = 3
    STATE_OFFLINE = 4
    STATE_STANDBY = 5
    TIMEOUT = -5
    CMD_ACK = 300
    CMD_INPROGRESS = 301
    CMD_STALLED = 302
    CMD_COMPLETE = 303
    CMD_NOPERM = -300
    CMD_NOACK = -301
    CMD_FAILED = -302
    CMD_ABORTED = -303
    CMD_TIMEOUT = -304


class DefaultIndex(enum.IntEnum):
    """Index 0 means "not indexed" or, for a Remote, "every index"."""

    ALL = 0


#: Acknowledgement codes that end a command.
FINAL_ACK_CODES = frozenset(
    {
        SalRetCode.CMD_ABORTED,
        SalRetCode.CMD_COMPLETE,
        SalRetCode.CMD_FAILED,
        SalRetCode.CMD_NOACK,
        SalRetCode.CMD_NOPERM,
        SalRetCode.CMD_STALLED,
        SalRetCode.CMD_TIMEOUT,
    }
)

#: Final acknowledgement codes that mean the command failed.
FAILED_ACK_CODES = FINAL_ACK_CODES - {SalRetCode.CMD_COMPLETE}

#: Acknowledgement codes that mean all is well so far.
GOOD_ACK_CODES = frozenset({SalRetCode.CMD_ACK, SalRetCode.CMD_INPROGRESS, SalRetCode.CMD_COMPLETE})
