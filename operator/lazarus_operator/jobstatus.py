"""`JobStatus`: a TrainingJob's `.status` as typed values, and the stage it puts the job in.

`from_api` reads the API's JSON, `to_api` writes it back with the same field names
and values (the CRD, alerts and tests read them). A field that is None is absent
from the JSON, and so is a count, flag or list at its default that the status was
not read with and no writer set (`shown`); the records the operator writes whole
(`lastFailure`, `resumedFrom`) keep their None fields, which `status.prune_none`
drops before the write.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, auto
from typing import Any

from .groupstatus import GroupStatus
from .records import (
    HistoryEntry,
    LastFailure,
    LatestCheckpoint,
    PendingRestart,
    Restarts,
    ResumedFrom,
    as_float,
    as_int,
    as_str,
    some,
)
from .status import FINISHED, HISTORY_LIMIT, SUSPENDED, Condition, Phase, set_in


@dataclass
class JobStatus:
    phase: Phase | None = None
    observed_generation: int | None = None
    attempt: int = 0  # N of the latest attempt launched; 0 before the first launch
    attempt_started_at: str | None = None
    launched: bool = False
    # Resumed after a suspend, waiting for Kueue's admission (phase Queued): the next
    # launch starts a new attempt from the newest checkpoint, as from Suspended.
    resume_pending: bool = False
    finished_at: str | None = None
    restarts: Restarts = field(default_factory=Restarts)
    failures_without_progress: int = 0
    consecutive_failures: int = 0
    lost_steps: int = 0
    lost_seconds: float = 0.0
    step_rate: float | None = None
    pending_restart: PendingRestart | None = None
    last_failure: LastFailure | None = None
    latest_checkpoint: LatestCheckpoint | None = None
    resumed_from: ResumedFrom | None = None
    history: list[HistoryEntry] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    groups: GroupStatus = field(default_factory=GroupStatus)  # spec.faultTolerance's
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version does not know
    # API keys written even at their default value (0, False, []): those the status
    # was read with, and those a writer below set. Other defaults stay absent, so a
    # status reads back exactly as it was.
    shown: set[str] = field(default_factory=set, compare=False, repr=False)

    # --- reading -------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    def condition(self, ctype: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == ctype), None)

    def resume_point_step(self) -> int:
        return self.resumed_from.step if self.resumed_from else -1

    # --- writing -------------------------------------------------------------------
    def set_condition(
        self, ctype: str, value: bool, reason: str, message: str, *, now: datetime
    ) -> None:
        set_in(self.conditions, ctype, value, reason, message, now=now)

    def start_attempt(self, attempt: int, started_at: str, lost: tuple[int, float]) -> None:
        """Attempt `attempt` launches now; `lost`: the steps and seconds its
        predecessor lost, added to the job's totals."""
        self.lost_steps += lost[0]
        self.lost_seconds = round(self.lost_seconds + lost[1], 3)
        self.attempt, self.attempt_started_at, self.launched = attempt, started_at, False
        self.resume_pending = False
        self.groups.generations = []  # a new attempt starts every replica group afresh
        self.shown |= {"launched", "lostSteps", "lostSeconds"}

    def count_failure(self, *, progress: bool) -> None:
        """A failure charged to the budget; `progress`: a new checkpoint since the last."""
        if progress:
            self.failures_without_progress, self.consecutive_failures = 0, 1
        else:
            self.failures_without_progress += 1
            self.consecutive_failures += 1
        self.shown |= {"failuresWithoutProgress", "consecutiveFailures"}

    def add_history(self, entry: HistoryEntry) -> None:
        self.history = [*self.history, entry][-HISTORY_LIMIT:]

    def history_of(self, attempt: int) -> list[HistoryEntry]:
        return [h for h in self.history if h.attempt == attempt]

    # --- the API representation ----------------------------------------------------
    @classmethod
    def from_api(cls, d: dict[str, Any]) -> JobStatus:
        def rec(key: str) -> dict[str, Any] | None:
            v = d.get(key)
            return dict(v) if v else None

        pending, failure, latest, resumed = (
            rec(k) for k in ("pendingRestart", "lastFailure", "latestCheckpoint", "resumedFrom")
        )
        return cls(
            phase=Phase(d["phase"]) if d.get("phase") else None,
            observed_generation=as_int(d.get("observedGeneration")),
            attempt=int(d.get("attempt") or 0),
            attempt_started_at=as_str(d.get("attemptStartedAt")),
            launched=bool(d.get("launched")),
            resume_pending=bool(d.get("resumePending")),
            finished_at=as_str(d.get("finishedAt")),
            restarts=Restarts.from_api(d.get("restarts") or {}),
            failures_without_progress=int(d.get("failuresWithoutProgress") or 0),
            consecutive_failures=int(d.get("consecutiveFailures") or 0),
            lost_steps=int(d.get("lostSteps") or 0),
            lost_seconds=float(d.get("lostSeconds") or 0),
            step_rate=as_float(d.get("stepRate")),
            pending_restart=PendingRestart.from_api(pending) if pending else None,
            last_failure=LastFailure.from_api(failure) if failure else None,
            latest_checkpoint=LatestCheckpoint.from_api(latest) if latest else None,
            resumed_from=ResumedFrom.from_api(resumed) if resumed else None,
            history=[HistoryEntry.from_api(h) for h in d.get("history") or []],
            conditions=[Condition.from_api(c) for c in d.get("conditions") or []],
            groups=GroupStatus.from_api(d.get("faultTolerance") or {}),
            extra={k: copy.deepcopy(v) for k, v in d.items() if k not in _API_KEYS},
            shown={k for k in _DEFAULTED if d.get(k) is not None},
        )

    def to_api(self) -> dict[str, Any]:
        def api(v: Any) -> Any:
            return v.to_api() if hasattr(v, "to_api") else v

        def dflt(key: str, v: Any) -> Any:
            """A defaulted field: absent at its default unless `shown`."""
            return v if v or key in self.shown else None

        out = some(
            {
                "phase": None if self.phase is None else str(self.phase),
                "observedGeneration": self.observed_generation,
                "attempt": dflt("attempt", self.attempt),
                "attemptStartedAt": self.attempt_started_at,
                "launched": dflt("launched", self.launched),
                "resumePending": dflt("resumePending", self.resume_pending),
                "finishedAt": self.finished_at,
                "restarts": dflt("restarts", self.restarts.to_api()),
                "failuresWithoutProgress": dflt(
                    "failuresWithoutProgress", self.failures_without_progress
                ),
                "consecutiveFailures": dflt("consecutiveFailures", self.consecutive_failures),
                "lostSteps": dflt("lostSteps", self.lost_steps),
                "lostSeconds": dflt("lostSeconds", self.lost_seconds),
                "stepRate": self.step_rate,
                "pendingRestart": api(self.pending_restart),
                "lastFailure": api(self.last_failure),
                "latestCheckpoint": api(self.latest_checkpoint),
                "resumedFrom": api(self.resumed_from),
                "history": dflt("history", [h.to_api() for h in self.history]),
                "conditions": dflt("conditions", [c.to_api() for c in self.conditions]),
                "faultTolerance": self.groups.to_api() or None,
            }
        )
        return {**self.extra, **out}


# Fields whose default (0, False, empty) a status may or may not hold.
_DEFAULTED = frozenset(
    {
        "attempt",
        "launched",
        "resumePending",
        "restarts",
        "failuresWithoutProgress",
        "consecutiveFailures",
        "lostSteps",
        "lostSeconds",
        "history",
        "conditions",
    }
)


_API_KEYS = frozenset(
    {
        "phase",
        "observedGeneration",
        "attempt",
        "attemptStartedAt",
        "launched",
        "resumePending",
        "finishedAt",
        "restarts",
        "failuresWithoutProgress",
        "consecutiveFailures",
        "lostSteps",
        "lostSeconds",
        "stepRate",
        "pendingRestart",
        "lastFailure",
        "latestCheckpoint",
        "resumedFrom",
        "history",
        "conditions",
        "faultTolerance",
    }
)


class Stage(Enum):
    """Where a job is in its life: the one question every cycle answers first."""

    FINISHED = auto()  # Succeeded or Failed: clean up, then the TTL
    SUSPENDING = auto()  # spec.suspend: stop the pods gracefully (they save on SIGTERM)
    LAUNCHING = auto()  # no attempt yet, or resumed after a suspend: launch when pods are gone
    RESTARTING = auto()  # an attempt ended: tear down, back off, relaunch
    ACTIVE = auto()  # attempt N runs: create missing pods, watch for its end


def stage_of(status: JobStatus, suspend: bool) -> Stage:
    if status.finished:
        return Stage.FINISHED
    if suspend:
        return Stage.SUSPENDING
    if status.attempt == 0 or status.phase == SUSPENDED or status.resume_pending:
        return Stage.LAUNCHING
    if status.pending_restart is not None:
        return Stage.RESTARTING
    return Stage.ACTIVE
