"""What one status transition of a job means for its metrics. Pure and table-tested:
`account` takes the job's clock (what this operator process remembers of it), the
status before and after a cycle, and the time, and returns the new clock and the
observations the metrics module records.

Goodput: every second of a job's wall clock lands in one state. Time while the pods
run is *unresolved* until the store says whether its progress survived: a newer
checkpoint makes the time up to its commit `productive`; an attempt end makes the
rest `lost_progress` once the relaunch shows which checkpoint it resumes from. So
the productive counter lags by up to one checkpoint interval, and over any window
`increase(productive) / increase(all states)` is the share of time whose progress
survived (ml-goodput-measurement's and ETTR's definition).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from . import status as s
from .classify import Cause, parse_time

PRODUCTIVE: Final = "productive"
LOST: Final = "lost_progress"
PENDING: Final = "pending"  # first launch: waiting for the pods to run
RESTARTING: Final = "restarting"  # attempt end until the next attempt's pods run
SUSPENDED: Final = "suspended"
STATES: Final = (PRODUCTIVE, LOST, PENDING, RESTARTING, SUSPENDED)
PHASES: Final = (s.PENDING, s.RUNNING, s.RESTARTING, s.SUSPENDED, s.SUCCEEDED, s.FAILED)

# The `cause` label: the keys of status.restarts.
CAUSE_KEYS: Final = {
    str(Cause.FAILED): "failed",
    str(Cause.OOM_KILLED): "oomKilled",
    str(Cause.DISRUPTED): "disrupted",
    str(Cause.NODE_LOST): "nodeLost",
}
CAUSES: Final = tuple(CAUSE_KEYS.values())


@dataclass(frozen=True)
class Clock:
    """One job as this process remembers it between cycles."""

    t: datetime  # wall clock accounted up to here
    run_from: datetime | None = None  # start of running time not yet resolved
    run_to: datetime | None = None  # when that running stopped (None: still running)
    ended: datetime | None = None  # the last attempt's end, until its successor runs
    ended_cause: str = ""


@dataclass
class Observations:
    seconds: dict[str, float] = field(default_factory=dict)  # state -> seconds
    restarts: dict[str, int] = field(default_factory=dict)  # cause -> count
    lost_steps: dict[str, int] = field(default_factory=dict)
    lost_seconds: dict[str, float] = field(default_factory=dict)
    recovered: list[tuple[str, float]] = field(default_factory=list)  # (cause, seconds)
    phase: str = s.PENDING
    checkpoint_step: int | None = None
    checkpoint_time: float | None = None  # unix seconds
    failures_without_progress: int = 0

    def add(self, state: str, seconds: float) -> None:
        if seconds > 0:
            self.seconds[state] = self.seconds.get(state, 0.0) + seconds


def _cause(pending: dict[str, Any] | None, default: str = "failed") -> str:
    return CAUSE_KEYS.get(str((pending or {}).get("cause")), default)


def _idle_state(phase: str | None, ended: datetime | None) -> str | None:
    """The state of time spent in `phase` while the pods do not run."""
    if phase == s.SUSPENDED:
        return SUSPENDED
    if phase in s.FINISHED:
        return None
    if phase == s.RESTARTING or ended is not None:
        return RESTARTING
    return PENDING


@dataclass
class _Run:
    """The mutable part of a clock while one transition is applied."""

    run_from: datetime | None
    run_to: datetime | None
    ended: datetime | None
    ended_cause: str

    def resolve(self, o: Observations, now: datetime, commit: datetime | None) -> float:
        """Settle the unresolved running time: productive up to `commit`, lost after.
        Returns the lost seconds."""
        if self.run_from is None:
            return 0.0
        start, end = self.run_from, self.run_to or now
        cut = min(max(commit, start), end) if commit is not None else start
        o.add(PRODUCTIVE, (cut - start).total_seconds())
        lost = max((end - cut).total_seconds(), 0.0)
        o.add(LOST, lost)
        self.run_from = self.run_to = None
        return lost


def account(
    clock: Clock | None, old: dict[str, Any], new: dict[str, Any], now: datetime
) -> tuple[Clock, Observations]:
    """The clock after the cycle that turned status `old` into `new` at `now`."""
    old_phase, new_phase = old.get("phase"), new.get("phase")
    c = clock or Clock(t=now, run_from=now if old_phase == s.RUNNING else None)
    r = _Run(c.run_from, c.run_to, c.ended, c.ended_cause)
    o = Observations(phase=str(new_phase or s.PENDING))
    # The interval since the last cycle was spent in the old phase; running time
    # stays unresolved until a checkpoint or a relaunch settles it.
    if old_phase != s.RUNNING:
        state = _idle_state(old_phase, r.ended)
        if state is not None:
            o.add(state, (now - c.t).total_seconds())
    commit = parse_time((new.get("latestCheckpoint") or {}).get("time"))
    if r.run_from is not None and commit is not None and commit > r.run_from:
        cut = min(commit, r.run_to or now)
        o.add(PRODUCTIVE, (cut - r.run_from).total_seconds())
        r.run_from = max(cut, r.run_from)
    old_r, new_r = old.get("restarts") or {}, new.get("restarts") or {}
    for cause in CAUSES:
        n = int(new_r.get(cause, 0)) - int(old_r.get(cause, 0))
        if n > 0:
            o.restarts[cause] = n
    pending = new.get("pendingRestart") or {}
    if pending and pending != (old.get("pendingRestart") or {}):
        r.ended, r.ended_cause = now, _cause(pending)
    if old_phase == s.RUNNING and new_phase != s.RUNNING and r.run_to is None:
        r.run_to = now
    if new_phase in s.FINISHED and old_phase not in s.FINISHED:
        r.resolve(o, now, now if new_phase == s.SUCCEEDED else commit)
        r.ended = None
    old_attempt = int(old.get("attempt") or 0)
    if int(new.get("attempt") or 0) > old_attempt > 0:
        # A relaunch: the checkpoint it resumes from settles the ended attempt.
        lost = r.resolve(o, now, commit)
        if old.get("pendingRestart"):  # a restart, not a resume after suspend
            cause = _cause(old["pendingRestart"])
            lost_steps = int(new.get("lostSteps") or 0) - int(old.get("lostSteps") or 0)
            o.lost_steps[cause] = max(lost_steps, 0)
            o.lost_seconds[cause] = lost
    if new_phase == s.RUNNING and old_phase != s.RUNNING:
        r.resolve(o, now, commit)  # nothing, unless a relaunch went unseen
        r.run_from = now
        if r.ended is not None:
            o.recovered.append((r.ended_cause or "failed", (now - r.ended).total_seconds()))
            r.ended = None
    ck = new.get("latestCheckpoint") or {}
    if "step" in ck:
        o.checkpoint_step = int(ck["step"])
        o.checkpoint_time = commit.timestamp() if commit is not None else None
    o.failures_without_progress = int(new.get("failuresWithoutProgress") or 0)
    return Clock(now, r.run_from, r.run_to, r.ended, r.ended_cause), o
