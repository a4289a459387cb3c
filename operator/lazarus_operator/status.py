"""Status vocabulary: phases, condition types and their constant reasons.

Status is computed in memory by `decide` and written once per cycle, only
when it changed (`status_patch`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

PENDING: Final = "Pending"
RUNNING: Final = "Running"
RESTARTING: Final = "Restarting"
SUSPENDED: Final = "Suspended"
SUCCEEDED: Final = "Succeeded"
FAILED: Final = "Failed"
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

# reasons (constant strings: alerts and tests match on them)
R_LAUNCHING: Final = "Launching"
R_ALL_RUNNING: Final = "AllPodsRunning"
R_PODS_PENDING: Final = "PodsPending"
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
R_STORAGE_UNAVAILABLE: Final = "StorageUnavailable"
R_BUCKET_MISSING: Final = "BucketMissing"
R_ACCESS_DENIED: Final = "AccessDenied"
R_CHECKPOINT_NOT_FOUND: Final = "CheckpointNotFound"
R_STORAGE_ERROR: Final = "StorageError"
R_ROOT_SHARED: Final = "CheckpointRootShared"  # another job took the attempt number
R_STORAGE_DELEGATED: Final = "SelectedByTrainer"  # filesystem root: the trainer selects
R_RECONCILE_ERROR: Final = "ReconcileError"
R_ENDPOINT_NOT_ALLOWED: Final = "EndpointNotAllowed"  # link-local/metadata (endpoints.py)
R_POD_REJECTED: Final = "PodRejected"  # admission refused the job's pods
R_RECONCILED: Final = "Reconciled"
R_SPEC_VALID: Final = "Valid"
R_SPEC_INVALID: Final = "InvalidSpec"

HISTORY_LIMIT: Final = 20


def iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def get_condition(status: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in status.get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def set_condition(
    status: dict[str, Any], ctype: str, value: bool, reason: str, message: str, *, now: datetime
) -> None:
    """Set one condition in place; lastTransitionTime moves only when the status flips."""
    want = "True" if value else "False"
    conds = [dict(c) for c in status.get("conditions") or []]
    for c in conds:
        if c.get("type") == ctype:
            if c.get("status") != want:
                c["lastTransitionTime"] = iso(now)
            c.update(status=want, reason=reason, message=message[:1024])
            break
    else:
        conds.append(
            {
                "type": ctype,
                "status": want,
                "reason": reason,
                "message": message[:1024],
                "lastTransitionTime": iso(now),
            }
        )
    status["conditions"] = conds


def prune_none(value: Any) -> Any:
    """Drop None values: the API server prunes them, so keeping them would make
    every cycle look like a change."""
    if isinstance(value, dict):
        return {k: prune_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune_none(v) for v in value]
    return value


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """A merge patch turning `old` into `new` at the top level, or None when equal."""
    if old == new:
        return None
    patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    for k in old:
        if k not in new:
            patch[k] = None
    return patch
