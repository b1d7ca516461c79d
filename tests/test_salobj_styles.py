"""A CSC written as salobj 7 code and the same CSC written as salobj 8 code both work, unchanged.

salobj 8 awaits every write, ``set_write``, ``ack`` and ``ack_in_progress``; salobj 7 calls
them plainly. Each style's CSC runs in its own process (as a site's CSC would), and the same
test case, from a Remote here, checks what both publish and how both answer.
"""

from __future__ import annotations

import asyncio
import pathlib
import sys
import textwrap

import pytest

from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sal import SalRetCode, State
from lsst.ts.rapidanalysis.sal.awaitable import DONE
from lsst.ts.rapidanalysis.sal.topics.write_topic import SetWriteResult
from sal_helpers import STD_TIMEOUT, csc_and_remote, random_index, terminate

#: A Test CSC, written as a CSC author would, for salobj 7 ("") or salobj 8 ("await ").
CSC_SOURCE = """
import asyncio
import sys

from lsst.ts.rapidanalysis import sal as salobj  # the only line a salobj CSC changes


class StyleCsc(salobj.BaseCsc):
    valid_simulation_modes = (0,)
    version = "style-test"

    def __init__(self, index, **kwargs):
        super().__init__("Test", index=index, initial_state=salobj.State.ENABLED)

    async def do_setScalars(self, data):
        self.assert_enabled()
        result = {AWAIT}self.evt_scalars.set_write(int0=data.int0, string0="set_write", force_output=True)
        assert result.did_change and result.was_written, result
        self.tel_scalars.set(int0=data.int0 * 2, string0="write")
        sample = {AWAIT}self.tel_scalars.write()
        assert sample.int0 == data.int0 * 2, sample

    async def do_wait(self, data):
        self.assert_enabled()
        {AWAIT}self.cmd_wait.ack_in_progress(data, timeout=data.duration + 1, result="waiting")
        await asyncio.sleep(data.duration)
        {AWAIT}self.evt_arrays.set_write(int0=[1, 2, 3, 4, 5], force_output=True)

    async def do_fault(self, data):
        await self.fault(code=7, report="as asked")

    async def do_setArrays(self, data):
        pass


if __name__ == "__main__":
    asyncio.run(StyleCsc.amain(index=True))
"""


async def check_style_csc(remote: sal.Remote) -> None:
    """What both styles must do: the test case they share."""
    state = await remote.evt_summaryState.next(flush=False, timeout=60)
    while state.summaryState != State.ENABLED:
        state = await remote.evt_summaryState.next(flush=False, timeout=STD_TIMEOUT)
    await remote.cmd_setScalars.set_start(int0=21, timeout=STD_TIMEOUT)
    event = await remote.evt_scalars.next(flush=False, timeout=STD_TIMEOUT)
    assert (event.int0, event.string0) == (21, "set_write")
    telemetry = await remote.tel_scalars.next(flush=False, timeout=STD_TIMEOUT)
    assert (telemetry.int0, telemetry.string0) == (42, "write")

    acks: list[int] = []
    ackcmd = await remote.cmd_wait.set_start(duration=0.2, wait_done=False, timeout=STD_TIMEOUT)
    acks.append(ackcmd.ack)
    assert ackcmd.result == "waiting" and ackcmd.ack == SalRetCode.CMD_INPROGRESS, ackcmd
    ackcmd = await remote.cmd_wait.next_ackcmd(ackcmd, timeout=STD_TIMEOUT)
    assert ackcmd.ack == SalRetCode.CMD_COMPLETE, ackcmd
    arrays = await remote.evt_arrays.next(flush=False, timeout=STD_TIMEOUT)
    assert list(arrays.int0) == [1, 2, 3, 4, 5]

    remote.evt_errorCode.flush()  # the errorCode 0 every CSC starts with
    remote.evt_summaryState.flush()
    await remote.cmd_fault.start(timeout=STD_TIMEOUT)
    error = await remote.evt_errorCode.next(flush=False, timeout=STD_TIMEOUT)
    assert (error.errorCode, error.errorReport) == (7, "as asked")
    assert (await remote.evt_summaryState.next(flush=False, timeout=STD_TIMEOUT)).summaryState == State.FAULT


@pytest.mark.parametrize("style", ["salobj7", "salobj8"])
async def test_a_csc_of_either_style_works_the_same(style: str, tmp_path: pathlib.Path) -> None:
    script = tmp_path / f"{style}_csc.py"
    script.write_text(textwrap.dedent(CSC_SOURCE.replace("{AWAIT}", "await " if style == "salobj8" else "")))
    index = random_index()
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(index), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with sal.Domain() as domain, sal.Remote(domain, "Test", index) as remote:
            await check_style_csc(remote)
    finally:
        await terminate(process)


async def test_each_call_does_its_work_once_awaited_or_not() -> None:
    """The same call, plain and awaited, writes once each and returns the same kind of value."""
    async with csc_and_remote() as (csc, remote):
        plain = csc.evt_scalars.set_write(int0=1, force_output=True)
        awaited = await csc.evt_scalars.set_write(int0=2, force_output=True)
        assert isinstance(plain, SetWriteResult) and isinstance(awaited, SetWriteResult)
        assert (plain.data.int0, awaited.data.int0) == (2, 2)  # data is the topic's current sample
        for expected in (1, 2):
            assert (await remote.evt_scalars.next(flush=False, timeout=STD_TIMEOUT)).int0 == expected
        csc.tel_scalars.set(int0=5)
        sample = await csc.tel_scalars.write()
        assert sample.int0 == 5 and (await sample) is sample
        assert (await remote.tel_scalars.next(flush=False, timeout=STD_TIMEOUT)).int0 == 5
        assert repr(DONE) == "DONE" and (await DONE) is None
