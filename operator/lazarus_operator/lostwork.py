"""What an ended attempt lost: steps and wall-clock seconds, measured or estimated.

Pure. The best signal wins (docs/trainingjob.md, "Lost work"):

1. a step the trainer reported: its final termination message, or the progress
   signal it keeps in the same file while training (contract section 4), which
   Kubernetes reports even after a crash or an OOM kill;
2. otherwise (a lost node reports nothing) an estimate: the attempt's observed
   step rate times the seconds it ran past its resume point — marked estimated.

Lost seconds are the wall-clock time the attempt trained past the step the next
attempt resumes from: from that checkpoint's commit (or the attempt's start, if
the checkpoint is older) to the attempt's end. No lost steps, no lost seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class LostWork:
    steps: int
    seconds: float
    estimated: bool

    def describe(self) -> str:
        approx = "~" if self.estimated else ""
        text = f"lost {approx}{self.steps} steps"
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
    last_step: int | None,
    resume_step: int,
    resume_time: datetime | None,
    attempt_start: datetime | None,
    ended_at: datetime,
    rate: float | None,
) -> LostWork:
    """The work an attempt that ended at `ended_at` loses when the next one resumes
    from `resume_step` (committed at `resume_time`; -1: from scratch)."""
    since = [t for t in (resume_time, attempt_start) if t is not None]
    trained = max(0.0, (ended_at - max(since)).total_seconds()) if since else 0.0
    base = max(resume_step, 0)
    if last_step is not None and last_step >= 0:
        steps = max(0, last_step - base)
        return LostWork(steps, trained if steps else 0.0, False)
    if rate is not None and rate > 0:
        steps = round(rate * trained)
        return LostWork(steps, trained if steps else 0.0, True)
    # Nothing to go on: say so rather than claim nothing was lost.
    return LostWork(0, trained, True)
