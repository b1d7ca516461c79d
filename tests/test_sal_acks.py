"""Every command is answered, whatever its handler raises or returns and whatever text it holds.

Real DDS (a TestCsc and a Remote in its own participant); the handlers below replace the ``wait``
command's callback through the public ``callback`` attribute, as a CSC could.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sal import SalRetCode, State
from lsst.ts.rapidanalysis.sal.safe_text import bound_text, escape_text, safe_text
from lsst.ts.rapidanalysis.sal.topics import MAX_ACK_RESULT_BYTES, MAX_FAILED_RESULT_BYTES
from sal_helpers import STD_TIMEOUT, csc_and_remote

#: Short: before the fix a command with no ack waited this long, then timed out.
ACK_TIMEOUT = 5.0
SURROGATE = json.loads('"\\ud800"')  # what JSON's "\ud800" decodes to: a lone surrogate
HUGE = 100_000


class ForeignStr(str):
    """A string as a non-Python client may write it: a lone surrogate encoded as CESU-8 bytes
    (``\\xed\\xa0\\x80``), which is not UTF-8. cyclonedds serialises ``value.encode()``."""

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        return b"bad \xed\xa0\x80 bytes"


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


def readable(text: str) -> bool:
    """Text with nothing a DDS string cannot carry or a terminal would garble."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return all(c.isprintable() or c in "\n\t" for c in text)


def test_safe_text() -> None:
    assert escape_text("plain ünïcödé\n\tok") == "plain ünïcödé\n\tok"
    assert escape_text(f"a{SURROGATE}b\x00c\x1b\x7f\x85") == "a\\ud800b\\x00c\\x1b\\x7f\\x85"
    assert bound_text("x" * 10, 10) == "x" * 10
    cut = bound_text("é" * 1000, 100)  # 2 bytes each: never cut inside a character
    assert len(cut.encode()) <= 100 and cut.startswith("éé")
    kept, marker = cut.split(" … ")
    assert set(kept) == {"é"} and marker == f"[{2000 - len(kept.encode())} more bytes]"
    assert safe_text(UnprintableError(), 50) == "UnprintableError()"
    assert safe_text(f"{SURROGATE}\x00", 50) == "\\ud800\\x00"
    assert len(safe_text("y" * HUGE, MAX_ACK_RESULT_BYTES).encode()) <= MAX_ACK_RESULT_BYTES


# Each handler is made for a CSC: ``make(csc)`` returns the callback.


def expected_error(message: str) -> Any:
    def make(csc: Any) -> Any:
        async def handler(data: Any) -> None:
            raise sal.ExpectedError(message)

        return handler

    return make


def raising(exc: BaseException) -> Any:
    def make(csc: Any) -> Any:
        async def handler(data: Any) -> None:
            raise exc

        return handler

    return make


def returning(value: Any) -> Any:
    def make(csc: Any) -> Any:
        async def handler(data: Any) -> Any:
            return value(csc, data) if callable(value) else value

        return handler

    return make


def ack(code: int, **kwargs: Any) -> Any:
    """An ackcmd the handler returns."""
    return lambda csc, data: csc.salinfo.make_ackcmd(private_seqNum=data.private_seqNum, ack=code, **kwargs)


# name: (handler, final ack, exact result or None, substring the result must hold)
CASES: dict[str, tuple[Any, SalRetCode, str | None, str]] = {
    "ExpectedError with a lone surrogate": (
        expected_error(f"unknown key {SURROGATE}"),
        SalRetCode.CMD_FAILED,
        "Failed: unknown key \\ud800",
        "",
    ),
    "RuntimeError with NUL and escape": (
        raising(RuntimeError("nul\x00 and \x1b[31mred")),
        SalRetCode.CMD_FAILED,
        "Failed: nul\\x00 and \\x1b[31mred",
        "",
    ),
    "ExpectedError of 100 kB": (expected_error("x" * HUGE), SalRetCode.CMD_FAILED, None, "Failed: xxxx"),
    "ExpectedError of 100 kB with surrogates": (
        expected_error(SURROGATE * HUGE),
        SalRetCode.CMD_FAILED,
        None,
        "Failed: \\ud800\\ud800",
    ),
    "exception whose message cannot be made": (
        raising(UnprintableError()),
        SalRetCode.CMD_FAILED,
        "Failed: UnprintableError",
        "",
    ),
    "returns a string": (
        returning("ok"),
        SalRetCode.CMD_FAILED,
        "Failed: the handler returned 'ok', not None or an ackcmd",
        "",
    ),
    "returns an ack that is not final": (
        returning(ack(SalRetCode.CMD_INPROGRESS)),
        SalRetCode.CMD_FAILED,
        None,
        "the handler ended with ack CMD_INPROGRESS, which is not final",
    ),
    "returns an unknown ack code": (
        returning(ack(12345)),
        SalRetCode.CMD_FAILED,
        None,
        "ack 12345, which is not final",
    ),
    "returns CMD_COMPLETE with a surrogate and NUL": (
        returning(ack(SalRetCode.CMD_COMPLETE, result=f"{SURROGATE}\x00")),
        SalRetCode.CMD_COMPLETE,
        "\\ud800\\x00",
        "",
    ),
    "returns CMD_COMPLETE with 100 kB": (
        returning(ack(SalRetCode.CMD_COMPLETE, result="y" * HUGE)),
        SalRetCode.CMD_COMPLETE,
        None,
        "yyyy",
    ),
    "returns CMD_FAILED with a bad error code and timeout": (
        returning(ack(SalRetCode.CMD_FAILED, error=2**40, result="mine")),
        SalRetCode.CMD_FAILED,
        "mine",
        "",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_every_outcome_is_answered(name: str) -> None:
    make_handler, final_ack, exact, contains = CASES[name]
    async with csc_and_remote() as (csc, remote):
        csc.cmd_wait.callback = make_handler(csc)
        try:
            ackcmd = await remote.cmd_wait.set_start(ack=SalRetCode.CMD_COMPLETE, duration=0, timeout=ACK_TIMEOUT)
        except sal.AckTimeoutError as e:
            raise AssertionError(f"no final ack: {e}") from None
        except sal.AckError as e:
            ackcmd = e.ackcmd
        assert ackcmd.ack == final_ack, ackcmd
        result = ackcmd.result
        assert readable(result), ascii(result[:200])
        if exact is not None:
            assert result == exact
        assert contains in result, result[:200]
        limit = MAX_ACK_RESULT_BYTES if final_ack == SalRetCode.CMD_COMPLETE else MAX_FAILED_RESULT_BYTES + 100
        assert len(result.encode()) <= limit
        if len(result) > 1000:
            assert result.endswith(" more bytes]"), result[-100:]
        # The CSC keeps working.
        ackcmd = await remote.cmd_setScalars.set_start(int0=7, string0="after", timeout=STD_TIMEOUT)
        assert ackcmd.ack == SalRetCode.CMD_COMPLETE
        assert csc.summary_state == State.ENABLED


async def test_in_progress_ack_with_bad_text() -> None:
    """An in-progress ack whose text cannot be sent as is goes out escaped; the command completes."""
    async with csc_and_remote() as (csc, remote):

        def handler(data: Any) -> None:  # a plain function is a handler too
            csc.cmd_wait.ack_in_progress(data, timeout=5, result=f"working on {SURROGATE}")

        csc.cmd_wait.callback = handler
        first = await remote.cmd_wait.set_start(
            ack=SalRetCode.CMD_COMPLETE, duration=0, timeout=ACK_TIMEOUT, wait_done=False
        )
        assert first.ack == SalRetCode.CMD_INPROGRESS
        assert first.result == "working on \\ud800"
        final = await remote.cmd_wait.next_ackcmd(first, timeout=ACK_TIMEOUT)
        assert final.ack == SalRetCode.CMD_COMPLETE and final.result == "Done"


async def test_command_field_that_is_not_utf8() -> None:
    """A command whose string field is not valid UTF-8 (a lone surrogate as a non-Python client
    encodes it) is delivered, and answered: the Test CSC cannot echo it, so CMD_FAILED saying
    why. Other commands taken with it are not lost, and the CSC keeps working."""
    async with csc_and_remote() as (csc, remote):
        cmd = remote.cmd_setScalars
        cmd.set(int0=5)
        cmd.data.string0 = ForeignStr("bad")
        bad = asyncio.create_task(cmd.start(timeout=ACK_TIMEOUT))
        good = [
            asyncio.create_task(remote.cmd_wait.set_start(ack=SalRetCode.CMD_COMPLETE, duration=0, timeout=ACK_TIMEOUT))
            for _ in range(5)
        ]
        with pytest.raises(sal.AckError) as excinfo:
            await bad
        ackcmd = excinfo.value.ackcmd
        assert ackcmd.ack == SalRetCode.CMD_FAILED, ackcmd
        assert "string0 holds '\\udced\\udca0\\udc80' at character 4: lone surrogates" in ackcmd.result, ackcmd.result
        assert readable(ackcmd.result)
        assert [a.ack for a in await asyncio.gather(*good)] == [SalRetCode.CMD_COMPLETE] * 5
        ackcmd = await remote.cmd_setScalars.set_start(int0=6, string0="fine", timeout=STD_TIMEOUT)
        assert ackcmd.ack == SalRetCode.CMD_COMPLETE


async def test_unsendable_field_is_refused_before_sending() -> None:
    """A Remote cannot send a lone surrogate: set_start says which field, and nothing is sent."""
    async with csc_and_remote() as (csc, remote):
        with pytest.raises(ValueError, match=r"string0 holds '\\ud800' at character 3: lone surrogates"):
            await remote.cmd_setScalars.set_start(string0=f"abc{SURROGATE}", timeout=STD_TIMEOUT)
        # NUL and 100 kB strings can be sent (DDS strings carry them between Python programs).
        ackcmd = await remote.cmd_setScalars.set_start(string0="a\x00b" + "z" * HUGE, timeout=STD_TIMEOUT)
        assert ackcmd.ack == SalRetCode.CMD_COMPLETE
