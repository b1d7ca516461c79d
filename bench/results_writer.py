"""Results database: one transaction per write against ResultsWriter's batches.

What it models: an image arrives while the pool is behind and its predecessors' queued jobs are
dropped, so the CSC records a few hundred final job rows at once. The reference is the same
writes, one transaction each, in the same process; the figure is batched time / reference time,
on a quiet disk and while another thread writes and fsyncs a large file (as the camera does
while it writes a visit's raws).

    python bench/results_writer.py [--jobs 400] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import statistics
import tempfile
import threading
import time

from lsst.ts.rapidanalysis.results import ResultsDatabase, ResultsWriter

FIELDS = dict(
    instrument="LSSTCam",
    pipeline="sfm",
    image_name="MC_O_20251115_000001",
    data_id={"obsid": "MC_O_20251115_000001"},
    trigger="autonomous",
    state="aborted",
    success=False,
    exit_code=6,
    error_report="dropped: the backlog is full",
    submit_time=1.0,
    end_time=2.0,
)


def one_by_one(path: pathlib.Path, n: int) -> float:
    with ResultsDatabase(path) as db:
        start = time.perf_counter()
        for i in range(n):
            db.record_job(f"j{i}", **FIELDS)
        return time.perf_counter() - start


async def batched(path: pathlib.Path, n: int) -> float:
    writer = ResultsWriter(ResultsDatabase(path))
    start = time.perf_counter()
    await asyncio.gather(*(writer.write(lambda db, i=i: db.record_job(f"j{i}", **FIELDS)) for i in range(n)))
    elapsed = time.perf_counter() - start
    await writer.close()
    return elapsed


class DiskLoad:
    """A thread writing 8 MB blocks to a file and fsyncing each, until stopped."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.path = directory / "load.bin"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        block = os.urandom(8 << 20)
        with open(self.path, "wb") as f:
            while not self.stop.is_set():
                f.write(block)
                f.flush()
                os.fsync(f.fileno())
                if f.tell() > 2 << 30:
                    f.seek(0)

    def __enter__(self) -> DiskLoad:
        self.thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.path.unlink(missing_ok=True)


def measure(directory: pathlib.Path, n: int, repeats: int) -> tuple[float, float]:
    refs, ours = [], []
    for r in range(repeats):
        refs.append(one_by_one(directory / f"ref{r}.sqlite3", n))
        ours.append(asyncio.run(batched(directory / f"batch{r}.sqlite3", n)))
    return statistics.median(refs), statistics.median(ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(tmp)
        print(f"{args.jobs} final job rows, median of {args.repeats}")
        for label in ("quiet disk", "disk under fsync load"):
            if label == "quiet disk":
                ref, ours = measure(directory, args.jobs, args.repeats)
            else:
                with DiskLoad(directory):
                    ref, ours = measure(directory, args.jobs, args.repeats)
            print(
                f"  {label:22s} one transaction each {ref * 1e3:7.1f} ms ({ref / args.jobs * 1e3:.2f} ms/row); "
                f"batched {ours * 1e3:7.1f} ms; ratio {ours / ref:.2f}"
            )


if __name__ == "__main__":
    main()
