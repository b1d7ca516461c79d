"""The ``Test`` CSC: a small CSC with every field type, for testing the SAL layer (as salobj's)."""

from __future__ import annotations

import asyncio
import pathlib
import types
from typing import Any

import yaml

from .. import __version__
from .configurable_csc import ConfigurableCsc
from .enums import SalRetCode
from .errors import ExpectedError
from .topics import ControllerCommand, ControllerEvent, ControllerTelemetry

__all__ = ["TestCsc", "TEST_CONFIG_SCHEMA", "run_test_csc"]

TEST_CONFIG_SCHEMA = yaml.safe_load(
    """
$schema: http://json-schema.org/draft-07/schema#
$id: https://github.com/lsst-ts/ts_rapidanalysis/blob/main/schema/Test.yaml
title: Test v1
description: Configuration of the Test CSC.
type: object
properties:
  string0:
    description: A string.
    type: string
  bool0:
    description: A boolean.
    type: boolean
  int0:
    description: An integer.
    type: integer
  float0:
    description: A number.
    type: number
  intarr0:
    description: A list of integers.
    type: array
    items:
      type: integer
required: [string0, bool0, int0, float0, intarr0]
additionalProperties: false
"""
)

_SHIPPED_CONFIG_DIR = pathlib.Path(__file__).parent / "data" / "config" / "Test" / "v1"


class TestCsc(ConfigurableCsc):
    """A CSC of the ``Test`` component.

    Commands: ``setScalars``/``setArrays`` echo their fields in the ``scalars``/``arrays``
    event and telemetry; ``fault`` goes to FAULT; ``wait`` reports in-progress (unless
    ``duration`` < 0), waits ``abs(duration)`` seconds and then ends with the outcome named by ``ack``:
    CMD_COMPLETE, CMD_FAILED (ExpectedError), CMD_TIMEOUT, CMD_ABORTED, ERROR (an unexpected
    exception), or any other code (returned as the final ack).
    """

    __test__ = False  # not a pytest test class
    valid_simulation_modes = (0,)
    version = __version__

    # Topics of the Test interface used here (made by `Controller`; declared for type checkers).
    cmd_wait: ControllerCommand
    evt_arrays: ControllerEvent
    evt_scalars: ControllerEvent
    tel_arrays: ControllerTelemetry
    tel_scalars: ControllerTelemetry

    def __init__(
        self,
        index: int,
        config_dir: str | pathlib.Path | None = None,
        check_if_duplicate: bool = False,
        initial_state: Any = None,
        override: str = "",
        simulation_mode: int = 0,
    ) -> None:
        self.config: types.SimpleNamespace | None = None
        super().__init__(
            "Test",
            index=index,
            config_schema=TEST_CONFIG_SCHEMA,
            config_dir=config_dir,
            check_if_duplicate=check_if_duplicate,
            initial_state=initial_state,
            override=override,
            simulation_mode=simulation_mode,
        )
        self.cmd_wait.allow_multiple_callbacks = True

    @staticmethod
    def get_config_pkg() -> str:
        """The (notional) config package; the shipped directory is the default."""
        return "ts_config_ocs"

    def default_config_dir(self, name: str) -> pathlib.Path:
        """The shipped Test configuration."""
        return _SHIPPED_CONFIG_DIR

    async def configure(self, config: types.SimpleNamespace) -> None:
        """Keep the configuration."""
        self.config = config

    def _fields(self, topic: Any, data: Any) -> dict[str, Any]:
        return {name: getattr(data, name) for name in topic.topic_type.field_names}

    async def do_setScalars(self, data: Any) -> None:  # noqa: N802
        """Echo the scalars in the ``scalars`` event and telemetry."""
        self.assert_enabled()
        fields = self._fields(self.evt_scalars, data)
        self.evt_scalars.set_write(**fields, force_output=True)
        self.tel_scalars.set_write(**fields)

    async def do_setArrays(self, data: Any) -> None:  # noqa: N802
        """Echo the arrays in the ``arrays`` event and telemetry."""
        self.assert_enabled()
        fields = self._fields(self.evt_arrays, data)
        self.evt_arrays.set_write(**fields, force_output=True)
        self.tel_arrays.set_write(**fields)

    async def do_fault(self, data: Any) -> None:
        """Go to FAULT with error code 1."""
        self.assert_enabled()
        await self.fault(code=1, report="Triggered by the fault command")

    async def do_wait(self, data: Any) -> Any:
        """Wait ``abs(duration)`` seconds (reporting in-progress if duration >= 0), then end as ``ack`` says."""
        self.assert_enabled()
        # A negative duration waits abs(duration) without CMD_INPROGRESS (Test_Commands.xml),
        # so that a sender's own timeout can be tested.
        if data.duration >= 0:
            self.cmd_wait.ack_in_progress(data, timeout=data.duration + 1.0)
        await asyncio.sleep(abs(data.duration))
        if data.ack == SalRetCode.CMD_COMPLETE:
            return None
        if data.ack == SalRetCode.CMD_FAILED:
            raise ExpectedError("Failed as requested")
        if data.ack == SalRetCode.CMD_TIMEOUT:
            raise TimeoutError("Timed out as requested")
        if data.ack == SalRetCode.CMD_ABORTED:
            raise asyncio.CancelledError()
        if data.ack == SalRetCode.ERROR:
            raise RuntimeError("An unexpected error, as requested")
        return self.salinfo.make_ackcmd(private_seqNum=data.private_seqNum, ack=data.ack, result="As requested")


def run_test_csc() -> None:
    """``run_test_csc INDEX``: run a Test CSC."""
    asyncio.run(TestCsc.amain(index=True))
