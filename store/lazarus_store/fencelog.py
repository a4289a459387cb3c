"""The fence log on a root (`_lazarus/attempts.json`, docs/contract.md section 6):
read it (size-capped), record an attempt, drop one job's records.

Every change is a compare-and-swap on the backend, retried on a race. The rules
that read the log (lineage, ownership) are pure functions in lineage.py and
ownership.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lazarus_contract import ATTEMPTS_LOG
from lazarus_contract.identity import JobIdentity

from .errors import AttemptTaken, InvalidCheckpoint, StoreError
from .lineage import AttemptRecord, dump_attempts, parse_attempts
from .manifest import now_rfc3339
from .ownership import Owner, same_job
from .root import Root

# One record is ~200 bytes: 4 MiB is some 20,000 attempts on one root. Anything
# larger is refused rather than read whole into every operator cycle and trainer.
MAX_FENCE_LOG_BYTES = 4 << 20
_SWAP_TRIES = 20


def _load(root: Root) -> tuple[list[AttemptRecord], str | None]:
    """The records and the compare-and-swap token (None: there is no log)."""
    where = root.where(ATTEMPTS_LOG)
    got = root.backend.get_versioned(ATTEMPTS_LOG, max_bytes=MAX_FENCE_LOG_BYTES + 1)
    if got is None:
        return [], None
    raw, token = got
    if len(raw) > MAX_FENCE_LOG_BYTES:
        raise InvalidCheckpoint(
            f"{where}: fence log is over {MAX_FENCE_LOG_BYTES >> 20} MiB: not read"
            " (inspect it, or give each job its own checkpoint root)"
        )
    return parse_attempts(raw, where=where), token


def read(root: Root) -> list[AttemptRecord]:
    """The fence log (empty if none was written)."""
    return _load(root)[0]


# A change to the records: the new list, [] to delete the log, None for nothing to do.
Change = Callable[[list[AttemptRecord]], list[AttemptRecord] | None]


def _update(root: Root, change: Change) -> None:
    """Apply `change` to the records by compare-and-swap, retried on a race."""
    for _ in range(_SWAP_TRIES):
        records, token = _load(root)
        new = change(records)
        if new is None:
            return
        if not new:
            root.backend.delete_many([ATTEMPTS_LOG])
            return
        if root.backend.put_if_token(ATTEMPTS_LOG, dump_attempts(new), token):
            return
        time.sleep(0.05)
    raise StoreError(f"{root.where(ATTEMPTS_LOG)}: gave up after {_SWAP_TRIES} conflicting updates")


def record_attempt(
    root: Root,
    attempt: int,
    resume_from: str | None,
    resume_step: int,
    *,
    job: JobIdentity | None = None,
    job_attempt: int | None = None,
) -> None:
    """Append attempt N of `job` (idempotent per attempt); AttemptTaken if another
    job recorded attempt N. `job_attempt`: the number the job asked for (lineage.py)."""

    def change(records: list[AttemptRecord]) -> list[AttemptRecord]:
        for r in records:
            if r.attempt == attempt and r.job and job and r.job.uid != job.uid:
                raise AttemptTaken(
                    f"{root.where(ATTEMPTS_LOG)}: attempt {attempt} is already recorded "
                    f"for job {r.job.namespace}/{r.job.name} (uid {r.job.uid})"
                )
        rest = [r for r in records if r.attempt != attempt]
        rest.append(
            AttemptRecord(attempt, resume_from, resume_step, now_rfc3339(), job, job_attempt)
        )
        return sorted(rest, key=lambda r: r.attempt)

    _update(root, change)


def drop_job(root: Root, owner: Owner) -> None:
    """Remove the job's lines; delete the log only when no other job has lines in it.
    Records from before records named their job are left: nobody can prove whose."""

    def change(records: list[AttemptRecord]) -> list[AttemptRecord] | None:
        if not records:
            return None
        rest = [r for r in records if not same_job(owner, r.job) or r.job is None]
        return None if len(rest) == len(records) else rest

    _update(root, change)
