"""The fence log and the lineage rule (docs/contract.md section 6), as pure functions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidCheckpoint
from .manifest import JobIdentity


@dataclass(frozen=True)
class AttemptRecord:
    """One line of `_lazarus/attempts.json`: attempt N of a job started, resuming from a
    checkpoint. `job` is None in records written before records named their job."""

    attempt: int
    resume_from: str | None
    resume_step: int  # -1: started fresh
    started_at: str = ""
    job: JobIdentity | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "attempt": self.attempt,
            "resumeFrom": self.resume_from,
            "resumeStep": self.resume_step,
            "startedAt": self.started_at,
        }
        if self.job is not None:
            j = self.job
            out["job"] = {"namespace": j.namespace, "name": j.name, "uid": j.uid}
        return out


def _job(raw: Any) -> JobIdentity | None:
    if raw is None:
        return None
    return JobIdentity(str(raw["name"]), str(raw["namespace"]), str(raw["uid"]))


# The fence log by attempt number: ownership asks "who ran attempt N" once per listed
# checkpoint, so a root with many attempts and checkpoints must not scan per question.
AttemptIndex = Mapping[int, AttemptRecord]


def index_attempts(records: Iterable[AttemptRecord]) -> dict[int, AttemptRecord]:
    """The records by attempt; the first of a number wins, as a scan would find it."""
    out: dict[int, AttemptRecord] = {}
    for r in records:
        out.setdefault(r.attempt, r)
    return out


def parse_attempts(raw: bytes, *, where: str) -> list[AttemptRecord]:
    """Parse the fence log; InvalidCheckpoint if it is not the documented shape."""
    try:
        doc = json.loads(raw.decode("utf-8"))
        items = doc["attempts"] if isinstance(doc, dict) else doc
        return [
            AttemptRecord(
                attempt=int(r["attempt"]),
                resume_from=r.get("resumeFrom"),
                resume_step=int(r.get("resumeStep", -1)),
                started_at=str(r.get("startedAt", "")),
                job=_job(r.get("job")),
            )
            for r in items
        ]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
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
    newest = newest_attempt(records)
    return None if newest is None else newest + 1


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
