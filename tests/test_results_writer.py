"""ResultsWriter on a real SQLite file: writes in order, coalesced into few transactions, none lost."""

from __future__ import annotations

import asyncio
import pathlib

import pytest

from lsst.ts.rapidanalysis.results import ResultsDatabase, ResultsWriter, open_results

T0 = 1_763_000_000.0


def queued(job_id: str) -> dict:
    return dict(
        instrument="LSSTCam",
        pipeline="sfm",
        image_name="MC_O_20251115_000001",
        data_id={"obsid": "MC_O_20251115_000001", "detectors": [int(job_id[1:]) % 189]},
        trigger="autonomous",
        state="queued",
        submit_time=T0,
    )


def dropped() -> dict:
    return dict(
        state="aborted", success=False, exit_code=6, error_report="dropped: the backlog is full", end_time=T0 + 5
    )


async def test_many_writes_few_transactions_in_order(tmp_path: pathlib.Path) -> None:
    """A stream's burst: each job recorded queued then dropped, 400 jobs asked for at once."""
    writer = ResultsWriter(ResultsDatabase(tmp_path / "ra.sqlite3"))
    futures = []
    for i in range(400):
        job_id = f"j{i}"
        futures.append(writer.write(lambda db, job_id=job_id: db.record_job(job_id, **queued(job_id))))
        futures.append(writer.write(lambda db, job_id=job_id: db.record_job(job_id, **dropped())))
    await asyncio.gather(*futures)
    assert writer.n_writes == 800
    # The first write runs alone (nothing else was queued yet); the rest pile up behind it.
    assert writer.n_transactions <= 4, writer.n_transactions
    await writer.close()
    with open_results(tmp_path / "ra.sqlite3") as db:
        jobs = db.jobs()
    assert len(jobs) == 400
    # Order kept: every job's final row is the later one.
    assert set(jobs["state"]) == {"aborted"}
    assert set(jobs["error_report"]) == {"dropped: the backlog is full"}


async def test_bad_write_fails_alone(tmp_path: pathlib.Path) -> None:
    """A rejected write gets its own error; the writes batched with it still land."""
    writer = ResultsWriter(ResultsDatabase(tmp_path / "ra.sqlite3"))
    good = [writer.write(lambda db, i=i: db.record_job(f"j{i}", **queued(f"j{i}"))) for i in range(10)]
    bad = writer.write(lambda db: db.record_job("jbad", colour="blue"))
    later = writer.write(lambda db: db.record_job("j99", **queued("j99")))
    await asyncio.gather(*good, later)
    with pytest.raises(ValueError, match="unknown job fields"):
        await bad
    await writer.close()
    with open_results(tmp_path / "ra.sqlite3") as db:
        assert sorted(db.jobs()["job_id"]) == sorted([f"j{i}" for i in range(10)] + ["j99"])


async def test_close_runs_pending_writes(tmp_path: pathlib.Path) -> None:
    """Closing (the CSC leaving ENABLED) writes what was asked for first, then refuses more."""
    writer = ResultsWriter(ResultsDatabase(tmp_path / "ra.sqlite3"))
    for i in range(50):
        writer.write(lambda db, i=i: db.record_job(f"j{i}", **queued(f"j{i}")))
    await writer.close()
    assert writer.database.closed
    with pytest.raises(RuntimeError, match="closed"):
        writer.write(lambda db: db.record_job("late", **queued("j1")))
    with open_results(tmp_path / "ra.sqlite3") as db:
        assert len(db.jobs()) == 50


def test_batch_is_one_transaction(tmp_path: pathlib.Path) -> None:
    """Inside batch(), an error keeps none of the batch's writes."""
    with ResultsDatabase(tmp_path / "ra.sqlite3") as db:
        db.record_job("kept", **queued("j1"))
        with pytest.raises(ValueError):
            with db.batch():
                db.record_job("j1", **queued("j1"))
                db.record_job("j2", **queued("j2"))
                db.record_job("j3", colour="blue")
        assert list(db.jobs()["job_id"]) == ["kept"]
        with db.batch():
            db.record_job("j1", **queued("j1"))
            with db.batch():  # nested: part of the outer one
                db.record_job("j2", **queued("j2"))
        assert sorted(db.jobs()["job_id"]) == ["j1", "j2", "kept"]
