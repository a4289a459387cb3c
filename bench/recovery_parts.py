"""The pure parts of bench/recovery.py: reading the timestamps out of log lines and API
times, splitting one recovery into its parts, and the percentiles.

No I/O, no clock: tests/bench/test_recovery_parts.py holds them to tables.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The trainer's lines (trainer_image/lazarus_trainer/{reference/train,resume_timing}.py).
READY_MARK = "lazarus-train ready"
TERMINATION_MARK = "termination: "
RESUME_MARK = "resume timing "
# logging's default asctime: local time, milliseconds after a comma.
_ASCTIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")

# In the order they happen; `total` is their sum, from the disruption to the first step.
PARTS = (
    "notice",  # the disruption -> the operator records the end (status, seen on a watch)
    "old_pod_exit",  # -> the old process exited, if later (an eviction's save and exit)
    "decision",  # -> the replacement pod exists (its ADDED seen on a watch)
    "pod_start",  # -> the container's process started (scheduling, the kubelet)
    "process_start",  # -> the trainer's main runs (interpreter, imports)
    "setup",  # -> the resume begins (model, optimizer, Accelerate, store client)
    "storage_read",  # listing, manifests, the objects' bytes (less the CRC32C)
    "verify",  # CRC32C of every byte, in line with the read
    "restore",  # decode + load into model, optimizer, scheduler, sampler, RNGs
    "resume_other",  # the rest of the resume: the fence record, bookkeeping
    "first_step",  # the resume's end -> the first step's loss line
)


@dataclass(frozen=True)
class ResumeRecord:
    """The trainer's `resume timing` line."""

    checkpoint: str
    started: float  # epoch seconds
    ended: float
    bytes: int
    seconds: dict[str, float]


@dataclass(frozen=True)
class Stamps:
    """One recovery's timestamps, epoch seconds, each from where it is recorded."""

    disrupted: float  # the eviction's API call, or the SIGKILL
    observed: float  # the operator's status names the ended attempt (seen on a watch)
    exited: float  # the kubelet saw the old pod's process exit
    created: float  # the new pod's ADDED event, seen on a watch
    process: float  # the kubelet started the new pod's process
    ready: float  # the trainer's ready line (imports done)
    resume: ResumeRecord
    first_step: float  # the first loss line of the new attempt, seen (20 ms polls)


def asctime_epoch(line: str) -> float | None:
    """The epoch seconds of a line logged with logging's default asctime (local time)."""
    m = _ASCTIME.match(line)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def marked_time(log: Iterable[str], mark: str) -> float | None:
    """When the first line holding `mark` was logged (e.g. READY_MARK: imports done)."""
    for line in log:
        if mark in line:
            return asctime_epoch(line)
    return None


def resume_record(log: Iterable[str]) -> ResumeRecord | None:
    """The trainer's resume timing record (the first one)."""
    for line in log:
        i = line.find(RESUME_MARK)
        if i < 0:
            continue
        d: dict[str, Any] = json.loads(line[i + len(RESUME_MARK) :])
        return ResumeRecord(
            str(d["checkpoint"]),
            float(d["started"]),
            float(d["ended"]),
            int(d["bytes"]),
            {str(k): float(v) for k, v in d["seconds"].items()},
        )
    return None


def split(s: Stamps) -> dict[str, float]:
    """The parts of one recovery, seconds, and their total."""
    sec = s.resume.seconds
    read = sec.get("lookup", 0.0) + sec.get("fetch", 0.0)
    verify = sec.get("verify", 0.0)
    restore = sec.get("decode", 0.0) + sec.get("restore", 0.0)
    known = max(s.observed, s.exited)  # the operator knows, and the old process is gone
    parts = {
        "notice": s.observed - s.disrupted,
        "old_pod_exit": known - s.observed,
        "decision": s.created - known,
        "pod_start": s.process - s.created,
        "process_start": s.ready - s.process,
        "setup": s.resume.started - s.ready,
        "storage_read": read - verify,
        "verify": verify,
        "restore": restore,
        "resume_other": (s.resume.ended - s.resume.started) - read - restore,
        "first_step": s.first_step - s.resume.ended,
    }
    parts["total"] = s.first_step - s.disrupted
    return parts


def percentile(xs: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks (numpy's default)."""
    if not xs:
        raise ValueError("percentile of nothing")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(xs)
    rank = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def summarize(xs: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(xs),
        "min": min(xs),
        "p50": percentile(xs, 50),
        "p99": percentile(xs, 99),
        "max": max(xs),
    }
