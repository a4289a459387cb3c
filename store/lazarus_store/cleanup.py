"""Deleting one job's checkpoints from a shared root (spec.checkpoint.deleteOnJobDelete).

Only the prefixes the contract names for the job go (docs/contract.md section 8):
its committed checkpoints, its uncommitted saves, their quarantine markers and its
records in the fence log. Anything else under the root, another job's checkpoints
or unrelated objects next to a bucket-root URI, is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import fencelog, quarantine, sweep
from .ownership import Owner
from .prune import delete_prefix
from .store import CheckpointStore


@dataclass
class Deleted:
    checkpoints: list[str] = field(default_factory=list)
    objects: int = 0
    kept_foreign: int = 0  # checkpoint prefixes under the root that are not the job's
    shared_objects: int = 0  # the job's shared chunks


def delete_job_checkpoints(store: CheckpointStore, owner: Owner) -> Deleted:
    """Delete what `owner` owns under the root; the manifest first, so a half-done
    delete leaves an uncommitted prefix, never a checkpoint with missing objects."""
    scope = store.scope(owner=owner)
    out = Deleted()
    uids = {owner.uid}  # the job's shared prefixes: its own and its earlier incarnations'
    for c in store.list_checkpoints():
        if not scope.owns(c):
            out.kept_foreign += 1
            continue
        keys = [o.key for o in c.objects]
        if c.manifest is not None:
            uids.add(c.manifest.job.uid)
        delete_prefix(store.root, c.name, keys)
        if c.quarantined:
            store.backend.delete_many([quarantine.marker_key(c.name)])
        out.checkpoints.append(c.name)
        out.objects += len(keys)
    # After its checkpoints: a half-done delete leaves checkpoints uncommitted, never
    # committed ones with missing chunks.
    out.shared_objects = sweep.delete_job(store.root, uids)
    fencelog.drop_job(store.root, owner)
    return out
