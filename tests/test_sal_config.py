"""ConfigurableCsc: config files, site files, overrides, git refs, configuration events."""

from __future__ import annotations

import asyncio
import pathlib
import shutil
import subprocess
import tempfile
import unittest

import pytest

from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sal import SalRetCode, State
from lsst.ts.rapidanalysis.sal.test_csc import TestCsc
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from sal_helpers import CONFIG_DIR, STD_TIMEOUT, csc_and_remote

OVERRIDES = "good_override.yaml,invalid_extra_field.yaml,invalid_malformed.yaml,invalid_wrong_type.yaml"


def git(repo: pathlib.Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout


class ConfigTestCase(BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    def basic_make_csc(self, initial_state, config_dir, simulation_mode, **kwargs):
        return TestCsc(
            index=self.next_index(),
            initial_state=initial_state,
            config_dir=CONFIG_DIR if config_dir is None else config_dir,
            simulation_mode=simulation_mode,
            **kwargs,
        )

    async def test_configurations_available(self):
        async with self.make_csc(initial_state=State.STANDBY):
            data = await self.remote.evt_configurationsAvailable.next(flush=False, timeout=STD_TIMEOUT)
            assert data.overrides == OVERRIDES  # sorted, with .yaml, no _ files
            assert data.schemaVersion == "v1"
            assert data.url == CONFIG_DIR.resolve().as_uri()
            assert data.url.startswith("file:///")
            assert self.csc.config_dir == CONFIG_DIR.resolve()

    async def check_start(self, override: str, configurations: str) -> None:
        await self.remote.cmd_start.set_start(configurationOverride=override, timeout=STD_TIMEOUT)
        await self.assert_next_summary_state(State.DISABLED)
        applied = await self.assert_next_sample(
            self.remote.evt_configurationApplied,
            configurations=configurations,
            url=CONFIG_DIR.resolve().as_uri(),
            schemaVersion="v1",
        )
        assert applied.version == self.csc._config_version()

    async def test_start_default(self):
        async with self.make_csc(initial_state=State.STANDBY):
            await self.assert_next_summary_state(State.STANDBY)
            await self.check_start("", "_init.yaml,_test.yaml")
            config = vars(self.csc.config)
            # _init.yaml, then _test.yaml (int0); _summit.yaml not read
            assert config == dict(string0="init string", bool0=True, int0=2, float0=1.5, intarr0=[1, 2])

    async def test_start_good_override(self):
        async with self.make_csc(initial_state=State.STANDBY):
            await self.assert_next_summary_state(State.STANDBY)
            await self.check_start("good_override.yaml", "_init.yaml,_test.yaml,good_override.yaml")
            config = vars(self.csc.config)
            assert config == dict(string0="good override", bool0=True, int0=2, float0=1.5, intarr0=[7, 8, 9])
            assert "metadata" not in config

    async def test_start_enabled_with_override(self):
        async with self.make_csc(initial_state=State.ENABLED, override="good_override.yaml"):
            await self.assert_next_summary_state(State.ENABLED)
            applied = await self.remote.evt_configurationApplied.next(flush=False, timeout=STD_TIMEOUT)
            assert applied.configurations == "_init.yaml,_test.yaml,good_override.yaml"
            assert self.csc.config.string0 == "good override"

    async def test_bad_overrides(self):
        cases = [
            ("invalid_wrong_type.yaml", ["invalid_wrong_type.yaml", "int0", "'not an integer'", "integer"]),
            ("invalid_extra_field.yaml", ["invalid_extra_field.yaml", "no_such_field"]),
            ("invalid_malformed.yaml", ["invalid_malformed.yaml", "YAML"]),
            ("no_such_file.yaml", ["no_such_file.yaml", "not found"]),
            ("_test.yaml", ["_test.yaml", "may not start with '_'"]),
            ("_summit.yaml", ["_summit.yaml", "may not start with '_'"]),
            ("../config/good_override.yaml", ["../config/good_override.yaml", "not a path"]),
            ("sub/good_override.yaml", ["sub/good_override.yaml", "not a path"]),
        ]
        async with self.make_csc(initial_state=State.STANDBY):
            await self.assert_next_summary_state(State.STANDBY)
            self.remote.evt_configurationApplied.flush()
            for override, fragments in cases:
                with self.subTest(override=override):
                    with pytest.raises(sal.AckError) as excinfo:
                        await self.remote.cmd_start.set_start(configurationOverride=override, timeout=STD_TIMEOUT)
                    ackcmd = excinfo.value.ackcmd
                    assert ackcmd.ack == SalRetCode.CMD_FAILED
                    assert ackcmd.error == 1
                    assert ackcmd.result.startswith("Failed: ")
                    for fragment in fragments:
                        assert fragment in ackcmd.result, f"{fragment!r} not in {ackcmd.result!r}"
                    assert self.csc.summary_state == State.STANDBY
            # nothing was published: no state change, no configurationApplied
            assert self.remote.evt_summaryState.nqueued == 0
            assert self.remote.evt_configurationApplied.nqueued == 0
            assert self.csc.config is None
            # and a good start still works
            await self.check_start("good_override.yaml", "_init.yaml,_test.yaml,good_override.yaml")

    async def test_configure_failure_fails_start(self):
        class FailingCsc(TestCsc):
            async def configure(self, config):
                if config.int0 == 2:
                    raise RuntimeError("int0=2 is not supported")
                await super().configure(config)

        csc = FailingCsc(index=self.next_index(), config_dir=CONFIG_DIR)
        async with csc, sal.Remote(csc.domain, "Test", csc.salinfo.index) as remote:
            async with self.assertRaisesAckError(ack=SalRetCode.CMD_FAILED, result_contains="int0=2 is not supported"):
                await remote.cmd_start.start(timeout=STD_TIMEOUT)
            assert csc.summary_state == State.STANDBY

    async def test_git_ref_override(self):
        with tempfile.TemporaryDirectory() as tmp:
            repo = pathlib.Path(tmp) / "config"
            shutil.copytree(CONFIG_DIR, repo)
            git(repo, "init", "-q")
            git(repo, "add", ".")
            git(repo, "commit", "-q", "-m", "config")
            head = git(repo, "rev-parse", "--short", "HEAD").strip()
            # an uncommitted change
            (repo / "good_override.yaml").write_text("string0: uncommitted\n")
            async with self.make_csc(initial_state=State.STANDBY, config_dir=repo):
                available = await self.remote.evt_configurationsAvailable.next(flush=False, timeout=STD_TIMEOUT)
                assert available.version.endswith("-dirty"), available.version
                assert head in available.version
                assert available.url == repo.resolve().as_uri()

                await self.remote.cmd_start.set_start(configurationOverride="good_override.yaml:HEAD", timeout=10)
                applied = await self.remote.evt_configurationApplied.next(flush=False, timeout=STD_TIMEOUT)
                assert applied.configurations == "_init.yaml,_test.yaml,good_override.yaml"
                assert self.csc.config.string0 == "good override"  # the committed value
                assert self.csc.config.intarr0 == [7, 8, 9]
                assert applied.version.endswith("-dirty")

                await self.remote.cmd_standby.start(timeout=STD_TIMEOUT)
                await self.remote.cmd_start.set_start(configurationOverride="good_override.yaml", timeout=10)
                assert self.csc.config.string0 == "uncommitted"  # the working tree
                assert self.csc.config.intarr0 == [1, 2]

                await self.remote.cmd_standby.start(timeout=STD_TIMEOUT)
                await self.remote.cmd_start.set_start(configurationOverride=f":{head}", timeout=10)
                assert self.csc.config.string0 == "init string"

                await self.remote.cmd_standby.start(timeout=STD_TIMEOUT)
                async with self.assertRaisesAckError(ack=SalRetCode.CMD_FAILED, result_contains="no_such_ref"):
                    await self.remote.cmd_start.set_start(configurationOverride="good_override.yaml:no_such_ref")
                assert self.csc.summary_state == State.STANDBY

    async def test_configurations_available_tracks_the_directory(self):
        with tempfile.TemporaryDirectory() as tmp:
            config_dir = pathlib.Path(tmp) / "config"
            shutil.copytree(CONFIG_DIR, config_dir)
            async with self.make_csc(initial_state=State.STANDBY, config_dir=config_dir):
                data = await self.remote.evt_configurationsAvailable.next(flush=False, timeout=STD_TIMEOUT)
                assert data.overrides == OVERRIDES
                assert data.version == ""  # not a git repository
                (config_dir / "another.yaml").write_text("int0: 3\n")
                (config_dir / "_base.yaml").write_text("int0: 4\n")
                data = await self.remote.evt_configurationsAvailable.next(flush=False, timeout=STD_TIMEOUT)
                assert data.overrides == "another.yaml," + OVERRIDES


# -- the environment (pytest functions; conftest gives LSST_SITE=test) --


async def test_other_site_reads_its_site_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSST_SITE", "summit")
    async with csc_and_remote(initial_state=State.STANDBY, config_dir=CONFIG_DIR) as (csc, remote):
        await remote.cmd_start.start(timeout=STD_TIMEOUT)
        applied = await remote.evt_configurationApplied.next(flush=False, timeout=STD_TIMEOUT)
        assert applied.configurations == "_init.yaml,_summit.yaml"
        assert (csc.config.int0, csc.config.string0) == (999, "summit string")


async def test_site_without_site_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSST_SITE", "tucson")
    async with csc_and_remote(initial_state=State.DISABLED, config_dir=CONFIG_DIR) as (csc, remote):
        applied = await remote.evt_configurationApplied.aget(timeout=STD_TIMEOUT)
        assert applied.configurations == "_init.yaml"
        assert csc.config.int0 == 1


async def test_lsst_site_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LSST_SITE")
    with pytest.raises(RuntimeError, match="LSST_SITE"):
        TestCsc(index=1, config_dir=CONFIG_DIR)
    monkeypatch.setenv("LSST_SITE", "")
    with pytest.raises(RuntimeError, match="LSST_SITE"):
        TestCsc(index=1, config_dir=CONFIG_DIR)


async def test_missing_init_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "good.yaml").write_text("int0: 1\n")
    async with csc_and_remote(initial_state=State.STANDBY, config_dir=tmp_path) as (csc, remote):
        with pytest.raises(sal.AckError) as excinfo:
            await remote.cmd_start.set_start(configurationOverride="good.yaml", timeout=STD_TIMEOUT)
        assert "_init.yaml" in excinfo.value.ackcmd.result
        assert excinfo.value.ackcmd.ack == SalRetCode.CMD_FAILED
        await asyncio.sleep(0)
        assert csc.summary_state == State.STANDBY


async def test_set_summary_state_with_override() -> None:
    async with csc_and_remote(initial_state=State.STANDBY, config_dir=CONFIG_DIR) as (csc, remote):
        states = await sal.set_summary_state(remote, State.ENABLED, override="good_override.yaml", timeout=10)
        assert states == [State.STANDBY, State.DISABLED, State.ENABLED]
        applied = await remote.evt_configurationApplied.next(flush=False, timeout=STD_TIMEOUT)
        assert applied.configurations == "_init.yaml,_test.yaml,good_override.yaml"
        assert csc.config.string0 == "good override"
