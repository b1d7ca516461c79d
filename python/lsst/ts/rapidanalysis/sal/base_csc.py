"""A Commandable SAL Component: the summary-state machine and the generic commands."""

from __future__ import annotations

import argparse
import asyncio
import enum
import logging
import signal
import sys
from typing import Any

from .controller import Controller
from .enums import State
from .errors import ExpectedError
from .remote import Remote
from .topics import ControllerEvent

__all__ = ["BaseCsc", "HEARTBEAT_INTERVAL", "DUPLICATE_CHECK_TIME"]

HEARTBEAT_INTERVAL = 1.0
#: How long a starting CSC listens for another instance's heartbeat.
DUPLICATE_CHECK_TIME = 3 * HEARTBEAT_INTERVAL

# The commands that change summary state: allowed from, goes to.
_TRANSITIONS: dict[str, tuple[tuple[State, ...], State]] = {
    "start": ((State.STANDBY,), State.DISABLED),
    "enable": ((State.DISABLED,), State.ENABLED),
    "disable": ((State.ENABLED,), State.DISABLED),
    "standby": ((State.DISABLED, State.FAULT), State.STANDBY),
    "exitControl": ((State.STANDBY,), State.OFFLINE),
}


def make_state_transition_dict() -> dict[tuple[State, State], list[tuple[str, State]]]:
    """For each (from, to) pair of states, the commands that go there, with the state after each."""
    ordered = [State.OFFLINE, State.STANDBY, State.DISABLED, State.ENABLED]
    up = {State.STANDBY: "start", State.DISABLED: "enable"}
    down = {State.ENABLED: "disable", State.DISABLED: "standby", State.STANDBY: "exitControl"}
    result: dict[tuple[State, State], list[tuple[str, State]]] = {}
    for begin in [*ordered, State.FAULT]:
        for end in ordered:
            path: list[tuple[str, State]] = []
            current = begin
            if current == State.FAULT:
                path.append(("standby", State.STANDBY))
                current = State.STANDBY
            while current != end:
                i, j = ordered.index(current), ordered.index(end)
                if i < j:
                    if current == State.OFFLINE:
                        path.append(("enterControl", State.STANDBY))
                        current = State.STANDBY
                        continue
                    command = up[current]
                    current = ordered[i + 1]
                else:
                    command = down[current]
                    current = ordered[i - 1]
                path.append((command, current))
            result[(begin, end)] = path
    return result


class BaseCsc(Controller):
    """Base class of a CSC (salobj semantics).

    Subclasses set ``version`` and ``valid_simulation_modes``, add ``do_<command>`` methods that
    start with ``self.assert_enabled()``, and start and stop their work in
    `handle_summary_state`. Generic commands, the heartbeat, summaryState/errorCode,
    simulationMode, softwareVersions, logging to logMessage and SIGTERM are handled here.

    Parameters
    ----------
    name : `str`
        SAL component name.
    index : `int`, optional
        SAL index.
    initial_state : `State`, optional
        State to go to once started (default ``default_initial_state``); not FAULT.
    override : `str`
        Configuration override for ``start``, when ``initial_state`` is DISABLED or ENABLED.
    simulation_mode : `int`
        One of ``valid_simulation_modes``.
    check_if_duplicate : `bool`
        Refuse to run if another instance (same name and index) is running.
    allow_missing_callbacks : `bool`
        Allow commands without ``do_`` methods.
    """

    default_initial_state: State = State.STANDBY
    valid_simulation_modes: tuple[int, ...] = (0,)
    simulation_help: str | None = None
    enable_cmdline_state = False
    version = "?"
    heartbeat_interval = HEARTBEAT_INTERVAL

    # Generic topics of every CSC: made by `Controller` from the interface, declared here for
    # type checkers.
    evt_errorCode: ControllerEvent
    evt_heartbeat: ControllerEvent
    evt_simulationMode: ControllerEvent
    evt_softwareVersions: ControllerEvent
    evt_summaryState: ControllerEvent

    def __init__(
        self,
        name: str,
        index: int | None = None,
        initial_state: State | int | None = None,
        override: str = "",
        simulation_mode: int = 0,
        check_if_duplicate: bool = False,
        allow_missing_callbacks: bool = False,
    ) -> None:
        if initial_state is None:
            initial_state = self.default_initial_state
        try:
            initial_state = State(initial_state)
        except ValueError:
            raise ValueError(f"initial_state={initial_state!r} is not a valid State") from None
        if initial_state == State.FAULT:
            raise ValueError("initial_state cannot be FAULT")
        if self.valid_simulation_modes is None:
            raise TypeError(f"{type(self).__name__}.valid_simulation_modes must be a tuple, not None")
        if simulation_mode not in self.valid_simulation_modes:
            raise ValueError(
                f"simulation_mode={simulation_mode} not in valid_simulation_modes={self.valid_simulation_modes}"
            )
        self._summary_state = State(self.default_initial_state)
        self._initial_state = initial_state
        self._override = override
        self._simulation_mode = simulation_mode
        self._faulting = False
        self._heartbeat_task: asyncio.Task | None = None
        self.check_if_duplicate = check_if_duplicate
        super().__init__(name, index, do_callbacks=True, allow_missing_callbacks=allow_missing_callbacks)

    # -- state --

    @property
    def summary_state(self) -> State:
        """The current summary state."""
        return self._summary_state

    @property
    def disabled_or_enabled(self) -> bool:
        """Whether the state is DISABLED or ENABLED."""
        return self._summary_state in (State.DISABLED, State.ENABLED)

    @property
    def simulation_mode(self) -> int:
        """The simulation mode (fixed for the life of the CSC)."""
        return self._simulation_mode

    def assert_enabled(self, action: str = "") -> None:
        """Raise ExpectedError unless ENABLED; the first line of every CSC-specific command."""
        if self._summary_state == State.ENABLED:
            return
        what = f"{action} not allowed" if action else "Not allowed"
        message = f"{what} in state={self._summary_state!r}"
        if self._summary_state == State.FAULT and hasattr(self, "evt_errorCode") and self.evt_errorCode.has_data:
            data = self.evt_errorCode.data
            message += f"; errorCode={data.errorCode}, errorReport={data.errorReport!r}"
        raise ExpectedError(message)

    # -- start up --

    async def start(self) -> None:
        """Check for a duplicate, start the Controller, heartbeat, publish the start-up events,
        then go to the initial state."""
        if self.check_if_duplicate:
            await self._check_duplicate()
        await super().start()
        self._install_signal_handlers()
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop())
        self.evt_simulationMode.set_write(mode=self._simulation_mode, force_output=True)
        await self.set_simulation_mode(self._simulation_mode)
        self.evt_softwareVersions.set_write(
            salVersion="",
            xmlVersion="",
            cscVersion=str(self.version),
            subsystemVersions="",
            force_output=True,
        )
        self._report_summary_state()
        await self.start_phase2()
        if self._initial_state != self._summary_state:
            await self._go_to_initial_state()

    async def start_phase2(self) -> None:
        """Hook: publish more start-up events before the move to the initial state."""

    async def set_simulation_mode(self, simulation_mode: int) -> None:
        """Hook: prepare for the simulation mode (called once, at start)."""

    async def _go_to_initial_state(self) -> None:
        path = make_state_transition_dict()[(self._summary_state, self._initial_state)]
        for command, _ in path:
            sample_type = getattr(self, f"cmd_{command}").DataType
            data = sample_type()
            if command == "start":
                data.configurationOverride = self._override
            try:
                await getattr(self, f"do_{command}")(data)
            except Exception as e:
                self.log.error("Could not go to initial state %s: %s failed: %s", self._initial_state.name, command, e)
                return
            await asyncio.sleep(0.001)

    async def _check_duplicate(self) -> None:
        remote = Remote(
            self.domain,
            self.salinfo.name,
            self.salinfo.index,
            readonly=True,
            include=["heartbeat"],
            start=True,
        )
        try:
            await remote.start_task
            loop = asyncio.get_running_loop()
            deadline = loop.time() + DUPLICATE_CHECK_TIME
            while (remaining := deadline - loop.time()) > 0:
                try:
                    data = await remote.evt_heartbeat.next(flush=False, timeout=remaining)
                except TimeoutError:
                    break
                if data.private_origin != self.domain.origin:
                    raise ExpectedError(
                        f"Another {self.salinfo.name_index} is already running "
                        f"(heartbeat from process {data.private_origin}, identity {data.private_identity!r})"
                    )
        finally:
            await remote.close()

    def _install_signal_handlers(self) -> None:
        # SIGTERM/SIGINT close cleanly so that peers see us leave at once (not after a lease).
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._signal_handler)
            except (NotImplementedError, RuntimeError, ValueError):
                return  # not the main thread (e.g. inside a test runner's thread)

    def _signal_handler(self) -> None:
        self.log.info("Signal received; closing")
        asyncio.create_task(self.close())

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                self.evt_heartbeat.write()
            except Exception as e:
                print(f"{self.salinfo.name_index}: could not write heartbeat: {e!r}", file=sys.stderr)
            await asyncio.sleep(self.heartbeat_interval)

    # -- summary state commands --

    async def do_start(self, data: Any) -> None:
        """STANDBY → DISABLED."""
        await self._do_change_state(data, "start")

    async def do_enable(self, data: Any) -> None:
        """DISABLED → ENABLED."""
        await self._do_change_state(data, "enable")

    async def do_disable(self, data: Any) -> None:
        """ENABLED → DISABLED."""
        await self._do_change_state(data, "disable")

    async def do_standby(self, data: Any) -> None:
        """DISABLED or FAULT → STANDBY."""
        await self._do_change_state(data, "standby")

    async def do_exitControl(self, data: Any) -> None:  # noqa: N802 (SAL name)
        """STANDBY → OFFLINE, then quit."""
        await self._do_change_state(data, "exitControl")
        asyncio.create_task(self.close())

    async def do_setLogLevel(self, data: Any) -> None:  # noqa: N802 (SAL name)
        """Set the log level (``subsystem`` is ignored, as in salobj)."""
        self.log.setLevel(data.level)
        self.put_log_level()

    async def _do_change_state(self, data: Any, command: str) -> None:
        allowed, new_state = _TRANSITIONS[command]
        current = self._summary_state
        if current not in allowed:
            raise ExpectedError(f"{command} not allowed in state {current!r}")
        await getattr(self, f"begin_{command}")(data)
        self._summary_state = new_state
        try:
            await getattr(self, f"end_{command}")(data)
        except ExpectedError:
            self.log.warning("end_%s failed; state stays %s", command, new_state.name)
            raise
        except Exception:
            self._summary_state = current
            self.log.exception("end_%s failed; reverting to %s", command, current.name)
            raise
        try:
            await self.handle_summary_state()
        finally:
            self._report_summary_state()

    async def begin_start(self, data: Any) -> None:
        """Hook: before STANDBY → DISABLED; raise to refuse (state stays STANDBY)."""

    async def end_start(self, data: Any) -> None:
        """Hook: after STANDBY → DISABLED."""

    async def begin_enable(self, data: Any) -> None:
        """Hook: before DISABLED → ENABLED."""

    async def end_enable(self, data: Any) -> None:
        """Hook: after DISABLED → ENABLED."""

    async def begin_disable(self, data: Any) -> None:
        """Hook: before ENABLED → DISABLED."""

    async def end_disable(self, data: Any) -> None:
        """Hook: after ENABLED → DISABLED."""

    async def begin_standby(self, data: Any) -> None:
        """Hook: before → STANDBY."""

    async def end_standby(self, data: Any) -> None:
        """Hook: after → STANDBY."""

    async def begin_exitControl(self, data: Any) -> None:  # noqa: N802
        """Hook: before STANDBY → OFFLINE."""

    async def end_exitControl(self, data: Any) -> None:  # noqa: N802
        """Hook: after STANDBY → OFFLINE."""

    async def handle_summary_state(self) -> None:
        """Hook: called after every state change (fault included); start or stop work here."""

    def _report_summary_state(self) -> None:
        self.evt_summaryState.set_write(summaryState=int(self._summary_state))
        if self._summary_state != State.FAULT:
            self.evt_errorCode.set_write(errorCode=0, errorReport="", traceback="")

    async def fault(self, code: int | None, report: str, traceback: str = "") -> None:
        """Go to FAULT (from any state), publishing errorCode first if ``code`` is given.

        Parameters
        ----------
        code : `int` or None
            Error code; None to leave errorCode alone.
        report : `str`
            What went wrong, for a person.
        traceback : `str`
            Traceback, if any.
        """
        if self._faulting or self.closing:
            return
        self._faulting = True
        try:
            self._summary_state = State.FAULT
            if code is not None:
                self.evt_errorCode.set_write(errorCode=code, errorReport=report, traceback=traceback, force_output=True)
                self.log.critical("Fault! errorCode=%s, errorReport=%r", code, report)
            self._report_summary_state()
            try:
                await self.handle_summary_state()
            except Exception:
                self.log.exception("handle_summary_state failed while going to FAULT")
        finally:
            self._faulting = False

    async def close_tasks(self) -> None:
        """Stop the heartbeat (subclasses: stop your work, then call this)."""
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        await super().close_tasks()

    # -- command line --

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Hook: add command-line arguments."""

    @classmethod
    def add_kwargs_from_args(cls, args: argparse.Namespace, kwargs: dict[str, Any]) -> None:
        """Hook: turn added arguments into constructor keyword arguments."""

    @classmethod
    def make_parser(cls, index: bool | type[enum.IntEnum] | int | None) -> argparse.ArgumentParser:
        """The command-line parser `amain` uses."""
        parser = argparse.ArgumentParser(f"Run {cls.__name__}")
        parser.add_argument("--version", action="version", version=str(cls.version))
        if index is True:
            parser.add_argument("index", type=int, help="SAL index.")
        elif isinstance(index, type) and issubclass(index, enum.IntEnum):
            choices = [int(e) for e in index]
            help_text = ", ".join(f"{int(e)}: {e.name}" for e in index)
            parser.add_argument("index", type=int, choices=choices, help=f"SAL index; one of {help_text}")
        parser.add_argument("--loglevel", type=int, default=None, help="Log level (DEBUG=10, INFO=20, WARNING=30).")
        if cls.enable_cmdline_state:
            parser.add_argument(
                "--state",
                choices=["offline", "standby", "disabled", "enabled"],
                dest="initial_state",
                help="State to go to at start.",
            )
            parser.add_argument("--override", default="", help="Configuration override for start.")
        modes = cls.valid_simulation_modes
        if len(modes) == 2 and 0 in modes:
            nonzero = [m for m in modes if m != 0][0]
            parser.add_argument(
                "--simulate",
                action="store_const",
                const=nonzero,
                default=0,
                help=cls.simulation_help or "Run in simulation mode.",
            )
        elif len(modes) > 2:
            parser.add_argument(
                "--simulate",
                type=int,
                choices=sorted(modes),
                default=0,
                help=cls.simulation_help or "Simulation mode.",
            )
        cls.add_arguments(parser)
        return parser

    @classmethod
    async def amain(cls, index: bool | type[enum.IntEnum] | int | None, **kwargs: Any) -> None:
        """Parse the command line, run the CSC until it quits.

        Parameters
        ----------
        index : `bool`, `enum.IntEnum` class, `int` or None
            True: the index is a command-line argument; an IntEnum: one of its values;
            an int or None: that index, no argument.
        **kwargs
            More constructor arguments.
        """
        parser = cls.make_parser(index)
        args = parser.parse_args()
        if index is True or (isinstance(index, type) and issubclass(index, enum.IntEnum)):
            kwargs["index"] = args.index
        elif index is not None and index is not False:
            kwargs["index"] = int(index)
        if cls.enable_cmdline_state:
            if args.initial_state is not None:
                kwargs["initial_state"] = State[args.initial_state.upper()]
            kwargs["override"] = args.override
        if "simulate" in vars(args):
            kwargs["simulation_mode"] = args.simulate
        cls.add_kwargs_from_args(args, kwargs)
        logging.basicConfig(
            level=args.loglevel or logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
        csc = cls(check_if_duplicate=True, **kwargs)
        if args.loglevel is not None:
            csc.log.setLevel(args.loglevel)
        try:
            await csc.start_task
        except Exception as e:
            csc.log.error("Could not start: %s", e)
            await csc.close(exception=e)
        await csc.done_task
