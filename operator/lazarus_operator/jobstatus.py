"""`JobStatus`: a TrainingJob's `.status` as typed values, and the stage it puts the job in.

`from_api` reads the API's JSON, `to_api` writes it back with the same field names
and values (the CRD, alerts and tests read them). A field that is None is absent
from the JSON; the records the operator writes whole (`lastFailure`, `resumedFrom`)
keep their None fields, which `status.prune_none` drops before the write.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, auto
from typing import Any

from .records import (
    HistoryEntry,
    LastFailure,
    LatestCheckpoint,
    PendingRestart,
    ResumedFrom,
    as_float,
    as_int,
    as_str,
    some,
)
from .status import FINISHED, HISTORY_LIMIT, SUSPENDED, Condition, Phase, set_in

# Ends by cause under `status.restarts` (the budgets count these); `total` counts
# relaunches only.
RESTART_KEYS = ("failed", "oomKilled", "disrupted", "nodeLost", "total")


@dataclass
class JobStatus:
    phase: Phase | None = None
    observed_generation: int | None = None
    attempt: int | None = None
    attempt_started_at: str | None = None
    launched: bool | None = None
    finished_at: str | None = None
    restarts: dict[str, int] | None = None  # RESTART_KEYS that were ever counted
    failures_without_progress: int | None = None
    consecutive_failures: int | None = None
    lost_steps: int | None = None
    lost_seconds: float | None = None
    step_rate: float | None = None
    pending_restart: PendingRestart | None = None
    last_failure: LastFailure | None = None
    latest_checkpoint: LatestCheckpoint | None = None
    resumed_from: ResumedFrom | None = None
    history: list[HistoryEntry] | None = None
    conditions: list[Condition] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version does not know

    # --- reading -------------------------------------------------------------------
    @property
    def current_attempt(self) -> int:
        """N of the latest attempt launched; 0 before the first launch."""
        return self.attempt or 0

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    def restart_count(self, *keys: str) -> int:
        return sum(int((self.restarts or {}).get(k, 0)) for k in keys)

    def condition(self, ctype: str) -> Condition | None:
        return next((c for c in self.conditions or [] if c.type == ctype), None)

    def resume_point_step(self) -> int:
        return self.resumed_from.step if self.resumed_from else -1

    # --- writing -------------------------------------------------------------------
    def set_condition(
        self, ctype: str, value: bool, reason: str, message: str, *, now: datetime
    ) -> None:
        self.conditions = list(self.conditions or [])
        set_in(self.conditions, ctype, value, reason, message, now=now)

    def count_restart(self, key: str) -> None:
        restarts = dict(self.restarts or {})
        restarts[key] = int(restarts.get(key, 0)) + 1
        self.restarts = restarts

    def add_history(self, entry: HistoryEntry) -> None:
        self.history = [*(self.history or []), entry][-HISTORY_LIMIT:]

    def history_of(self, attempt: int) -> list[HistoryEntry]:
        return [h for h in self.history or [] if h.attempt == attempt]

    # --- the API representation ----------------------------------------------------
    @classmethod
    def from_api(cls, d: dict[str, Any]) -> JobStatus:
        def rec(key: str) -> dict[str, Any] | None:
            v = d.get(key)
            return dict(v) if v else None

        pending, failure, latest, resumed = (
            rec(k) for k in ("pendingRestart", "lastFailure", "latestCheckpoint", "resumedFrom")
        )
        launched = d.get("launched")
        return cls(
            phase=Phase(d["phase"]) if d.get("phase") else None,
            observed_generation=as_int(d.get("observedGeneration")),
            attempt=as_int(d.get("attempt")),
            attempt_started_at=as_str(d.get("attemptStartedAt")),
            launched=None if launched is None else bool(launched),
            finished_at=as_str(d.get("finishedAt")),
            restarts=(
                {str(k): int(v) for k, v in d["restarts"].items()}
                if d.get("restarts") is not None
                else None
            ),
            failures_without_progress=as_int(d.get("failuresWithoutProgress")),
            consecutive_failures=as_int(d.get("consecutiveFailures")),
            lost_steps=as_int(d.get("lostSteps")),
            lost_seconds=as_float(d.get("lostSeconds")),
            step_rate=as_float(d.get("stepRate")),
            pending_restart=PendingRestart.from_api(pending) if pending else None,
            last_failure=LastFailure.from_api(failure) if failure else None,
            latest_checkpoint=LatestCheckpoint.from_api(latest) if latest else None,
            resumed_from=ResumedFrom.from_api(resumed) if resumed else None,
            history=(
                [HistoryEntry.from_api(h) for h in d["history"]]
                if d.get("history") is not None
                else None
            ),
            conditions=(
                [Condition.from_api(c) for c in d["conditions"]]
                if d.get("conditions") is not None
                else None
            ),
            extra={k: copy.deepcopy(v) for k, v in d.items() if k not in _API_KEYS},
        )

    def to_api(self) -> dict[str, Any]:
        def api(v: Any) -> Any:
            return v.to_api() if hasattr(v, "to_api") else v

        out = some(
            {
                "phase": None if self.phase is None else str(self.phase),
                "observedGeneration": self.observed_generation,
                "attempt": self.attempt,
                "attemptStartedAt": self.attempt_started_at,
                "launched": self.launched,
                "finishedAt": self.finished_at,
                "restarts": None if self.restarts is None else dict(self.restarts),
                "failuresWithoutProgress": self.failures_without_progress,
                "consecutiveFailures": self.consecutive_failures,
                "lostSteps": self.lost_steps,
                "lostSeconds": self.lost_seconds,
                "stepRate": self.step_rate,
                "pendingRestart": api(self.pending_restart),
                "lastFailure": api(self.last_failure),
                "latestCheckpoint": api(self.latest_checkpoint),
                "resumedFrom": api(self.resumed_from),
                "history": None if self.history is None else [h.to_api() for h in self.history],
                "conditions": (
                    None if self.conditions is None else [c.to_api() for c in self.conditions]
                ),
            }
        )
        return {**self.extra, **out}


_API_KEYS = frozenset(
    {
        "phase",
        "observedGeneration",
        "attempt",
        "attemptStartedAt",
        "launched",
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
    if status.current_attempt == 0 or status.phase == SUSPENDED:
        return Stage.LAUNCHING
    if status.pending_restart is not None:
        return Stage.RESTARTING
    return Stage.ACTIVE
