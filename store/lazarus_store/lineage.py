"""The fence log and the lineage rule (docs/contract.md section 6), as pure functions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lazarus_contract.bounded_json import loads_bounded, one_line
from lazarus_contract.identity import JobIdentity
from lazarus_contract.identity import decode as decode_identity
from lazarus_contract.rules import Recorded, first_free_attempt

from .errors import InvalidCheckpoint


@dataclass(frozen=True)
class AttemptRecord:
    """One line of `_lazarus/attempts.json`: attempt N of a job started, resuming from a
    checkpoint. `job` is None in records written before records named their job;
    `job_attempt` is the number the job asked for (a trainer that numbers its own
    attempt on a filesystem root says it, so it finds its record again)."""

    attempt: int
    resume_from: str | None
    resume_step: int  # -1: started fresh
    started_at: str = ""
    job: JobIdentity | None = None
    job_attempt: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attempt": self.attempt,
            "resumeFrom": self.resume_from,
            "resumeStep": self.resume_step,
            "startedAt": self.started_at,
        }
        if self.job is not None:
            out["job"] = self.job.encode()
        if self.job_attempt is not None:
            out["jobAttempt"] = self.job_attempt
        return out

    @property
    def recorded(self) -> Recorded:
        """What the attempt-numbering rule (lazarus_contract.rules) reads of it."""
        return Recorded(self.attempt, self.job.uid if self.job else None, self.job_attempt)


def _job(raw: Any) -> JobIdentity | None:
    if raw is None:
        return None
    job = decode_identity(raw)
    if job is None:
        raise ValueError("a job is not {name, namespace, uid} strings")
    return job


def _int(raw: Any, what: str, low: int) -> int:
    """A JSON integer in [low, 2**63): not a bool, a float or a string."""
    if type(raw) is not int or not low <= raw < 1 << 63:
        raise ValueError(f"{what} {one_line(repr(raw), 40)} is not an integer >= {low}")
    return raw


def _record(r: Any) -> AttemptRecord:
    if not isinstance(r, dict):
        raise ValueError("a record is not a JSON object")
    resume_from = r.get("resumeFrom")
    if resume_from is not None and not isinstance(resume_from, str):
        raise ValueError("resumeFrom is not a string")
    ja = r.get("jobAttempt")
    return AttemptRecord(
        attempt=_int(r.get("attempt"), "attempt", 0),
        resume_from=resume_from,
        resume_step=_int(r.get("resumeStep", -1), "resumeStep", -1),
        started_at=one_line(str(r.get("startedAt", "")), 64),
        job=_job(r.get("job")),
        job_attempt=None if ja is None else _int(ja, "jobAttempt", 1),
    )


# The fence log by attempt number: ownership asks "who ran attempt N" once per listed
# checkpoint, so a root with many attempts and checkpoints must not scan per question.
AttemptIndex = Mapping[int, AttemptRecord]


def index_attempts(records: Iterable[AttemptRecord]) -> dict[int, AttemptRecord]:
    """The records by attempt; the first of a number wins, as a scan would find it."""
    out: dict[int, AttemptRecord] = {}
    for r in records:
        out.setdefault(r.attempt, r)
    return out


# The fence log is a list of small records: nothing in it nests deeper than this.
MAX_ATTEMPTS_DEPTH = 8


def parse_attempts(raw: bytes, *, where: str) -> list[AttemptRecord]:
    """Parse the fence log; InvalidCheckpoint (one line) if it is not the documented shape."""
    try:
        doc = loads_bounded(raw, max_bytes=len(raw), max_depth=MAX_ATTEMPTS_DEPTH)
        items = doc.get("attempts") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise ValueError("no list of attempts")
        return [_record(r) for r in items]
    except ValueError as e:  # MalformedJSON is one
        raise InvalidCheckpoint(f"{where}: fence log is unreadable ({e})") from None


def dump_attempts(records: Sequence[AttemptRecord]) -> bytes:
    body = {"attempts": [r.to_json() for r in records]}
    return (json.dumps(body, indent=1) + "\n").encode("utf-8")


def newest_attempt(records: Sequence[AttemptRecord]) -> int | None:
    return max((r.attempt for r in records), default=None)


def lineage_attempt(records: Sequence[AttemptRecord], attempt: int | None) -> int | None:
    """The attempt whose lineage counts: the given one, else the one about to start."""
    if attempt is not None:
        return attempt
    return first_free_attempt(r.recorded for r in records) if records else None


def why_not_in_lineage(
    step: int, writer: int, current: int | None, records: Sequence[AttemptRecord]
) -> str | None:
    """None if a checkpoint (step, written by `writer`) is in the lineage of `current`.

    Rule: in lineage iff writer == current, or writer < current and step is at
    most the resumeStep of every recorded attempt b with writer < b <= current.
    With no fence log (or no current attempt) everything is in lineage.
    """
    if current is None or not records or writer == current:
        return None
    if writer > current:
        return f"written by attempt {writer}, newer than attempt {current}"
    for r in records:
        if writer < r.attempt <= current and step > r.resume_step:
            return (
                f"dead branch: attempt {r.attempt} resumed from step {r.resume_step},"
                f" before this step {step} of attempt {writer}"
            )
    return None
