"""The Test CSC through BaseCscTestCase: the standard behaviour every CSC must have."""

from __future__ import annotations

import unittest

from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sal.test_csc import TestCsc
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase

STD_TIMEOUT = 20


class TestCscTestCase(BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    def basic_make_csc(self, initial_state, config_dir, simulation_mode, **kwargs):
        return TestCsc(
            index=self.next_index(),
            initial_state=initial_state,
            config_dir=config_dir,
            simulation_mode=simulation_mode,
        )

    async def test_standard_state_transitions(self):
        async with self.make_csc(initial_state=sal.State.STANDBY):
            await self.check_standard_state_transitions(enabled_commands=("setScalars", "setArrays", "fault", "wait"))

    async def test_initial_enabled_and_set_scalars(self):
        async with self.make_csc(initial_state=sal.State.ENABLED):
            await self.assert_next_summary_state(sal.State.ENABLED)
            await self.remote.cmd_setScalars.set_start(int0=7, string0="hello", double0=1.5, timeout=STD_TIMEOUT)
            await self.assert_next_sample(self.remote.evt_scalars, int0=7, string0="hello", double0=1.5)
            data = await self.remote.tel_scalars.next(flush=False, timeout=STD_TIMEOUT)
            assert data.int0 == 7
            assert data.private_identity == self.csc.salinfo.name_index


if __name__ == "__main__":
    unittest.main()
