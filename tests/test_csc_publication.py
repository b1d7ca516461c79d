"""Publishing a job's results when part of it cannot be published as it is.

Each part (database rows, product announcements, telemetry samples, the jobResult) stands alone:
whatever one of them raises is reported in the jobResult and the log, and never loses the job's
one jobResult. Real parts only, as in test_csc.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import pathlib
import re
import unittest
import urllib.parse

from lsst.ts.rapidanalysis.results.database import open_results
from lsst.ts.rapidanalysis.sal.testutils import BaseCscTestCase
from test_csc import LATISS_OBSID, STD_TIMEOUT, RapidAnalysisTestMixin

TRUNCATED_RE = re.compile(r"…\(truncated, (\d+) bytes\)$")


class CscPublicationTestCase(RapidAnalysisTestMixin, BaseCscTestCase, unittest.IsolatedAsyncioTestCase):
    def log_messages(self) -> str:
        messages = []
        while self.remote.evt_logMessage.nqueued:
            messages.append(self.remote.evt_logMessage.get_oldest().message)
        return "\n".join(messages)

    async def test_product_urls_longer_than_their_field(self) -> None:
        """output_root of ~250 characters: every URL is shortened, saying so; no jobResult is lost.

        Before the fix, largeFileObjectAvailable refused the URL (256-byte field) and the exception
        lost the job's jobResult, while the database said the job had succeeded.
        """
        output_root = self.root / ("o" * 100) / ("p" * 100)
        self.monkeypatch.setenv("RA_TEST_LONG_OUTPUT_ROOT", str(output_root))
        assert len(str(output_root)) >= 220
        async with self.enabled_csc(override="long_output_root.yaml"):
            job_ids = [
                await self.process(data_id={"dayObs": 20251115, "seqNum": n}, config={"write_product": True})
                for n in (1, 2, 3)
            ]
            results = await self.job_results(job_ids)
            announced = {}
            for _ in job_ids:
                lfo = await self.remote.evt_largeFileObjectAvailable.next(flush=False, timeout=STD_TIMEOUT)
                announced[lfo.id] = lfo
            assert sorted(announced) == sorted(job_ids)
            with open_results(output_root / "results.sqlite3") as db:
                for data in results:
                    # The jobResult: success, and it says what was shortened and where the whole URL is.
                    assert data.success and data.exitCode == 0 and data.errorReport == "", data
                    result = json.loads(data.result)
                    (note,) = result["publication"]
                    assert "largeFileObjectAvailable" in note and "url" in note and "256" in note, note
                    assert "results database" in note, note
                    # The announcement: a URL shortened to its field, saying how long it was.
                    url = announced[data.jobId].url
                    assert len(url.encode()) <= 256, len(url.encode())
                    match = TRUNCATED_RE.search(url)
                    assert match is not None, url
                    # The database: the job succeeded, with the whole URL and the same result.
                    row = db.job(data.jobId)
                    assert row["state"] == "succeeded" and row["success"] and row["exit_code"] == 0, row
                    assert row["result"] == result, (row["result"], result)
                    products = db.products(job_id=data.jobId)
                    assert len(products) == 1
                    full_url = str(products["url"][0])
                    assert len(full_url.encode()) == int(match.group(1)) > 256
                    assert full_url.startswith(url[: url.index("…")]), (full_url, url)
                    path = pathlib.Path(urllib.parse.unquote(urllib.parse.urlparse(full_url).path))
                    assert str(path) == result["products"][0] == str(products["path"][0])
                    assert path.is_relative_to(output_root) and await asyncio.to_thread(path.is_file)
            await self.assert_no_more_job_results()
            text = self.log_messages()
            assert all(job_id in text for job_id in job_ids), text
            assert "not everything was published" in text, text
            self.assert_enabled()

    async def test_bad_telemetry_sample(self) -> None:
        """A pipeline's bad telemetry sample is rejected alone: the jobResult comes, poolStatus goes on.

        Before the fix, a sample setting a private field of poolStatus raised an exception the CSC
        did not catch: no jobResult for the job, and every later poolStatus write failed.
        """
        async with self.enabled_csc():
            await self.remote.tel_poolStatus.next(flush=True, timeout=STD_TIMEOUT)
            spectrum = {"imageName": LATISS_OBSID, "continuumRate": 12.5, "nGoodRows": 3}
            telemetry = {"poolStatus": {"private_rcvStamp": "not a time"}, "spectrumMetrics": spectrum}
            job_id = await self.process(config={"telemetry": telemetry})
            data = await self.next_job_result(job_id)
            assert data.success and data.errorReport == "", data
            (note,) = json.loads(data.result)["publication"]
            assert "poolStatus rejected" in note and "CSC's own topic" in note, note
            # The good sample of the same job is written.
            sample = await self.remote.tel_spectrumMetrics.next(flush=False, timeout=STD_TIMEOUT)
            assert (sample.imageName, sample.continuumRate, sample.nGoodRows) == (LATISS_OBSID, 12.5, 3)
            # poolStatus goes on, with the CSC's values.
            for _ in range(2):
                status = await self.remote.tel_poolStatus.next(flush=True, timeout=STD_TIMEOUT)
                assert status.nWorkers == 2 and status.jobsSucceeded == 1, status

            # A metric topic: a private field, then a value of the wrong type; each is rejected
            # alone, and the topic's next sample is written whole (NaN where a value is null).
            bad_samples = [
                ({"imageName": LATISS_OBSID, "private_rcvStamp": "x"}, "no field(s) 'private_rcvStamp'"),
                ({"imageName": LATISS_OBSID, "nGoodRows": "many"}, "nGoodRows='many' must be an integer"),
            ]
            for fields, expected in bad_samples:
                job_id = await self.process(config={"telemetry": {"spectrumMetrics": fields}})
                data = await self.next_job_result(job_id)
                assert data.success, data
                (note,) = json.loads(data.result)["publication"]
                assert "spectrumMetrics rejected" in note and expected in note, note
            assert self.remote.tel_spectrumMetrics.nqueued == 0
            good = {"imageName": "AT_O_20251115_000002", "continuumRate": None, "nGoodRows": 9}
            job_id = await self.process(config={"telemetry": {"spectrumMetrics": good}})
            data = await self.next_job_result(job_id)
            assert data.success and "publication" not in json.loads(data.result), data
            sample = await self.remote.tel_spectrumMetrics.next(flush=False, timeout=STD_TIMEOUT)
            assert sample.imageName == "AT_O_20251115_000002" and sample.nGoodRows == 9, sample
            assert math.isnan(sample.continuumRate), sample
            status = await self.remote.tel_poolStatus.next(flush=True, timeout=STD_TIMEOUT)
            assert status.jobsSucceeded == 4 and status.jobsFailed == 0, status
            await self.assert_no_more_job_results()
            with open_results(self.database_path) as db:
                jobs = db.jobs()
                assert set(jobs["state"]) == {"succeeded"} and len(jobs) == 4
            text = self.log_messages()
            assert "poolStatus rejected" in text and "private_rcvStamp" in text, text
            self.assert_enabled()


if __name__ == "__main__":
    unittest.main()
