"""``sal_demo``: start a CSC of this SAL layer in another process and command it, printing each step.

This is what ``make demo`` runs until the simulated observatory exists: a real Cyclone DDS
conversation between two processes, as a ScriptQueue script would have with a CSC.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import random
import statistics
import sys
import time

from . import Domain, Remote, SalRetCode, State, set_summary_state
from .errors import AckError
from .testutils import set_random_lsst_dds_partition_prefix

__all__ = ["main", "run_demo"]


def _say(message: str) -> None:
    print(message, flush=True)


async def run_demo(index: int) -> int:
    """Run the demo against a Test CSC with ``index``; return the CSC's exit code."""
    exe = pathlib.Path(sys.executable).parent / "run_test_csc"
    _say(f"1. Starting a Test CSC (index {index}) in its own process: {exe.name} {index}")
    process = await asyncio.create_subprocess_exec(str(exe), str(index), stdin=asyncio.subprocess.DEVNULL)
    try:
        async with Domain() as domain, Remote(domain, "Test", index) as remote:
            t0 = time.monotonic()
            state = await remote.evt_summaryState.next(flush=False, timeout=30)
            _say(
                f"2. Remote sees summaryState={State(state.summaryState).name} "
                f"({time.monotonic() - t0:.2f} s after start, 3 s of it the CSC's check for a duplicate instance)"
            )
            versions = await remote.evt_softwareVersions.aget(timeout=10)
            _say(
                f"   cscVersion={versions.cscVersion!r}, pid={state.private_origin}, "
                f"identity={state.private_identity!r}"
            )

            states = await set_summary_state(remote, State.ENABLED, timeout=30)
            _say("3. set_summary_state → " + " → ".join(s.name for s in states))
            applied = await remote.evt_configurationApplied.aget(timeout=10)
            _say(f"   configurationApplied: {applied.configurations} from {applied.url}")

            await remote.cmd_setScalars.set_start(int0=42, double0=3.5, string0="hello from the Remote", timeout=10)
            echoed = await remote.evt_scalars.next(flush=False, timeout=10)
            _say(f"4. setScalars done; scalars event echoed int0={echoed.int0}, string0={echoed.string0!r}")

            ack = await remote.cmd_wait.set_start(ack=SalRetCode.CMD_COMPLETE, duration=0.5, timeout=5, wait_done=False)
            _say(f"5. wait(0.5 s): first ack {SalRetCode(ack.ack).name} (expect done within {ack.timeout:.1f} s)")
            ack = await remote.cmd_wait.next_ackcmd(ack, timeout=5)
            _say(f"   then {SalRetCode(ack.ack).name} ({ack.result!r})")
            ack = await remote.cmd_wait.set_start(ack=SalRetCode.CMD_COMPLETE, duration=0.5, timeout=0.2)
            _say(f"   wait(0.5 s) sent with a 0.2 s timeout: {SalRetCode(ack.ack).name}, as CMD_INPROGRESS extends it")

            try:
                await remote.cmd_wait.set_start(ack=SalRetCode.CMD_FAILED, duration=0.1, timeout=10)
            except AckError as e:
                _say(f"6. A command that fails: {SalRetCode(e.ackcmd.ack).name}, result={e.ackcmd.result!r}")

            await remote.cmd_disable.start(timeout=10)
            try:
                await remote.cmd_setScalars.set_start(int0=1, timeout=10)
            except AckError as e:
                _say(f"7. setScalars while DISABLED: {SalRetCode(e.ackcmd.ack).name}, result={e.ackcmd.result!r}")

            round_trips = []
            for _ in range(300):
                t0 = time.perf_counter()
                await remote.cmd_setLogLevel.set_start(level=20, timeout=10)
                round_trips.append(time.perf_counter() - t0)
            round_trips.sort()
            _say(
                f"8. 300 no-op commands between two processes: p50 {statistics.median(round_trips) * 1e3:.2f} ms, "
                f"p99 {round_trips[int(0.99 * len(round_trips))] * 1e3:.2f} ms"
            )

            states = await set_summary_state(remote, State.OFFLINE, timeout=30)
            _say("9. set_summary_state → " + " → ".join(s.name for s in states))
        code = await asyncio.wait_for(process.wait(), timeout=20)
        _say(f"10. The CSC process exited by itself with code {code}")
        return code
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


def main() -> None:
    """Entry point of ``sal_demo``."""
    if not os.environ.get("LSST_DDS_PARTITION_PREFIX"):
        set_random_lsst_dds_partition_prefix()
    os.environ.setdefault("LSST_SITE", "demo")
    _say(
        f"RapidAnalysis SAL layer demo (DDS partition prefix {os.environ['LSST_DDS_PARTITION_PREFIX']}, "
        f"config {'CYCLONEDDS_URI' if os.environ.get('CYCLONEDDS_URI') else 'shipped loopback-only'})"
    )
    code = asyncio.run(run_demo(random.randint(1000, 100000)))
    sys.exit(0 if code == 0 else 1)
