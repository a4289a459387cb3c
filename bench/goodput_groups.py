"""The pure parts of bench.goodput's mode (d), replica groups (spec.faultTolerance): which
group an event hits, the survivors' stall, the replacement's parts, the targets.

No I/O, no clock: tests/bench/test_goodput_groups.py holds them to tables.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.recovery_parts import percentile

GROUPS = "groups"  # the mode's name in bench.goodput
REPLICA_GROUPS, MIN_GROUPS = 2, 1
HEARTBEAT_MS = 1000
# The trainer's lines (trainer_image/lazarus_trainer/{api,ft}.py): a replacement set up
# (its Manager made, about to join) and healed (the live state loaded).
JOINING_MARK = "joins its live peers"
HEALED_MARK = "took the live state of step"
# issue 26's acceptance targets.
TARGET_GOODPUT, TARGET_STALL_P99_S, TARGET_REPLACEMENT_S = 0.85, 2.0, 10.0


def hit_group(event: int, groups: int = REPLICA_GROUPS) -> int:
    """The group event number `event` (0-based) hits: each in turn, so the writer (group 0)
    and a replacement of a replacement are both hit on a long enough trace."""
    return event % groups


def node_loss_victim(
    wanted: int, node_of: Mapping[int, str], lighthouse_node: str | None
) -> tuple[int, list[str]]:
    """The group a node loss takes, and what else that node holds (its other groups, the
    lighthouse). `wanted` unless its node holds more than it and another group's node holds
    only that group: an event hits one group's pod; the operator answers a lighthouse lost
    with a node by restarting the whole job when a minority may form a quorum."""

    def shared(g: int) -> list[str]:
        node = node_of[g]
        others = [f"group {o}" for o in sorted(node_of) if o != g and node_of[o] == node]
        return others + (["lighthouse"] if lighthouse_node == node else [])

    if not shared(wanted):
        return wanted, []
    alone = [g for g in sorted(node_of) if not shared(g)]
    victim = alone[0] if alone else wanted
    return victim, shared(victim)


def longest_gap(times: Sequence[float], start: float, end: float) -> float | None:
    """A survivor's stall at an event: the longest gap between its consecutive steps over
    the window [start, end] (the disruption to the replacement's first step), the gap
    across `start` included. None if it took no step after `start`."""
    ordered = sorted(times)
    gaps = [b - a for a, b in itertools.pairwise(ordered) if b >= start and a <= end]
    return max(gaps) if gaps else None


@dataclass(frozen=True)
class GroupStamps:
    """One group replacement's moments, epoch seconds; None where not seen."""

    disrupted: float  # the event (the SIGKILL, the Eviction call, the node's loss)
    started: float | None  # the kubelet started the replacement's process
    ready: float | None  # the trainer's imports done (`lazarus-train ready`)
    joining: float | None  # set up, about to join (JOINING_MARK)
    healed: float | None  # the live state taken from a peer (HEALED_MARK)
    first_step: float | None  # the replacement's first committed step's line, seen


# In the order they happen; `total` is the disruption to the first committed step.
PARTS = (
    "to_process",  # the operator sees the end, creates the pod; scheduling; the kubelet
    "process_start",  # interpreter and imports
    "setup",  # model, data, Lazarus, torchft's Manager and checkpoint server
    "heal",  # the quorum, the live state from a peer, loading it
    "first_step",  # the first committed step (an allreduce with the survivors)
)


def replacement_parts(s: GroupStamps) -> dict[str, float]:
    """The parts of one replacement and their total, seconds; a part whose ends were not
    both seen is left out (the total still holds when the first step was)."""
    moments = [s.disrupted, s.started, s.ready, s.joining, s.healed, s.first_step]
    out: dict[str, float] = {}
    for name, (a, b) in zip(PARTS, itertools.pairwise(moments), strict=True):
        if a is not None and b is not None:
            out[name] = round(b - a, 3)
    if s.first_step is not None:
        out["total"] = round(s.first_step - s.disrupted, 3)
    return out


def targets(
    goodput: float, stalls: Sequence[float | None], replacements: Sequence[float | None]
) -> dict[str, bool]:
    """issue 26's acceptance: goodput, the survivors' stall p99 and every replacement. A
    stall or replacement not measured (None) misses its target."""
    stall_ok = bool(stalls) and all(s is not None for s in stalls)
    repl_ok = bool(replacements) and all(r is not None for r in replacements)
    return {
        "goodput": goodput >= TARGET_GOODPUT,
        "stall_p99": stall_ok
        and percentile([s for s in stalls if s is not None], 99) <= TARGET_STALL_P99_S,
        "replacement": repl_ok
        and max(r for r in replacements if r is not None) <= TARGET_REPLACEMENT_S,
    }
