"""bench/autointerval_sim.py as tables: the simulator on hand-worked traces, and `auto`
within 2% of the best fixed interval (an oracle's sweep on the same traces) and far
from the worst, over MTBFs of 1-16 h and save costs of 10-300 s (issue 29)."""

from __future__ import annotations

import pytest

from bench.autointerval_sim import (
    BOUNDS,
    PRIOR_MTBF,
    SETUPS,
    Setup,
    auto,
    bench_regime,
    compare,
    fixed,
    simulate,
    trace,
)
from lazarus_contract.interval import Bounds

pytestmark = pytest.mark.unit

S = Setup(mtbf=100.0, cost=2.0, durable=5.0, restart=10.0, work=100.0)


@pytest.mark.parametrize(
    ("gaps", "interval", "wall"),
    [
        ([], 30.0, 100 + 3 * 2.0),  # saves at 30, 60, 90 of compute
        ([], 1000.0, 100.0),  # never due
        # fails at up 40: the save at 30 (durable at up 35) holds; restart 10, redo 10
        ([40.0], 30.0, 40 + 10 + (100 - 30) + 2 * 2.0 + 0.0),
        # fails at up 33: the save at 30 is not durable yet (35): back to 0
        ([33.0], 30.0, 33 + 10 + 100 + 3 * 2.0),
        # fails during the stall (up 31): the save is lost, back to 0
        ([31.0], 30.0, 31 + 10 + 100 + 3 * 2.0),
    ],
)
def test_simulate_hand_worked(gaps: list[float], interval: float, wall: float) -> None:
    assert simulate(S, gaps, fixed(interval)) == pytest.approx(wall)


def test_a_due_save_waits_for_the_one_in_flight() -> None:
    slow = Setup(mtbf=100.0, cost=1.0, durable=25.0, restart=0.0, work=50.0)
    # every 10 s, but each takes 25 s to be durable: saves at 10 and 34 (10 + 24 up), no more
    assert simulate(slow, [], fixed(10.0)) == pytest.approx(50 + 2 * 1.0)


def test_auto_saves_first_at_the_lower_bound_then_follows_daly() -> None:
    policy = auto(Bounds(5.0, 1000.0), prior_mtbf=100.0)
    assert policy(0.0, 0, None) == 5.0
    assert policy(0.0, 0, 2.0) == pytest.approx((2 * 2.0 * 100) ** 0.5, rel=0.15)
    assert policy(100.0, 10, 2.0) < policy(100.0, 0, 2.0)  # failures seen: save more often


def test_traces_are_seeded() -> None:
    assert trace(3, 10.0, 100.0) == trace(3, 10.0, 100.0) != trace(4, 10.0, 100.0)
    assert sum(trace(3, 10.0, 100.0)) >= 100.0


@pytest.mark.parametrize("setup", SETUPS, ids=lambda s: f"mtbf{s.mtbf:g}-cost{s.cost:g}")
def test_auto_is_within_two_percent_of_the_best_fixed_interval(setup: Setup) -> None:
    r = compare(setup, range(12), BOUNDS, PRIOR_MTBF, grid=13)
    assert r.auto >= 0.98 * r.best
    assert r.auto >= 1.15 * r.worst  # far from the worst


def test_goodput_auto_regime_one_realisation_decides_more_than_the_estimate() -> None:
    """bench/goodput_auto.py's rare trace has 2 crashes and picks its best fixed interval
    on them: where they fall against the saves costs auto 9% there, while over 40 seeded
    traces of the same MTBF auto is within 1% of the best (docs/performance.md)."""
    mean, realised = bench_regime("rare", 0.25)
    assert mean >= 0.99
    assert realised < 0.95
