"""The records inside a TrainingJob's `.status` (pending restart, last failure, latest
checkpoint, resume point, history), each with its API form (`from_api`/`to_api`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .classify import Cause

# `status.restarts` counts attempt ends under these keys (the metrics' `cause` label
# too); the end of a permanent error or a success is never counted.
RESTART_KEYS: Final[Mapping[Cause, str]] = {
    Cause.FAILED: "failed",
    Cause.OOM_KILLED: "oomKilled",
    Cause.DISRUPTED: "disrupted",
    Cause.NODE_LOST: "nodeLost",
}
TOTAL: Final = "total"  # relaunches
# Attempts torn down because their gang did not start in time (spec.scheduling): not
# an end of training, so no budget counts it and it is not among RESTART_KEYS.
START_TIMEOUTS: Final = "startTimeout"
_CAUSE_OF_KEY: Final = {key: cause for cause, key in RESTART_KEYS.items()}


def as_int(v: Any) -> int | None:
    return None if v is None else int(v)


def as_float(v: Any) -> float | None:
    return None if v is None else float(v)


def as_str(v: Any) -> str | None:
    return None if v is None else str(v)


def some(pairs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pairs.items() if v is not None}


def restart_key(cause: str | None) -> str:
    """The restart key of a recorded cause (`pendingRestart.cause`); "failed" for one
    this version does not count."""
    return next((k for c, k in RESTART_KEYS.items() if c == cause), RESTART_KEYS[Cause.FAILED])


@dataclass
class Restarts:
    """`status.restarts`: attempt ends by cause (the budgets count these) and
    relaunches (`total`). A count never made is absent, as in the API."""

    ends: dict[Cause, int] = field(default_factory=dict)
    total: int | None = None
    start_timeouts: int | None = None

    def count(self, *causes: Cause) -> int:
        return sum(self.ends.get(c, 0) for c in causes)

    def count_end(self, cause: Cause) -> None:
        self.ends[cause] = self.ends.get(cause, 0) + 1

    def count_relaunch(self) -> None:
        self.total = (self.total or 0) + 1

    def count_start_timeout(self) -> None:
        self.start_timeouts = (self.start_timeouts or 0) + 1

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> Restarts:
        ends = {_CAUSE_OF_KEY[k]: int(v) for k, v in d.items() if k in _CAUSE_OF_KEY}
        return cls(ends, as_int(d.get(TOTAL)), as_int(d.get(START_TIMEOUTS)))

    def to_api(self) -> dict[str, int]:
        out = {RESTART_KEYS[c]: n for c, n in self.ends.items()}
        if self.start_timeouts is not None:
            out[START_TIMEOUTS] = self.start_timeouts
        return out if self.total is None else {**out, TOTAL: self.total}


@dataclass
class ResumedFrom:
    """The resume point of the current attempt."""

    value: str = ""  # LAZARUS_RESUME_FROM
    name: str | None = None
    step: int = -1

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> ResumedFrom:
        return cls(str(d.get("value") or ""), d.get("name"), int(d.get("step", -1)))

    def to_api(self) -> dict[str, Any]:
        return {"value": self.value, "name": self.name, "step": self.step}


@dataclass
class LatestCheckpoint:
    name: str | None = None
    uri: str | None = None
    step: int | None = None
    attempt: int | None = None
    time: str | None = None

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> LatestCheckpoint:
        return cls(
            as_str(d.get("name")),
            as_str(d.get("uri")),
            as_int(d.get("step")),
            as_int(d.get("attempt")),
            as_str(d.get("time")),
        )

    def to_api(self) -> dict[str, Any]:
        return some(
            {
                "name": self.name,
                "uri": self.uri,
                "step": self.step,
                "attempt": self.attempt,
                "time": self.time,
            }
        )


@dataclass
class PendingRestart:
    """An ended attempt whose successor is not launched yet."""

    attempt: int | None = None
    cause: str | None = None
    ended_at: str | None = None  # milliseconds: lost seconds are measured from it
    not_before: str | None = None
    # The highest step its trainers reported: -1 when they ended without one (no step
    # taken), None while no trainer's end was heard (a lost node reports nothing).
    last_step: int | None = None

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> PendingRestart:
        return cls(
            as_int(d.get("attempt")),
            as_str(d.get("cause")),
            as_str(d.get("endedAt")),
            as_str(d.get("notBefore")),
            as_int(d.get("lastStep")),
        )

    def to_api(self) -> dict[str, Any]:
        return some(
            {
                "attempt": self.attempt,
                "cause": self.cause,
                "endedAt": self.ended_at,
                "notBefore": self.not_before,
                "lastStep": self.last_step,
            }
        )


@dataclass
class LastFailure:
    attempt: int
    cause: str
    reason: str
    pod: str
    node: str | None
    exit_code: int | None
    message: str
    time: str

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> LastFailure:
        return cls(
            int(d.get("attempt") or 0),
            str(d.get("cause") or ""),
            str(d.get("reason") or ""),
            str(d.get("pod") or ""),
            d.get("node"),
            as_int(d.get("exitCode")),
            str(d.get("message") or ""),
            str(d.get("time") or ""),
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "cause": self.cause,
            "reason": self.reason,
            "pod": self.pod,
            "node": self.node,
            "exitCode": self.exit_code,
            "message": self.message,
            "time": self.time,
        }


@dataclass
class HistoryEntry:
    attempt: int | None = None
    started_at: str | None = None
    resumed_from: str | None = None
    resume_step: int | None = None
    lost_steps: int | None = None
    lost_seconds: float | None = None
    lost_estimated: bool | None = None
    lost_bound: str | None = None  # lostwork.AT_LEAST / AT_MOST: lost_steps is a bound
    ended_at: str | None = None
    cause: str | None = None
    reason: str | None = None

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> HistoryEntry:
        est = d.get("lostEstimated")
        return cls(
            as_int(d.get("attempt")),
            as_str(d.get("startedAt")),
            as_str(d.get("resumedFrom")),
            as_int(d.get("resumeStep")),
            as_int(d.get("lostSteps")),
            as_float(d.get("lostSeconds")),
            None if est is None else bool(est),
            as_str(d.get("lostBound")),
            as_str(d.get("endedAt")),
            as_str(d.get("cause")),
            as_str(d.get("reason")),
        )

    def to_api(self) -> dict[str, Any]:
        return some(
            {
                "attempt": self.attempt,
                "startedAt": self.started_at,
                "resumedFrom": self.resumed_from,
                "resumeStep": self.resume_step,
                "lostSteps": self.lost_steps,
                "lostSeconds": self.lost_seconds,
                "lostEstimated": self.lost_estimated,
                "lostBound": self.lost_bound,
                "endedAt": self.ended_at,
                "cause": self.cause,
                "reason": self.reason,
            }
        )
