"""`CheckpointStore`: the one object callers hold, a facade over one root.

It holds no logic of its own: listing and validation are catalog.py, selection
selection.py, verified reads verified.py, the write path writer.py (and upload.py),
the fence log fencelog.py, quarantine quarantine.py, retention prune.py (policy:
retention.py). Each of those takes the `Root` (root.py), never this class.
Everything is synchronous; the operator calls it through asyncio.to_thread.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from lazarus_contract.identity import JobIdentity
from lazarus_contract.rules import first_free_attempt

from . import catalog, fencelog, prune, quarantine, selection, sweep, verified, writer
from .backends.base import Backend
from .catalog import CheckpointInfo, Validation
from .lineage import AttemptRecord
from .manifest import Manifest
from .ownership import Owner
from .retention import Candidate, RetentionPlan, RetentionPolicy, plan_retention
from .root import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, Root
from .selection import Scope, Selection, Skipped
from .writer import CheckpointWriter

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_PART_SIZE",
    "CheckpointInfo",
    "CheckpointStore",
    "CheckpointWriter",
    "Selection",
    "Skipped",
    "Validation",
]


class CheckpointStore:
    """Checkpoints of one job under one root (`s3://bucket/prefix` or a directory)."""

    def __init__(
        self,
        backend: Backend,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        multipart_threshold: int | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.root = Root(
            backend,
            part_size=part_size,
            multipart_threshold=multipart_threshold,
            concurrency=concurrency,
        )

    def __repr__(self) -> str:
        return f"CheckpointStore({self.description})"

    @property
    def backend(self) -> Backend:
        return self.root.backend

    @property
    def description(self) -> str:
        return self.root.description

    @property
    def part_size(self) -> int:
        return self.root.part_size

    @property
    def multipart_threshold(self) -> int:
        return self.root.multipart_threshold

    @property
    def concurrency(self) -> int:
        return self.root.concurrency

    def pool(self) -> ThreadPoolExecutor:
        return self.root.pool()

    def close(self) -> None:
        self.root.close()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing -----------------------------------------------------------------
    def begin(
        self, *, step: int, attempt: int, uid: str = "", reuse_from: Sequence[str] = ()
    ) -> CheckpointWriter:
        """Start writing checkpoint (step, attempt); CommitConflict if it is already committed.
        `uid`, `reuse_from`: the job's shared prefix and the checkpoints whose shared
        chunks may be reused (writer.begin)."""
        return writer.begin(self.root, step=step, attempt=attempt, uid=uid, reuse_from=reuse_from)

    # --- listing and validation --------------------------------------------------
    def list_checkpoints(self) -> list[CheckpointInfo]:
        """Every checkpoint prefix under the root, newest first (one LIST, one GET per manifest)."""
        return catalog.list_checkpoints(self.root)

    def info(self, name: str) -> CheckpointInfo:
        """One checkpoint (one LIST of its prefix); CheckpointNotFound if nothing is there."""
        return catalog.info(self.root, name)

    def read_manifest(self, name: str) -> Manifest:
        """The checked manifest; CheckpointNotFound / InvalidCheckpoint otherwise."""
        return catalog.read_manifest(self.root, name)

    def validate(
        self, name: str, full: bool = False, *, info: CheckpointInfo | None = None
    ) -> Validation:
        """Cheap (manifest + one LIST) or full (also every byte's CRC32C) validation."""
        return catalog.validate(self.root, info or self.info(name), full)

    # --- selection ---------------------------------------------------------------
    def scope(self, attempt: int | None = None, owner: Owner | None = None) -> Scope:
        """Whose checkpoints count, in the lineage of `attempt` (one read of the fence log)."""
        return Scope.of(self.attempts(), owner, attempt)

    def valid_in_lineage(
        self,
        attempt: int | None = None,
        *,
        owner: Owner | None = None,
        full: bool = False,
        limit: int | None = 1,
    ) -> Selection:
        """The newest committed, valid, unquarantined checkpoint the owner owns, in
        lineage, and why newer ones lost; with `limit` None, every valid one (newest
        first), for a caller that falls back to older ones.

        `attempt` is the attempt that will resume (None: the one after the newest
        in the fence log). `owner` None: every job's checkpoints count (a trainer
        run by hand); otherwise only the owner's (ownership.py).
        """
        return selection.valid_in_lineage(
            self.root,
            self.scope(attempt, owner),
            self.list_checkpoints(),
            full=full,
            limit=limit,
        )

    def latest_valid(
        self, attempt: int | None = None, full: bool = False, *, owner: Owner | None = None
    ) -> Selection:
        """`valid_in_lineage` with its first arguments positional, as older callers pass them."""
        return self.valid_in_lineage(attempt, owner=owner, full=full)

    # --- reading -----------------------------------------------------------------
    def open_read(self, name: str, path: str, *, manifest: Manifest | None = None) -> BinaryIO:
        """A stream of one object; raises ChecksumMismatch at EOF if size or CRC32C differ."""
        f: BinaryIO = verified.open_verified(
            self.root, name, catalog.entry(self.root, name, path, manifest)
        )
        return f

    def read_bytes(self, name: str, path: str, *, manifest: Manifest | None = None) -> bytes:
        """One object's bytes, fetched in parallel ranges, verified against the manifest."""
        e = catalog.entry(self.root, name, path, manifest)
        return verified.read_bytes(self.root, name, e)

    def read_buffer(
        self,
        name: str,
        path: str,
        *,
        manifest: Manifest | None = None,
        stats: verified.ReadStats | None = None,
    ) -> bytearray:
        """`read_bytes` into a bytearray the caller owns, without the final copy into bytes
        (tensors can be viewed straight out of it); `stats` adds its bytes and CRC time."""
        e = catalog.entry(self.root, name, path, manifest)
        return verified.read_buffer(self.root, name, e, stats)

    def download_file(
        self,
        name: str,
        path: str,
        dest: str | os.PathLike[str],
        *,
        manifest: Manifest | None = None,
    ) -> None:
        """Fetch one object into a local file (parallel ranges, verified)."""
        e = catalog.entry(self.root, name, path, manifest)
        verified.download_file(self.root, name, e, dest)

    # --- quarantine and the fence log --------------------------------------------
    def quarantine(self, name: str, reason: str) -> None:
        """Mark `name` as never to be chosen again, keeping its bytes for inspection."""
        quarantine.put(self.root, name, reason)

    def is_quarantined(self, name: str) -> bool:
        return quarantine.is_quarantined(self.root, name)

    def attempts(self) -> list[AttemptRecord]:
        """The fence log (empty if none was written); InvalidCheckpoint if unreadable
        or over fencelog.MAX_FENCE_LOG_BYTES."""
        return fencelog.read(self.root)

    def next_attempt(self) -> int:
        """The next free attempt number of this root: numbers are unique per root, so
        two jobs sharing a root by mistake never write the same checkpoint names
        (lazarus_contract.rules.first_free_attempt)."""
        return first_free_attempt(r.recorded for r in self.attempts())

    def record_attempt(
        self,
        attempt: int,
        resume_from: str | None,
        resume_step: int,
        *,
        job: JobIdentity | None = None,
        job_attempt: int | None = None,
    ) -> None:
        """Append attempt N of `job` to the fence log (compare-and-swap, retried on a
        race); idempotent per attempt. AttemptTaken if another job recorded attempt N.
        `job_attempt`: the number the job asked for, when it numbered N itself."""
        fencelog.record_attempt(
            self.root, attempt, resume_from, resume_step, job=job, job_attempt=job_attempt
        )

    # --- retention ---------------------------------------------------------------
    def candidates(
        self,
        attempt: int | None = None,
        checkpoints: list[CheckpointInfo] | None = None,
        *,
        owner: Owner | None = None,
    ) -> list[Candidate]:
        """Retention's view of every prefix the owner owns: cheap validity and lineage,
        from one LIST. Other jobs' prefixes are left out: never counted, never deleted."""
        scope = self.scope(attempt, owner)
        listed = checkpoints if checkpoints is not None else self.list_checkpoints()
        return prune.candidates(scope, listed)

    def plan_retention(
        self,
        policy: RetentionPolicy,
        resumed_from: str | None = None,
        now: float | None = None,
        *,
        attempt: int | None = None,
        owner: Owner | None = None,
    ) -> RetentionPlan:
        return plan_retention(
            self.candidates(attempt, owner=owner),
            policy,
            resumed_from=resumed_from,
            now=time.time() if now is None else now,
        )

    def apply(self, plan: RetentionPlan) -> list[str]:
        """Delete what the plan says; the manifest goes first so a half-delete is uncommitted."""
        return prune.apply(self.root, plan)

    def prune(
        self,
        policy: RetentionPolicy,
        resumed_from: str | None = None,
        *,
        attempt: int | None = None,
        dry_run: bool = True,
        now: float | None = None,
        owner: Owner | None = None,
    ) -> RetentionPlan:
        plan = self.plan_retention(policy, resumed_from, now, attempt=attempt, owner=owner)
        if not dry_run:
            self.apply(plan)
            self.collect_shared(attempt=attempt, owner=owner)
        return plan

    def collect_shared(
        self, *, attempt: int | None = None, owner: Owner | None = None, dry_run: bool = False
    ) -> sweep.Swept:
        """Delete the owner's shared chunks that no checkpoint or save in flight
        references (sweep.py); only the newest attempt of the lineage collects."""
        return sweep.collect(self.root, self.scope(attempt, owner), dry_run=dry_run)
