"""The command acknowledgement protocol, end to end (Remote → TestCsc → ackcmd)."""

from __future__ import annotations

import asyncio
import re

import pytest

from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sal import SalRetCode, State
from sal_helpers import STD_TIMEOUT, csc_and_remote, random_index


async def next_log_message(remote: sal.Remote, predicate, timeout: float = STD_TIMEOUT):
    """The next logMessage for which ``predicate(data)`` is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        data = await remote.evt_logMessage.next(flush=False, timeout=max(0.01, deadline - loop.time()))
        if predicate(data):
            return data


async def test_complete() -> None:
    async with csc_and_remote() as (csc, remote):
        ackcmd = await remote.cmd_wait.set_start(ack=SalRetCode.CMD_COMPLETE, duration=0.01, timeout=STD_TIMEOUT)
        assert ackcmd.ack == SalRetCode.CMD_COMPLETE
        assert ackcmd.error == 0
        assert ackcmd.result == "Done"
        assert ackcmd.identity == remote.salinfo.identity
        assert ackcmd.origin == remote.salinfo.domain.origin
        assert ackcmd.salIndex == csc.salinfo.index
        assert ackcmd.cmdtype == remote.salinfo.sal_topic_names.index("command_wait")
        assert ackcmd.private_seqNum == remote.cmd_wait.data.private_seqNum
        assert ackcmd.private_identity == csc.salinfo.identity  # written by the CSC
        # a Remote in its own domain identifies itself as user@host
        assert "@" in ackcmd.identity


@pytest.mark.parametrize(
    "requested, final_ack, result_re",
    [
        (SalRetCode.CMD_FAILED, SalRetCode.CMD_FAILED, r"^Failed: Failed as requested$"),
        (SalRetCode.CMD_TIMEOUT, SalRetCode.CMD_TIMEOUT, r"^Timeout$"),
        (SalRetCode.CMD_ABORTED, SalRetCode.CMD_ABORTED, r"^Aborted$"),
        (SalRetCode.ERROR, SalRetCode.CMD_FAILED, r"^Failed: An unexpected error, as requested$"),
        (SalRetCode.CMD_STALLED, SalRetCode.CMD_STALLED, r"^As requested$"),
        (SalRetCode.CMD_NOPERM, SalRetCode.CMD_NOPERM, r"^As requested$"),
    ],
    ids=lambda v: v.name if isinstance(v, SalRetCode) else None,
)
async def test_failure_codes(requested: SalRetCode, final_ack: SalRetCode, result_re: str) -> None:
    async with csc_and_remote() as (csc, remote):
        with pytest.raises(sal.AckError) as excinfo:
            await remote.cmd_wait.set_start(ack=requested, duration=0.01, timeout=STD_TIMEOUT)
        assert type(excinfo.value) is sal.AckError  # not a timeout
        ackcmd = excinfo.value.ackcmd
        assert ackcmd.ack == final_ack
        assert re.match(result_re, ackcmd.result), ackcmd.result
        if requested in (SalRetCode.CMD_STALLED, SalRetCode.CMD_NOPERM):
            assert ackcmd.error == 0  # the handler's own ack, as returned
        else:
            assert ackcmd.error == 1
        assert str(excinfo.value) == (
            f"msg='Command failed', ackcmd=(ackcmd private_seqNum={ackcmd.private_seqNum}, "
            f"ack={final_ack!r}, error={ackcmd.error}, result={ackcmd.result!r})"
        )
        assert csc.summary_state == State.ENABLED  # a failed command does not change state


async def test_unexpected_exception_logs_traceback_expected_error_does_not() -> None:
    async with csc_and_remote() as (csc, remote):
        with pytest.raises(sal.AckError):
            await remote.cmd_wait.set_start(ack=SalRetCode.CMD_FAILED, duration=0, timeout=STD_TIMEOUT)
        data = await next_log_message(remote, lambda d: "Failed as requested" in d.message)
        assert data.traceback == ""
        with pytest.raises(sal.AckError):
            await remote.cmd_wait.set_start(ack=SalRetCode.ERROR, duration=0, timeout=STD_TIMEOUT)
        data = await next_log_message(remote, lambda d: "cmd_wait" in d.message)
        assert data.level >= 40
        assert "RuntimeError: An unexpected error, as requested" in data.traceback


async def test_in_progress_extends_the_timeout() -> None:
    async with csc_and_remote() as (csc, remote):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        ackcmd = await remote.cmd_wait.set_start(ack=SalRetCode.CMD_COMPLETE, duration=1.0, timeout=0.5)
        assert ackcmd.ack == SalRetCode.CMD_COMPLETE
        assert loop.time() - t0 >= 1.0


async def test_no_in_progress_no_extension() -> None:
    """A negative duration waits without CMD_INPROGRESS (Test_Commands.xml), so a short timeout expires."""
    async with csc_and_remote() as (csc, remote):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(sal.AckTimeoutError) as excinfo:
            await remote.cmd_wait.set_start(ack=SalRetCode.CMD_COMPLETE, duration=-1.0, timeout=0.5)
        assert 0.5 <= loop.time() - t0 < 1.5
        assert excinfo.value.ackcmd.ack == SalRetCode.CMD_NOACK
        # with enough time it completes
        ackcmd = await remote.cmd_wait.set_start(ack=SalRetCode.CMD_COMPLETE, duration=-0.2, timeout=STD_TIMEOUT)
        assert ackcmd.ack == SalRetCode.CMD_COMPLETE


async def test_timeout_keeps_last_ack() -> None:
    """Expiry after CMD_INPROGRESS: AckTimeoutError carries the in-progress ack."""
    async with csc_and_remote() as (csc, remote):
        ackcmd = await remote.cmd_wait.set_start(
            ack=SalRetCode.CMD_COMPLETE, duration=2.0, timeout=STD_TIMEOUT, wait_done=False
        )
        assert ackcmd.ack == SalRetCode.CMD_INPROGRESS
        with pytest.raises(sal.AckTimeoutError) as excinfo:
            await remote.cmd_wait.next_ackcmd(ackcmd, timeout=0.2)
        assert excinfo.value.ackcmd.ack == SalRetCode.CMD_INPROGRESS


async def test_no_csc_no_ack() -> None:
    async with sal.Domain() as domain, sal.Remote(domain, "Test", random_index()) as remote:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(sal.AckTimeoutError) as excinfo:
            await remote.cmd_wait.set_start(ack=SalRetCode.CMD_COMPLETE, duration=0.1, timeout=0.5)
        assert 0.5 <= loop.time() - t0 < 2
        ackcmd = excinfo.value.ackcmd
        assert ackcmd.ack == SalRetCode.CMD_NOACK
        assert ackcmd.result == "No command acknowledgement seen"
        assert isinstance(excinfo.value, sal.AckError)


async def test_wait_done_false() -> None:
    async with csc_and_remote() as (csc, remote):
        ackcmd = await remote.cmd_wait.set_start(
            ack=SalRetCode.CMD_COMPLETE, duration=0.3, timeout=STD_TIMEOUT, wait_done=False
        )
        assert ackcmd.ack == SalRetCode.CMD_INPROGRESS
        assert ackcmd.timeout == pytest.approx(1.3)
        final = await remote.cmd_wait.next_ackcmd(ackcmd, timeout=STD_TIMEOUT)
        assert final.ack == SalRetCode.CMD_COMPLETE
        assert final.private_seqNum == ackcmd.private_seqNum
        # done: the command is no longer in flight
        with pytest.raises(RuntimeError):
            await remote.cmd_wait.next_ackcmd(final, timeout=1)
        # a failure seen with wait_done=False is raised from next_ackcmd
        ackcmd = await remote.cmd_wait.set_start(
            ack=SalRetCode.CMD_FAILED, duration=0.1, timeout=STD_TIMEOUT, wait_done=False
        )
        assert ackcmd.ack == SalRetCode.CMD_INPROGRESS
        with pytest.raises(sal.AckError) as excinfo:
            await remote.cmd_wait.next_ackcmd(ackcmd, timeout=STD_TIMEOUT)
        assert excinfo.value.ackcmd.ack == SalRetCode.CMD_FAILED


@pytest.mark.parametrize("state", [State.STANDBY, State.DISABLED])
async def test_commands_not_allowed_in_state(state: State) -> None:
    async with csc_and_remote(initial_state=state) as (csc, remote):
        bad = ["enable", "disable"] if state == State.STANDBY else ["start", "disable", "exitControl"]
        for name in bad:
            with pytest.raises(sal.AckError) as excinfo:
                await getattr(remote, f"cmd_{name}").start(timeout=STD_TIMEOUT)
            ackcmd = excinfo.value.ackcmd
            assert ackcmd.ack == SalRetCode.CMD_FAILED
            assert ackcmd.result.startswith("Failed: ")
            assert f"{name} not allowed in state" in ackcmd.result
            assert state.name in ackcmd.result
        for name in ("setScalars", "setArrays", "fault", "wait"):
            with pytest.raises(sal.AckError) as excinfo:
                await getattr(remote, f"cmd_{name}").start(timeout=STD_TIMEOUT)
            assert excinfo.value.ackcmd.ack == SalRetCode.CMD_FAILED
            assert state.name in excinfo.value.ackcmd.result
        assert csc.summary_state == state


@pytest.mark.parametrize("multiple", [True, False])
async def test_allow_multiple_callbacks(multiple: bool) -> None:
    async with csc_and_remote() as (csc, remote):
        assert csc.cmd_wait.allow_multiple_callbacks  # the Test CSC's setting
        csc.cmd_wait.allow_multiple_callbacks = multiple
        duration = 0.5
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        acks = await asyncio.gather(
            *[
                remote.cmd_wait.set_start(ack=SalRetCode.CMD_COMPLETE, duration=duration, timeout=STD_TIMEOUT)
                for _ in range(2)
            ]
        )
        elapsed = loop.time() - t0
        assert [a.ack for a in acks] == [SalRetCode.CMD_COMPLETE] * 2
        assert acks[0].private_seqNum != acks[1].private_seqNum
        if multiple:
            assert duration <= elapsed < 1.7 * duration
        else:
            assert elapsed >= 2 * duration  # one at a time


async def test_scalars_and_arrays_round_trip() -> None:
    async with csc_and_remote() as (csc, remote):
        scalars = dict(
            boolean0=True,
            byte0=255,
            short0=-(2**15),
            int0=2**31 - 1,
            long0=-(2**31),
            longLong0=2**63 - 1,
            unsignedShort0=2**16 - 1,
            unsignedInt0=2**32 - 1,
            float0=1.25,
            double0=-1.0e300,
            string0="héllo ✓ world",
        )
        await remote.cmd_setScalars.set_start(**scalars, timeout=STD_TIMEOUT)
        for topic in (remote.evt_scalars, remote.tel_scalars):
            data = await topic.next(flush=False, timeout=STD_TIMEOUT)
            assert {name: getattr(data, name) for name in scalars} == scalars
        arrays = dict(
            boolean0=[True, False, True, False, True],
            byte0=[0, 1, 2, 254, 255],
            short0=[-(2**15), -1, 0, 1, 2**15 - 1],
            int0=[-(2**31), -1, 0, 1, 2**31 - 1],
            long0=[1, 2, 3, 4, 5],
            longLong0=[-(2**63), 0, 0, 0, 2**63 - 1],
            unsignedShort0=[0, 1, 2, 3, 2**16 - 1],
            unsignedInt0=[0, 1, 2, 3, 2**32 - 1],
            float0=[0.5, -0.25, 0, 1, 2],
            double0=[1e-300, 2.5, 0, -1, 1e300],
        )
        await remote.cmd_setArrays.set_start(**arrays, timeout=STD_TIMEOUT)
        for topic in (remote.evt_arrays, remote.tel_arrays):
            data = await topic.next(flush=False, timeout=STD_TIMEOUT)
            assert {name: list(getattr(data, name)) for name in arrays} == arrays
        # set_start resets the command to defaults first
        await remote.cmd_setScalars.set_start(short0=3, timeout=STD_TIMEOUT)
        data = await remote.evt_scalars.next(flush=False, timeout=STD_TIMEOUT)
        assert (data.short0, data.int0, data.string0, data.boolean0) == (3, 0, "", False)


async def test_seq_num_ranges_are_disjoint() -> None:
    async with sal.Domain() as domain:
        remote = sal.Remote(domain, "Test", random_index(), start=False)
        ranges = []
        for name in remote.salinfo.command_names:
            cmd = getattr(remote, f"cmd_{name}")
            assert cmd.min_seq_num <= cmd._seq_num <= cmd.max_seq_num
            assert 1 <= cmd.min_seq_num and cmd.max_seq_num <= 2**31 - 1
            ranges.append((cmd.min_seq_num, cmd.max_seq_num))
        ranges.sort()
        for (_, high), (low, _) in zip(ranges, ranges[1:], strict=False):
            assert high < low
        await remote.close()


async def test_close_remote_ends_commands_in_flight() -> None:
    async with csc_and_remote() as (csc, remote):
        task = asyncio.create_task(
            remote.cmd_wait.set_start(ack=SalRetCode.CMD_COMPLETE, duration=2, timeout=STD_TIMEOUT)
        )
        await asyncio.sleep(0.2)
        await remote.close()
        with pytest.raises(sal.AckError) as excinfo:
            await asyncio.wait_for(task, 1)
        assert excinfo.value.ackcmd.ack == SalRetCode.CMD_INPROGRESS  # the last ack seen


@pytest.mark.parametrize("own_domain", [False, True])
async def test_state_is_visible_when_the_command_is_acked(own_domain: bool) -> None:
    """The CSC writes summaryState before it acks the command that changed it, so once the ack is
    in, summaryState.get() shows the new state (set_summary_state relies on it: it reads the
    current state with aget to choose the next command)."""
    async with csc_and_remote(initial_state=State.STANDBY, own_domain=own_domain) as (csc, remote):
        for _ in range(50):
            for command, state in [
                ("start", State.DISABLED),
                ("enable", State.ENABLED),
                ("disable", State.DISABLED),
                ("standby", State.STANDBY),
            ]:
                await getattr(remote, f"cmd_{command}").start(timeout=STD_TIMEOUT)
                assert remote.evt_summaryState.get().summaryState == state, command
        for _ in range(25):
            await sal.set_summary_state(remote, State.ENABLED, timeout=STD_TIMEOUT)
            await sal.set_summary_state(remote, State.STANDBY, timeout=STD_TIMEOUT)
