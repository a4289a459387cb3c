"""bench/goodput_auto.py's pure parts as tables: the seeded crash traces, the interleaved
schedule, the score (steps at the repetition's undisturbed median step per wall second)
and the target (auto within 3% of the best fixed interval, judged per trace, the ratio
taken per repetition)."""

from __future__ import annotations

import sys
from collections.abc import Mapping

import pytest

from bench.goodput_auto import UNDISTURBED, crash_trace, main, schedule, summarise
from bench.goodput_run import Run
from bench.goodput_trace import CRASH, Accounting, AttemptSteps

pytestmark = pytest.mark.unit

MODES = ["auto", "every-5", "every-15", "every-50"]


def test_crash_traces_are_seeded_bounded_and_rarer_with_a_longer_mtbf() -> None:
    t = crash_trace(7, 20, 400, 5)
    assert t == crash_trace(7, 20, 400, 5) != crash_trace(8, 20, 400, 5)
    assert all(e.kind == CRASH and e.after_steps >= 5 for e in t)
    assert sum(e.after_steps for e in t) < 0.9 * 400
    assert len(crash_trace(7, 80, 400, 5)) < len(t)


def test_the_schedule_interleaves_every_run_in_each_repetition_and_rotates() -> None:
    slots = schedule(["frequent", "rare"], MODES, 3)
    want = sorted([UNDISTURBED, *(f"{t}/{m}" for m in MODES for t in ("frequent", "rare"))])
    reps = [[s.name for s in slots if s.r == r] for r in range(3)]
    assert all(sorted(names) == want for names in reps)  # all modes in every repetition
    firsts = [names[0] for names in reps]
    assert firsts == ["frequent/auto", "rare/every-5", "frequent/every-15"]
    # a mode's runs on the two traces are neighbours, whichever goes first
    for names in reps:
        for m in MODES:
            i = names.index(f"frequent/{m}")
            assert {names[i - 1], names[(i + 1) % len(names)]} & {f"rare/{m}"}


def run(mode: str, wall: float, step_s: float = 0.4, steps: int = 100) -> Run:
    acc = Accounting(steps, steps, steps, 0, 0.5 * wall, 0.0, wall, 0.5, 0.0)
    r = Run(mode, f"j-{mode}", accounting=acc, elapsed=wall)
    r.attempts = [AttemptSteps(1, 1, tuple(i * step_s for i in range(21)))]
    return r


def reps(
    *walls: Mapping[str, float | tuple[float, float]], ref: float = 0.4
) -> dict[int, dict[str, Run]]:
    """Repetitions of the frequent trace: each mode's wall time, or (wall, own step s)."""
    out: dict[int, dict[str, Run]] = {}
    for i, w in enumerate(walls):
        group = {UNDISTURBED: run(UNDISTURBED, 50.0, ref)}
        for m, v in w.items():
            wall, step_s = v if isinstance(v, tuple) else (v, ref)
            group[f"frequent/{m}"] = run(m, wall, step_s)
        out[i] = group
    return out


@pytest.mark.parametrize(
    ("auto_wall", "met"), [(100.0, True), (103.0, True), (103.2, False), (90.0, True)]
)
def test_the_target_is_three_percent_of_the_best_fixed(auto_wall: float, met: bool) -> None:
    walls = {"auto": auto_wall, "every-5": 120.0, "every-15": 100.0, "every-50": 140.0}
    _, targets = summarise(reps(walls, walls))
    t = targets["frequent"]["score"]
    assert t["best_fixed"] == "every-15"
    assert t["met"] is met
    assert t["auto_over_best"] == [round(100.0 / auto_wall, 4)] * 2


def test_a_mode_that_slows_its_own_steps_gets_no_credit_for_it() -> None:
    # every-5's saves slow its steps (median 0.6 s against the undisturbed 0.4 s) while it
    # takes the same wall time as auto: the user got the same, and the score says so; the
    # old score, by each run's own median step, made every-5 1.5x better.
    walls: dict[str, float | tuple[float, float]] = {
        "auto": 100.0,
        "every-5": (100.0, 0.6),
        "every-50": 110.0,
    }
    lines, targets = summarise(reps(walls, walls))
    score, own = targets["frequent"]["score"], targets["frequent"]["own_paced"]
    assert score["met"] and score["median"] == 1.0
    assert own["best_fixed"] == "every-5" and not own["met"] and own["median"] == 0.6667
    assert any("| every-5 |" in ln and "1.500 (1.500-1.500)" in ln for ln in lines)


def test_ratios_are_taken_within_a_repetition_then_spread() -> None:
    # the load doubled in the second repetition; paired within each, auto was 5% behind
    # then 5% ahead (a ratio of the modes' medians over repetitions would say 0.98)
    first = {"auto": 100.0, "every-15": 95.0}
    second = {"auto": 200.0, "every-15": 210.0}
    _, targets = summarise(reps(first, second))
    t = targets["frequent"]["score"]
    assert t["auto_over_best"] == [0.95, 1.05]
    assert (t["median"], t["min"], t["max"]) == (1.0, 0.95, 1.05) and t["met"]


def test_one_repetition_is_refused_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["goodput_auto", "--reps", "1"])
    with pytest.raises(SystemExit, match="--reps must be at least 2"):
        main()
