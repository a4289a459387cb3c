"""Which checkpoints count for a job: `Scope` (ownership and lineage, from one read of
the fence log) and `valid_in_lineage`, the one answer to "which checkpoint to resume
from" that the operator and the trainer both use."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lazarus_contract.identity import JobIdentity

from .catalog import CheckpointInfo, validate
from .lineage import AttemptIndex, AttemptRecord, index_attempts, lineage_attempt
from .lineage import why_not_in_lineage as _why_not_in_lineage
from .ownership import Owner, own_records, owns_attempt, why_not_owned
from .root import Root


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str
    # Whose checkpoint it is, as far as its manifest or the fence log tell (None:
    # unknown): the operator tells a tenant nothing about another namespace's jobs.
    job: JobIdentity | None = None


@dataclass(frozen=True)
class Selection:
    """The newest valid checkpoint in lineage (None: there is none), why the newer
    ones were passed over, and every valid one found, newest first."""

    chosen: CheckpointInfo | None
    skipped: list[Skipped]
    valid: tuple[CheckpointInfo, ...] = ()


@dataclass(frozen=True)
class Scope:
    """Whose checkpoints count and in which lineage, for one owner and one attempt."""

    owner: Owner | None  # None: every job's checkpoints count (a trainer run by hand)
    index: AttemptIndex  # every job's fence-log records by attempt (ownership)
    lineage: tuple[AttemptRecord, ...]  # the owner's records (the lineage rule)
    current: int | None  # the attempt whose lineage counts

    @classmethod
    def of(
        cls, records: Sequence[AttemptRecord], owner: Owner | None, attempt: int | None
    ) -> Scope:
        """`attempt` None: the one after the newest in the fence log (about to start)."""
        return cls(
            owner,
            index_attempts(records),
            tuple(own_records(owner, records)),
            lineage_attempt(records, attempt),
        )

    def why_not_owned(self, c: CheckpointInfo) -> str | None:
        """Why a committed checkpoint is not the owner's (None: it is, or is unreadable)."""
        if c.manifest is None:
            return None
        return why_not_owned(self.owner, c.manifest.job, c.attempt, self.index)

    def owns(self, c: CheckpointInfo) -> bool:
        if c.manifest is not None:
            return self.why_not_owned(c) is None
        # Uncommitted, or a manifest nobody can read: whoever ran the attempt owns it.
        return owns_attempt(self.owner, c.attempt, self.index)

    def job_of(self, c: CheckpointInfo) -> JobIdentity | None:
        """The job `c` belongs to: its manifest's, else the fence log's for its attempt."""
        if c.manifest is not None:
            return c.manifest.job
        rec = self.index.get(c.attempt)
        return rec.job if rec is not None else None

    def why_not_in_lineage(self, c: CheckpointInfo) -> str | None:
        return _why_not_in_lineage(c.step, c.attempt, self.current, self.lineage)


def why_skipped(root: Root, scope: Scope, c: CheckpointInfo, full: bool) -> str | None:
    """Why `c` may not be resumed from (None: it may). Cheapest checks first."""
    if c.quarantined:
        return f"quarantined: {c.quarantine_reason or 'no reason recorded'}"
    if not c.committed:
        return "uncommitted: no manifest.json (in progress or abandoned)"
    why = scope.why_not_owned(c) or scope.why_not_in_lineage(c)
    if why is None:
        v = validate(root, c, full)
        if not v.ok:
            why = "; ".join(v.problems)
    return why


def valid_in_lineage(
    root: Root,
    scope: Scope,
    checkpoints: Iterable[CheckpointInfo],
    *,
    full: bool = False,
    limit: int | None = 1,
) -> Selection:
    """The valid checkpoints among `checkpoints` (newest first), up to `limit` (None:
    all), and why each one passed over lost. Full validation reads every byte, so it
    stops at the limit."""
    valid: list[CheckpointInfo] = []
    skipped: list[Skipped] = []
    for c in checkpoints:
        why = why_skipped(root, scope, c, full)
        if why is not None:
            skipped.append(Skipped(c.name, why, scope.job_of(c)))
            continue
        valid.append(c)
        if limit is not None and len(valid) >= limit:
            break
    return Selection(valid[0] if valid else None, skipped, tuple(valid))
