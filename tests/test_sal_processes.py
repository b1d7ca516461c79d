"""Separate processes: run_test_csc, a salobj-style script, duplicate rejection, SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import pathlib
import signal
import sys
import textwrap
import unittest

from lsst.ts import rapidanalysis
from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sal import State
from lsst.ts.rapidanalysis.sal.test_csc import TestCsc
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from sal_helpers import RUN_TEST_CSC, STD_TIMEOUT, random_index, start_run_test_csc, terminate

#: A CSC process needs to import, join DDS and listen for a duplicate (3 s) before it reports STANDBY.
STARTUP_TIMEOUT = 30.0


async def test_version() -> None:
    process = await asyncio.create_subprocess_exec(
        str(RUN_TEST_CSC), "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), STD_TIMEOUT)
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == rapidanalysis.__version__


async def test_bad_index_argument() -> None:
    process = await asyncio.create_subprocess_exec(
        str(RUN_TEST_CSC), "not-an-int", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), STD_TIMEOUT)
    assert process.returncode == 2  # argparse usage error
    assert "invalid int value" in stderr.decode()


async def test_two_processes() -> None:
    index = random_index()
    process = await start_run_test_csc(index, "--loglevel", "10", stderr=asyncio.subprocess.PIPE)
    try:
        async with sal.Domain() as domain, sal.Remote(domain, "Test", index) as remote:
            data = await remote.evt_summaryState.next(flush=False, timeout=STARTUP_TIMEOUT)
            assert data.summaryState == State.STANDBY
            assert data.private_origin == process.pid
            assert data.private_identity == f"Test:{index}"
            assert (await remote.evt_logLevel.aget(timeout=STD_TIMEOUT)).level == logging.DEBUG  # --loglevel 10
            states = await sal.set_summary_state(remote, State.ENABLED, timeout=STD_TIMEOUT)
            assert states == [State.STANDBY, State.DISABLED, State.ENABLED]
            for state in states[1:]:
                assert (await remote.evt_summaryState.next(flush=False, timeout=STD_TIMEOUT)).summaryState == state
            ackcmd = await remote.cmd_setScalars.set_start(int0=-3, double0=2.5, string0="two processes", timeout=10)
            assert ackcmd.ack == sal.SalRetCode.CMD_COMPLETE
            assert ackcmd.origin == domain.origin
            echo = await remote.evt_scalars.next(flush=False, timeout=STD_TIMEOUT)
            assert (echo.int0, echo.double0, echo.string0) == (-3, 2.5, "two processes")
            assert echo.private_origin == process.pid
            tel = await remote.tel_scalars.next(flush=False, timeout=STD_TIMEOUT)
            assert tel.int0 == -3
            heartbeat = await remote.evt_heartbeat.next(flush=True, timeout=STD_TIMEOUT)
            assert heartbeat.private_origin == process.pid
            # back-to-back transitions: each reads the state the previous one left
            for _ in range(10):
                await sal.set_summary_state(remote, State.STANDBY, timeout=STD_TIMEOUT)
                await sal.set_summary_state(remote, State.ENABLED, timeout=STD_TIMEOUT)
                assert remote.evt_summaryState.get().summaryState == State.ENABLED
            # late joiners see the newest state at once, and only that (the CSC's history of
            # summaryState, 40+ samples, comes in several packets: aget must not return an old one)
            newest = remote.evt_summaryState.get()
            for _ in range(5):
                async with (
                    sal.Domain() as late_domain,
                    sal.Remote(late_domain, "Test", index, readonly=True, include=["summaryState", "scalars"]) as late,
                ):
                    data = await late.evt_summaryState.aget(timeout=2)
                    assert (data.summaryState, data.private_seqNum) == (State.ENABLED, newest.private_seqNum)
                    assert late.evt_summaryState.nqueued == 1
                    assert (await late.evt_scalars.aget(timeout=2)).int0 == -3
            # SIGTERM: a clean, prompt exit
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            returncode = await terminate(process, timeout=5)
            assert returncode == 0
            assert loop.time() - t0 < 5
            # and it is gone: no more heartbeats
            remote.evt_heartbeat.flush()
            await asyncio.sleep(1.5)
            assert remote.evt_heartbeat.nqueued == 0
    finally:
        await terminate(process)
    stderr = (await process.stderr.read()).decode()
    assert "Signal received; closing" in stderr
    assert "Traceback" not in stderr


async def test_duplicate_rejected() -> None:
    index = random_index()
    first = await start_run_test_csc(index, stderr=asyncio.subprocess.DEVNULL)
    second = None
    try:
        async with sal.Domain() as domain, sal.Remote(domain, "Test", index, readonly=True) as remote:
            data = await remote.evt_summaryState.next(flush=False, timeout=STARTUP_TIMEOUT)
            assert data.summaryState == State.STANDBY
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            second = await start_run_test_csc(index, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            _, stderr = await asyncio.wait_for(second.communicate(), 15)
            elapsed = loop.time() - t0
            assert second.returncode != 0
            assert "already running" in stderr.decode(), stderr.decode()
            assert str(first.pid) in stderr.decode()
            assert elapsed < 10, elapsed  # typically 1-2 s: the first heartbeat seen is a duplicate
            # the first is unaffected: still running, still beating, no state change
            assert first.returncode is None
            for _ in range(2):
                beat = await remote.evt_heartbeat.next(flush=True, timeout=STD_TIMEOUT)
                assert beat.private_origin == first.pid
            assert remote.evt_summaryState.nqueued == 0
            assert remote.evt_summaryState.get().summaryState == State.STANDBY
    finally:
        if second is not None and second.returncode is None:
            second.kill()
            await second.wait()
        assert await terminate(first, sig=signal.SIGINT) == 0  # SIGINT is handled like SIGTERM


SALOBJ_SCRIPT = textwrap.dedent(
    """\
    import asyncio
    import sys

    from lsst.ts.rapidanalysis import sal as salobj


    async def main(index):
        async with salobj.Domain() as domain, salobj.Remote(domain, "Test", index) as remote:
            await remote.evt_heartbeat.next(flush=True, timeout=10)
            print("heartbeat ok")
            states = await salobj.set_summary_state(remote, salobj.State.ENABLED, timeout=20)
            print("states", " ".join(s.name for s in states))
            await remote.cmd_setScalars.set_start(int0=3, string0="from a script", timeout=10)
            data = await remote.evt_scalars.next(flush=False, timeout=10)
            print("scalars", data.int0, data.string0)
            try:
                await remote.cmd_wait.set_start(ack=salobj.SalRetCode.CMD_FAILED, duration=0.1, timeout=10)
            except salobj.AckError as e:
                print("wait failed", salobj.SalRetCode(e.ackcmd.ack).name, e.ackcmd.result)
            ackcmd = await remote.cmd_wait.set_start(ack=salobj.SalRetCode.CMD_COMPLETE, duration=0.1, timeout=10)
            print("wait", salobj.SalRetCode(ackcmd.ack).name, ackcmd.result)
            states = await salobj.set_summary_state(remote, salobj.State.OFFLINE, timeout=20)
            print("states", " ".join(s.name for s in states))


    asyncio.run(main(int(sys.argv[1])))
    """
)


async def test_script_written_for_salobj(tmp_path: pathlib.Path) -> None:
    index = random_index()
    script = tmp_path / "salobj_script.py"
    script.write_text(SALOBJ_SCRIPT)
    csc_process = await start_run_test_csc(index, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with sal.Domain() as domain, sal.Remote(domain, "Test", index, readonly=True) as remote:
            data = await remote.evt_summaryState.next(flush=False, timeout=STARTUP_TIMEOUT)
            assert data.summaryState == State.STANDBY
        script_process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            str(index),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(script_process.communicate(), 60)
        assert script_process.returncode == 0, stderr.decode()
        assert stdout.decode().splitlines() == [
            "heartbeat ok",
            "states STANDBY DISABLED ENABLED",
            "scalars 3 from a script",
            "wait failed CMD_FAILED Failed: Failed as requested",
            "wait CMD_COMPLETE Done",
            "states ENABLED DISABLED STANDBY OFFLINE",
        ]
        # exitControl (the last step to OFFLINE) makes the CSC process quit by itself
        await asyncio.wait_for(csc_process.wait(), 10)
        assert csc_process.returncode == 0
    finally:
        await terminate(csc_process)


class BinScriptTestCase(BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    def basic_make_csc(self, initial_state, config_dir, simulation_mode, **kwargs):
        return TestCsc(index=self.next_index(), initial_state=initial_state, config_dir=config_dir)

    async def test_bin_script(self):
        await self.check_bin_script(name="Test", index=self.next_index(), exe_name="run_test_csc")
