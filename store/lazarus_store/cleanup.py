"""Deleting one job's checkpoints from a shared root (spec.checkpoint.deleteOnJobDelete).

Only the prefixes the contract names for the job go (docs/contract.md section 8):
its committed checkpoints, its uncommitted saves, their quarantine markers and its
records in the fence log. Anything else under the root, another job's checkpoints
or unrelated objects next to a bucket-root URI, is never touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from lazarus_contract import ATTEMPTS_LOG, MANIFEST_NAME, QUARANTINE_PREFIX

from .errors import StoreError
from .lineage import dump_attempts, parse_attempts
from .ownership import Owner, same_job
from .store import CheckpointStore


@dataclass
class Deleted:
    checkpoints: list[str] = field(default_factory=list)
    objects: int = 0
    kept_foreign: int = 0  # checkpoint prefixes under the root that are not the job's


def delete_job_checkpoints(store: CheckpointStore, owner: Owner) -> Deleted:
    """Delete what `owner` owns under the root; the manifest first, so a half-done
    delete leaves an uncommitted prefix, never a checkpoint with missing objects."""
    records = store.attempts()
    out = Deleted()
    for c in store.list_checkpoints():
        if not store._owned(owner, c, records):
            out.kept_foreign += 1
            continue
        keys = [o.key for o in c.objects]
        manifest = f"{c.name}/{MANIFEST_NAME}"
        if manifest in keys:
            store.backend.delete_many([manifest])
        store.backend.delete_many([k for k in keys if k != manifest])
        if c.quarantined:
            store.backend.delete_many([f"{QUARANTINE_PREFIX}/{c.name}.json"])
        abort_uploads = getattr(store.backend, "abort_uploads", None)
        if abort_uploads is not None:  # S3: parts of a killed multipart upload
            abort_uploads(f"{c.name}/")
        out.checkpoints.append(c.name)
        out.objects += len(keys)
    _drop_records(store, owner)
    return out


def _drop_records(store: CheckpointStore, owner: Owner) -> None:
    """Remove the job's lines from the fence log (compare-and-swap); delete the log
    only when no other job has lines in it."""
    for _ in range(20):
        got = store.backend.get_versioned(ATTEMPTS_LOG)
        if got is None:
            return
        records = parse_attempts(got[0], where=ATTEMPTS_LOG)
        rest = [r for r in records if not same_job(owner, r.job) or r.job is None]
        if len(rest) == len(records):
            return
        if not rest:
            store.backend.delete_many([ATTEMPTS_LOG])
            return
        if store.backend.put_if_token(ATTEMPTS_LOG, dump_attempts(rest), got[1]):
            return
        time.sleep(0.05)
    raise StoreError(f"{ATTEMPTS_LOG}: gave up after 20 conflicting updates")
