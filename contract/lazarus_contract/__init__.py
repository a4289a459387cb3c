"""Names and codes shared by the operator and the trainer (docs/contract.md).

Both sides import from here so that the contract changes in one place.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final, Literal

# --- environment (section 2) ---------------------------------------------------
ENV_JOB_NAME: Final = "LAZARUS_JOB_NAME"
ENV_JOB_NAMESPACE: Final = "LAZARUS_JOB_NAMESPACE"
ENV_JOB_UID: Final = "LAZARUS_JOB_UID"
ENV_ATTEMPT: Final = "LAZARUS_ATTEMPT"
ENV_CHECKPOINT_URI: Final = "LAZARUS_CHECKPOINT_URI"
ENV_S3_ENDPOINT: Final = "LAZARUS_S3_ENDPOINT"
ENV_S3_ADDRESSING_STYLE: Final = "LAZARUS_S3_ADDRESSING_STYLE"
ENV_RESUME_FROM: Final = "LAZARUS_RESUME_FROM"
ENV_GRACE_SECONDS: Final = "LAZARUS_GRACE_SECONDS"
ENV_SAVE_EVERY_STEPS: Final = "LAZARUS_SAVE_EVERY_STEPS"
ENV_SAVE_EVERY_SECONDS: Final = "LAZARUS_SAVE_EVERY_SECONDS"
ENV_EVAL_METRIC: Final = "LAZARUS_EVAL_METRIC"
ENV_EVAL_MODE: Final = "LAZARUS_EVAL_MODE"
ENV_KEEP_LATEST: Final = "LAZARUS_KEEP_LATEST"
ENV_KEEP_BEST: Final = "LAZARUS_KEEP_BEST"
ENV_ANNOTATIONS_FILE: Final = "LAZARUS_ANNOTATIONS_FILE"
ENV_TERMINATION_LOG: Final = "LAZARUS_TERMINATION_LOG"

RESUME_AUTO: Final = "auto"
DEFAULT_ANNOTATIONS_FILE: Final = "/etc/lazarus/podinfo/annotations"
DEFAULT_TERMINATION_LOG: Final = "/dev/termination-log"

# --- exit codes (section 3) -----------------------------------------------------
EXIT_COMPLETED: Final = 0
EXIT_PREEMPTED: Final = 75  # EX_TEMPFAIL: stopped after a preemption save; relaunch
EXIT_PERMANENT: Final = 78  # EX_CONFIG: do not retry
EXIT_SIGKILL: Final = 137

# --- termination message (section 4) --------------------------------------------
TERMINATION_MESSAGE_VERSION: Final = 1
TERMINATION_MESSAGE_MAX_BYTES: Final = 4096
OUTCOME_COMPLETED: Final = "completed"
OUTCOME_PREEMPTED: Final = "preempted"
OUTCOME_PERMANENT: Final = "permanent-error"
OUTCOME_ERROR: Final = "error"
OUTCOME_RUNNING: Final = "running"  # the progress signal, rewritten while training

# --- the trainer's timings in a manifest (section 4a) -----------------------------
TIMINGS_STEPS_PER_SECOND: Final = "stepsPerSecond"  # the attempt's pace, for estimates

# --- checkpoint-now (section 5) -------------------------------------------------
ANNOTATION_CHECKPOINT_NOW: Final = "lazarus.dev/checkpoint-now"

# --- layout (section 1) and fencing (section 6) ---------------------------------
MANIFEST_NAME: Final = "manifest.json"
CONTROL_PREFIX: Final = "_lazarus"
ATTEMPTS_LOG: Final = f"{CONTROL_PREFIX}/attempts.json"
QUARANTINE_PREFIX: Final = f"{CONTROL_PREFIX}/quarantine"

REASONS: Final = ("periodic", "eval-best", "requested", "preemption", "final")
CHECKPOINT_NAME_RE: Final = re.compile(r"^step-(\d{12})-a(\d{4})$")


def checkpoint_name(step: int, attempt: int) -> str:
    """The sortable prefix name of the checkpoint at `step` written by `attempt`."""
    if step < 0 or attempt < 0:
        raise ValueError(f"step and attempt must be >= 0, got step={step} attempt={attempt}")
    return f"step-{step:012d}-a{attempt:04d}"


def parse_checkpoint_name(name: str) -> tuple[int, int] | None:
    """(step, attempt) for a checkpoint name, or None if `name` is not one."""
    m = CHECKPOINT_NAME_RE.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


# --- times -------------------------------------------------------------------------
# Every time the two sides write (manifests, status, the progress signal, events)
# is RFC 3339 in UTC with a `Z`, as Kubernetes writes its own.
TimeSpec = Literal["seconds", "milliseconds", "microseconds"]


def format_time(t: datetime, timespec: TimeSpec = "milliseconds") -> str:
    """`t` as RFC 3339 UTC with a `Z` (naive times are taken as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time (`Z` or an offset) as an aware datetime."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
