"""What one status transition of a job means for its metrics. Pure and table-tested:
`account` takes the job's clock (what this operator process remembers of it) and a
cycle's transition (the typed status before and after it, and its time), and returns
the new clock and the observations the metrics module records.

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
from typing import Final

from . import status as s
from .classify import parse_time
from .jobstatus import JobStatus
from .records import RESTART_KEYS, restart_key
from .transition import Transition

PRODUCTIVE: Final = "productive"
LOST: Final = "lost_progress"
PENDING: Final = "pending"  # first launch: waiting for the pods to run
RESTARTING: Final = "restarting"  # attempt end until the next attempt's pods run
SUSPENDED: Final = "suspended"
STATES: Final = (PRODUCTIVE, LOST, PENDING, RESTARTING, SUSPENDED)
# Queued (Kueue has not admitted the Workload) is a phase of its own for the stuck
# alert; its time lands in pending or restarting, as any wait without pods does.
PHASES: Final = (
    s.QUEUED,
    s.PENDING,
    s.RUNNING,
    s.RESTARTING,
    s.SUSPENDED,
    s.SUCCEEDED,
    s.FAILED,
)

# The `cause` label: the keys of status.restarts.
CAUSES: Final = tuple(RESTART_KEYS.values())


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
    start_timeouts: int = 0  # attempts torn down by spec.scheduling's start timeout
    # spec.faultTolerance: groups replaced alone (by cause), lighthouses recreated;
    # no relaunch, so the survivors' running time stays productive.
    replacements: dict[str, int] = field(default_factory=dict)
    lighthouse_restarts: int = 0

    def add(self, state: str, seconds: float) -> None:
        if seconds > 0:
            self.seconds[state] = self.seconds.get(state, 0.0) + seconds


def _idle_state(phase: s.Phase | None, ended: datetime | None) -> str | None:
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


def account(clock: Clock | None, t: Transition) -> tuple[Clock, Observations]:
    """The clock after the cycle that made transition `t`."""
    old, new, now = t.old, t.new, t.now
    c = clock or Clock(t=now, run_from=now if old.phase == s.RUNNING else None)
    r = _Run(c.run_from, c.run_to, c.ended, c.ended_cause)
    o = Observations(phase=str(new.phase or s.PENDING))
    # The interval since the last cycle was spent in the old phase; running time
    # stays unresolved until a checkpoint or a relaunch settles it.
    if old.phase != s.RUNNING:
        state = _idle_state(old.phase, r.ended)
        if state is not None:
            o.add(state, (now - c.t).total_seconds())
    commit = parse_time(new.latest_checkpoint.time if new.latest_checkpoint else None)
    if r.run_from is not None and commit is not None and commit > r.run_from:
        cut = min(commit, r.run_to or now)
        o.add(PRODUCTIVE, (cut - r.run_from).total_seconds())
        r.run_from = max(cut, r.run_from)
    _count_ends(o, old, new)
    _count_groups(o, old, new)
    o.start_timeouts = (new.restarts.start_timeouts or 0) - (old.restarts.start_timeouts or 0)
    ended = new.pending_restart  # a start timeout is not an end to recover from
    if ended and ended != old.pending_restart and ended.cause != s.R_START_TIMEOUT:
        r.ended, r.ended_cause = now, restart_key(ended.cause)
    if old.phase == s.RUNNING and new.phase != s.RUNNING and r.run_to is None:
        r.run_to = now
    if new.finished and not old.finished:
        r.resolve(o, now, now if new.phase == s.SUCCEEDED else commit)
        r.ended = None
    if new.attempt > old.attempt > 0:
        # A relaunch: the checkpoint it resumes from settles the ended attempt.
        _relaunched(o, r.resolve(o, now, commit), old, new)
    if new.phase == s.RUNNING and old.phase != s.RUNNING:
        r.resolve(o, now, commit)  # nothing, unless a relaunch went unseen
        r.run_from = now
        if r.ended is not None:
            o.recovered.append((r.ended_cause or "failed", (now - r.ended).total_seconds()))
            r.ended = None
    ck = new.latest_checkpoint
    if ck is not None and ck.step is not None:
        o.checkpoint_step = ck.step
        o.checkpoint_time = commit.timestamp() if commit is not None else None
    o.failures_without_progress = new.failures_without_progress
    return Clock(now, r.run_from, r.run_to, r.ended, r.ended_cause), o


def _count_ends(o: Observations, old: JobStatus, new: JobStatus) -> None:
    """The attempt ends counted since `old`, by cause."""
    for cause, key in RESTART_KEYS.items():
        n = new.restarts.count(cause) - old.restarts.count(cause)
        if n > 0:
            o.restarts[key] = n


def _count_groups(o: Observations, old: JobStatus, new: JobStatus) -> None:
    """Replica groups replaced, by cause, and lighthouses recreated since `old`."""
    was, now = old.groups.replacements, new.groups.replacements
    for cause, key in RESTART_KEYS.items():
        if (n := now.count(cause) - was.count(cause)) > 0:
            o.replacements[key] = n
    o.lighthouse_restarts = max(new.groups.lighthouse_restarts - old.groups.lighthouse_restarts, 0)


def _relaunched(o: Observations, lost: float, old: JobStatus, new: JobStatus) -> None:
    """What a relaunch after a restart (not a resume after suspend) booked as lost; a
    start timeout's gang never ran, and its cause is none of the metrics' causes."""
    if old.pending_restart is not None and old.pending_restart.cause != s.R_START_TIMEOUT:
        cause = restart_key(old.pending_restart.cause)
        o.lost_steps[cause] = max(new.lost_steps - old.lost_steps, 0)
        o.lost_seconds[cause] = lost
