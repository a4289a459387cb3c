"""What an ended attempt lost: steps and wall-clock seconds, measured or bounded.

Pure. The best signal wins, and no figure claims more than is known
(docs/trainingjob.md, "Lost work"):

1. the trainers' own word: the step of a final termination message, or of the
   progress signal they keep in the same file while training (contract section 4,
   fresh within one signal interval), which Kubernetes reports even after a crash
   or an OOM kill. A trainer that ended without a step took none: it lost nothing
   past the resume point, however long its start-up ran;
2. otherwise (a lost node reports nothing) the newest checkpoint the attempt itself
   committed is its last known progress; past it, the step rate up to when the
   attempt was last known alive (`ended_at`). That is marked estimated and "at
   least"; with no checkpoint of its own, the loss is unknown (0, at least), not a
   wall-clock guess.

Where the next attempt's resume point is not known (the trainer selects it), the
steps past 0 are an upper bound: "at most". Lost seconds are the wall-clock time
the attempt trained past the step the next attempt resumes from: from that
checkpoint's commit (or the attempt's start, if the checkpoint is older) to the
attempt's end. No lost steps, no lost seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

AT_LEAST = "atLeast"
AT_MOST = "atMost"


@dataclass(frozen=True)
class LostWork:
    steps: int
    seconds: float
    estimated: bool
    bound: str | None = None  # AT_LEAST / AT_MOST: the figure is only a bound

    def describe(self) -> str:
        if self.estimated and self.bound == AT_LEAST and not self.steps:
            return "lost an unknown number of steps (no trainer reported one)"
        approx = "~" if self.estimated else ""
        words = {AT_LEAST: "at least ", AT_MOST: "at most "}.get(self.bound or "", "")
        text = f"lost {words}{approx}{self.steps} steps"
        if self.steps:
            text += f" ({approx}{self.seconds:.0f}s)"
        return text + (" (estimated)" if self.estimated else "")


def step_rate(
    from_step: int, from_time: datetime | None, to_step: int, to_time: datetime | None
) -> float | None:
    """Steps per second between two observations, if they say anything."""
    if from_time is None or to_time is None or from_step < 0 or to_step <= from_step:
        return None
    seconds = (to_time - from_time).total_seconds()
    return (to_step - from_step) / seconds if seconds > 0 else None


def lost_work(
    *,
    reported: int | None,
    resume_step: int,
    resume_time: datetime | None,
    attempt_start: datetime | None,
    ended_at: datetime,
    rate: float | None,
    own: tuple[int, datetime | None] | None = None,
    resume_known: bool = True,
) -> LostWork:
    """The work an attempt that ended at `ended_at` loses when the next one resumes
    from `resume_step` (committed at `resume_time`; -1: from scratch).

    `reported`: the highest step its trainers reported, -1 when they ended without
    one, None when none was heard. `own`: the step and commit time of the newest
    checkpoint the attempt committed, if any."""
    since = [t for t in (resume_time, attempt_start) if t is not None]
    start = max(since) if since else None
    base = max(resume_step, 0)
    own_step = own[0] if own is not None else -1
    if reported is not None:
        steps = max(0, max(reported, own_step) - base)
        seconds = _seconds(start, ended_at) if steps else 0.0
        return LostWork(steps, seconds, False, None if resume_known or not steps else AT_MOST)
    if own is None:  # nothing says it took a step
        return LostWork(0, 0.0, True, AT_LEAST)
    steps = max(0, own_step - base)
    if rate is not None and rate > 0 and own[1] is not None:
        steps += round(rate * _seconds(own[1], ended_at))
    seconds = _seconds(start, ended_at) if steps else 0.0
    return LostWork(steps, seconds, True, AT_LEAST if resume_known else None)


def _seconds(start: datetime | None, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds()) if start is not None else 0.0
