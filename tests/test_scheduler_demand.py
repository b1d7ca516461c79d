"""The autoscaling target a scheduler with the `scheduler_setup` preload answers: Dask's own or the CSCs'."""

from __future__ import annotations

import pytest

from lsst.ts.rapidanalysis.dispatch.scheduler_setup import MAX_DEMAND_AGE, workers_wanted

NOW = 1_800_000_000.0


def test_no_demand_is_dask_s_own_target() -> None:
    assert workers_wanted(3, {}, [1, 1], NOW) == 3
    assert workers_wanted(0, {}, [], NOW) == 0


def test_demands_of_several_cscs_add_up_in_workers_of_their_threads() -> None:
    demands = {"LSSTCam": {"slots": 189, "time": NOW - 1}, "LATISS": {"slots": 2, "time": NOW}}
    assert workers_wanted(0, demands, [1, 1, 1], NOW) == 191
    # Workers of 8 threads: 191 slots fill 24 of them.
    assert workers_wanted(0, demands, [8, 8], NOW) == 24
    # Dask's own target wins when larger.
    assert workers_wanted(300, demands, [1], NOW) == 300


def test_a_stale_demand_counts_for_nothing() -> None:
    demands = {"LSSTCam": {"slots": 189, "time": NOW - MAX_DEMAND_AGE - 1}, "LATISS": {"slots": 1, "time": NOW}}
    assert workers_wanted(0, demands, [1], NOW) == 1
    # A clock far ahead is not trusted either.
    assert workers_wanted(0, {"X": {"slots": 5, "time": NOW + 3600}}, [1], NOW) == 0


@pytest.mark.parametrize(
    "demand",
    [
        None,
        "189",
        {"slots": "189", "time": NOW},
        {"slots": -4, "time": NOW},
        {"slots": True, "time": NOW},
        {"slots": 3.5, "time": NOW},
        {"slots": 5},
        {"slots": 5, "time": "now"},
        {"time": NOW},
    ],
)
def test_whatever_a_client_wrote_the_scheduler_answers(demand: object) -> None:
    assert workers_wanted(2, {"LSSTCam": demand, "LATISS": {"slots": 4, "time": NOW}}, [1], NOW) == 4
    assert workers_wanted(2, demand, [1], NOW) == 2  # type: ignore[arg-type]
