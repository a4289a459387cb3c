"""Which checkpoints a job owns (docs/contract.md section 8): one rule for both sides.

A checkpoint root is shared ground: two jobs may point at one root by mistake, and a
bucket may hold other data next to it. Selection, retention, garbage collection and
deletion therefore act only on what the caller's job owns. Pure functions, no I/O.

A committed checkpoint belongs to a job when its manifest names the job's UID, or
names an earlier job of the same namespace/name whose attempt the fence log records
under that UID, or in a record from before records named their job (the job was
deleted and re-created on the same root: its lineage goes on). An uncommitted
prefix has no manifest; it belongs to the job whose attempt wrote it, per the fence
log. A manifest with no identity (written by hand) belongs to nobody, and is
accepted only where the caller says so: an explicit resume pointer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lazarus_contract.identity import JobIdentity

from .lineage import AttemptIndex, AttemptRecord, index_attempts


@dataclass(frozen=True)
class Owner:
    """The job on whose behalf a caller chooses, counts and deletes checkpoints."""

    namespace: str
    name: str
    uid: str
    accept_unowned: bool = False  # also accept manifests without a job identity

    @property
    def identity(self) -> JobIdentity:
        return JobIdentity(self.name, self.namespace, self.uid)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name} (uid {self.uid})"


def owner_of(job: JobIdentity | None, *, accept_unowned: bool = False) -> Owner | None:
    """The Owner for a job identity; None (no filtering) when there is no identity,
    as for a trainer run by hand outside Kubernetes."""
    if job is None or not job.uid:
        return None
    return Owner(job.namespace, job.name, job.uid, accept_unowned)


def same_job(owner: Owner, job: JobIdentity | None) -> bool:
    """A fence-log record of this job's lineage: same namespace/name (any UID), or a
    record from before records carried an identity (one job per root then)."""
    return job is None or (job.namespace, job.name) == (owner.namespace, owner.name)


def own_records(owner: Owner | None, records: Sequence[AttemptRecord]) -> list[AttemptRecord]:
    """The fence-log records of the owner's lineage (all of them without an owner)."""
    if owner is None:
        return list(records)
    return [r for r in records if same_job(owner, r.job)]


# Either the fence log as read, or its index (lineage.index_attempts): callers that
# ask per checkpoint pass the index, built once, so each question is one lookup.
Records = Sequence[AttemptRecord] | AttemptIndex


def _record(records: Records, attempt: int) -> AttemptRecord | None:
    index = records if isinstance(records, Mapping) else index_attempts(records)
    return index.get(attempt)


def _describe(job: JobIdentity) -> str:
    return f"job {job.namespace}/{job.name} (job uid {job.uid!r})"


def why_not_owned(
    owner: Owner | None,
    job: JobIdentity,
    attempt: int,
    records: Records,
) -> str | None:
    """None if the committed checkpoint (manifest `job`, written by `attempt`) is the
    owner's; else why not, naming the owner it has."""
    if owner is None or (job.uid and job.uid == owner.uid):
        return None
    if not job.uid:
        if owner.accept_unowned:
            return None
        return "its manifest names no job (made by hand): usable only as an explicit resume pointer"
    if (job.namespace, job.name) == (owner.namespace, owner.name):
        rec = _record(records, attempt)
        if rec is not None and (rec.job is None or rec.job.uid == job.uid):
            return None  # an earlier incarnation of this job: the same lineage
        return (
            f"written by {_describe(job)}, which the fence log does not record as "
            f"attempt {attempt} of this job's lineage"
        )
    return f"owned by {_describe(job)}, not {owner}"


def owns_attempt(owner: Owner | None, attempt: int, records: Records) -> bool:
    """An uncommitted prefix (no manifest) is the owner's when the fence log says the
    owner's lineage ran the attempt that wrote it."""
    if owner is None:
        return True
    rec = _record(records, attempt)
    return rec is not None and same_job(owner, rec.job)
