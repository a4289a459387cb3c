"""The pure parts of bench/goodput.py: the seeded disruption trace and the goodput arithmetic.

No I/O, no clock: tests/bench/test_goodput_trace.py holds them to tables.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# What the local loop can produce honestly (bench/goodput.py says how each is made).
EVICTION = "eviction"  # Eviction API: DisruptionTarget, SIGTERM, the grace period
CRASH = "crash"  # SIGKILL of the trainer's process group, as the OOM killer does
NODE_LOSS = "node-loss"  # the kubelet and its pods die; the node goes Unknown
NOTICE_THEN_LOSS = "notice-then-loss"  # a disruption-notice taint, then the node is lost
KINDS = (EVICTION, CRASH, NODE_LOSS, NOTICE_THEN_LOSS)
NOTICE_TAINT = "aws-node-termination-handler/spot-itn"  # the notice's taint
# Kueue preempting the job for a higher-priority one (needs Kueue in the loop: a trace of
# its own, not mixed with the others).
QUEUE_PREEMPTION = "queue-preemption"
# --trace: the kinds each trace draws from.
TRACES = {"mixed": KINDS, "queue-preemption": (QUEUE_PREEMPTION,)}


@dataclass(frozen=True)
class Event:
    kind: str
    after_steps: int  # steps the attempt it hits has run (since its own start) when it lands


def make_trace(
    seed: int, events: int, min_gap: int, max_gap: int, kinds_of: Sequence[str] = KINDS
) -> list[Event]:
    """`events` disruptions of `kinds_of`: every kind once (in a seeded order) before any
    repeats, each landing after a seeded number of the current attempt's steps in
    [min_gap, max_gap]."""
    if events < 0 or not 0 < min_gap <= max_gap or not kinds_of:
        raise ValueError(f"bad trace shape: events={events}, gaps {min_gap}..{max_gap}")
    rng = random.Random(seed)
    kinds = list(kinds_of)
    rng.shuffle(kinds)
    while len(kinds) < events:
        kinds.append(rng.choice(kinds_of))
    return [Event(k, rng.randint(min_gap, max_gap)) for k in kinds[:events]]


@dataclass(frozen=True)
class AttemptSteps:
    """The steps one attempt logged, in order: the first is its resume step + 1."""

    number: int
    first_step: int
    times: tuple[float, ...]  # when each step's line was seen (seconds, any origin)

    @property
    def last_step(self) -> int:
        return self.first_step + len(self.times) - 1

    def durations(self, fallback: float) -> list[float]:
        """Each step's duration; the first step's (process start and resume in it) is
        taken as the attempt's median step, else `fallback`."""
        diffs = [b - a for a, b in zip(self.times, self.times[1:], strict=False)]
        first = statistics.median(diffs) if diffs else fallback
        return [first, *diffs] if self.times else []


@dataclass(frozen=True)
class Accounting:
    final_step: int
    executed: int  # steps computed, over all attempts
    survived: int  # of those, the steps the final parameters descend from
    recomputed: int  # executed - survived: work lost to disruptions and done again
    survived_seconds: float
    recomputed_seconds: float
    elapsed: float
    goodput: float  # survived_seconds / elapsed
    other_seconds: float  # elapsed - both: starts, resumes, saves, restart decisions


def survival_thresholds(attempts: Sequence[AttemptSteps]) -> list[float]:
    """For each attempt, the highest of its steps that survived: the lowest resume step of
    any later attempt (a later attempt that resumed from before them discards them)."""
    out: list[float] = []
    bound = float("inf")
    for a in reversed(attempts):
        out.append(bound)
        if a.times:
            bound = min(bound, a.first_step - 1)
    return out[::-1]


def lost_at_each_end(attempts: Sequence[AttemptSteps]) -> list[int]:
    """Steps each attempt's end threw away: how far it got past the next one's resume step
    (attempts that logged no step are skipped: nothing of theirs was lost)."""
    ran = sorted((a for a in attempts if a.times), key=lambda a: a.number)
    return [max(0, a.last_step - (b.first_step - 1)) for a, b in itertools.pairwise(ran)]


def account(attempts: Sequence[AttemptSteps], elapsed: float) -> Accounting:
    """Which executed steps survived, and the time they and the recomputed ones took."""
    ordered = sorted(attempts, key=lambda a: a.number)
    diffs = [d for a in ordered for d in a.durations(0.0)[1:]]
    fallback = statistics.median(diffs) if diffs else 0.0
    survived = recomputed = 0
    survived_s = recomputed_s = 0.0
    for a, bound in zip(ordered, survival_thresholds(ordered), strict=True):
        for i, d in enumerate(a.durations(fallback)):
            if a.first_step + i <= bound:
                survived, survived_s = survived + 1, survived_s + d
            else:
                recomputed, recomputed_s = recomputed + 1, recomputed_s + d
    final = max((a.last_step for a in ordered if a.times), default=0)
    return Accounting(
        final_step=final,
        executed=survived + recomputed,
        survived=survived,
        recomputed=recomputed,
        survived_seconds=survived_s,
        recomputed_seconds=recomputed_s,
        elapsed=elapsed,
        goodput=survived_s / elapsed if elapsed > 0 else 0.0,
        other_seconds=elapsed - survived_s - recomputed_s,
    )
