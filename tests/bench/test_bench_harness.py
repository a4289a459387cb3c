"""lazarus_devstack.bench_harness: the schedule and the summaries every benchmark
shares, as tables."""

from __future__ import annotations

import pytest

from lazarus_devstack.bench_harness import (
    Slot,
    interleaved,
    latency_summary,
    percentile,
    ratios,
    rotated,
    spread,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("names", "r", "want"),
    [
        (["a", "b"], 0, ["a", "b"]),
        (["a", "b"], 1, ["b", "a"]),  # two alternate who goes first
        (["a", "b"], 2, ["a", "b"]),
        (["a", "b", "c"], 1, ["b", "c", "a"]),
        (["a", "b", "c"], 5, ["c", "a", "b"]),
        ([], 3, []),
    ],
)
def test_rotated(names: list[str], r: int, want: list[str]) -> None:
    assert rotated(names, r) == want


def test_interleaved_warms_up_then_rotates_every_round() -> None:
    got = [(s.r, s.name, s.warmup, s.tag) for s in interleaved(["x", "y"], rounds=2, warmup=1)]
    assert got == [
        (0, "x", True, "warm-up"),
        (0, "y", True, "warm-up"),
        (1, "y", False, "round 1"),
        (1, "x", False, "round 1"),
        (2, "x", False, "round 2"),
        (2, "y", False, "round 2"),
    ]


def test_interleaved_without_warm_up_counts_from_zero() -> None:
    assert list(interleaved(["x"], rounds=2)) == [Slot(0, "x", False), Slot(1, "x", False)]


@pytest.mark.parametrize(
    ("num", "den", "want"),
    [
        ([2.0, 6.0], [1.0, 3.0], [2.0, 2.0]),
        ([1.0], [1.0, 2.0], []),  # a method missed a round: nothing pairs up
        ([], [], []),
    ],
)
def test_ratios_pair_within_a_round(num: list[float], den: list[float], want: list[float]) -> None:
    assert ratios(num, den) == want


@pytest.mark.parametrize(
    ("xs", "p", "want"),
    [
        ([3.0], 99, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([float(i) for i in range(1, 1001)], 99, 990.0),
        ([float(i) for i in range(1, 101)], 100, 100.0),
        ([5.0, 1.0, 3.0], 0, 1.0),
    ],
)
def test_percentile_nearest_rank(xs: list[float], p: float, want: float) -> None:
    assert percentile(xs, p) == want


def test_spread_and_latency_summary() -> None:
    assert spread([]) == "n/a"
    assert spread([2.0, 1.0, 4.0]) == "  2.000 (1.000-4.000)"
    assert latency_summary([0.1, 0.2, 0.6]) == {
        "p50_s": 0.2,
        "p99_s": 0.6,
        "max_s": 0.6,
        "mean_s": 0.3,
    }
