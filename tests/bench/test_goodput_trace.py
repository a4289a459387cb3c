"""bench/goodput.py's pure parts: the seeded trace and the goodput arithmetic, as tables."""

from __future__ import annotations

import pytest

from bench.goodput_trace import (
    CRASH,
    EVICTION,
    KINDS,
    NODE_LOSS,
    NOTICE_THEN_LOSS,
    QUEUE_PREEMPTION,
    TRACES,
    AttemptSteps,
    account,
    lost_at_each_end,
    make_trace,
    survival_thresholds,
)

pytestmark = pytest.mark.unit


def test_a_seed_gives_one_trace_every_kind_first_gaps_in_range() -> None:
    trace = make_trace(7, 6, 20, 40)
    assert trace == make_trace(7, 6, 20, 40)
    assert trace != make_trace(8, 6, 20, 40)
    assert sorted(e.kind for e in trace[:4]) == sorted(KINDS)
    assert all(e.kind in KINDS for e in trace[4:]) and len(trace) == 6
    assert all(20 <= e.after_steps <= 40 for e in trace)
    assert [e.kind for e in make_trace(7, 2, 20, 40)] == [e.kind for e in trace[:2]]
    assert make_trace(7, 0, 1, 1) == []


@pytest.mark.parametrize(("events", "lo", "hi"), [(-1, 1, 2), (3, 0, 2), (3, 5, 4)])
def test_a_bad_trace_shape_is_refused(events: int, lo: int, hi: int) -> None:
    with pytest.raises(ValueError, match="bad trace shape"):
        make_trace(0, events, lo, hi)


def test_a_queue_preemption_trace_is_kueue_preempting_every_time() -> None:
    trace = make_trace(3, 3, 20, 35, TRACES["queue-preemption"])
    assert [e.kind for e in trace] == [QUEUE_PREEMPTION] * 3
    assert all(20 <= e.after_steps <= 35 for e in trace)
    assert trace == make_trace(3, 3, 20, 35, TRACES["queue-preemption"])
    with pytest.raises(ValueError, match="bad trace shape"):
        make_trace(3, 3, 20, 35, ())


def test_the_mixed_trace_of_a_seed_is_the_one_docs_performance_shows() -> None:
    """Traces are drawn the same way with or without the kinds argument: seed 7's is
    still notice-then-loss after 45 steps, crash 26, eviction 27, node loss 51."""
    want = [(NOTICE_THEN_LOSS, 45), (CRASH, 26), (EVICTION, 27), (NODE_LOSS, 51)]
    assert [(e.kind, e.after_steps) for e in make_trace(7, 4, 25, 55)] == want
    assert make_trace(7, 4, 25, 55, TRACES["mixed"]) == make_trace(7, 4, 25, 55)


def steps(number: int, first: int, n: int, start: float = 0.0, dt: float = 1.0) -> AttemptSteps:
    return AttemptSteps(number, first, tuple(start + i * dt for i in range(n)))


# (attempts, elapsed) -> (executed, survived, recomputed, survived s, recomputed s, goodput)
CASES = [
    # uninterrupted: 10 steps of 1 s in 20 s
    ([steps(1, 1, 10)], 20.0, (10, 10, 0, 10.0, 0.0, 0.5)),
    # a SIGTERM save at step 6: the next attempt resumes at 6, nothing recomputed
    ([steps(1, 1, 6), steps(2, 7, 4)], 20.0, (10, 10, 0, 10.0, 0.0, 0.5)),
    # a crash at step 6 with a checkpoint at step 4: steps 5 and 6 done twice
    ([steps(1, 1, 6), steps(2, 5, 6)], 24.0, (12, 10, 2, 10.0, 2.0, 10 / 24)),
    # no checkpoints: everything of attempt 1 is lost
    ([steps(1, 1, 6), steps(2, 1, 10)], 32.0, (16, 10, 6, 10.0, 6.0, 10 / 32)),
    # attempt 3 resumes from before attempt 2 started: attempt 2 survives in nothing
    (
        [steps(1, 1, 6), steps(2, 5, 3), steps(3, 4, 7)],
        40.0,
        (16, 10, 6, 10.0, 6.0, 0.25),
    ),
    # an attempt that logged no step (lost at once) changes nothing
    (
        [steps(1, 1, 6), AttemptSteps(2, 1, ()), steps(3, 7, 4)],
        20.0,
        (10, 10, 0, 10.0, 0.0, 0.5),
    ),
]


@pytest.mark.parametrize(("attempts", "elapsed", "want"), CASES)
def test_goodput_accounting(
    attempts: list[AttemptSteps],
    elapsed: float,
    want: tuple[int, int, int, float, float, float],
) -> None:
    got = account(attempts, elapsed)
    executed, survived, recomputed, surv_s, rec_s, goodput = want
    assert (got.executed, got.survived, got.recomputed) == (executed, survived, recomputed)
    assert got.final_step == 10 and got.survived == got.final_step
    assert got.survived_seconds == pytest.approx(surv_s)
    assert got.recomputed_seconds == pytest.approx(rec_s)
    assert got.goodput == pytest.approx(goodput)
    assert got.other_seconds == pytest.approx(elapsed - surv_s - rec_s)


def test_the_first_step_of_an_attempt_counts_as_its_median_step() -> None:
    """The first step's line comes after the process start and the resume: that wait is not
    a step's work. Steps 0.5 s apart, the first seen 9 s after the attempt began."""
    a = AttemptSteps(1, 1, (9.0, 9.5, 10.0, 10.5))
    assert a.durations(99.0) == [0.5, 0.5, 0.5, 0.5]
    assert AttemptSteps(2, 1, (3.0,)).durations(0.7) == [0.7]
    got = account([a, AttemptSteps(2, 5, (20.0,))], 30.0)
    assert got.survived_seconds == pytest.approx(2.5)  # the lone step takes the run's median


def test_survival_thresholds_are_the_lowest_later_resume_step() -> None:
    attempts = [steps(1, 1, 6), steps(2, 5, 3), steps(3, 4, 7)]
    assert survival_thresholds(attempts) == [3, 3, float("inf")]


def test_kinds_are_the_four_the_local_loop_makes() -> None:
    assert KINDS == (EVICTION, CRASH, NODE_LOSS, NOTICE_THEN_LOSS)


def test_lost_at_each_end_is_how_far_an_attempt_got_past_the_next_resume() -> None:
    # SIGTERM save at 6; crash at 12 with a checkpoint at 10; an empty attempt; start over
    attempts = [
        steps(1, 1, 6),
        steps(2, 7, 6),
        steps(3, 11, 3),
        AttemptSteps(4, 1, ()),
        steps(5, 1, 20),
    ]
    assert lost_at_each_end(attempts) == [0, 2, 13]
    assert lost_at_each_end([steps(1, 1, 5)]) == []
