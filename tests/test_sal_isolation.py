"""Isolation: SAL indices within a partition, and partition prefixes."""

from __future__ import annotations

import asyncio

import pytest

from lsst.ts.rapidanalysis import sal
from sal_helpers import STD_TIMEOUT, csc_and_remote, random_index, wait_until


async def test_index_isolation() -> None:
    index_a = random_index()
    index_b = index_a + 1
    async with (
        sal.Controller("Test", index_a) as controller_a,
        sal.Controller("Test", index_b) as controller_b,
        sal.Domain() as domain,
        sal.Remote(domain, "Test", index_a, readonly=True, include=["scalars"]) as remote_a,
        sal.Remote(domain, "Test", index_b, readonly=True, include=["scalars"]) as remote_b,
        sal.Remote(domain, "Test", 0, readonly=True, include=["scalars"]) as remote_all,
    ):
        controller_a.evt_scalars.set_write(int0=1)
        controller_b.evt_scalars.set_write(int0=2)
        controller_a.tel_scalars.set_write(int0=11)
        controller_b.tel_scalars.set_write(int0=22)
        # index 0 sees both indices (order between two writers is not defined)
        seen = [await remote_all.evt_scalars.next(flush=False, timeout=STD_TIMEOUT) for _ in range(2)]
        assert sorted((d.salIndex, d.int0) for d in seen) == [(index_a, 1), (index_b, 2)]
        seen = [await remote_all.tel_scalars.next(flush=False, timeout=STD_TIMEOUT) for _ in range(2)]
        assert sorted((d.salIndex, d.int0) for d in seen) == [(index_a, 11), (index_b, 22)]
        data_a = await remote_a.evt_scalars.next(flush=False, timeout=STD_TIMEOUT)
        data_b = await remote_b.evt_scalars.next(flush=False, timeout=STD_TIMEOUT)
        assert (data_a.salIndex, data_a.int0) == (index_a, 1)
        assert (data_b.salIndex, data_b.int0) == (index_b, 2)
        assert (await remote_a.tel_scalars.next(flush=False, timeout=STD_TIMEOUT)).int0 == 11
        assert (await remote_b.tel_scalars.next(flush=False, timeout=STD_TIMEOUT)).int0 == 22
        # the other index's samples reached this process (remote_all has them); give them a moment
        await asyncio.sleep(0.2)
        for remote in (remote_a, remote_b):
            assert remote.evt_scalars.nqueued == 0
            assert remote.tel_scalars.nqueued == 0
        assert remote_a.evt_scalars.get().int0 == 1
        assert remote_b.evt_scalars.get().int0 == 2


async def test_index_zero_history_is_per_index() -> None:
    index_a = random_index()
    index_b = index_a + 1
    async with (
        sal.Controller("Test", index_a) as controller_a,
        sal.Controller("Test", index_b) as controller_b,
    ):
        for i in range(3):
            controller_a.evt_scalars.set_write(int0=i)
            controller_b.evt_scalars.set_write(int0=10 + i)
        async with sal.Domain() as domain, sal.Remote(domain, "Test", 0, readonly=True) as late:
            await late.evt_scalars.aget(timeout=STD_TIMEOUT)
            await wait_until(lambda: late.evt_scalars.nqueued >= 2, what="history of both indices")
            await asyncio.sleep(0.1)  # anything older would have come with it
            got = []
            while (data := late.evt_scalars.get_oldest()) is not None:
                got.append((data.salIndex, data.int0))
            # the newest historical sample of each index, nothing older
            assert sorted(got) == [(index_a, 2), (index_b, 12)]


async def test_commands_reach_only_their_index() -> None:
    async with csc_and_remote(initial_state=sal.State.ENABLED) as (csc, remote):
        other = csc.salinfo.index + 1
        async with sal.Remote(remote.salinfo.domain, "Test", other) as other_remote:
            with pytest.raises(sal.AckTimeoutError) as excinfo:
                await other_remote.cmd_setScalars.set_start(int0=5, timeout=1)
            assert excinfo.value.ackcmd.ack == sal.SalRetCode.CMD_NOACK
        await asyncio.sleep(0.1)
        assert remote.evt_scalars.get() is None  # the CSC did not run it


async def test_partition_isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    async with csc_and_remote(initial_state=sal.State.ENABLED) as (csc, remote):
        index = csc.salinfo.index
        # a Remote in another partition (a different LSST_DDS_PARTITION_PREFIX when its Domain is made)
        monkeypatch.setenv("LSST_DDS_PARTITION_PREFIX", remote.salinfo.domain.partition_prefix + "_other")
        async with sal.Domain() as other_domain, sal.Remote(other_domain, "Test", index) as stranger:
            assert other_domain.partition_prefix != csc.domain.partition_prefix
            with pytest.raises(TimeoutError):
                await stranger.evt_summaryState.aget(timeout=1)
            with pytest.raises(sal.AckTimeoutError) as excinfo:
                await stranger.cmd_setScalars.set_start(int0=9, timeout=1)
            assert excinfo.value.ackcmd.ack == sal.SalRetCode.CMD_NOACK
            # while the same-partition Remote keeps working, and sees traffic the stranger does not
            await remote.cmd_setScalars.set_start(int0=3, timeout=STD_TIMEOUT)
            assert (await remote.evt_scalars.next(flush=False, timeout=STD_TIMEOUT)).int0 == 3
            await asyncio.sleep(0.2)
            assert stranger.evt_scalars.get() is None
            assert stranger.evt_heartbeat.get() is None
            assert stranger.tel_scalars.get() is None
