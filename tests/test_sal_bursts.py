"""Bursts: however many commands are in flight, none is dropped and every one gets its final ack.

DDS readers keep every sample until it is taken (KEEP_ALL), command and ack writers keep every
sample until it is acknowledged (KEEP_ALL), and the SAL layer's own queues for commands and acks
never drop. With KEEP_LAST 100 readers, 1,000 commands in flight (two acks each) lost acks.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from cyclonedds.core import Policy

from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sal import SalRetCode, State
from lsst.ts.rapidanalysis.sal.dds_config import topic_qos
from lsst.ts.rapidanalysis.sal.topics import ControllerCommand, RemoteEvent, RemoteTelemetry
from sal_helpers import STD_TIMEOUT, random_index, start_run_test_csc, terminate, wait_until

#: A CSC process needs to import, join DDS and listen for a duplicate (3 s) before it reports STANDBY.
STARTUP_TIMEOUT = 30.0
BURST = 1000


def test_topic_qos_is_lossless() -> None:
    """Readers keep all; command and ack writers keep all; event and telemetry writers keep a deep history."""
    for kind in ("command", "ackcmd", "event", "telemetry"):
        assert topic_qos(kind, writer=False)[Policy.History] == Policy.History.KeepAll, kind
    for kind in ("command", "ackcmd"):
        assert topic_qos(kind, writer=True)[Policy.History] == Policy.History.KeepAll, kind
    for kind in ("event", "telemetry"):
        assert topic_qos(kind, writer=True)[Policy.History] == Policy.History.KeepLast(1000), kind
    # Late joiners still get (at most) the last 100 of each event.
    durability = topic_qos("event", writer=True)[Policy.DurabilityService]
    assert durability.history == Policy.History.KeepLast(100)


async def test_dds_reader_keeps_every_sample_until_taken() -> None:
    """500 samples written before the reader is served at all: every one arrives, in order.

    (A KEEP_LAST 100 reader kept the last 100: what arrived while the pump was busy was lost.)
    """
    index = random_index()
    async with sal.Controller("Test", index) as controller, sal.Domain() as domain:
        salinfo = sal.SalInfo(domain, "Test", index)
        tel = RemoteTelemetry(salinfo, "scalars", queue_len=1000)
        await wait_until(lambda: controller.tel_scalars._writer.get_matched_subscriptions(), what="the reader matched")
        for i in range(500):
            controller.tel_scalars.set_write(int0=i)
        await asyncio.to_thread(controller.salinfo.wait_for_acks, STD_TIMEOUT)
        await salinfo.start()
        await wait_until(lambda: tel.has_data and tel.get().int0 == 499, what="the 500th sample")
        assert [tel.get_oldest().int0 for _ in range(tel.nqueued)] == list(range(500))
        await salinfo.close()


async def test_unlimited_queue_never_drops(caplog: pytest.LogCaptureFixture) -> None:
    """``queue_len=None``: 1,000 samples queued unread, none dropped, no warning."""
    index = random_index()
    caplog.set_level(logging.WARNING)
    async with sal.Controller("Test", index) as controller, sal.Domain() as domain:
        salinfo = sal.SalInfo(domain, "Test", index)
        evt = RemoteEvent(salinfo, "scalars", queue_len=None)
        assert evt.queue_len is None
        await salinfo.start()
        for i in range(BURST):
            controller.evt_scalars.set_write(int0=i)
        await wait_until(lambda: evt.nqueued == BURST, what=f"{BURST} queued samples")
        assert [evt.get_oldest().int0 for _ in range(BURST)] == list(range(BURST))
        assert not [r for r in caplog.records if "evt_scalars" in r.getMessage()]
        await salinfo.close()


async def test_command_reader_queues_every_command() -> None:
    """A burst of commands sent before a Controller reads any: all are queued, in order; each
    acked from the queue reaches its sender. (Queue length: unlimited, unless asked otherwise.)"""
    index = random_index()
    n = 300
    async with sal.Domain() as csc_domain, sal.Domain() as domain:
        csc_salinfo = sal.SalInfo(csc_domain, "Test", index)
        cmd = ControllerCommand(csc_salinfo, "setScalars")
        assert cmd.queue_len is None
        async with sal.Remote(domain, "Test", index, include=[]) as remote:
            await wait_until(
                lambda: remote.cmd_setScalars._writer.get_matched_subscriptions(), what="the command reader"
            )
            sends = [
                asyncio.create_task(remote.cmd_setScalars.set_start(int0=i, timeout=STD_TIMEOUT)) for i in range(n)
            ]
            await asyncio.sleep(0.5)  # all written, none read
            await csc_salinfo.start()
            await wait_until(lambda: cmd.nqueued == n, what=f"{n} queued commands")
            for i in range(n):
                data = cmd.get_oldest()
                assert data.int0 == i
                cmd.ack(data, SalRetCode.CMD_COMPLETE, result=f"done {i}")
            acks = await asyncio.wait_for(asyncio.gather(*sends), STD_TIMEOUT)
            assert [a.result for a in acks] == [f"done {i}" for i in range(n)]
        await csc_salinfo.close()


async def burst(send, n: int) -> tuple[list, float]:
    """Send ``n`` commands at once (``send(i)`` makes each); return their outcomes and the wall time."""
    t0 = time.monotonic()
    outcomes = await asyncio.gather(*(send(i) for i in range(n)), return_exceptions=True)
    return outcomes, time.monotonic() - t0


async def test_burst_of_commands_from_another_process() -> None:
    """1,000 commands in flight at once to a Test CSC in another process: every one gets its
    final ack (``wait``: CMD_INPROGRESS then CMD_COMPLETE, 2,000 acks), then 1,000 more."""
    index = random_index()
    process = await start_run_test_csc(index)
    try:
        async with sal.Domain() as domain, sal.Remote(domain, "Test", index, include=["summaryState"]) as remote:
            data = await remote.evt_summaryState.next(flush=False, timeout=STARTUP_TIMEOUT)
            assert data.summaryState == State.STANDBY
            await sal.set_summary_state(remote, State.ENABLED, timeout=STD_TIMEOUT)

            outcomes, wall = await burst(
                lambda i: remote.cmd_wait.set_start(ack=SalRetCode.CMD_COMPLETE, duration=0, timeout=60), BURST
            )
            failed = [o for o in outcomes if isinstance(o, BaseException)]
            assert not failed, f"{len(failed)} of {BURST} wait commands failed in {wall:.1f} s; first: {failed[0]!r}"
            assert {o.ack for o in outcomes} == {SalRetCode.CMD_COMPLETE}
            assert len({o.private_seqNum for o in outcomes}) == BURST

            outcomes, wall = await burst(lambda i: remote.cmd_setScalars.set_start(int0=i, timeout=60), BURST)
            failed = [o for o in outcomes if isinstance(o, BaseException)]
            assert not failed, f"{len(failed)} of {BURST} setScalars failed in {wall:.1f} s; first: {failed[0]!r}"
            assert {o.ack for o in outcomes} == {SalRetCode.CMD_COMPLETE}
        assert process.returncode is None, "the CSC process died"
    finally:
        await terminate(process)
