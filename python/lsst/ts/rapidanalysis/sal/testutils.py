"""Test helpers for CSCs built on this layer (salobj's ``BaseCscTestCase`` and friends)."""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import enum
import itertools
import os
import pathlib
import random
import signal
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from .base_csc import make_state_transition_dict
from .domain import Domain
from .enums import SalRetCode, State
from .errors import AckError, AckTimeoutError
from .remote import Remote

__all__ = [
    "BaseCscTestCase",
    "STD_TIMEOUT",
    "set_random_lsst_dds_partition_prefix",
    "assert_raises_ack_error",
]

STD_TIMEOUT = 30.0
_GOOD_COMMANDS_BY_STATE = {
    State.STANDBY: {"start", "exitControl", "setLogLevel"},
    State.DISABLED: {"enable", "standby", "setLogLevel"},
    State.ENABLED: {"disable", "setLogLevel"},
    State.FAULT: {"standby", "setLogLevel"},
}
_index_gen = itertools.count(random.randint(1, 2**20))


def set_random_lsst_dds_partition_prefix() -> str:
    """Give this process (and its children) a partition prefix no other test shares."""
    prefix = "test_" + base64.urlsafe_b64encode(os.urandom(12)).decode().replace("=", "_")
    os.environ["LSST_DDS_PARTITION_PREFIX"] = prefix
    return prefix


@contextlib.contextmanager
def assert_raises_ack_error(
    ack: SalRetCode | int | None = None, error: int | None = None, result_contains: str | None = None
) -> Any:
    """Expect an `AckError` whose ack has the given code, error and result text."""
    try:
        yield
    except AckError as e:
        if ack is not None and e.ackcmd.ack != ack:
            raise AssertionError(f"ack={SalRetCode(e.ackcmd.ack)!r}, expected {SalRetCode(ack)!r}: {e}") from e
        if error is not None and e.ackcmd.error != error:
            raise AssertionError(f"error={e.ackcmd.error}, expected {error}: {e}") from e
        if result_contains is not None and result_contains not in e.ackcmd.result:
            raise AssertionError(f"result {e.ackcmd.result!r} does not contain {result_contains!r}") from e
    else:
        raise AssertionError("AckError not raised")


class BaseCscTestCase(metaclass=abc.ABCMeta):
    """Mixin for a ``unittest.IsolatedAsyncioTestCase`` that tests a CSC (salobj's API).

    Every test gets a random ``LSST_DDS_PARTITION_PREFIX`` and ``LSST_SITE=test``. Subclasses
    implement `basic_make_csc`.
    """

    _index_iter = _index_gen

    def run(self, result: Any = None) -> Any:
        set_random_lsst_dds_partition_prefix()
        os.environ["LSST_SITE"] = "test"
        return super().run(result)  # type: ignore[misc]

    @abc.abstractmethod
    def basic_make_csc(
        self,
        initial_state: State | int | None,
        config_dir: str | pathlib.Path | None,
        simulation_mode: int,
        **kwargs: Any,
    ) -> Any:
        """Make and return the CSC under test."""
        raise NotImplementedError()

    def next_index(self) -> int:
        """A SAL index no other test in this process uses."""
        return next(self._index_iter) % (2**31 - 1) or 1

    @contextlib.asynccontextmanager
    async def make_csc(
        self,
        initial_state: State | int | None = State.STANDBY,
        config_dir: str | pathlib.Path | None = None,
        simulation_mode: int = 0,
        log_level: int | None = None,
        timeout: float = STD_TIMEOUT,
        **kwargs: Any,
    ) -> AsyncIterator[None]:
        """Make ``self.csc`` and ``self.remote`` (on the CSC's domain, started first).

        Checks every summaryState on the way to ``initial_state`` except the last, which is
        left in the queue for the test to read.
        """
        items_to_close: list[Any] = []
        try:
            self.csc = self.basic_make_csc(
                initial_state=initial_state, config_dir=config_dir, simulation_mode=simulation_mode, **kwargs
            )
            items_to_close.append(self.csc)
            if log_level is not None:
                self.csc.log.setLevel(log_level)
            self.remote = Remote(domain=self.csc.domain, name=self.csc.salinfo.name, index=self.csc.salinfo.index)
            items_to_close.append(self.remote)
            await asyncio.wait_for(asyncio.gather(self.csc.start_task, self.remote.start_task), timeout)
            start = State(self.csc.default_initial_state)
            end = State(initial_state) if initial_state is not None else start
            states = [start] + [s for _, s in make_state_transition_dict()[(start, end)]]
            for state in states[:-1]:
                await self.assert_next_summary_state(state, timeout=timeout)
            yield
        finally:
            for item in reversed(items_to_close):
                await item.close()

    async def assert_next_summary_state(
        self,
        state: State | int,
        flush: bool = False,
        timeout: float = STD_TIMEOUT,
        remote: Remote | None = None,
    ) -> None:
        """Read the next summaryState and check it."""
        remote = remote or self.remote
        await self.assert_next_sample(remote.evt_summaryState, flush=flush, timeout=timeout, summaryState=state)

    async def assert_next_sample(
        self, topic: Any, flush: bool = False, timeout: float = STD_TIMEOUT, **kwargs: Any
    ) -> Any:
        """Read the next sample of ``topic`` and check the fields given; return it."""
        data = await topic.next(flush=flush, timeout=timeout)
        for name, expected in kwargs.items():
            actual = getattr(data, name)
            if isinstance(expected, enum.IntEnum):
                try:
                    actual = type(expected)(actual)
                except ValueError:
                    pass
            if isinstance(expected, Sequence) and not isinstance(expected, str):
                expected = list(expected)
                actual = list(actual)
            if actual != expected:
                raise AssertionError(f"{topic.attr_name}.{name}={actual!r}, expected {expected!r}")
        return data

    @contextlib.asynccontextmanager
    async def assertRaisesAckError(  # noqa: N802 (salobj's name)
        self,
        ack: SalRetCode | int | None = None,
        error: int | None = None,
        result_contains: str | None = None,
    ) -> AsyncIterator[None]:
        """Expect an `AckError` (async form, as salobj)."""
        with assert_raises_ack_error(ack=ack, error=error, result_contains=result_contains):
            yield

    @contextlib.asynccontextmanager
    async def assertRaisesAckTimeoutError(  # noqa: N802
        self, ack: SalRetCode | int | None = None, error: int | None = None
    ) -> AsyncIterator[None]:
        """Expect an `AckTimeoutError`."""
        try:
            yield
        except AckTimeoutError as e:
            if ack is not None and e.ackcmd.ack != ack:
                raise AssertionError(f"ack={e.ackcmd.ack}, expected {ack}") from e
            if error is not None and e.ackcmd.error != error:
                raise AssertionError(f"error={e.ackcmd.error}, expected {error}") from e
        else:
            raise AssertionError("AckTimeoutError not raised")

    async def check_bad_commands(
        self, bad_commands: Iterable[str] | None = None, good_commands: Iterable[str] | None = None
    ) -> None:
        """Send every command not in ``good_commands`` (default: those allowed now) and expect CMD_FAILED."""
        state = State(self.csc.summary_state)
        good = set(good_commands) if good_commands is not None else _GOOD_COMMANDS_BY_STATE.get(state, set())
        if bad_commands is None:
            bad_commands = [c for c in self.csc.salinfo.command_names if c not in good]
        for command in bad_commands:
            with assert_raises_ack_error(ack=SalRetCode.CMD_FAILED):
                await getattr(self.remote, f"cmd_{command}").start(timeout=STD_TIMEOUT)

    async def check_standard_state_transitions(
        self,
        enabled_commands: Iterable[str],
        skip_commands: Iterable[str] | None = None,
        override: str = "",
        timeout: float = STD_TIMEOUT,
    ) -> None:
        """Walk start → enable → disable → standby → exitControl, checking that every command
        not allowed in each state fails with CMD_FAILED."""
        enabled_commands = set(enabled_commands)
        skip = set(skip_commands or ())
        all_commands = set(self.csc.salinfo.command_names)
        unknown = (enabled_commands | skip) - all_commands
        if unknown:
            raise ValueError(f"Unknown commands {sorted(unknown)}")

        async def check_state(state: State) -> None:
            good = _GOOD_COMMANDS_BY_STATE[state] | (enabled_commands if state == State.ENABLED else set())
            await self.check_bad_commands(bad_commands=sorted(all_commands - good - skip), good_commands=good)

        await self.assert_next_summary_state(State.STANDBY, timeout=timeout)
        assert self.csc.summary_state == State.STANDBY
        await check_state(State.STANDBY)
        steps = [
            ("start", State.DISABLED),
            ("enable", State.ENABLED),
            ("disable", State.DISABLED),
            ("standby", State.STANDBY),
            ("exitControl", State.OFFLINE),
        ]
        for command, state in steps:
            if command == "start":
                await self.remote.cmd_start.set_start(configurationOverride=override, timeout=timeout)
            else:
                await getattr(self.remote, f"cmd_{command}").start(timeout=timeout)
            assert self.csc.summary_state == state, f"{command}: csc state {self.csc.summary_state!r} != {state!r}"
            await self.assert_next_summary_state(state, timeout=timeout)
            if state != State.OFFLINE:
                await check_state(state)

    async def check_bin_script(
        self,
        name: str,
        index: int | None,
        exe_name: str,
        default_initial_state: State = State.STANDBY,
        initial_state: State | None = None,
        override: str | None = None,
        cmdline_args: Sequence[str] = (),
        timeout: float = STD_TIMEOUT,
    ) -> None:
        """Run a CSC's script in a separate process and check the states it reports; then SIGTERM it."""
        exe_path = pathlib.Path(sys.executable).parent / exe_name
        command = [str(exe_path) if exe_path.exists() else exe_name]
        if index is not None:
            command.append(str(index))
        if initial_state is not None:
            command += ["--state", State(initial_state).name.lower()]
        if override is not None:
            command += ["--override", override]
        command += list(cmdline_args)
        process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL)
        try:
            async with (
                Domain() as domain,
                Remote(domain=domain, name=name, index=index, readonly=True) as remote,
            ):
                end = State(initial_state) if initial_state is not None else default_initial_state
                states = [default_initial_state] + [
                    s for _, s in make_state_transition_dict()[(default_initial_state, end)]
                ]
                for state in states:
                    await self.assert_next_summary_state(state, timeout=timeout, remote=remote)
                if override is not None and hasattr(remote, "evt_configurationApplied"):
                    data = await remote.evt_configurationApplied.aget(timeout=timeout)
                    assert override in data.configurations, f"{override!r} not in {data.configurations!r}"
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), timeout=timeout)
                except TimeoutError:
                    process.kill()
                    await process.wait()
