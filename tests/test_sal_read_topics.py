"""The read side: late-joiner history, get/aget/next/flush/get_oldest, queue overflow, callbacks."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sal.topics import MIN_QUEUE_LEN, RemoteEvent, RemoteTelemetry
from sal_helpers import STD_TIMEOUT, csc_and_remote, random_index, wait_until


async def test_late_joiner_sees_newest_summary_state_only() -> None:
    async with csc_and_remote(initial_state=sal.State.ENABLED) as (csc, remote):
        # more state changes: ENABLED → DISABLED → ENABLED
        await remote.cmd_disable.start(timeout=STD_TIMEOUT)
        await remote.cmd_enable.start(timeout=STD_TIMEOUT)
        for _ in range(3):
            csc.evt_scalars.set_write(int0=_, force_output=True)
        await remote.evt_scalars.next(flush=False, timeout=STD_TIMEOUT)  # history is written
        index = csc.salinfo.index
        async with (
            sal.Domain() as domain,
            sal.Remote(domain, "Test", index, readonly=True) as late,
            sal.Remote(domain, "Test", index, readonly=True, evt_max_history=0) as no_history,
        ):
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            data = await late.evt_summaryState.aget(timeout=2)
            assert loop.time() - t0 < 2
            assert data.summaryState == sal.State.ENABLED
            assert late.evt_summaryState.nqueued == 1
            scalars = await late.evt_scalars.aget(timeout=2)
            assert scalars.int0 == 2
            assert late.evt_scalars.nqueued == 1
            assert (await late.evt_scalars.next(flush=False, timeout=1)).int0 == 2
            # max_history=0: nothing from before, until a new sample
            assert no_history.evt_summaryState.get() is None
            assert no_history.evt_scalars.get() is None
            with pytest.raises(TimeoutError):
                await no_history.evt_scalars.aget(timeout=0.2)
            csc.evt_scalars.set_write(int0=42, force_output=True)
            assert (await no_history.evt_scalars.next(flush=False, timeout=STD_TIMEOUT)).int0 == 42
            assert (await late.evt_scalars.next(flush=False, timeout=STD_TIMEOUT)).int0 == 42
            assert no_history.evt_summaryState.get() is None
            # telemetry is volatile: no history
            assert late.tel_scalars.get() is None


async def test_queue_semantics() -> None:
    index = random_index()
    async with (
        sal.Controller("Test", index) as controller,
        sal.Domain() as domain,
        sal.Remote(domain, "Test", index, readonly=True, include=["scalars"]) as remote,
    ):
        evt = remote.evt_scalars
        assert not evt.has_data and evt.get() is None and evt.get_oldest() is None
        for i in (1, 2, 3):
            controller.evt_scalars.set_write(int0=i)
        assert (await evt.next(flush=False, timeout=STD_TIMEOUT)).int0 == 1
        await wait_until(lambda: evt.nqueued == 2, what="2 samples")
        assert evt.has_data
        assert evt.get().int0 == 3  # newest; not consumed
        assert evt.nqueued == 2
        assert (await evt.aget(timeout=1)).int0 == 3
        assert evt.get_oldest().int0 == 2
        assert evt.nqueued == 1
        evt.flush()
        assert evt.nqueued == 0 and evt.get_oldest() is None
        assert evt.get().int0 == 3  # flush keeps the newest value
        with pytest.raises(TimeoutError):
            await evt.next(flush=False, timeout=0.1)
        # next(flush=True) ignores what is queued and returns only a new sample
        controller.evt_scalars.set_write(int0=4)
        controller.evt_scalars.set_write(int0=5)
        await wait_until(lambda: evt.nqueued == 2, what="samples 4 and 5")
        task = asyncio.create_task(evt.next(flush=True, timeout=STD_TIMEOUT))
        await asyncio.sleep(0.05)
        assert not task.done()
        controller.evt_scalars.set_write(int0=6)
        assert (await asyncio.wait_for(task, STD_TIMEOUT)).int0 == 6


async def test_queue_overflow_drops_oldest(caplog: pytest.LogCaptureFixture) -> None:
    index = random_index()
    caplog.set_level(logging.WARNING)
    async with sal.Controller("Test", index) as controller, sal.Domain() as domain:
        salinfo = sal.SalInfo(domain, "Test", index)
        evt = RemoteEvent(salinfo, "scalars", queue_len=20)
        await salinfo.start()
        for i in range(30):
            controller.evt_scalars.set_write(int0=i)
        await wait_until(lambda: evt.has_data and evt.get().int0 == 29, what="the 30th sample")
        assert evt.nqueued == 20
        kept = []
        while (data := evt.get_oldest()) is not None:
            kept.append(data.int0)
        assert kept == list(range(10, 30))
        records = [r for r in caplog.records if "evt_scalars" in r.getMessage()]
        assert any(r.levelno == logging.ERROR and "full" in r.getMessage() for r in records), records
        assert any(r.levelno == logging.WARNING and "%" in r.getMessage() for r in records), records
        await salinfo.close()


async def test_queue_arguments_checked() -> None:
    async with sal.Domain() as domain:
        salinfo = sal.SalInfo(domain, "Test", random_index())
        with pytest.raises(ValueError, match="queue_len"):
            RemoteEvent(salinfo, "scalars", queue_len=MIN_QUEUE_LEN)
        with pytest.raises(ValueError, match="max_history"):
            RemoteEvent(salinfo, "scalars", max_history=30, queue_len=20)
        with pytest.raises(ValueError, match="max_history"):
            sal.topics.ReadTopic(salinfo=salinfo, attr_name="tel_scalars", max_history=1)
        RemoteTelemetry(salinfo, "scalars", queue_len=MIN_QUEUE_LEN + 1)
        await salinfo.close()
        with pytest.raises(ValueError, match="evt_max_history"):
            sal.Remote(domain, "Test", 0, evt_max_history=2)


async def test_callback_mode(caplog: pytest.LogCaptureFixture) -> None:
    index = random_index()
    async with (
        sal.Controller("Test", index) as controller,
        sal.Domain() as domain,
        sal.Remote(domain, "Test", index, readonly=True, include=["scalars"]) as remote,
    ):
        evt = remote.evt_scalars
        controller.evt_scalars.set_write(int0=-1)
        await evt.next(flush=False, timeout=STD_TIMEOUT)
        controller.evt_scalars.set_write(int0=-2)
        await wait_until(lambda: evt.nqueued == 1, what="a queued sample")
        seen: list[int] = []

        async def callback(data) -> None:
            await asyncio.sleep(0.001)  # a slow callback must still get every sample, in order
            seen.append(data.int0)
            if data.int0 == 3:
                raise RuntimeError("callback failure for 3")

        evt.callback = callback
        assert evt.nqueued == 0  # setting a callback flushes the queue
        for i in range(10):
            controller.evt_scalars.set_write(int0=i)
        await wait_until(lambda: len(seen) == 10, what="10 callbacks")
        assert seen == list(range(10))
        assert any("callback failed" in r.getMessage() for r in caplog.records)
        assert evt.get().int0 == 9
        with pytest.raises(RuntimeError):
            await evt.next(flush=False, timeout=1)
        with pytest.raises(RuntimeError):
            await evt.aget(timeout=1)
        with pytest.raises(RuntimeError):
            evt.get_oldest()
        with pytest.raises(RuntimeError):
            evt.flush()
        # back to queueing
        evt.callback = None
        assert evt.callback is None
        controller.evt_scalars.set_write(int0=100)
        assert (await evt.next(flush=False, timeout=STD_TIMEOUT)).int0 == 100
        assert seen == list(range(10))
        with pytest.raises(TypeError):
            evt.callback = "not callable"


async def test_remote_made_without_start_starts_in_async_with() -> None:
    """``async with Remote(..., start=False)`` starts it (it used to wait for ever)."""
    index = random_index()
    async with sal.Controller("Test", index) as controller:
        remote = sal.Remote(controller.domain, "Test", index, readonly=True, start=False)
        async with remote:
            assert remote.salinfo.start_called
            data = await remote.evt_logLevel.aget(timeout=10)
            assert data.level == controller.log.getEffectiveLevel()
