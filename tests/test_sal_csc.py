"""BaseCsc behaviour through the Test CSC, written as a salobj CSC test (BaseCscTestCase)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import unittest

from lsst.ts import rapidanalysis
from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sal import SalRetCode, State
from lsst.ts.rapidanalysis.sal.test_csc import TestCsc
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from sal_helpers import wait_until

STD_TIMEOUT = 10


class CscTestCase(BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    def basic_make_csc(self, initial_state, config_dir, simulation_mode, **kwargs):
        return TestCsc(
            index=self.next_index(),
            initial_state=initial_state,
            config_dir=config_dir,
            simulation_mode=simulation_mode,
            **kwargs,
        )

    async def next_log_message(self, predicate, timeout: float = STD_TIMEOUT):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            data = await self.remote.evt_logMessage.next(flush=False, timeout=max(0.01, deadline - loop.time()))
            if predicate(data):
                return data

    async def test_heartbeat(self):
        async with self.make_csc(initial_state=State.STANDBY):
            first = await self.remote.evt_heartbeat.next(flush=True, timeout=STD_TIMEOUT)
            assert first.private_origin == self.csc.domain.origin
            assert first.private_identity == self.csc.salinfo.name_index
            assert abs(first.private_sndStamp - sal.current_tai()) < 2  # TAI, not UTC
            assert abs(first.private_rcvStamp - sal.current_tai()) < 2
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 3.5
            beats = []
            while (remaining := deadline - loop.time()) > 0:
                try:
                    beats.append(await self.remote.evt_heartbeat.next(flush=False, timeout=remaining))
                except TimeoutError:
                    break
            assert 2 <= len(beats) <= 4, len(beats)
            stamps = [first.private_sndStamp] + [b.private_sndStamp for b in beats]
            intervals = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
            assert all(0.7 < dt < 1.5 for dt in intervals), intervals

    async def test_startup_events(self):
        async with self.make_csc(initial_state=State.STANDBY):
            await self.assert_next_summary_state(State.STANDBY)
            versions = await self.assert_next_sample(
                self.remote.evt_softwareVersions, cscVersion=rapidanalysis.__version__, subsystemVersions=""
            )
            assert versions.cscVersion == TestCsc.version
            await self.assert_next_sample(self.remote.evt_simulationMode, mode=0)
            await self.assert_next_sample(self.remote.evt_logLevel, level=logging.INFO)
            await self.assert_next_sample(self.remote.evt_errorCode, errorCode=0, errorReport="", traceback="")
            available = await self.assert_next_sample(
                self.remote.evt_configurationsAvailable, overrides="", schemaVersion="v1"
            )
            assert available.url == self.csc.config_dir.as_uri()
            assert available.url.startswith("file://")
            heartbeat = await self.remote.evt_heartbeat.next(flush=False, timeout=STD_TIMEOUT)
            assert heartbeat.salIndex == self.csc.salinfo.index
            # each was published once
            for name in ("summaryState", "softwareVersions", "simulationMode", "logLevel", "errorCode"):
                assert getattr(self.remote, f"evt_{name}").nqueued == 0, name
            assert self.csc.simulation_mode == 0
            assert self.csc.summary_state == State.STANDBY

    async def test_initial_state_enabled(self):
        # make_csc checks STANDBY and DISABLED on the way and leaves ENABLED queued
        async with self.make_csc(initial_state=State.ENABLED):
            await self.assert_next_summary_state(State.ENABLED)
            assert self.csc.summary_state == State.ENABLED
            applied = await self.remote.evt_configurationApplied.next(flush=False, timeout=STD_TIMEOUT)
            assert applied.configurations == "_init.yaml"
            assert self.csc.config.int0 == 5  # from the shipped _init.yaml

    async def test_fault_and_recovery(self):
        async with self.make_csc(initial_state=State.ENABLED):
            await self.assert_next_summary_state(State.ENABLED)
            await self.assert_next_sample(self.remote.evt_errorCode, errorCode=0)
            await self.remote.cmd_fault.start(timeout=STD_TIMEOUT)
            assert self.csc.summary_state == State.FAULT
            fault_state = await self.assert_next_summary_state_sample(State.FAULT)
            error = await self.assert_next_sample(
                self.remote.evt_errorCode, errorCode=1, errorReport="Triggered by the fault command"
            )
            # errorCode is written before summaryState
            assert error.private_sndStamp <= fault_state.private_sndStamp
            await asyncio.sleep(0.2)
            assert self.remote.evt_errorCode.nqueued == 0  # once
            assert self.remote.evt_summaryState.nqueued == 0  # once
            critical = await self.next_log_message(lambda d: d.message.startswith("Fault!"))
            assert critical.level == logging.CRITICAL
            # in FAULT only standby and setLogLevel are allowed; the failure names the error
            async with self.assertRaisesAckError(ack=SalRetCode.CMD_FAILED, result_contains="errorCode=1"):
                await self.remote.cmd_setScalars.set_start(int0=1, timeout=STD_TIMEOUT)
            await self.check_bad_commands(good_commands=("standby", "setLogLevel"))
            await self.remote.cmd_standby.start(timeout=STD_TIMEOUT)
            await self.assert_next_summary_state(State.STANDBY)
            await self.assert_next_sample(self.remote.evt_errorCode, errorCode=0, errorReport="", traceback="")

    async def assert_next_summary_state_sample(self, state):
        return await self.assert_next_sample(self.remote.evt_summaryState, summaryState=state)

    async def test_set_log_level(self):
        async with self.make_csc(initial_state=State.STANDBY):
            await self.assert_next_sample(self.remote.evt_logLevel, level=logging.INFO)
            await self.remote.cmd_setLogLevel.set_start(level=logging.DEBUG, timeout=STD_TIMEOUT)
            await self.assert_next_sample(self.remote.evt_logLevel, level=logging.DEBUG)
            assert self.csc.log.getEffectiveLevel() == logging.DEBUG
            self.csc.log.debug("a debug message")
            data = await self.next_log_message(lambda d: d.message == "a debug message")
            assert data.level == logging.DEBUG
            await self.remote.cmd_setLogLevel.set_start(level=logging.WARNING, timeout=STD_TIMEOUT)
            await self.assert_next_sample(self.remote.evt_logLevel, level=logging.WARNING)
            self.remote.evt_logMessage.flush()
            self.csc.log.info("an info message, filtered out")
            self.csc.log.warning("a warning, after it")
            data = await self.remote.evt_logMessage.next(flush=False, timeout=STD_TIMEOUT)
            assert data.message == "a warning, after it"

    async def test_make_csc_log_level(self):
        # a Remote of the same name and index (made by make_csc after the level is set) must not reset it
        async with self.make_csc(initial_state=State.STANDBY, log_level=logging.DEBUG):
            await self.assert_next_sample(self.remote.evt_logLevel, level=logging.DEBUG)
            assert self.csc.log.getEffectiveLevel() == logging.DEBUG
            async with sal.Remote(self.csc.domain, "Test", self.csc.salinfo.index, readonly=True):
                assert self.csc.log.getEffectiveLevel() == logging.DEBUG

    async def test_log_message(self):
        async with self.make_csc(initial_state=State.STANDBY):
            self.remote.evt_logMessage.flush()
            self.csc.log.warning("hello %s", "world")
            data = await self.next_log_message(lambda d: d.message == "hello world")
            assert data.name == self.csc.salinfo.name_index
            assert data.level == logging.WARNING
            assert data.traceback == ""
            assert data.functionName == "test_log_message"
            assert data.filePath == __file__
            assert data.lineNumber > 0
            assert data.process == os.getpid()
            try:
                1 / 0  # noqa: B018
            except ZeroDivisionError:
                self.csc.log.exception("it broke")
            data = await self.next_log_message(lambda d: d.message == "it broke")
            assert data.level == logging.ERROR
            assert "ZeroDivisionError" in data.traceback
            # records from another thread arrive too
            thread = threading.Thread(target=self.csc.log.warning, args=("from a thread",))
            thread.start()
            thread.join()
            data = await self.next_log_message(lambda d: d.message == "from a thread")
            assert data.level == logging.WARNING

    async def test_set_summary_state(self):
        async with self.make_csc(initial_state=State.STANDBY):
            states = await sal.set_summary_state(self.remote, State.ENABLED, timeout=STD_TIMEOUT)
            assert states == [State.STANDBY, State.DISABLED, State.ENABLED]
            assert self.csc.summary_state == State.ENABLED
            for state in states:
                await self.assert_next_summary_state(state)
            states = await sal.set_summary_state(self.remote, State.STANDBY, timeout=STD_TIMEOUT)
            assert states == [State.ENABLED, State.DISABLED, State.STANDBY]
            assert self.csc.summary_state == State.STANDBY
            with self.assertRaises(ValueError):
                await sal.set_summary_state(self.remote, State.FAULT)
            # from FAULT: standby first
            await sal.set_summary_state(self.remote, State.ENABLED, timeout=STD_TIMEOUT)
            await self.remote.cmd_fault.start(timeout=STD_TIMEOUT)
            await wait_until(lambda: self.remote.evt_summaryState.get().summaryState == State.FAULT, what="FAULT")
            states = await sal.set_summary_state(self.remote, State.ENABLED, timeout=STD_TIMEOUT)
            assert states == [State.FAULT, State.STANDBY, State.DISABLED, State.ENABLED]
            assert self.csc.summary_state == State.ENABLED

    async def test_exit_control(self):
        async with self.make_csc(initial_state=State.STANDBY):
            await self.assert_next_summary_state(State.STANDBY)
            await self.remote.cmd_exitControl.start(timeout=STD_TIMEOUT)
            await self.assert_next_summary_state(State.OFFLINE)
            assert self.csc.summary_state == State.OFFLINE
            await asyncio.wait_for(self.csc.done_task, timeout=5)
            assert self.csc.done_task.result() is None

    async def test_standard_state_transitions_with_wait_enabled(self):
        async with self.make_csc(initial_state=State.STANDBY):
            await self.check_standard_state_transitions(enabled_commands=("setScalars", "setArrays", "fault", "wait"))
            await asyncio.wait_for(self.csc.done_task, timeout=5)

    async def test_constructor_errors(self):
        with self.assertRaises(ValueError):
            TestCsc(index=1, initial_state=State.FAULT)
        with self.assertRaises(ValueError):
            TestCsc(index=1, initial_state=99)
        with self.assertRaises(ValueError):
            TestCsc(index=1, simulation_mode=1)
        with self.assertRaises(ValueError):
            TestCsc(index=1, config_dir="/no/such/directory")
