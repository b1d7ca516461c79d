"""dispatch.affinity (which worker runs which job) and dispatch.path_map (paths as workers see them).

Pure logic: the rules of each module's docstring, no Dask.
"""

from __future__ import annotations

import collections
import dataclasses

import pytest

from lsst.ts.rapidanalysis.dispatch.affinity import WorkerSlots, affinity_key, home_worker, place
from lsst.ts.rapidanalysis.dispatch.path_map import PathMap, PathMapError

WORKERS = [f"tcp://10.0.0.{n}:40000" for n in range(1, 11)]


@dataclasses.dataclass
class J:
    job_id: str
    priority: int = 0


def keys_of(jobs: list[J], instrument: str = "LSSTCam") -> dict[str, str | None]:
    return {j.job_id: affinity_key(instrument, (int(j.job_id),)) for j in jobs}


# -- homes --


def test_affinity_key_is_the_single_detector() -> None:
    assert affinity_key("LSSTCam", (42,)) == "LSSTCam:42"
    assert affinity_key("LSSTCam", None) is None
    assert affinity_key("LSSTCam", (1, 2)) is None


def test_homes_spread_evenly_and_repeat() -> None:
    homes = [home_worker(f"LSSTCam:{d}", WORKERS) for d in range(189)]
    assert homes == [home_worker(f"LSSTCam:{d}", list(reversed(WORKERS))) for d in range(189)]  # order-free
    counts = collections.Counter(homes)
    assert set(counts) == set(WORKERS)
    assert max(counts.values()) <= 2 * 189 / len(WORKERS)  # no worker gets twice its share
    assert home_worker("LSSTCam:1", []) is None


def test_a_worker_leaving_moves_only_its_own_detectors() -> None:
    before = {d: home_worker(f"LSSTCam:{d}", WORKERS) for d in range(189)}
    gone = WORKERS[3]
    after = {d: home_worker(f"LSSTCam:{d}", [w for w in WORKERS if w != gone]) for d in range(189)}
    moved = {d for d in before if before[d] != after[d]}
    assert moved == {d for d in before if before[d] == gone}
    # And coming back (or a new worker) takes only a share of them.
    joined = {d: home_worker(f"LSSTCam:{d}", [*WORKERS, "tcp://10.0.0.99:40000"]) for d in range(189)}
    assert all(joined[d] in (before[d], "tcp://10.0.0.99:40000") for d in before)


# -- placement --


def test_each_job_goes_home_when_its_home_is_free() -> None:
    jobs = [J(str(d)) for d in range(20)]
    workers = [WorkerSlots(w, 4) for w in WORKERS[:5]]
    placed = place(jobs, keys_of(jobs), workers, free_total=20)
    assert len(placed) == 20
    homes = {j.job_id: home_worker(f"LSSTCam:{j.job_id}", WORKERS[:5]) for j in jobs}
    per_worker = collections.Counter(address for _, address in placed)
    assert all(n <= 4 for n in per_worker.values())
    at_home = sum(address == homes[job_id] for job_id, address in placed)
    # Every job whose home still had room when it came up went home; the rest filled free workers.
    assert at_home >= 20 - sum(max(0, n - 4) for n in collections.Counter(homes.values()).values())


def test_a_busy_home_does_not_leave_a_free_worker_idle() -> None:
    jobs = [J("7")]
    home = home_worker("LSSTCam:7", WORKERS[:2])
    other = next(w for w in WORKERS[:2] if w != home)
    workers = [WorkerSlots(home, 1, busy=1), WorkerSlots(other, 1)]
    assert place(jobs, keys_of(jobs), workers, free_total=1) == [("7", other)]


def test_a_job_whose_home_is_free_goes_before_one_of_the_same_priority_that_would_wander() -> None:
    home_a = home_worker("LSSTCam:1", WORKERS[:2])
    other = next(w for w in WORKERS[:2] if w != home_a)
    # Find a detector whose home is the other worker.
    d = next(d for d in range(2, 500) if home_worker(f"LSSTCam:{d}", WORKERS[:2]) == other)
    jobs = [J("1"), J(str(d))]
    workers = [WorkerSlots(home_a, 1, busy=1), WorkerSlots(other, 1)]
    # Job 1 comes first but its home is busy; job d's home is free: d goes home, 1 waits.
    assert place(jobs, keys_of(jobs), workers, free_total=1) == [(str(d), other)]


def test_priority_is_never_overtaken_for_affinity() -> None:
    home_a = home_worker("LSSTCam:1", WORKERS[:2])
    other = next(w for w in WORKERS[:2] if w != home_a)
    d = next(d for d in range(2, 500) if home_worker(f"LSSTCam:{d}", WORKERS[:2]) == other)
    jobs = [J("1", priority=1), J(str(d), priority=0)]
    workers = [WorkerSlots(home_a, 1, busy=1), WorkerSlots(other, 1)]
    assert place(jobs, keys_of(jobs), workers, free_total=1) == [("1", other)]


def test_jobs_without_a_home_and_affinity_off_fill_the_most_free_worker() -> None:
    jobs = [J("a"), J("b"), J("c")]
    workers = [WorkerSlots(WORKERS[0], 2, busy=1), WorkerSlots(WORKERS[1], 2)]
    assert place(jobs, {}, workers, free_total=3) == [("a", WORKERS[1]), ("b", WORKERS[0]), ("c", WORKERS[1])]
    numbered = [J("1"), J("2")]
    off = place(numbered, keys_of(numbered), workers, free_total=3, affinity=False)
    assert off == [("1", WORKERS[1]), ("2", WORKERS[0])]


def test_placement_stops_at_the_pools_free_total() -> None:
    jobs = [J(str(d)) for d in range(10)]
    workers = [WorkerSlots(w, 4) for w in WORKERS[:2]]
    assert len(place(jobs, keys_of(jobs), workers, free_total=3)) == 3  # 5 jobs re-run where we do not know
    assert place(jobs, keys_of(jobs), [], free_total=8) == []
    assert place([], {}, workers, free_total=8) == []


# -- path map --

MAP = PathMap.from_config(
    [
        {"csc": "/data/lsstdata", "worker": "/mnt/raw"},
        {"csc": "/data/lsstdata/products", "worker": "/scratch/out"},
    ]
)


def test_longest_prefix_wins_both_ways() -> None:
    assert MAP.to_worker("/data/lsstdata/LSSTCam/20251115/x.fits") == "/mnt/raw/LSSTCam/20251115/x.fits"
    assert MAP.to_worker("/data/lsstdata/products/a/b.png") == "/scratch/out/a/b.png"
    assert MAP.to_worker("/data/lsstdata") == "/mnt/raw"
    assert MAP.to_csc("/scratch/out/a/b.png") == "/data/lsstdata/products/a/b.png"
    assert MAP.to_csc("/mnt/raw/x") == "/data/lsstdata/x"
    # A sibling that only shares the characters of a prefix is not under it.
    with pytest.raises(PathMapError, match=r"/data/lsstdata2/x is not under any path_map csc directory"):
        MAP.to_worker("/data/lsstdata2/x")


def test_an_unmapped_path_is_an_error_that_says_what_is_mapped() -> None:
    with pytest.raises(PathMapError) as info:
        MAP.to_worker("/home/ra/raw/x.fits")
    message = str(info.value)
    assert "/home/ra/raw/x.fits" in message and "/data/lsstdata, /data/lsstdata/products" in message
    assert not MAP.covers("/home/ra/raw/x.fits") and MAP.covers("/data/lsstdata/y")
    assert MAP.to_csc("/elsewhere/p.png") == "/elsewhere/p.png"  # a product written elsewhere is kept
    with pytest.raises(PathMapError, match="not an absolute path"):
        MAP.to_worker("relative/x.fits")


def test_an_empty_map_changes_nothing() -> None:
    empty = PathMap.from_config([])
    assert not empty and empty.to_worker("/a/b") == "/a/b" and empty.to_csc("/a/b") == "/a/b"
    assert empty.results_to_csc({"p": "/a"}) == {"p": "/a"}


def test_results_are_mapped_back_wherever_they_hold_a_path() -> None:
    result = {
        "products": [{"path": "/scratch/out/p.png", "mime_type": "image/png"}],
        "summary": {"detectors": [{"binnedImage": "/scratch/out/b.fits", "n": 3}], "note": "no /path here"},
    }
    back = MAP.results_to_csc(result)
    assert back["products"][0]["path"] == "/data/lsstdata/products/p.png"
    assert back["summary"]["detectors"][0] == {"binnedImage": "/data/lsstdata/products/b.fits", "n": 3}
    assert back["summary"]["note"] == "no /path here"


@pytest.mark.parametrize(
    "entries, match",
    [
        ([{"csc": "data", "worker": "/mnt"}], "csc 'data' is not an absolute path"),
        ([{"csc": "/data", "worker": "mnt"}], "worker 'mnt' is not an absolute path"),
        ([{"csc": "/data", "worker": "/a"}, {"csc": "/data/", "worker": "/b"}], "gives csc '/data' twice"),
    ],
)
def test_a_malformed_map_is_refused(entries: list, match: str) -> None:
    with pytest.raises(PathMapError, match=match):
        PathMap.from_config(entries)
