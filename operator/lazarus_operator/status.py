"""Status vocabulary: phases, condition types and their constant reasons, the typed
`Condition`, and the two dict-level helpers the status write needs (`.status` as
the API holds it; the typed form: `jobstatus`).

Status is computed in memory by `decide` and written once per cycle, only
when it changed (`status_patch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from lazarus_contract import format_time


class Phase(StrEnum):
    QUEUED = "Queued"  # labelled for Kueue: no pods until its Workload is admitted
    PENDING = "Pending"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


QUEUED: Final = Phase.QUEUED
PENDING: Final = Phase.PENDING
RUNNING: Final = Phase.RUNNING
RESTARTING: Final = Phase.RESTARTING
SUSPENDED: Final = Phase.SUSPENDED
SUCCEEDED: Final = Phase.SUCCEEDED
FAILED: Final = Phase.FAILED
FINISHED: Final = frozenset({SUCCEEDED, FAILED})

# condition types
COND_RUNNING: Final = "Running"
COND_RESTARTING: Final = "Restarting"
COND_SUSPENDED: Final = "Suspended"
COND_STORAGE: Final = "StorageReady"
COND_SPEC: Final = "SpecValid"
COND_SUCCEEDED: Final = "Succeeded"
COND_FAILED: Final = "Failed"
COND_RECONCILE_ERROR: Final = "ReconcileError"  # True while cycles fail (retried, backoff)
# Kueue (kueueworkload, queued): True while the job's Workload waits for admission, or
# its pods stop to yield the quota Kueue took back; the reason is Kueue's
COND_QUEUED: Final = "Queued"

# reasons (constant strings: alerts and tests match on them)
R_LAUNCHING: Final = "Launching"
R_ADMITTED: Final = "Admitted"  # Kueue admitted the job's Workload (condition Queued=False)
R_YIELDING: Final = "YieldingQuota"  # evicted by Kueue: pods stopping (they save on SIGTERM)
R_ALL_RUNNING: Final = "AllPodsRunning"
R_PODS_PENDING: Final = "PodsPending"
# spec.scheduling.startTimeoutSeconds passed with a pod not Running: the attempt is torn
# down (the cause in pendingRestart, history and lastFailure; the event's reason)
R_START_TIMEOUT: Final = "StartTimeout"
R_TEARDOWN: Final = "WaitingForPodsToStop"
R_BACKOFF: Final = "Backoff"
R_SUSPENDING: Final = "Suspending"
R_SUSPENDED: Final = "Suspended"
R_RESUMED: Final = "Resumed"
R_COMPLETED: Final = "Completed"
R_PERMANENT: Final = "PermanentError"
R_BACKOFF_LIMIT: Final = "BackoffLimitExceeded"
R_PREEMPTION_LIMIT: Final = "PreemptionLimitExceeded"
R_NO_PROGRESS: Final = "NoProgress"
R_STORAGE_OK: Final = "StorageReachable"
R_SECRET_NOT_FOUND: Final = "SecretNotFound"
R_SECRET_KEY_MISSING: Final = "SecretKeyMissing"
# no secretRef, and the platform does not let this root use the operator's (owncreds.py)
R_CREDENTIALS_REQUIRED: Final = "CredentialsRequired"
R_STORAGE_UNAVAILABLE: Final = "StorageUnavailable"
R_BUCKET_MISSING: Final = "BucketMissing"
R_ACCESS_DENIED: Final = "AccessDenied"
R_CHECKPOINT_NOT_FOUND: Final = "CheckpointNotFound"
R_STORAGE_ERROR: Final = "StorageError"
R_ROOT_SHARED: Final = "CheckpointRootShared"  # another job took the attempt number
R_STORAGE_DELEGATED: Final = "SelectedByTrainer"  # filesystem root: the trainer selects
R_RECONCILE_ERROR: Final = "ReconcileError"
R_ENDPOINT_NOT_ALLOWED: Final = "EndpointNotAllowed"  # link-local/metadata (endpoints.py)
R_ENDPOINT_NOT_S3: Final = "EndpointNotS3"  # answers HTTP, not as S3 (a web page, 404s)
R_POD_REJECTED: Final = "PodRejected"  # admission refused the job's pods
R_RECONCILED: Final = "Reconciled"
R_SPEC_VALID: Final = "Valid"
R_SPEC_INVALID: Final = "InvalidSpec"

HISTORY_LIMIT: Final = 20


def iso(t: datetime) -> str:
    """Status times at second precision (conditions, attempt and finish times)."""
    return format_time(t, "seconds")


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


@dataclass
class Condition:
    type: str
    status: str  # "True" | "False"
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Condition:
        return cls(
            str(d.get("type")),
            str(d.get("status")),
            _str(d.get("reason")),
            _str(d.get("message")),
            _str(d.get("lastTransitionTime")),
        )

    def to_api(self) -> dict[str, Any]:
        d = {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.last_transition_time,
        }
        return {k: v for k, v in d.items() if v is not None}


def set_in(
    conds: list[Condition], ctype: str, value: bool, reason: str, message: str, *, now: datetime
) -> None:
    """Set one condition in place; lastTransitionTime moves only when the status flips."""
    want = "True" if value else "False"
    for c in conds:
        if c.type == ctype:
            if c.status != want:
                c.last_transition_time = iso(now)
            c.status, c.reason, c.message = want, reason, message[:1024]
            return
    conds.append(Condition(ctype, want, reason, message[:1024], iso(now)))


def prune_none(value: Any) -> Any:
    """Drop None values: the API server prunes them, so keeping them would make
    every cycle look like a change."""
    if isinstance(value, dict):
        return {k: prune_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune_none(v) for v in value]
    return value


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """A JSON merge patch (RFC 7386) turning `old` into `new`, or None when equal."""
    if old == new:
        return None
    return _merge_diff(old, new)


def _merge_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Changed keys, recursively: a merge patch merges nested objects, so a key a nested
    record dropped (lastFailure's exitCode after a lost node, a new attempt's generations)
    must be sent as null or the API keeps the old value; lists are replaced whole."""
    patch: dict[str, Any] = {}
    for k, v in new.items():
        was = old.get(k)
        if was == v:
            continue
        patch[k] = _merge_diff(was, v) if isinstance(was, dict) and isinstance(v, dict) else v
    patch.update({k: None for k in old if k not in new})
    return patch
