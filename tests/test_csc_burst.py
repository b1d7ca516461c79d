"""RapidAnalysisCsc: every processData is answered, whatever its strings hold and however many
are in flight at once.

Real parts only (see test_csc.py): the CSC and a Remote on real DDS, a real Dask pool, a real
results database; the burst test runs the CSC in its own process (``run_rapid_analysis``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import time
import unittest
from typing import Any

import pytest
import yaml

from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.results.database import open_results
from lsst.ts.rapidanalysis.sal import AckError, Domain, Remote, SalRetCode, State
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from lsst.ts.rapidanalysis.sal.topics import MAX_FAILED_RESULT_BYTES
from lsst.ts.rapidanalysis.sim.csc_process import start_rapid_analysis
from test_csc import LATISS_OBSID, LSSTCAM_OBSID, STD_TIMEOUT, TEST_CONFIG_DIR, RapidAnalysisTestMixin

HUGE = 100_000
SURROGATE = json.loads('"\\ud800"')
ARABIC_INDIC = "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
FULL_WIDTH = "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19"
GOOD = json.dumps({"obsid": LATISS_OBSID})


class ForeignStr(str):
    """A field as a non-Python client may write it: a lone surrogate as CESU-8, not UTF-8."""

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        return b"test.\xed\xa0\x80succeed"


def in_script(digits: str, text: str) -> str:
    """``text`` with its ASCII digits written in another script's digits."""
    return "".join(digits[int(c)] if c.isascii() and c.isdigit() else c for c in text)


def readable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return all(c.isprintable() or c in "\n\t" for c in text)


# (dataId, pipeline, config, text the CMD_FAILED result must contain)
STRANGE_STRINGS: dict[str, tuple[str, str, str, str]] = {
    "dataId: unknown key, lone surrogate": ('{"\\ud800": 1}', "test.succeed", "", "unknown key(s) '\\ud800'"),
    "dataId: obsid, lone surrogate": ('{"obsid": "\\udfff"}', "test.succeed", "", "obsid '\\udfff' is not of the form"),
    "dataId: NUL": (json.dumps({"obsid": LATISS_OBSID + "\0"}), "test.succeed", "", "a control character"),
    "dataId: raw NUL": ("{\0}", "test.succeed", "", "dataId is not valid JSON"),
    "dataId: 100 kB": (json.dumps({"obsid": "A" * HUGE}), "test.succeed", "", "longer than 4096 characters"),
    "dataId: not JSON": ("obsid=AT_O_20251115_000001", "test.succeed", "", "dataId is not valid JSON"),
    "pipeline: NUL": (GOOD, "test.succeed\0", "", "Unknown pipeline 'test.succeed\\x00'"),
    "pipeline: 100 kB": (GOOD, "p" * HUGE, "", "Unknown pipeline 'pppp"),
    "pipeline: control characters": (GOOD, "\x1b[2J", "", "Unknown pipeline '\\x1b[2J'"),
    "config: key with a lone surrogate": (
        GOOD,
        "test.succeed",
        '{"\\ud800": 1}',
        "bad configuration for pipeline 'test.succeed'",
    ),
    "config: value with a lone surrogate": (GOOD, "test.succeed", '{"value": "\\udc00"}', "value"),
    "config: 100 kB": (GOOD, "test.succeed", json.dumps({"valu": "z" * HUGE}), "bad configuration"),
    "config: not JSON": (GOOD, "test.succeed", "value=\0", "config is not valid JSON"),
}

# Identifiers that must be refused (issue 13: a trailing newline or non-ASCII digits were queued).
MALFORMED_IDS: dict[str, tuple[str, str]] = {
    "obsid + newline": (json.dumps({"obsid": LATISS_OBSID + "\n"}), "white space (or a newline)"),
    "obsid, Arabic-Indic digits": (
        json.dumps({"obsid": in_script(ARABIC_INDIC, LATISS_OBSID)}, ensure_ascii=False),
        "which is not ASCII",
    ),
    "obsid, full-width digits": (json.dumps({"obsid": in_script(FULL_WIDTH, LATISS_OBSID)}), "which is not ASCII"),
    "groupId + newline": (json.dumps({"groupId": "2025-11-15T21:03:14.123\n"}), "white space (or a newline)"),
    "groupId, full-width digits": (
        json.dumps({"groupId": in_script(FULL_WIDTH, "2025-11-15T21:03:14")}),
        "which is not ASCII",
    ),
    "dayObs, string of Arabic-Indic digits": (
        json.dumps({"dayObs": in_script(ARABIC_INDIC, "20251115"), "seqNum": 1}),
        "dayObs must be an integer YYYYMMDD",
    ),
    "seqNum, bool": ('{"dayObs": 20251115, "seqNum": true}', "not a boolean"),
    "seqNum, huge": ('{"dayObs": 20251115, "seqNum": ' + "9" * 1000 + "}", "seqNum must be an integer 1–999999"),
    "seqNum, NaN": ('{"dayObs": 20251115, "seqNum": NaN}', "NaN, which is not a JSON value"),
    "obsid, nested": (json.dumps({"obsid": {"obsid": LATISS_OBSID}}), "it must be a string, not an object"),
    "duplicate keys": (f'{{"obsid": "{LATISS_OBSID}", "obsid": "AT_O_20251115_000002"}}', "gives key 'obsid' twice"),
    "detector name + newline": (
        json.dumps({"obsid": LATISS_OBSID, "detectors": ["R00_S00\n"]}),
        "is not of the form Rxy_Sxy",
    ),
}


class CscStringsTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    async def send(self, data_id: str, pipeline: str, config: str, foreign: str = "") -> Any:
        """Send processData; return the final ack (an AckError's ack if it failed).

        ``foreign`` names a field to send as bytes that are not UTF-8 (ForeignStr), as a
        non-Python client could.
        """
        cmd = self.remote.cmd_processData
        cmd.set(dataId=data_id, pipeline=pipeline, config=config)
        if foreign:
            setattr(cmd.data, foreign, ForeignStr(getattr(cmd.data, foreign)))
        try:
            return await cmd.start(timeout=STD_TIMEOUT)
        except AckError as e:
            return e.ackcmd

    def check_failed(self, ackcmd: Any, expected: str, what: str) -> None:
        assert ackcmd.ack == SalRetCode.CMD_FAILED, f"{what}: {ackcmd}"
        result = ackcmd.result
        assert readable(result), f"{what}: {ascii(result[:300])}"
        assert len(result.encode()) <= MAX_FAILED_RESULT_BYTES + 100, f"{what}: {len(result.encode())} bytes"
        assert expected in result, f"{what}: {result[:300]!r}"
        self.assert_enabled()

    async def test_any_string_in_any_field_gets_a_clear_failure(self) -> None:
        """Lone surrogates, NUL, control characters, 100 kB, non-JSON, and bytes that are not
        UTF-8, in dataId, pipeline and config: each processData ends CMD_FAILED with a readable,
        bounded message; the CSC keeps working and none of them became a job."""
        async with self.enabled_csc():
            for what, (data_id, pipeline, config, expected) in STRANGE_STRINGS.items():
                self.check_failed(await self.send(data_id, pipeline, config), expected, what)
            for field, expected in (
                ("dataId", "dataId is not valid JSON"),
                ("pipeline", "Unknown pipeline 'test.\\udced\\udca0\\udc80succeed'"),
                ("config", "config is not valid JSON"),
            ):
                ackcmd = await self.send(GOOD, "test.succeed", '{"value": 1}', foreign=field)
                self.check_failed(ackcmd, expected, f"{field} not UTF-8")

            job_id = await self.process()
            data = await self.next_job_result(job_id)
            assert data.success, data
            await self.assert_no_more_job_results()
            with open_results(self.database_path) as db:
                assert list(db.jobs(newest_first=False)["job_id"]) == [job_id]

    async def test_malformed_identifiers_fail(self) -> None:
        """Each malformed identifier is CMD_FAILED saying what is wrong; nothing is queued, stored
        or made on disk under its name."""
        async with self.enabled_csc():
            for what, (data_id, expected) in MALFORMED_IDS.items():
                self.check_failed(await self.send(data_id, "test.succeed", ""), expected, what)
            job_id = await self.process(config={"write_product": True})
            assert (await self.next_job_result(job_id)).success
            await self.assert_no_more_job_results()
            with open_results(self.database_path) as db:
                assert list(db.jobs(newest_first=False)["job_id"]) == [job_id]
            odd = [p for p in self.root.rglob("*") if not (p.name.isascii() and p.name.isprintable())]
            assert not odd, odd


@pytest.fixture
def burst_config(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """The test configuration, with a queue long enough for a burst."""
    monkeypatch.setenv("RA_TEST_ROOT", str(tmp_path))
    monkeypatch.delenv("TS_CONFIG_OCS_DIR", raising=False)
    config = yaml.safe_load((TEST_CONFIG_DIR / "_init.yaml").read_text())
    config["max_queue_length"] = 2000
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "_init.yaml").write_text(yaml.safe_dump(config))
    return config_dir


async def test_burst_of_189_process_data_from_another_process(burst_config: pathlib.Path) -> None:
    """189 processData in flight at once (one per LSSTCam science detector, as a script might)
    to the CSC in its own process: each gets CMD_COMPLETE with its jobId, and each job exactly
    one jobResult. (Before, 15–47 of them timed out with CMD_NOACK.)"""
    detectors = [d.id for d in get_instrument("LSSTCam").science_detectors]
    assert len(detectors) == 189
    process = await start_rapid_analysis(3, burst_config, simulate=True)
    try:
        async with (
            Domain() as domain,
            Remote(domain, "RapidAnalysis", 3, include=["summaryState", "jobResult"]) as remote,
        ):
            results: dict[str, list[Any]] = {}
            all_in = asyncio.Event()

            def on_job_result(data: Any) -> None:
                results.setdefault(data.jobId, []).append(data)
                if len(results) >= 189:
                    all_in.set()

            remote.evt_jobResult.callback = on_job_result
            deadline = time.monotonic() + 120
            while (await remote.evt_summaryState.next(flush=False, timeout=120)).summaryState != State.ENABLED:
                assert time.monotonic() < deadline, "the CSC never reached ENABLED"

            async def send(detector: int) -> Any:
                return await remote.cmd_processData.set_start(
                    dataId=json.dumps({"obsid": LSSTCAM_OBSID, "detectors": [detector]}),
                    pipeline="test.succeed",
                    timeout=60,
                )

            outcomes = await asyncio.gather(*(send(d) for d in detectors), return_exceptions=True)
            failed = [o for o in outcomes if isinstance(o, BaseException)]
            assert not failed, f"{len(failed)} of 189 processData failed; first: {failed[0]!r}"
            job_ids = [json.loads(o.result)["jobId"] for o in outcomes]
            assert len(set(job_ids)) == 189

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_in.wait(), 120)
            await asyncio.sleep(0.5)  # a second jobResult for any job would have come by now
            assert set(results) == set(job_ids), f"{len(set(job_ids) - set(results))} jobs without a jobResult"
            twice = {k: len(v) for k, v in results.items() if len(v) != 1}
            assert not twice, f"jobs with more than one jobResult: {twice}"
            assert all(v[0].success for v in results.values())
        assert process.returncode is None, "the CSC process died"
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STD_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
