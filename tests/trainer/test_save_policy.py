"""The save policy as tables: when a boundary saves and with which reason, what carries over
to the next boundary, evaluations, the stop plan and the final save."""

from __future__ import annotations

import pytest

from lazarus_contract import REASONS
from lazarus_trainer.config import LazarusConfig
from lazarus_trainer.save_policy import (
    RETRY_DELAY_BACKOFFS,
    Act,
    Agreed,
    Decision,
    Reason,
    SavePolicy,
    StopPlan,
    committed_at,
    eval_improved,
    eval_shortfall,
    final_ok,
    grace_shortfall,
    improves,
    in_flight_wait,
    metric_key,
    periodic_due,
    stop_deadline,
    stop_plan,
)

pytestmark = pytest.mark.unit

NAME = "step-000000000010-a0001"


def policy(
    every_steps: int = 0,
    every_seconds: float = 0.0,
    *,
    retry: str | None = None,
    pending: str | None = None,
) -> SavePolicy:
    cfg = LazarusConfig(
        checkpoint_uri="/tmp/x", save_every_steps=every_steps, save_every_seconds=every_seconds
    )
    p = SavePolicy(cfg, now=100.0)
    p.retry, p.pending = retry, pending
    return p


def test_reasons_are_the_contracts() -> None:
    assert sorted(Reason) == sorted(REASONS)


@pytest.mark.parametrize(
    ("every", "step", "agreed", "retry", "pending", "want"),
    [
        # nothing due, nothing carried over
        (0, 7, Agreed(), None, None, Decision(Act.NOTHING)),
        (5, 7, Agreed(), None, None, Decision(Act.NOTHING)),
        # periodic: every N steps, or the seconds schedule (rank 0's clock)
        (5, 10, Agreed(), None, None, Decision(Act.SAVE, "periodic")),
        (0, 7, Agreed(time_due=True), None, None, Decision(Act.SAVE, "periodic")),
        # a request outranks the schedule
        (5, 10, Agreed(requested=True), None, None, Decision(Act.SAVE, "requested")),
        (0, 7, Agreed(requested=True, busy=True), None, None, Decision(Act.SAVE, "requested")),
        # a periodic save while one is in flight is queued, not started
        (5, 10, Agreed(busy=True), None, None, Decision(Act.QUEUE, "periodic")),
        # a failed save comes back with its own reason once its wait is over
        (0, 7, Agreed(retry_due=True), "eval-best", None, Decision(Act.SAVE, "eval-best")),
        (0, 7, Agreed(), "eval-best", None, Decision(Act.NOTHING)),  # still waiting
        # another rank's retry is due, this one has none: the periodic schedule
        (0, 7, Agreed(retry_due=True), None, None, Decision(Act.SAVE, "periodic")),
        (0, 7, Agreed(retry_due=True, busy=True), None, None, Decision(Act.QUEUE, "periodic")),
        # a queued save is served at the next boundary, or queued again while still busy
        (0, 7, Agreed(), None, "periodic", Decision(Act.SAVE, "periodic")),
        (0, 7, Agreed(busy=True), None, "periodic", Decision(Act.QUEUE, "periodic")),
        (5, 10, Agreed(), "requested", "periodic", Decision(Act.SAVE, "periodic")),
        # a stop signal, or a fence, outranks every save
        (5, 10, Agreed(stop=True, requested=True), None, None, Decision(Act.STOP)),
        (5, 10, Agreed(fenced=True), None, None, Decision(Act.STOP, fenced=True)),
        (0, 7, Agreed(stop=True, fenced=True), None, None, Decision(Act.STOP, fenced=True)),
    ],
)
def test_boundary(
    every: int,
    step: int,
    agreed: Agreed,
    retry: str | None,
    pending: str | None,
    want: Decision,
) -> None:
    p = policy(every, retry=retry, pending=pending)
    assert p.at_boundary(step, agreed) == want
    assert p.pending == ("periodic" if want.act is Act.QUEUE else pending)


@pytest.mark.parametrize(
    ("every", "step", "agreed", "deferred"),
    [
        (5, 10, Agreed(), "periodic"),
        (5, 10, Agreed(requested=True), "requested"),
        (5, 10, Agreed(busy=True), "periodic"),  # not queued: the evaluation decides
        (5, 7, Agreed(), None),
    ],
)
def test_an_evaluation_that_follows_finishes_the_decision(
    every: int, step: int, agreed: Agreed, deferred: str | None
) -> None:
    p = policy(every)
    assert p.at_boundary(step, agreed, eval_follows=True) == Decision(Act.DEFER, deferred)
    assert p.deferred == deferred and p.pending is None


@pytest.mark.parametrize(
    ("agreed", "decision"),
    [
        # a stop at an evaluation step waits for the evaluation (report_eval stops)
        (Agreed(stop=True), Decision(Act.STOP_AFTER_EVAL)),
        (Agreed(stop=True, requested=True), Decision(Act.STOP_AFTER_EVAL)),
        # fenced out: nothing to save, no reason to evaluate first
        (Agreed(stop=True, fenced=True), Decision(Act.STOP, fenced=True)),
        (Agreed(fenced=True), Decision(Act.STOP, fenced=True)),
    ],
)
def test_a_stop_at_an_evaluation_step(agreed: Agreed, decision: Decision) -> None:
    p = policy(5)
    assert p.at_boundary(10, agreed, eval_follows=True) == decision
    assert p.deferred is None  # the preemption checkpoint serves the periodic save


@pytest.mark.parametrize(
    ("metrics", "metric", "key"),
    [
        ({"eval_loss": 1.0}, "eval_loss", "eval_loss"),
        ({"eval_loss": 1.0}, "loss", "eval_loss"),  # HF's metric_for_best_model spelling
        ({"loss": 2.0, "eval_loss": 1.0}, "loss", "loss"),  # an exact name wins
        ({"eval_acc": 1.0}, "loss", None),
        ({"eval_loss": 1.0}, "", None),
    ],
)
def test_metric_key(metrics: dict[str, float], metric: str, key: str | None) -> None:
    assert metric_key(metrics, metric) == key


@pytest.mark.parametrize(
    ("evaluation", "save", "remaining", "short"),
    [
        (None, 5.0, 1.0, False),  # no evaluation timed yet: try
        (2.0, None, 3.0, False),
        (2.0, 2.0, 3.0, True),  # the evaluation fits, the save after it does not
        (2.0, 0.5, 3.0, False),
    ],
)
def test_eval_shortfall(
    evaluation: float | None, save: float | None, remaining: float, short: bool
) -> None:
    assert eval_shortfall(evaluation, save, remaining) is short


@pytest.mark.parametrize(
    ("deferred", "improved", "save"),
    [
        (None, False, None),
        (None, True, "eval-best"),
        ("periodic", False, "periodic"),
        ("periodic", True, "eval-best"),  # one checkpoint, carrying the evaluation's metrics
        ("requested", True, "eval-best"),
    ],
)
def test_after_eval(deferred: str | None, improved: bool, save: str | None) -> None:
    p = policy()
    p.deferred = deferred
    assert p.after_eval(improved) == save
    assert p.deferred is None and p.after_eval(False) is None  # decided once


@pytest.mark.parametrize(
    ("metrics", "metric", "best", "mode", "want"),
    [
        ({"loss": 1.0}, "", None, "min", False),  # no metric configured
        ({"loss": 1.0}, "acc", None, "max", False),  # not in this evaluation
        ({"loss": 1.0}, "loss", None, "min", True),  # the first value is the best so far
        ({"loss": 1.0}, "loss", 2.0, "min", True),
        ({"loss": 2.0}, "loss", 2.0, "min", False),  # equal is not better
        ({"loss": 3.0}, "loss", 2.0, "min", False),
        ({"acc": 0.9}, "acc", 0.8, "max", True),
        ({"acc": 0.7}, "acc", 0.8, "max", False),
    ],
)
def test_eval_improved(
    metrics: dict[str, float], metric: str, best: float | None, mode: str, want: bool
) -> None:
    assert eval_improved(metrics, metric, best, mode) is want
    if metric in metrics:
        assert improves(metrics[metric], best, mode) is want


@pytest.mark.parametrize(
    ("every_seconds", "last", "now", "want"),
    [(0.0, 0.0, 1e9, False), (10.0, 100.0, 109.9, False), (10.0, 100.0, 110.0, True)],
)
def test_time_due(every_seconds: float, last: float, now: float, want: bool) -> None:
    p = policy(every_seconds=every_seconds)
    p.last_save_at = last
    assert p.time_due(now) is want


@pytest.mark.parametrize(
    ("step", "every", "want"), [(10, 0, False), (10, 5, True), (11, 5, False), (0, 5, True)]
)
def test_periodic_due(step: int, every: int, want: bool) -> None:
    assert periodic_due(step, every) is want


@pytest.mark.parametrize(
    ("reason", "retried"),
    [
        ("periodic", True),
        ("eval-best", True),
        ("requested", True),
        ("final", True),
        ("preemption", False),  # the stop handling reports it; the run ends
    ],
)
def test_a_failed_save_is_retried_after_a_backoff(reason: str, retried: bool) -> None:
    p = policy()
    p.config.retry_backoff = 0.5
    p.failed(reason, now=200.0)
    assert p.retry == (reason if retried else None)
    if retried:
        assert p.retry_at == 200.0 + 0.5 * RETRY_DELAY_BACKOFFS
        assert not p.retry_due(200.0 + 3.9) and p.retry_due(204.0)


def test_a_started_save_serves_what_was_queued_or_retried() -> None:
    p = policy(every_seconds=10.0, retry="eval-best", pending="periodic")
    p.started(now=300.0)
    assert (p.retry, p.pending, p.last_save_at) == (None, None, 300.0)
    assert not p.time_due(309.0) and p.time_due(310.0)


@pytest.mark.parametrize(
    ("last", "step", "want"),
    [(None, 10, False), ((NAME, 10), 10, True), ((NAME, 10), 11, False)],
)
def test_committed_at(last: tuple[str, int] | None, step: int, want: bool) -> None:
    assert committed_at(last, step) is want


@pytest.mark.parametrize(
    ("committed", "estimate", "remaining", "plan"),
    [
        (True, 50.0, 1.0, StopPlan.COMMITTED),  # nothing to save, however short the grace
        (False, None, 1.0, StopPlan.SAVE),  # no history: try
        (False, 2.0, 10.0, StopPlan.SAVE),
        (False, 10.0, 10.0, StopPlan.SAVE),
        (False, 12.0, 10.0, StopPlan.SHORTFALL),
        (False, 1.0, -1.0, StopPlan.SHORTFALL),
    ],
)
def test_stop_plan(
    committed: bool, estimate: float | None, remaining: float, plan: StopPlan
) -> None:
    assert stop_plan(committed, grace_shortfall(estimate, remaining)) is plan


@pytest.mark.parametrize(
    ("deadline", "now", "estimate", "wait"),
    [(130.0, 100.0, None, 30.0), (130.0, 100.0, 10.0, 20.0), (130.0, 125.0, 10.0, 0.0)],
)
def test_in_flight_wait_leaves_room_for_the_preemption_save(
    deadline: float, now: float, estimate: float | None, wait: float
) -> None:
    assert in_flight_wait(deadline, now, estimate) == wait


@pytest.mark.parametrize(
    ("received", "grace", "deadline"), [(None, 30.0, None), (100.0, 30.0, 130.0)]
)
def test_stop_deadline(received: float | None, grace: float, deadline: float | None) -> None:
    assert stop_deadline(received, grace) == deadline


@pytest.mark.parametrize(
    ("save_at_end", "committed", "ok"),
    [(True, True, True), (True, False, False), (False, False, True), (False, True, True)],
)
def test_final_ok(save_at_end: bool, committed: bool, ok: bool) -> None:
    assert final_ok(save_at_end, committed) is ok
