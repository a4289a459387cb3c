"""bench/goodput_auto.py's pure parts as tables: the seeded crash traces and the target
(auto within 3% of the best fixed interval, judged per trace)."""

from __future__ import annotations

import pytest

from bench.goodput_auto import crash_trace, summarise
from bench.goodput_run import Run
from bench.goodput_trace import CRASH, Accounting

pytestmark = pytest.mark.unit


def test_crash_traces_are_seeded_bounded_and_rarer_with_a_longer_mtbf() -> None:
    t = crash_trace(7, 20, 400, 5)
    assert t == crash_trace(7, 20, 400, 5) != crash_trace(8, 20, 400, 5)
    assert all(e.kind == CRASH and e.after_steps >= 5 for e in t)
    assert sum(e.after_steps for e in t) < 0.9 * 400
    assert len(crash_trace(7, 80, 400, 5)) < len(t)


def run(mode: str, goodput: float, elapsed: float = 100.0) -> Run:
    acc = Accounting(100, 100, 100, 0, goodput * elapsed, 0.0, elapsed, goodput, 0.0)
    return Run(mode, f"j-{mode}", accounting=acc, elapsed=elapsed)


@pytest.mark.parametrize(
    ("auto", "met"), [(0.50, True), (0.486, True), (0.484, False), (0.60, True)]
)
def test_the_target_is_three_percent_of_the_best_fixed(auto: float, met: bool) -> None:
    group = [run("auto", auto), run("every-5", 0.40), run("every-15", 0.50), run("every-50", 0.3)]
    _, targets = summarise({"frequent": group})
    assert targets["frequent"]["goodput"]["best_fixed"] == "every-15"
    assert targets["frequent"]["goodput"]["met"] is met


def test_the_pace_to_the_end_is_judged_too() -> None:
    # the same steps: a run that finishes sooner did better whatever its goodput says
    group = [run("auto", 0.3, elapsed=135.0), run("every-15", 0.31, elapsed=165.0)]
    _, targets = summarise({"frequent": group})
    assert not targets["frequent"]["goodput"]["met"]
    pace = targets["frequent"]["pace"]
    assert pace["met"] and pace["auto_over_best"] == round(165.0 / 135.0, 4)
