"""Command a CSC from a terminal and watch what it publishes (salobj's ``CscCommander``)."""

from __future__ import annotations

import argparse
import asyncio
import enum
import math
import shlex
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from .domain import Domain
from .enums import State
from .errors import AckError
from .remote import Remote
from .set_summary_state import set_summary_state
from .tai import current_tai

__all__ = ["CscCommander", "command_test_csc"]

_TRUE = {"1", "t", "true", "y", "yes"}
_FALSE = {"0", "f", "false", "n", "no"}


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean; use one of 0, f, false, 1, t, true")


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isnan(value) else round(value, 2)
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


class CscCommander:
    """Read commands from a stream (stdin), send them to a CSC, print its events and telemetry.

    Lines: ``help``, ``exit``, ``<command> <arg> ...`` (one argument per public scalar field
    in order; booleans as 0/f/false/1/t/true), ``start [override]``. Events are printed as
    they arrive (heartbeat skipped); telemetry only when a value changes (floats rounded to
    2 digits, ``timestamp`` fields not compared). Subclasses add ``do_<cmd>(args)`` methods
    with entries in ``help_dict``, and ``evt_<name>_callback`` / ``tel_<name>_callback``.

    Parameters
    ----------
    name : `str`
        SAL component name.
    index : `int`, optional
        SAL index.
    enable : `bool`
        Drive the CSC to ENABLED first.
    exclude : iterable of `str`, optional
        Events and telemetry not to watch.
    fields_to_ignore : sequence of `str`
        Fields never printed.
    telemetry_fields_to_not_compare : sequence of `str`
        Telemetry fields whose changes alone do not cause a print.
    output : `typing.TextIO`
        Where to print (default stdout).
    """

    def __init__(
        self,
        name: str,
        index: int | None = 0,
        enable: bool = False,
        exclude: Iterable[str] | None = None,
        fields_to_ignore: Sequence[str] = ("ignored", "value"),
        telemetry_fields_to_not_compare: Sequence[str] = ("timestamp",),
        output: TextIO | None = None,
    ) -> None:
        self.enable = enable
        self.fields_to_ignore = set(fields_to_ignore)
        self.telemetry_fields_to_not_compare = set(telemetry_fields_to_not_compare)
        self.stream = output or sys.stdout
        self.domain = Domain()
        self.remote = Remote(self.domain, name, index, exclude=exclude)
        self.help_dict: dict[str, str] = {}
        self._previous_telemetry: dict[str, dict[str, Any]] = {}
        for evt_name in self.remote.salinfo.event_names:
            topic = getattr(self.remote, f"evt_{evt_name}", None)
            if topic is None or evt_name == "heartbeat":
                continue
            topic.callback = getattr(self, f"evt_{evt_name}_callback", self._make_event_printer(evt_name))
        for tel_name in self.remote.salinfo.telemetry_names:
            topic = getattr(self.remote, f"tel_{tel_name}", None)
            if topic is not None:
                topic.callback = getattr(self, f"tel_{tel_name}_callback", self._make_telemetry_printer(tel_name))

    # -- output --

    def output(self, message: str) -> None:
        """Print one line."""
        print(message, file=self.stream, flush=True)

    def format_data(self, data: Any) -> str:
        """``field=value`` pairs of the public fields of a sample."""
        names = [n for n in type(data).__dataclass_fields__ if not n.startswith("private_") and n != "salIndex"]
        return ", ".join(f"{n}={_round(getattr(data, n))!r}" for n in names if n not in self.fields_to_ignore)

    def _make_event_printer(self, name: str) -> Any:
        async def print_event(data: Any) -> None:
            self.output(f"{data.private_sndStamp:0.3f} {name}: {self.format_data(data)}")

        return print_event

    def _make_telemetry_printer(self, name: str) -> Any:
        async def print_telemetry(data: Any) -> None:
            compared = {
                n: _round(getattr(data, n))
                for n in type(data).__dataclass_fields__
                if not n.startswith("private_") and n not in self.telemetry_fields_to_not_compare
            }
            if compared != self._previous_telemetry.get(name):
                self._previous_telemetry[name] = compared
                self.output(f"{data.private_sndStamp:0.3f} {name}: {self.format_data(data)}")

        return print_telemetry

    async def evt_summaryState_callback(self, data: Any) -> None:  # noqa: N802
        """Print the state by name."""
        try:
            state: Any = State(data.summaryState)
        except ValueError:
            state = data.summaryState
        self.output(f"{data.private_sndStamp:0.3f} summaryState: summaryState={state!r}")

    async def evt_logMessage_callback(self, data: Any) -> None:  # noqa: N802
        """Print level, logger name, message and any traceback."""
        self.output(f"{data.private_sndStamp:0.3f} logMessage: level={data.level} name={data.name}: {data.message}")
        if data.traceback:
            self.output(data.traceback)

    # -- commands --

    def command_fields(self, command: str) -> list[str]:
        """The public scalar fields of a command, in order (one argument each)."""
        topic = getattr(self.remote, f"cmd_{command}")
        return [f.name for f in topic.topic_info.fields if f.count == 1]

    def parse_arguments(self, command: str, args: Sequence[str]) -> dict[str, Any]:
        """Turn command-line words into command fields.

        Raises
        ------
        ValueError
            Wrong number of arguments, or one that does not fit its field.
        """
        topic = getattr(self.remote, f"cmd_{command}")
        fields = [f for f in topic.topic_info.fields if f.count == 1]
        if len(args) != len(fields):
            names = " ".join(f.name for f in fields)
            raise ValueError(f"{command} takes {len(fields)} argument(s): {names or '(none)'}; got {len(args)}")
        values: dict[str, Any] = {}
        for field, text in zip(fields, args, strict=True):
            if field.idl_type == "boolean":
                values[field.name] = _parse_bool(text)
            elif field.idl_type in ("float", "double"):
                values[field.name] = float(text)
            elif field.idl_type == "string":
                values[field.name] = text
            else:
                values[field.name] = int(text, 0)
        return values

    def help_text(self) -> str:
        """What the user can type."""
        lines = ["Commands (arguments in order; booleans 0/1/t/f/true/false):"]
        for command in self.remote.salinfo.command_names:
            if command in self.help_dict:
                lines.append(f"  {command} {self.help_dict[command]}")
            elif command == "start":
                lines.append("  start [configurationOverride]")
            else:
                lines.append(f"  {command} {' '.join(self.command_fields(command))}".rstrip())
        lines += ["  help", "  exit"]
        return "\n".join(lines)

    async def run_command(self, line: str) -> None:
        """Run one input line, printing the outcome."""
        words = shlex.split(line)
        if not words:
            return
        command, args = words[0], words[1:]
        if command == "help":
            self.output(self.help_text())
            return
        custom = getattr(self, f"do_{command}", None)
        try:
            if custom is not None:
                await custom(args)
            elif command == "start":
                if len(args) > 1:
                    raise ValueError("start takes at most one argument: configurationOverride")
                await self.remote.cmd_start.set_start(configurationOverride=args[0] if args else "", timeout=60)
            elif hasattr(self.remote, f"cmd_{command}"):
                fields = self.parse_arguments(command, args)
                await getattr(self.remote, f"cmd_{command}").set_start(timeout=60, **fields)
            else:
                self.output(f"Unknown command {command!r}; type help for the list")
                return
            self.output(f"{current_tai():0.3f} {command} done")
        except AckError as e:
            self.output(f"{command} failed: {e.ackcmd.result}")
        except (ValueError, AttributeError) as e:
            self.output(f"{command}: bad arguments: {e}")

    async def start(self) -> None:
        """Start the Remote; drive the CSC to ENABLED if asked."""
        await self.remote.start_task
        if self.enable:
            await set_summary_state(self.remote, State.ENABLED, timeout=60)

    async def close(self) -> None:
        """Close the Remote and the Domain."""
        await self.remote.close()
        await self.domain.close()

    async def run(self, input_stream: TextIO | None = None) -> None:
        """Read lines until ``exit`` or end of input."""
        input_stream = input_stream or sys.stdin
        loop = asyncio.get_running_loop()
        self.output(f"Commanding {self.remote.salinfo.name_index}; type help for the commands, exit to quit.")
        while True:
            line = await loop.run_in_executor(None, input_stream.readline)
            if not line or line.strip() == "exit":
                return
            await self.run_command(line.strip())

    @classmethod
    async def amain(cls, *, index: bool | type[enum.IntEnum] | int | None, **kwargs: Any) -> None:
        """Parse the command line and run until ``exit``.

        Parameters
        ----------
        name : `str`
            SAL component name.
        index : `bool`, IntEnum class, `int` or None
            True or an IntEnum: the index is a command-line argument.
        **kwargs
            More constructor arguments.
        """
        parser = argparse.ArgumentParser(f"Command {kwargs.get('name', cls.__name__)}")
        if index is True:
            parser.add_argument("index", type=int, help="SAL index.")
        elif isinstance(index, type) and issubclass(index, enum.IntEnum):
            parser.add_argument("index", type=int, choices=[int(e) for e in index], help="SAL index.")
        parser.add_argument("-e", "--enable", action="store_true", help="Drive the CSC to ENABLED first.")
        args = parser.parse_args()
        if index is True or (isinstance(index, type) and issubclass(index, enum.IntEnum)):
            index = args.index
        assert not isinstance(index, type)  # an IntEnum class was replaced by the index parsed
        commander = cls(index=index, enable=args.enable, **kwargs)
        try:
            await commander.start()
            await commander.run()
        finally:
            await commander.close()


def command_test_csc() -> None:
    """``command_test_csc INDEX``: command a Test CSC from the terminal."""
    asyncio.run(CscCommander.amain(name="Test", index=True))
