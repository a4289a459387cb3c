"""bench/goodput_groups.py's pure parts: the group an event hits, the survivors' stall,
a replacement's parts, the targets."""

from __future__ import annotations

from typing import Any

import pytest

from bench.goodput_groups import (
    GroupStamps,
    hit_group,
    longest_gap,
    node_loss_victim,
    replacement_parts,
    targets,
)
from bench.goodput_report import paced_goodput

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("event", "groups", "hit"), [(0, 2, 0), (1, 2, 1), (2, 2, 0), (6, 2, 0), (4, 3, 1)]
)
def test_events_hit_each_group_in_turn(event: int, groups: int, hit: int) -> None:
    assert hit_group(event, groups) == hit


@pytest.mark.parametrize(
    ("wanted", "node_of", "lighthouse", "victim", "shared"),
    [
        (0, {0: "a", 1: "b"}, "b", 0, []),  # alone on its node
        (1, {0: "a", 1: "b"}, "b", 0, []),  # b holds the lighthouse: a is lost instead
        (0, {0: "a", 1: "b"}, None, 0, []),
        (1, {0: "a", 1: "a"}, "b", 1, ["group 0"]),  # both on a: no node holds one alone
        (0, {0: "a", 1: "a"}, "a", 0, ["group 1", "lighthouse"]),
        (0, {0: "a", 1: "b", 2: "a"}, "c", 1, []),
    ],
)
def test_a_node_loss_takes_a_node_holding_one_group_only(
    wanted: int, node_of: dict[int, str], lighthouse: str | None, victim: int, shared: list[str]
) -> None:
    assert node_loss_victim(wanted, node_of, lighthouse) == (victim, shared)


@pytest.mark.parametrize(
    ("times", "start", "end", "gap"),
    [
        ([1.0, 1.1, 1.2, 2.3, 2.4, 2.5], 1.25, 3.0, pytest.approx(1.1)),  # the gap across
        # A gap starting in the window counts (the survivors wait for the joining step).
        ([1.0, 1.1, 1.2, 2.3, 2.4, 5.0], 1.25, 3.0, pytest.approx(2.6)),
        ([1.0, 1.1, 1.2, 2.3, 3.1, 5.0], 1.25, 3.0, pytest.approx(1.1)),  # after the window
        ([0.0, 3.0, 3.1, 3.2], 3.05, 4.0, pytest.approx(0.1)),  # ended before the event
        ([2.4, 1.0, 2.3, 1.2], 1.25, 3.0, pytest.approx(1.1)),  # unordered
        ([1.0, 1.1], 1.5, 3.0, None),  # no step after the event
        ([], 0.0, 1.0, None),
    ],
)
def test_the_survivors_stall_is_its_longest_gap_over_the_window(
    times: list[float], start: float, end: float, gap: float | None
) -> None:
    assert longest_gap(times, start, end) == gap


@pytest.mark.parametrize(
    ("stamps", "parts"),
    [
        (
            GroupStamps(100.0, 102.0, 106.5, 106.75, 107.0, 107.25),
            {
                "to_process": 2.0,
                "process_start": 4.5,
                "setup": 0.25,
                "heal": 0.25,
                "first_step": 0.25,
                "total": 7.25,
            },
        ),
        (
            GroupStamps(100.0, None, 106.5, None, None, 107.25),
            {"total": 7.25},
        ),
        (GroupStamps(100.0, 101.0, None, None, None, None), {"to_process": 1.0}),
    ],
)
def test_a_replacement_splits_into_parts_that_add_up(
    stamps: GroupStamps, parts: dict[str, float]
) -> None:
    got = replacement_parts(stamps)
    assert got == parts
    if len(got) == 6:
        assert sum(v for k, v in got.items() if k != "total") == pytest.approx(got["total"])


@pytest.mark.parametrize(
    ("goodput", "stalls", "replacements", "met"),
    [
        (0.9, [1.0, 1.1], [7.0, 9.9], {"goodput": True, "stall_p99": True, "replacement": True}),
        (0.84, [1.0], [7.0], {"goodput": False, "stall_p99": True, "replacement": True}),
        (0.9, [1.0, 2.5], [7.0], {"goodput": True, "stall_p99": False, "replacement": True}),
        (0.9, [1.0], [7.0, 10.1], {"goodput": True, "stall_p99": True, "replacement": False}),
        (0.9, [1.0, None], [None], {"goodput": True, "stall_p99": False, "replacement": False}),
        (0.9, [], [], {"goodput": True, "stall_p99": False, "replacement": False}),
    ],
)
def test_the_targets(
    goodput: float,
    stalls: list[float | None],
    replacements: list[float | None],
    met: dict[str, bool],
) -> None:
    assert targets(goodput, stalls, replacements) == met


def _mode(*runs: tuple[int, float], step: float | None = None) -> dict[str, object]:
    rows = [{"accounting": {"survived": n, "elapsed": e}, "step_s_p50": step} for n, e in runs]
    return {"runs": rows}


@pytest.mark.parametrize(
    ("results", "paced"),
    [
        # 400 steps at the undisturbed 0.25 s over 125 s of wall time: 0.8 (a stall inside
        # a step's time in the step log does not count as work).
        (
            {"undisturbed": _mode((400, 110.0), step=0.25), "groups": _mode((400, 125.0))},
            {"undisturbed": 0.9091, "groups": 0.8},
        ),
        (
            {
                "undisturbed": _mode((100, 55.0), step=0.5),
                "lazarus": _mode((100, 100.0), (100, 50.0), (100, 200.0)),
            },
            {"undisturbed": 0.9091, "lazarus": 0.5},  # the median of 0.5, 1.0, 0.25
        ),
        ({"groups": _mode((400, 125.0))}, {}),  # no undisturbed run: nothing to pace by
    ],
)
def test_goodput_paced_at_the_undisturbed_step_time(
    results: dict[str, Any], paced: dict[str, float]
) -> None:
    assert paced_goodput(results) == paced
