"""Focal-plane selection: patterns, variation, guaranteed visits, validation and automatic down-selection.

Expected values are written out by hand from ra-algorithms.md (§1, §6), not computed with the code under test.
"""

from __future__ import annotations

import pytest

from lsst.ts.rapidanalysis.data.camera import get_instrument
from lsst.ts.rapidanalysis.dispatch.focal_plane import (
    LADDER,
    PATTERNS,
    FocalPlaneSelector,
    FocalPlaneVariation,
    Selection,
    ThroughputModel,
    WorkerMode,
    parse_detector_list,
    pattern_detectors,
    spread_order,
)

CAM = get_instrument("LSSTCam")
COMCAM = get_instrument("LSSTComCam")
LATISS = get_instrument("LATISS")
IMAGING = frozenset(range(189))  # LSSTCam science CCDs are ids 0-188 (§6)

# The fixed id sets of rubintv_production, copied from the reference (§1).
DIAG = {90, 94, 98, 144, 148, 152, 36, 40, 44}
DIAG2 = {92, 94, 96, 132, 130, 128, 58, 56, 60}
HORIZONTAL = {75, 76, 77, 84, 85, 86, 93, 94, 95, 102, 103, 104, 111, 112, 113}
VERTICAL = {10, 13, 16, 46, 49, 52, 91, 94, 97, 136, 139, 142, 172, 175, 178}
# id0 of each science raft (§6).
RAFT_ID0 = {
    "R01": 0, "R02": 9, "R03": 18, "R10": 27, "R11": 36, "R12": 45, "R13": 54, "R14": 63, "R20": 72, "R21": 81,
    "R22": 90, "R23": 99, "R24": 108, "R30": 117, "R31": 126, "R32": 135, "R33": 144, "R34": 153, "R41": 162,
    "R42": 171, "R43": 180,
}  # fmt: skip


def raft_ids(*rafts: str) -> frozenset[int]:
    return frozenset(RAFT_ID0[r] + i for r in rafts for i in range(9))


def rafts_of(ids: frozenset[int]) -> set[str]:
    return {CAM.by_id[i].raft for i in ids}


def model(cost: float, cadence: float = 34.0, margin: float = 0.85) -> ThroughputModel:
    """A model whose cost is whatever was last recorded (window 1), with a steady cadence."""
    m = ThroughputModel(margin=margin, cost_window=1, min_cost_samples=1, min_cadence_samples=1)
    m.record_cost(cost)
    m.record_arrival(0.0)
    m.record_arrival(cadence)
    return m


# Enumerations


def test_enum_values_match_sal() -> None:
    assert [(e.name, int(e)) for e in FocalPlaneVariation] == [
        ("FIXED", 0),
        ("ALTERNATING_PHASE", 1),
        ("ALTERNATING_BY_TWOS", 2),
    ]
    assert [(e.name, int(e)) for e in WorkerMode] == [("WAITING", 0), ("CONSUMING", 1), ("MURDEROUS", 2)]
    assert PATTERNS == (
        "all",
        "ccd_checkerboard",
        "raft_checkerboard",
        "5-on-a-die",
        "minimal",
        "ultra-minimal",
        "e2v",
        "itl",
        "custom",
    )


# LSSTCam patterns


@pytest.mark.parametrize(
    "pattern, phase, count",
    [
        ("all", 0, 189),
        ("ccd_checkerboard", 0, 96),
        ("ccd_checkerboard", 1, 93),
        ("ccd_checkerboard", 2, 96),  # phase is taken mod 2
        ("raft_checkerboard", 0, 108),
        ("raft_checkerboard", 1, 81),
        ("5-on-a-die", 0, 45),
        ("minimal", 0, 45),
        ("ultra-minimal", 0, 17),
        ("e2v", 0, 117),
        ("itl", 0, 72),
    ],
)
def test_lsstcam_counts(pattern: str, phase: int, count: int) -> None:
    selected = pattern_detectors(CAM, pattern, phase)
    assert len(selected) == count
    # Never a guider (189-190, 193-194, ...) or a wavefront sensor (191-192, ...): imaging ids 0-188 only.
    assert selected <= IMAGING


def test_raft_checkerboard_rafts() -> None:
    phase0 = "R01 R03 R10 R12 R14 R21 R23 R30 R32 R34 R41 R43".split()
    phase1 = "R02 R11 R13 R20 R22 R24 R31 R33 R42".split()
    assert pattern_detectors(CAM, "raft_checkerboard", 0) == raft_ids(*phase0)
    assert pattern_detectors(CAM, "raft_checkerboard", 1) == raft_ids(*phase1)


@pytest.mark.parametrize(
    "name, on_at_phase0",
    [
        # Rab_Scd -> col = 3a + c + 1, row = 3b + d + 1; on iff (col%2 + row%2 + phase) odd.
        ("R22_S11", False),  # col 8, row 8: 0 + 0 -> even
        ("R01_S00", True),  # col 1, row 4: 1 + 0 -> odd
        ("R43_S22", True),  # col 15, row 12: 1 + 0 -> odd
        ("R12_S01", False),  # col 4, row 8: 0 + 0 -> even
        ("R34_S21", False),  # col 12, row 14: 0 + 0 -> even
        ("R10_S10", False),  # col 5, row 1: 1 + 1 -> even
        ("R41_S12", False),  # col 14, row 6: 0 + 0 -> even
        ("R30_S02", True),  # col 10, row 3: 0 + 1 -> odd
    ],
)
def test_ccd_checkerboard_by_hand(name: str, on_at_phase0: bool) -> None:
    detector_id = CAM.by_name[name].id
    assert (detector_id in pattern_detectors(CAM, "ccd_checkerboard", 0)) is on_at_phase0
    assert (detector_id in pattern_detectors(CAM, "ccd_checkerboard", 1)) is not on_at_phase0


@pytest.mark.parametrize(
    "raft, on_at_phase0",
    [("R22", False), ("R01", True), ("R10", True), ("R11", False), ("R34", True), ("R43", True)],
)
def test_raft_checkerboard_by_hand(raft: str, on_at_phase0: bool) -> None:
    # Raft Rab on iff (a%2 + b%2 + phase) odd: R22 0+0, R01 0+1, R10 1+0, R11 1+1, R34 1+0, R43 0+1.
    ids = raft_ids(raft)
    assert (ids <= pattern_detectors(CAM, "raft_checkerboard", 0)) is on_at_phase0
    assert (ids <= pattern_detectors(CAM, "raft_checkerboard", 1)) is not on_at_phase0


@pytest.mark.parametrize("pattern", ["ccd_checkerboard", "raft_checkerboard"])
def test_checkerboard_phases_are_complements(pattern: str) -> None:
    # What rubintv_production's invertImagingSelection does.
    phase0 = pattern_detectors(CAM, pattern, 0)
    phase1 = pattern_detectors(CAM, pattern, 1)
    assert not phase0 & phase1
    assert phase0 | phase1 == IMAGING


def test_fixed_sets() -> None:
    assert pattern_detectors(CAM, "5-on-a-die") == raft_ids("R22", "R33", "R11", "R13", "R31")
    assert pattern_detectors(CAM, "ultra-minimal") == DIAG | DIAG2
    assert pattern_detectors(CAM, "minimal") == DIAG | DIAG2 | VERTICAL | HORIZONTAL
    assert len(DIAG | DIAG2 | VERTICAL | HORIZONTAL) == 45  # the reference's count, checked on its own lists


def test_e2v_itl() -> None:
    e2v = pattern_detectors(CAM, "e2v")
    itl = pattern_detectors(CAM, "itl")
    assert not e2v & itl
    assert e2v | itl == IMAGING
    assert itl == raft_ids("R01", "R02", "R03", "R10", "R20", "R41", "R42", "R43")
    assert {CAM.by_id[i].physical_type for i in e2v} == {"E2V"}
    assert {CAM.by_id[i].physical_type for i in itl} == {"ITL"}


def test_custom() -> None:
    assert pattern_detectors(CAM, "custom", custom=[94, "R22_S10", "r11_s00"]) == {94, 93, 36}
    assert parse_detector_list(CAM, " 94 , R22_S10,r11_s00, ") == {94, 93, 36}
    assert parse_detector_list(CAM, "") == frozenset()


def test_custom_errors() -> None:
    with pytest.raises(ValueError) as info:
        parse_detector_list(CAM, "R00_SG0, 300, foo, R04_SW1, 5")
    message = str(info.value)
    assert "'R00_SG0' (R00_SG0 is a guider: guiders are never sent to SFM)" in message
    assert "'300' (no such detector id)" in message
    assert "'foo' (not a detector id or name of LSSTCam)" in message
    assert "'R04_SW1' (R04_SW1 is a wavefront sensor: those go to AOS, not SFM)" in message
    assert "'5'" not in message
    assert message.endswith("Allowed: imaging detector ids 0-188 or names like R22_S11.")
    with pytest.raises(ValueError, match=r"guider"):
        pattern_detectors(CAM, "custom", custom=[189])
    with pytest.raises(ValueError, match=r"wavefront sensor"):
        pattern_detectors(CAM, "custom", custom=[204])
    with pytest.raises(ValueError, match=r"'custom' needs a list of detectors"):
        pattern_detectors(CAM, "custom")
    with pytest.raises(ValueError, match=r"only given with pattern 'custom', not with 'all'"):
        pattern_detectors(CAM, "all", custom=[94])


def test_unknown_pattern() -> None:
    with pytest.raises(ValueError, match=r"Unknown focal-plane pattern 'checkerboard'; allowed: all, ccd_che"):
        pattern_detectors(CAM, "checkerboard")


# ComCam and LATISS


def comcam_ids(*sensors: str) -> frozenset[int]:
    order = ("S00", "S01", "S02", "S10", "S11", "S12", "S20", "S21", "S22")
    return frozenset(order.index(s) for s in sensors)


def test_comcam_patterns() -> None:
    everything = comcam_ids("S00", "S01", "S02", "S10", "S11", "S12", "S20", "S21", "S22")
    assert pattern_detectors(COMCAM, "all") == everything
    # R22 -> col = 7 + c, row = 7 + d; on at phase 0 iff exactly one of them is odd.
    assert pattern_detectors(COMCAM, "ccd_checkerboard", 0) == comcam_ids("S01", "S10", "S12", "S21")
    assert pattern_detectors(COMCAM, "ccd_checkerboard", 1) == comcam_ids("S00", "S02", "S11", "S20", "S22")
    assert pattern_detectors(COMCAM, "raft_checkerboard", 1) == everything  # R22 is on at phase 1 only
    assert pattern_detectors(COMCAM, "5-on-a-die") == everything  # of the five rafts only R22 exists
    assert pattern_detectors(COMCAM, "minimal") == everything
    assert pattern_detectors(COMCAM, "ultra-minimal") == comcam_ids("S00", "S11", "S22", "S02", "S20")
    assert pattern_detectors(COMCAM, "itl") == everything
    assert pattern_detectors(COMCAM, "custom", custom=["R22_S11", 0]) == {4, 0}


def test_comcam_empty_patterns_are_errors() -> None:
    with pytest.raises(ValueError, match=r"Pattern 'e2v' selects no detector of LSSTComCam .*types ITL"):
        pattern_detectors(COMCAM, "e2v")
    with pytest.raises(ValueError, match=r"'raft_checkerboard' at phase 0 selects no detector of LSSTComCam"):
        pattern_detectors(COMCAM, "raft_checkerboard", 0)
    selector = FocalPlaneSelector(COMCAM)
    for variation in FocalPlaneVariation:  # every variation visits phase 0
        with pytest.raises(ValueError, match=r"selects no detector of LSSTComCam"):
            selector.set_mode("raft_checkerboard", variation=variation)
    with pytest.raises(ValueError, match=r"'90' \(no such detector id\).*Allowed: imaging detector ids 0-8"):
        selector.set_mode("custom", "90")


def test_latiss_single_detector() -> None:
    for pattern in PATTERNS[:-1]:
        for phase in (0, 1):
            assert pattern_detectors(LATISS, pattern, phase) == {0}
    assert parse_detector_list(LATISS, "RXX_S00") == {0}
    assert pattern_detectors(LATISS, "custom", custom=["0"]) == {0}
    with pytest.raises(
        ValueError, match=r"'1' \(no such detector id\)\. Allowed: imaging detector id 0 or name RXX_S00"
    ):
        parse_detector_list(LATISS, "1")


# Variation


@pytest.mark.parametrize(
    "variation, phases",
    [
        (FocalPlaneVariation.FIXED, [0, 0, 0, 0, 0, 0]),
        (FocalPlaneVariation.ALTERNATING_PHASE, [0, 1, 0, 1, 0, 1]),
        (FocalPlaneVariation.ALTERNATING_BY_TWOS, [0, 0, 1, 1, 0, 0]),
    ],
)
def test_phase_per_dispatched_visit(variation: FocalPlaneVariation, phases: list[int]) -> None:
    selector = FocalPlaneSelector(CAM)
    selector.set_mode("ccd_checkerboard", variation=variation)
    selections = [selector.select(f"MC_O_20251115_{n:06d}") for n in range(6)]
    assert [s.phase for s in selections] == phases
    assert [len(s.detectors) for s in selections] == [{0: 96, 1: 93}[p] for p in phases]
    assert all(s.decided_by == "manual" and s.pattern == "ccd_checkerboard" for s in selections)
    assert selector.n_dispatched == 6
    # Setting the mode again restarts the count: the next visit has phase 0.
    selector.set_mode("ccd_checkerboard", variation=variation)
    assert selector.select().phase == 0


def test_by_twos_gives_each_ccd_consecutive_pairs() -> None:
    selector = FocalPlaneSelector(CAM)
    selector.set_mode("raft_checkerboard", variation=FocalPlaneVariation.ALTERNATING_BY_TWOS)
    sets = [selector.select().detectors for _ in range(8)]
    r22 = 94  # off at phase 0, on at phase 1
    assert [r22 in s for s in sets] == [False, False, True, True, False, False, True, True]


@pytest.mark.parametrize("pattern", ["all", "minimal", "ultra-minimal", "5-on-a-die", "e2v", "itl"])
def test_variation_does_not_invert_other_patterns(pattern: str) -> None:
    selector = FocalPlaneSelector(CAM)
    selector.set_mode(pattern, variation=FocalPlaneVariation.ALTERNATING_PHASE)
    first, second = selector.select(), selector.select()
    assert (first.phase, second.phase) == (0, 1)
    assert first.detectors == second.detectors == pattern_detectors(CAM, pattern)


# Guaranteed exposures


def test_guaranteed_obsids_are_processed_in_full() -> None:
    selector = FocalPlaneSelector(CAM, model(cost=10.0), n_workers=1)  # nothing but ultra-minimal affordable
    selector.set_mode(
        "custom",
        "94",
        variation=FocalPlaneVariation.ALTERNATING_PHASE,
        automatic=True,
        guaranteed_exposures="MC_O_20251115_000002, MC_O_20251115_000005",
    )
    got = [selector.select(f"MC_O_20251115_{n:06d}") for n in range(1, 7)]
    assert [s.decided_by for s in got] == [
        "automatic",
        "guaranteed",
        "automatic",
        "automatic",
        "guaranteed",
        "automatic",
    ]
    assert got[1].detectors == IMAGING and got[1].pattern == "all"
    assert "MC_O_20251115_000002" in got[1].reason
    assert got[0].detectors == {94}
    # Guaranteed visits are dispatched visits: the phase keeps alternating through them.
    assert [s.phase for s in got] == [0, 1, 0, 1, 0, 1]
    assert selector.mode.guaranteed_csv == "MC_O_20251115_000002,MC_O_20251115_000005"


# set_mode validation


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pattern="checkerboard"), r"Unknown focal-plane pattern 'checkerboard'; allowed: all, ccd_checkerboard, "),
        (dict(pattern="custom"), r"Pattern 'custom' needs detectors: a comma-separated list of ids or Rxy_Sxy names"),
        (dict(pattern="custom", detectors=" , "), r"Pattern 'custom' needs detectors"),
        (
            dict(pattern="minimal", detectors="94"),
            r"Detectors are only given with pattern 'custom', not with 'minimal'",
        ),
        (dict(pattern="custom", detectors="R00_SG1"), r"R00_SG1 is a guider: guiders are never sent to SFM"),
        (dict(variation=3), r"variation must be one of 0=FIXED, 1=ALTERNATING_PHASE, 2=ALTERNATING_BY_TWOS; not 3"),
        (dict(variation="1"), r"variation must be an integer"),
        (dict(worker_mode=-1), r"workerMode must be one of 0=WAITING, 1=CONSUMING, 2=MURDEROUS; not -1"),
        (dict(automatic=1), r"automatic must be true or false, not 1"),
        (
            dict(guaranteed_exposures="MC_O_20251115_000001,MC_O_2025111_000001, MC_X_20251115_000001"),
            r"Bad guaranteedExposures: 'MC_O_2025111_000001' \(not of the form CAMCODE_CONTROLLER_YYYYMMDD_NNNNNN\); "
            r"'MC_X_20251115_000001' \(not of the form .*\)\. "
            r"Expected comma-separated obsids like MC_O_20251115_000226",
        ),
        (
            dict(guaranteed_exposures="AT_O_20251115_000001"),
            r"'AT_O_20251115_000001' \(camera code AT, but LSSTCam is MC\)",
        ),
    ],
)
def test_set_mode_errors(kwargs: dict, message: str) -> None:
    selector = FocalPlaneSelector(CAM)
    before = selector.set_mode("ccd_checkerboard", variation=1)
    with pytest.raises(ValueError, match=message):
        selector.set_mode(**kwargs)
    assert selector.mode == before  # all or nothing


def test_set_mode_normalises() -> None:
    selector = FocalPlaneSelector(CAM)
    mode = selector.set_mode(
        " Custom ", ["R22_S11", 40, "36"], variation=2, automatic=True, worker_mode=1, guaranteed_exposures=""
    )
    assert mode.pattern == "custom" and mode.custom == {94, 40, 36} and mode.custom_csv == "36,40,94"
    assert mode.variation is FocalPlaneVariation.ALTERNATING_BY_TWOS
    assert mode.worker_mode is WorkerMode.CONSUMING
    assert mode.automatic and mode.guaranteed == frozenset()
    selection = selector.select()
    assert isinstance(selection, Selection) and selection.detectors_csv == "36,40,94"


# ThroughputModel


def test_throughput_affordable() -> None:
    m = ThroughputModel()
    for cost in (0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 100.0):  # one pathological job
        m.record_cost(cost)
    for t in (0.0, 34.0, 68.0, 2000.0, 2034.0, 2068.0):  # a 1932 s pause is not cadence
        m.record_arrival(t)
    assert m.cost_per_detector == pytest.approx(0.6)
    assert m.cadence == pytest.approx(34.0)
    assert m.n_intervals == 4
    assert m.ready
    # floor(2 * 34 * 0.85 / 0.6) = floor(96.33)
    assert m.affordable_detectors(2) == 96
    assert m.affordable_detectors(2, 30.0) == 85  # floor(85.0)
    assert m.affordable_detectors(0) == 0
    # 1 * 34 * 0.85 / 5.78 is exactly 5 on paper but 4.999999999999999 in floating point: it must count as 5.
    assert model(cost=5.78).affordable_detectors(1) == 5


def test_throughput_window_forgets_old_costs() -> None:
    m = ThroughputModel(cost_window=5, min_cost_samples=1)
    for _ in range(5):
        m.record_cost(2.0)
    for _ in range(3):
        m.record_cost(0.5)
    assert m.cost_per_detector == 0.5  # window [2, 2, .5, .5, .5]


def test_throughput_not_ready_and_errors() -> None:
    m = ThroughputModel()
    assert not m.ready and m.missing() == "0/5 job costs, 0/3 visit intervals"
    with pytest.raises(ValueError, match="No visit cadence measured yet"):
        m.affordable_detectors(2)
    with pytest.raises(ValueError, match="No job cost measured yet"):
        m.affordable_detectors(2, 34.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="job cost"):
            m.record_cost(bad)
    m.record_arrival(10.0)
    with pytest.raises(ValueError, match="earlier than the previous one"):
        m.record_arrival(9.0)
    with pytest.raises(ValueError, match="margin must be in"):
        ThroughputModel(margin=1.5)
    with pytest.raises(ValueError, match="n_workers must be an integer >= 0"):
        model(0.5).affordable_detectors(-1)


# Automatic down-selection


def test_automatic_waits_for_measurements() -> None:
    selector = FocalPlaneSelector(CAM, ThroughputModel(), n_workers=2)
    selector.set_mode("all", automatic=True)
    selection = selector.select()
    assert selection.decided_by == "manual" and selection.pattern == "all" and len(selection.detectors) == 189
    assert "automatic waiting for 0/5 job costs, 0/3 visit intervals" in selection.reason


def test_automatic_down_selection_from_synthetic_costs() -> None:
    # 2 workers x 34 s x 0.85 / 0.6 s = 96 affordable: raft_checkerboard (108) is too big, ccd_checkerboard fits.
    selector = FocalPlaneSelector(CAM, model(cost=0.6), n_workers=2)
    selector.set_mode("all", automatic=True)
    selection = selector.select()
    assert selection.decided_by == "automatic"
    assert selection.pattern == "ccd_checkerboard" and len(selection.detectors) == 96
    assert selection.reason == (
        "automatic: 2 workers x 34.0 s cadence x 0.85 / 0.6 s per detector = 96 affordable; "
        "using ccd_checkerboard (96 detectors at phase 0); stepped down from all (189)"
    )


def test_automatic_checkerboard_must_fit_at_both_phases() -> None:
    # 0.62 s -> 93 affordable. Alternating ccd_checkerboard needs 96 on phase-0 visits: too big, so minimal.
    selector = FocalPlaneSelector(CAM, model(cost=0.62), n_workers=2)
    selector.set_mode("all", automatic=True, variation=FocalPlaneVariation.ALTERNATING_PHASE)
    assert selector.ladder == (
        ("all", 189),
        ("raft_checkerboard", 108),
        ("ccd_checkerboard", 96),
        ("minimal", 45),
        ("ultra-minimal", 17),
    )
    picks = [selector.select() for _ in range(4)]
    assert [(s.pattern, len(s.detectors)) for s in picks] == [("minimal", 45)] * 4
    assert "93 affordable" in picks[0].reason


def test_automatic_steps_up_with_hysteresis() -> None:
    throughput = model(cost=0.6)
    selector = FocalPlaneSelector(CAM, throughput, n_workers=2)
    selector.set_mode("all", automatic=True)
    assert selector.select().pattern == "ccd_checkerboard"

    # The pool catches up: 0.3 s -> 192 affordable. raft_checkerboard (108 <= 0.9 x 192) fits with headroom;
    # the step up happens on the 3rd consecutive such visit.
    throughput.record_cost(0.3)
    picks = [selector.select() for _ in range(3)]
    assert [s.pattern for s in picks] == ["ccd_checkerboard", "ccd_checkerboard", "raft_checkerboard"]
    assert picks[0].reason.endswith("raft_checkerboard (108) fits with headroom, 1/3")
    assert picks[2].reason.endswith("stepped up from ccd_checkerboard (96) after 3 visits")
    # all (189) would fit in 192 but not with headroom (172.8): it stays, however long.
    later = [selector.select() for _ in range(10)]
    assert {s.pattern for s in later} == {"raft_checkerboard"}
    assert later[-1].reason.endswith("all (189) needs 210 affordable to step up")


def test_automatic_does_not_oscillate_near_a_threshold() -> None:
    throughput = model(cost=0.578)  # floor(57.8 / 0.578) = 100: ccd_checkerboard (96) fits
    selector = FocalPlaneSelector(CAM, throughput, n_workers=2)
    selector.set_mode("all", automatic=True)
    assert selector.select().pattern == "ccd_checkerboard"
    patterns = []
    for n in range(12):
        # Affordable swings between 100 and 115: raft_checkerboard (108) fits on half of the visits,
        # but never with headroom (needs 120), and ccd_checkerboard always fits.
        throughput.record_cost(0.578 if n % 2 else 0.5026)
        patterns.append(selector.select().pattern)
    assert patterns == ["ccd_checkerboard"] * 12


def test_automatic_streak_must_be_consecutive() -> None:
    throughput = model(cost=0.6)
    selector = FocalPlaneSelector(CAM, throughput, n_workers=2)
    selector.set_mode("all", automatic=True, guaranteed_exposures="MC_O_20251115_000099")
    assert selector.select().pattern == "ccd_checkerboard"
    patterns = []
    for cost in (0.3, 0.3, 0.55, 0.3, 0.3):  # 0.55 -> 105 affordable: ccd fits, raft needs 120: streak broken
        throughput.record_cost(cost)
        patterns.append(selector.select().pattern)
    assert patterns == ["ccd_checkerboard"] * 5
    # A guaranteed visit neither advances nor breaks the streak (now 2/3).
    assert selector.select("MC_O_20251115_000099").decided_by == "guaranteed"
    assert selector.select().pattern == "raft_checkerboard"


def test_automatic_steps_down_several_rungs_and_to_the_bottom() -> None:
    throughput = model(cost=0.1)
    selector = FocalPlaneSelector(CAM, throughput, n_workers=2)
    selector.set_mode("all", automatic=True)
    assert selector.select().pattern == "all"  # 578 affordable
    assert selector.select().reason.endswith("the manual pattern fits")
    throughput.record_cost(1.0)  # 57 affordable: straight from all to minimal
    selection = selector.select()
    assert (selection.pattern, len(selection.detectors)) == ("minimal", 45)
    assert selection.reason.endswith("stepped down from all (189)")
    throughput.record_cost(60.0)  # 0 affordable: the smallest pattern, never nothing
    selection = selector.select()
    assert (selection.pattern, len(selection.detectors)) == ("ultra-minimal", 17)
    assert "even the smallest pattern does not fit" in selection.reason


def test_automatic_never_above_the_manual_pattern() -> None:
    throughput = model(cost=0.01)  # thousands affordable
    selector = FocalPlaneSelector(CAM, throughput, n_workers=4)
    selector.set_mode("ccd_checkerboard", automatic=True, variation=FocalPlaneVariation.ALTERNATING_PHASE)
    assert [p for p, _ in selector.ladder] == ["ccd_checkerboard", "minimal", "ultra-minimal"]
    picks = [selector.select() for _ in range(10)]
    assert {s.pattern for s in picks} == {"ccd_checkerboard"}
    assert [len(s.detectors) for s in picks[:2]] == [96, 93]

    # Off-ladder manual patterns head their own ladder, followed by strictly smaller standard patterns.
    selector.set_mode("custom", ",".join(str(i) for i in range(30)), automatic=True)
    assert selector.ladder == (("custom", 30), ("ultra-minimal", 17))
    selector.set_mode("e2v", automatic=True)
    assert [p for p, _ in selector.ladder] == [
        "e2v",
        "raft_checkerboard",
        "ccd_checkerboard",
        "minimal",
        "ultra-minimal",
    ]
    for cost in (0.01, 1.0, 0.2, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01):
        throughput.record_cost(cost)
        assert len(selector.select().detectors) <= 117


def test_automatic_off_is_manual() -> None:
    selector = FocalPlaneSelector(CAM, model(cost=10.0), n_workers=1)
    selector.set_mode("minimal", automatic=False)
    selection = selector.select()
    assert (selection.pattern, len(selection.detectors), selection.decided_by) == ("minimal", 45, "manual")
    assert selection.reason == "manual: minimal (45 detectors)"


def test_comcam_and_latiss_ladders() -> None:
    comcam = FocalPlaneSelector(COMCAM, model(cost=1.0), n_workers=1)  # floor(34 * 0.85) = 28: all fits
    assert comcam.ladder == (("all", 9), ("ccd_checkerboard", 4))  # minimal = all; ultra-minimal (5) > 4
    comcam.set_mode("all", automatic=True, variation=FocalPlaneVariation.ALTERNATING_PHASE)
    assert comcam.ladder == (("all", 9), ("ccd_checkerboard", 5))
    assert len(comcam.select().detectors) == 9
    comcam.throughput.record_cost(5.0)  # floor(5.78) = 5: ccd_checkerboard at both phases
    picks = [comcam.select() for _ in range(2)]
    assert [(s.pattern, len(s.detectors)) for s in picks] == [("ccd_checkerboard", 5), ("ccd_checkerboard", 4)]
    assert picks[0].detectors == comcam_ids("S00", "S02", "S11", "S20", "S22")  # visit 1: phase 1

    latiss = FocalPlaneSelector(LATISS, model(cost=100.0), n_workers=1)
    latiss.set_mode("ccd_checkerboard", automatic=True, variation=FocalPlaneVariation.ALTERNATING_PHASE)
    assert latiss.ladder == (("ccd_checkerboard", 1),)
    for _ in range(3):
        selection = latiss.select()
        assert selection.detectors == {0} and selection.decided_by == "automatic"
    assert "even the smallest pattern does not fit" in selection.reason


def test_ladder_constant() -> None:
    assert LADDER == ("all", "raft_checkerboard", "ccd_checkerboard", "minimal", "ultra-minimal")


# -- spread order (the order a visit's detectors are run in) --


def test_spread_order_starts_at_the_centre_and_spans_the_field() -> None:
    order = spread_order(CAM, range(189))
    assert sorted(order) == list(range(189))  # each once
    assert order[0] == 94  # R22_S11, on the boresight
    # The next four are one in each quadrant, at the corners of the science area.
    quadrants = {(CAM.by_id[d].name[1] >= "2", CAM.by_id[d].name[2] >= "2") for d in order[1:5]}
    assert len(quadrants) == 4
    for d in order[1:5]:
        assert CAM.by_id[d].name[1:3] in {"01", "03", "10", "14", "30", "34", "41", "43"}
    # Any beginning covers many rafts; id order would give one raft per 9 detectors.
    rafts = {CAM.by_id[d].raft for d in order[:21]}
    assert len(rafts) >= 15, rafts


def test_spread_order_of_a_subset_and_of_small_cameras() -> None:
    assert spread_order(CAM, [180, 0, 94]) == [94, 0, 180]  # centre, then the farther of the two
    assert spread_order(CAM, [5]) == [5]
    assert spread_order(LATISS, [0]) == [0]
    comcam = spread_order(COMCAM, range(9))
    assert comcam[0] == 4  # S11
    assert set(comcam[1:5]) == {0, 2, 6, 8}  # then the corners


# What automatic mode would need: the demand reported to an autoscaling cluster


def test_workers_for_manual_pattern_inverts_affordable_detectors() -> None:
    # 189 detectors x 1 s / (34 s x 0.85) = 6.54: 7 workers afford "all", 6 do not.
    selector = FocalPlaneSelector(CAM, model(cost=1.0), n_workers=2)
    selector.set_mode("all", automatic=True)
    assert selector.workers_for_manual_pattern() == 7
    assert selector.throughput.affordable_detectors(7) >= 189 > selector.throughput.affordable_detectors(6)
    # The manual pattern is the ceiling: ultra-minimal's 17 detectors need 1 worker.
    selector.set_mode("ultra-minimal", automatic=True)
    assert selector.workers_for_manual_pattern() == 1


@pytest.mark.parametrize("cost", [0.05, 0.3, 0.6, 1.0, 2.7, 5.78, 34.0])
def test_workers_for_manual_pattern_is_the_fewest_that_afford_it(cost: float) -> None:
    selector = FocalPlaneSelector(CAM, model(cost=cost), n_workers=1)
    selector.set_mode("all", automatic=True)
    n = selector.workers_for_manual_pattern()
    assert n is not None
    assert selector.throughput.affordable_detectors(n) >= 189
    assert n == 0 or selector.throughput.affordable_detectors(n - 1) < 189


def test_workers_for_manual_pattern_only_when_automatic_and_measured() -> None:
    selector = FocalPlaneSelector(CAM, model(cost=1.0), n_workers=2)
    selector.set_mode("all", automatic=False)
    assert selector.workers_for_manual_pattern() is None
    unmeasured = FocalPlaneSelector(CAM, ThroughputModel(), n_workers=2)
    unmeasured.set_mode("all", automatic=True)
    assert unmeasured.workers_for_manual_pattern() is None
