"""Collecting a job's shared chunks by reachability (docs/contract.md section 7).

A pass lists the blobs first, then marks: every committed manifest's chunks and every
uncommitted save's intent (shared.py; an intent gone since the LIST: the manifest that
replaced it). It deletes the owner's blobs that nothing marks. Another job's blobs are
never listed for deletion: only the owner's UID and the UIDs of the checkpoints it
owns name prefixes a pass may sweep.

A pass of another process and a save (chunked.py) meet like Dekker's two flags on a
strongly consistent store: the pass writes its marker under each job prefix it may
sweep, then LISTs and reads what to mark; the save writes its intent, then LISTs the
prefix. Whichever comes second sees the other: the pass's mark sees the intent (or
the manifest), or the save's LIST sees the marker and the save waits for the pass to
end (its marker gone) or to pass its delete deadline (WINDOW_S / 2 after the marker,
by the pass's clock; the save waits WINDOW_S by its own), then re-uploads what the
pass deleted. No atomic or conditional operation is needed.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field

from . import catalog, checksum, shared
from .backends.base import ObjectInfo
from .catalog import CheckpointInfo
from .errors import StoreError
from .lineage import newest_attempt
from .root import Root
from .selection import Scope

BATCH = 1000  # blob keys per delete request (S3's DeleteObjects limit)
Blob = tuple[str, str, ObjectInfo]  # job key, digest, the listed blob


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
            if got is None:  # gone since the LIST: committed (then deleted) or aborted
                with contextlib.suppress(StoreError):
                    m = catalog.read_manifest(root, c.name)
                    if shared.uid_ok(m.job.uid):
                        got = (shared.job_key(m.job.uid), m.chunk_digests())
            if got is not None:
                out.setdefault(got[0], set()).update(got[1])
    return out


class Pass:
    """One collection pass, in its two halves: `mark()` and `sweep()` (the deletes);
    `collect` runs both at once. A pass that deletes writes its marker under each job
    prefix it may sweep before it marks, and removes it after its deletes: see the
    module doc for why that closes the race with a save of another process."""

    def __init__(self, root: Root, scope: Scope, *, dry_run: bool = False) -> None:
        self.root, self.scope, self.dry_run = root, scope, dry_run
        self.out = Swept()
        self._markers: list[str] = []
        self._since = 0.0  # monotonic time before the markers were written

    def mark(self) -> Pass:
        newest = newest_attempt(self.scope.lineage)
        current = self.scope.current
        if current is not None and newest is not None and newest > current:
            self.out.skipped = f"attempt {newest} is newer than {current}"
            return self
        lst = shared.listing(self.root)  # the blobs are listed before the mark
        if not lst.blobs:
            return self
        checkpoints = catalog.list_checkpoints(self.root)
        keys = sorted(_keys(self.scope, checkpoints, set(lst.blobs)) & set(lst.blobs))
        gone = [(k, d, o) for k in keys for d, o in sorted(lst.blobs[k].items())]
        try:
            gone = self._unmarked(gone, checkpoints)
            if gone and not self.dry_run:  # marked again once the markers exist
                self._put_markers(sorted({k for k, _, _ in gone}), lst)
                gone = self._unmarked(gone, catalog.list_checkpoints(self.root))
        except ValueError as e:
            self.out.skipped = str(e)
            self._unmark()
            return self
        except BaseException:  # e.g. a failed request: no marker left to slow saves
            self._unmark()
            raise
        self.out.deleted = [o.key for _, _, o in gone]
        self.out.freed_bytes = sum(o.size for _, _, o in gone)
        return self

    def _unmarked(self, blobs: list[Blob], checkpoints: list[CheckpointInfo]) -> list[Blob]:
        refs = marked(self.root, checkpoints)
        return [(k, d, o) for k, d, o in blobs if d not in refs.get(k, set())]

    def _put_markers(self, keys: list[str], lst: shared.Listing) -> None:
        """A marker under each prefix with blobs to delete (a save that intends later
        sees it), and the dead passes' markers found there, to remove with ours."""
        token = uuid.uuid4().hex
        self._since = time.monotonic()
        for k in keys:
            self._markers.append(shared.sweep_key(k, token))
            self.root.backend.put(self._markers[-1], b"", checksum.crc32c(b""))
            self._markers += self._dead(lst.markers.get(k, []))

    def sweep(self) -> Swept:
        """Delete what `mark` found unreferenced, in batches, none issued later than
        half the window after the markers were written (a later pass does the rest)."""
        if self.dry_run:
            return self.out
        todo, self.out.deleted = self.out.deleted, []
        try:
            for i in range(0, len(todo), BATCH):
                if time.monotonic() - self._since > shared.WINDOW_S / 2:
                    self.out.skipped = "the pass took too long to delete; the next one will"
                    break
                self.root.backend.delete_many(todo[i : i + BATCH])
                self.out.deleted += todo[i : i + BATCH]
        finally:
            self._unmark()
        return self.out

    def _dead(self, seen: list[ObjectInfo]) -> list[str]:
        """Markers of passes that can no longer delete (killed ones), by the server's
        time of our own marker."""
        if not seen:
            return []
        mine = self.root.backend.list_objects(self._markers[-1])
        now = max((o.mtime for o in mine), default=float("-inf"))
        live = shared.live_passes(seen, now)
        return [o.key for o in seen if o.key.rsplit("/", 1)[-1] not in live]

    def _unmark(self) -> None:
        if self._markers:
            with contextlib.suppress(StoreError):
                self.root.backend.delete_many(self._markers)
            self._markers = []


def collect(root: Root, scope: Scope, *, dry_run: bool = False) -> Swept:
    """Delete (unless `dry_run`) the owner's blobs no checkpoint or save references.

    Only the newest attempt of the owner's lineage collects: a zombie attempt's pass
    never runs beside its successor's saves (the fence log says who is newest)."""
    return Pass(root, scope, dry_run=dry_run).mark().sweep()


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
