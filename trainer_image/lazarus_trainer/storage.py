"""The trainer's one door to the checkpoint store (lazarus_store), shaped for its needs."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Any

from lazarus_contract import parse_checkpoint_name
from lazarus_contract.rules import attempt_number, operator_records_attempts
from lazarus_store import (
    AttemptTaken,
    CheckpointInfo,
    CheckpointNotFound,
    CheckpointStore,
    CheckpointWriter,
    ChecksumMismatch,
    CommitConflict,
    EndpointNotS3,
    FencedOut,
    InvalidCheckpoint,
    InvalidURI,
    JobIdentity,
    Manifest,
    RetentionPolicy,
    StoreError,
    open_store_from_env,
)
from lazarus_store import ObjectEntry as Entry
from lazarus_store.chunked import ChunkedResult, Piece
from lazarus_store.ownership import Owner, owner_of
from lazarus_store.verified import ReadStats

from .termination import PermanentError

__all__ = [
    "AttemptTaken",
    "CheckpointNotFound",
    "ChecksumMismatch",
    "CommitConflict",
    "Entry",
    "FencedOut",
    "InvalidCheckpoint",
    "JobIdentity",
    "Manifest",
    "ReadStats",
    "Storage",
    "StoreError",
    "Writer",
    "open_storage",
]

log = logging.getLogger(__name__)


class Writer:
    """One checkpoint being written by this rank; rank 0's writer also commits for all."""

    def __init__(self, w: CheckpointWriter) -> None:
        self._w = w

    def put(
        self,
        path: str,
        data: bytes | bytearray | memoryview,
        *,
        pool: Executor | None = None,
        concurrency: int | None = None,
    ) -> Entry:
        """One object straight from `data` (no copy), on `pool` if given."""
        return self._w.put_bytes(path, data, pool=pool, concurrency=concurrency)

    def put_chunks(
        self, path: str, data: memoryview, pieces: list[Piece], *, pool: Executor | None = None
    ) -> ChunkedResult:
        """One object as content-addressed chunks shared by the job's checkpoints."""
        return self._w.put_chunks(path, data, pieces, pool=pool)

    def put_file(
        self,
        path: str,
        local: str | os.PathLike[str],
        *,
        pool: Executor | None = None,
        concurrency: int | None = None,
    ) -> Entry:
        return self._w.put_file(path, local, pool=pool, concurrency=concurrency)

    def commit(self, entries: list[Entry], **meta: Any) -> str:
        self._w.add_entries(entries)  # objects other ranks wrote under the same prefix
        return self._w.commit(**meta).name

    def abort(self) -> None:
        self._w.abort()


class Storage:
    def __init__(
        self,
        store: CheckpointStore,
        root_uri: str,
        attempt: int | None = None,
        owner: Owner | None = None,
    ) -> None:
        self.store = store
        self.root_uri = root_uri.rstrip("/")
        self.attempt = attempt
        # The job whose checkpoints this run may choose and prune (None: run by hand).
        self.owner = owner
        # A filesystem root under the operator: the operator cannot see the volume,
        # so this trainer numbers, records and fences its attempt (contract section 8).
        self.fences = owner is not None and not operator_records_attempts(self.root_uri)
        self.asked = attempt  # the operator's number for this attempt of the job object
        if self.fences and attempt is not None:
            self.attempt = self._root_attempt(attempt)

    def _root_attempt(self, asked: int) -> int:
        """The operator counts attempts per job object; names must be unique per root.
        The contract's numbering (lazarus_contract.rules.attempt_number): above every
        attempt the root recorded (other jobs', an earlier incarnation's, this job's
        own), and once rank 0 has recorded it, the number it recorded, so every rank
        and every later read within the attempt agrees."""
        assert self.owner is not None
        history = [r.recorded for r in self.store.attempts()]
        attempt = attempt_number(asked, history, self.owner.uid)
        if attempt != asked:
            log.info("attempt %d is attempt %d of root %s", asked, attempt, self.root_uri)
        return attempt

    def record_start(self, resumed: str | None, step: int) -> None:
        """Fence record for this attempt (filesystem roots under the operator only)."""
        if not self.fences or self.attempt is None or self.owner is None:
            return
        try:
            self.store.record_attempt(
                self.attempt, resumed, step, job=self.owner.identity, job_attempt=self.asked
            )
        except AttemptTaken as exc:
            raise PermanentError(
                f"{exc}: two jobs write to {self.root_uri}; give each job its own "
                "spec.checkpoint.uri"
            ) from None

    def begin(
        self, step: int, attempt: int, *, uid: str = "", reuse_from: tuple[str, ...] = ()
    ) -> Writer:
        """A writer; `uid` names the job's shared prefix, `reuse_from` the committed
        checkpoints whose shared chunks it may reference."""
        return Writer(self.store.begin(step=step, attempt=attempt, uid=uid, reuse_from=reuse_from))

    @property
    def piece_size(self) -> int:
        return self.store.part_size

    def committed(self) -> list[str]:
        """Committed, cheaply valid, unquarantined checkpoints in lineage, newest first
        (the store's valid_in_lineage, the rule the operator selects by)."""
        with self._s3_or_permanent():
            sel = self.store.valid_in_lineage(self.attempt, owner=self.owner, limit=None)
        return [c.name for c in sel.valid]

    def listing(self) -> list[CheckpointInfo]:
        """Every checkpoint under the root, committed or not (the fresh-start check)."""
        with self._s3_or_permanent():
            return self.store.list_checkpoints()

    @contextmanager
    def _s3_or_permanent(self) -> Iterator[None]:
        """A web page's "no checkpoints" is no fresh start: an endpoint that is not S3
        ends the run (exit 78) with what it answered."""
        try:
            yield
        except EndpointNotS3 as exc:
            raise PermanentError(f"checkpoint store {self.root_uri!r} is unusable: {exc}") from None

    def resolve(self, pointer: str) -> str:
        """A checkpoint name from a name or a URI under this job's root."""
        ptr = pointer.rstrip("/")
        if parse_checkpoint_name(ptr):
            return ptr
        head, _, name = ptr.rpartition("/")
        if head.rstrip("/") != self.root_uri:
            raise PermanentError(
                f"resume pointer {pointer!r} is not under this job's checkpoint root "
                f"{self.root_uri!r}"
            )
        if not parse_checkpoint_name(name):
            raise PermanentError(f"resume pointer {pointer!r} does not name a checkpoint")
        return name

    def read_manifest(self, name: str) -> Manifest:
        return self.store.read_manifest(name)

    def read_bytes(self, name: str, path: str) -> bytes:
        return self.store.read_bytes(name, path)

    def read_buffer(self, name: str, path: str, stats: ReadStats | None = None) -> bytearray:
        """One object, verified, in a buffer tensors can be viewed out of (no extra copy);
        `stats` adds its bytes and CRC32C time."""
        return self.store.read_buffer(name, path, stats=stats)

    def download(self, name: str, path: str, local: str | os.PathLike[str]) -> None:
        """One object into a local file, size and CRC32C verified as it arrives."""
        self.store.download_file(name, path, local)

    def quarantine(self, name: str, reason: str) -> None:
        self.store.quarantine(name, reason)

    def prune(
        self,
        *,
        keep_latest: int,
        keep_best: int,
        metric: str | None,
        mode: str,
        resumed_from: str | None,
    ) -> list[str]:
        policy = RetentionPolicy(
            keep_latest=max(1, keep_latest),
            keep_best=keep_best if metric else 0,
            metric=metric if keep_best else None,
            mode="max" if mode == "max" else "min",
        )
        plan = self.store.prune(
            policy, resumed_from, attempt=self.attempt, dry_run=False, owner=self.owner
        )
        if plan.removals:
            log.info("retention removed %s", list(plan.removals))
        return list(plan.removals)


def open_storage(uri: str, attempt: int | None = None, job: JobIdentity | None = None) -> Storage:
    """The store at `uri`, acting for `job` (its identity from the operator's env)."""
    try:
        return Storage(open_store_from_env(uri), uri, attempt, owner_of(job))
    except InvalidURI as exc:
        raise PermanentError(f"checkpoint store {uri!r} is unusable: {exc}") from None
