"""The queue-preemption trace's arithmetic, as tables: the spans between one preemption's
moments (lazarus_devstack.kueue_timeline) and goodput over the time the job held its
quota (bench.goodput_report)."""

from __future__ import annotations

import pytest

from bench.goodput_report import held_goodput, span_rows
from bench.goodput_run import Run
from bench.goodput_trace import AttemptSteps, account
from lazarus_devstack.kueue_timeline import spans

pytestmark = pytest.mark.unit

SEEN = {
    "evicted": 10.0,
    "pods_gone": 11.5,
    "cleared": 12.0,
    "hp_admitted": 12.25,
    "hp_pod": 12.5,
    "hp_done": 30.0,
    "hp_released": 30.5,
    "readmitted": 31.0,
    "pod_created": 31.5,
}


@pytest.mark.parametrize(
    ("seen", "want"),
    [
        (
            SEEN,
            {
                "stop": 1.5,
                "hand_back": 0.5,
                "preemptor_admit": 0.25,
                "preemptor_launch": 0.25,
                "preemptor_run": 17.5,
                "preemptor_release": 0.5,
                "readmit": 0.5,
                "relaunch": 0.5,
                "quota_away": 19.0,
            },
        ),
        # A moment not seen (the poll missed it, or the run ended first): no span from it.
        (
            {k: v for k, v in SEEN.items() if k != "cleared"},
            {
                "stop": 1.5,
                "preemptor_launch": 0.25,
                "preemptor_run": 17.5,
                "preemptor_release": 0.5,
                "readmit": 0.5,
                "relaunch": 0.5,
            },
        ),
        ({}, {}),
    ],
)
def test_spans(seen: dict[str, float], want: dict[str, float]) -> None:
    assert spans(seen) == want


def run_of(elapsed: float, quota_away: float, step_times: tuple[float, ...]) -> Run:
    attempts = [AttemptSteps(1, 1, step_times)]
    return Run(
        "lazarus",
        "gp",
        elapsed=elapsed,
        accounting=account(attempts, elapsed),
        quota_away=quota_away,
        attempts=attempts,
    )


@pytest.mark.parametrize(
    ("elapsed", "away", "held"),
    [
        (40.0, 0.0, 40.0),  # never preempted: the same as goodput over wall time
        (40.0, 25.0, 15.0),  # 25 s of the wall time were the preemptor's
        (40.0, 40.0, 0.0),  # nothing held: no figure to divide by
    ],
)
def test_held_goodput(elapsed: float, away: float, held: float) -> None:
    run = run_of(elapsed, away, (1.0, 2.0, 3.0, 4.0, 5.0))
    assert run.accounting is not None
    survived = run.accounting.survived_seconds
    assert survived == pytest.approx(5.0)  # 5 steps of 1 s (the first at the median)
    assert run.accounting.goodput == pytest.approx(survived / elapsed)
    assert held_goodput(run) == pytest.approx(survived / held if held else 0.0)


def test_span_rows_per_event() -> None:
    run = Run("lazarus", "gp-a")
    run.events = [{"spans": {"stop": 1.5, "readmit": 0.5}}, {"spans": {"stop": 2.0}}]
    assert span_rows([run]) == [
        "| run | stop | readmit |",
        "|---|---|---|",
        "| gp-a | 1.5, 2.0 | 0.5, — |",
    ]
    assert span_rows([Run("lazarus", "gp-b")]) == []  # a trace without queue preemptions
