"""Exceptions raised by the SAL layer (names and meaning as ts_salobj)."""

from __future__ import annotations

from typing import Any

__all__ = ["ExpectedError", "AckError", "AckTimeoutError", "InterfaceError"]


class ExpectedError(Exception):
    """A failure a command handler expects: reported as CMD_FAILED, no traceback logged."""


class AckError(Exception):
    """A command failed; ``ackcmd`` is the acknowledgement that says so.

    Parameters
    ----------
    msg : `str`
        What happened.
    ackcmd : ackcmd sample
        The final (or last seen) acknowledgement.
    """

    def __init__(self, msg: str, ackcmd: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.ackcmd = ackcmd

    def __str__(self) -> str:
        from .enums import SalRetCode

        ack = self.ackcmd
        try:
            code: Any = SalRetCode(ack.ack)
        except ValueError:
            code = ack.ack
        return (
            f"msg={self.msg!r}, ackcmd=(ackcmd private_seqNum={ack.private_seqNum}, "
            f"ack={code!r}, error={ack.error}, result={ack.result!r})"
        )

    __repr__ = __str__


class AckTimeoutError(AckError):
    """No final acknowledgement arrived in time."""


class InterfaceError(ValueError):
    """An interface (ts_xml format) file is malformed; the message names file and element."""
