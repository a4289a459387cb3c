"""Collecting a job's shared chunks by reachability (docs/contract.md section 7).

A pass lists the blobs first, then marks: every committed manifest's chunks and every
uncommitted save's intent (shared.py). It deletes the owner's blobs that nothing
marks. Blobs listed before the mark and written by a save whose intent lands after it
are the save's to re-check: it looks for reusable blobs only after its intent is
written. Another job's blobs are never listed for deletion: only the owner's UID and
the UIDs of the checkpoints it owns name prefixes a pass may sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import catalog, shared
from .catalog import CheckpointInfo
from .lineage import newest_attempt
from .root import Root
from .selection import Scope


@dataclass
class Swept:
    deleted: list[str] = field(default_factory=list)  # blob keys
    freed_bytes: int = 0
    skipped: str | None = None  # why nothing was collected, if so


def _keys(scope: Scope, checkpoints: list[CheckpointInfo], listed: set[str]) -> set[str]:
    """The job keys whose blobs this owner may collect."""
    if scope.owner is None:  # a trainer run by hand: every job's checkpoints count
        return listed
    keys = {shared.job_key(scope.owner.uid)}
    for c in checkpoints:
        m = c.manifest
        if m is not None and scope.owns(c) and shared.uid_ok(m.job.uid):
            keys.add(shared.job_key(m.job.uid))
    return keys


def marked(root: Root, checkpoints: list[CheckpointInfo]) -> dict[str, set[str]]:
    """Digests referenced by committed manifests or uncommitted saves, by job key
    (ValueError when an intent cannot be read: then nothing may be deleted)."""
    out: dict[str, set[str]] = {}
    for c in checkpoints:
        m = c.manifest
        if c.committed and m is not None and shared.uid_ok(m.job.uid):
            out.setdefault(shared.job_key(m.job.uid), set()).update(m.chunk_digests())
        elif not c.committed and any(o.key == shared.intent_key(c.name) for o in c.objects):
            got = shared.read_intent(root, c.name)
            if got is not None:
                out.setdefault(got[0], set()).update(got[1])
    return out


def collect(root: Root, scope: Scope, *, dry_run: bool = False) -> Swept:
    """Delete (unless `dry_run`) the owner's blobs no checkpoint or save references.

    Only the newest attempt of the owner's lineage collects: a zombie attempt's pass
    never runs beside its successor's saves (the fence log says who is newest)."""
    newest = newest_attempt(scope.lineage)
    if scope.current is not None and newest is not None and newest > scope.current:
        return Swept(skipped=f"attempt {newest} is newer than {scope.current}")
    blobs = shared.listing(root).blobs  # listed before the mark: see the module doc
    if not blobs:
        return Swept()
    checkpoints = catalog.list_checkpoints(root)
    try:
        refs = marked(root, checkpoints)
    except ValueError as e:
        return Swept(skipped=str(e))
    out = Swept()
    for key in sorted(_keys(scope, checkpoints, set(blobs)) & set(blobs)):
        keep = refs.get(key, set())
        gone = [o for d, o in sorted(blobs[key].items()) if d not in keep]
        out.deleted += [o.key for o in gone]
        out.freed_bytes += sum(o.size for o in gone)
    if out.deleted and not dry_run:
        root.backend.delete_many(out.deleted)
    return out


def delete_job(root: Root, uids: set[str]) -> int:
    """Every blob of the given job UIDs (deleteOnJobDelete); the number deleted."""
    keys = [
        o.key
        for uid in sorted(u for u in uids if shared.uid_ok(u) and u)
        for o in root.backend.list_objects(shared.prefix(uid))
    ]
    if keys:
        root.backend.delete_many(keys)
    return len(keys)
