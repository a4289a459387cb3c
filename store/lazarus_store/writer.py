"""The write path: one checkpoint's data objects (whole, or in parts via upload.py),
then the commit marker (manifest.json), written once, fenced.

A writer is given the `Root` it writes to and reads the fence log through
fencelog.py; it knows nothing else of the store.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor
from importlib import metadata
from typing import Any

from lazarus_contract import MANIFEST_NAME, REASONS, checkpoint_name
from lazarus_contract.identity import JobIdentity

from . import checksum, fencelog, shared
from .buffers import part_buffer
from .catalog import read_manifest
from .chunked import ChunkedResult, Piece, put_chunks
from .errors import CommitConflict, FencedOut, StoreError
from .lineage import newest_attempt
from .manifest import (
    CHUNKED_SCHEMA_VERSION,
    SCHEMA_VERSION,
    Chunk,
    Manifest,
    ObjectEntry,
    check_object_path,
    now_rfc3339,
    parse_manifest,
    python_version,
)
from .ownership import Owner, same_job
from .root import Root
from .upload import StreamWriter, upload_parts


def _pread_part(fd: int, off: int, n: int) -> memoryview:
    view = part_buffer(n)
    got = 0
    while got < n:
        k = os.preadv(fd, [view[got:]], off + got)
        if k == 0:
            raise StoreError(f"file shrank while uploading: {n - got} bytes missing at {off + got}")
        got += k
    return view


def _lazarus_version() -> str:
    try:
        return metadata.version("lazarus")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def begin(
    root: Root, *, step: int, attempt: int, uid: str = "", reuse_from: Sequence[str] = ()
) -> CheckpointWriter:
    """A writer of checkpoint (step, attempt); CommitConflict if it is already committed.
    `uid`: the job's, naming its shared prefix; `reuse_from`: committed checkpoints of
    the job whose shared chunks `put_chunks` may reference instead of uploading."""
    name = checkpoint_name(step, attempt)
    marker = f"{name}/{MANIFEST_NAME}"
    if any(o.key == marker for o in root.backend.list_objects(f"{name}/")):
        raise CommitConflict(f"{root.where(name)}: already committed")
    shared.job_key(uid)  # ValueError now, not at the first chunk
    return CheckpointWriter(root, step=step, attempt=attempt, uid=uid, reuse_from=reuse_from)


class CheckpointWriter:
    """One checkpoint being written: data objects first, then `commit()` writes the manifest."""

    def __init__(
        self,
        root: Root,
        *,
        step: int,
        attempt: int,
        uid: str = "",
        reuse_from: Sequence[str] = (),
    ) -> None:
        self._root = root
        self.uid = uid
        self._reuse_from = tuple(reuse_from)
        self._known: dict[str, Chunk] | None = None  # read after the first intent
        self._intent: set[str] = set()
        self.step = step
        self.attempt = attempt
        self.name = checkpoint_name(step, attempt)
        self._entries: dict[str, ObjectEntry] = {}
        self._written: set[str] = set()
        self._lock = threading.Lock()
        self._state = "open"

    def key(self, path: str) -> str:
        why = check_object_path(path)
        if why:
            raise ValueError(f"{self._root.where(self.name)}: {why}")
        if self._state != "open":
            raise StoreError(f"{self._root.where(self.name)}: writer is {self._state}")
        with self._lock:
            self._written.add(path)
        return f"{self.name}/{path}"

    def _record(self, e: ObjectEntry) -> None:
        with self._lock:
            self._entries[e.path] = e

    def entries(self) -> list[ObjectEntry]:
        """What this writer has written (to gather from other ranks into the committer)."""
        with self._lock:
            return list(self._entries.values())

    def add_entries(self, entries: Iterable[ObjectEntry]) -> None:
        """Adopt objects written by other writers of this checkpoint (e.g. other ranks)."""
        for e in entries:
            why = check_object_path(e.path)
            if why:
                raise ValueError(why)
            self._record(e)

    def put_bytes(
        self,
        path: str,
        data: bytes | bytearray | memoryview,
        *,
        pool: Executor | None = None,
        concurrency: int | None = None,
    ) -> ObjectEntry:
        """Write one object straight from `data` (slices of it, never copies); multipart in
        parallel when larger than the threshold, on `pool` with at most `concurrency` parts
        in flight (default: the store's own pool and concurrency). The caller must not
        change `data` until this returns."""
        key = self.key(path)
        view = memoryview(data).cast("B")
        size = len(view)
        if size <= self._root.multipart_threshold:
            crc = checksum.crc32c(view)
            self._root.backend.put(key, view, crc)
        else:
            crc = upload_parts(
                self._root,
                key,
                size,
                lambda off, n: view[off : off + n],
                pool=pool,
                concurrency=concurrency,
            )
        e = ObjectEntry(path, size, checksum.to_b64(crc))
        self._record(e)
        return e

    def put_file(
        self,
        path: str,
        local: str | os.PathLike[str],
        *,
        pool: Executor | None = None,
        concurrency: int | None = None,
    ) -> ObjectEntry:
        """Write one object from a local file, read part by part into each I/O thread's
        reused buffer (bounded memory); `pool`, `concurrency` as for `put_bytes`."""
        key = self.key(path)
        fd = os.open(local, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size <= self._root.multipart_threshold:
                raw = os.pread(fd, size, 0) if size else b""
                crc = checksum.crc32c(raw)
                self._root.backend.put(key, raw, crc)
            else:
                crc = upload_parts(
                    self._root,
                    key,
                    size,
                    functools.partial(_pread_part, fd),
                    pool=pool,
                    concurrency=concurrency,
                )
        finally:
            os.close(fd)
        e = ObjectEntry(path, size, checksum.to_b64(crc))
        self._record(e)
        return e

    def put_chunks(
        self,
        path: str,
        data: bytes | bytearray | memoryview,
        pieces: Sequence[Piece],
        *,
        pool: Executor | None = None,
    ) -> ChunkedResult:
        """Write one object as content-addressed chunks under the job's shared prefix,
        reusing those of `reuse_from` that are still stored (chunked.py)."""
        self.key(path)
        out = put_chunks(
            self._root,
            path,
            memoryview(data).cast("B"),
            pieces,
            uid=self.uid,
            intend=self._intend,
            pool=pool,
        )
        with self._lock:
            self._known = {**(self._known or {}), **{c.sha256: c for c in out.entry.chunks}}
        self._record(out.entry)
        return out

    def _intend(self, digests: set[str]) -> tuple[dict[str, Chunk], dict[str, int]]:
        """Record the intent, then what may be reused: chunks of `reuse_from` (read after
        the first intent) and the sizes of the blobs listed now."""
        with self._lock:
            self._intent |= digests
            intent = set(self._intent)
        shared.put_intent(self._root, self.name, self.uid, intent)
        if self._known is None:
            known: dict[str, Chunk] = {}
            for prev in self._reuse_from:
                with contextlib.suppress(StoreError):
                    m = read_manifest(self._root, prev)
                    if m.job.uid == self.uid:
                        known.update({c.sha256: c for e in m.objects for c in e.chunks})
            self._known = known
        listed = self._root.backend.list_objects(shared.prefix(self.uid))
        present = {
            o.key.rsplit("/", 1)[-1]: o.size
            for o in listed
            if not o.key.rsplit("/", 1)[-1].startswith(shared.SWEEP_MARK)
        }
        if len(present) < len(listed):  # a pass's marker: is it alive? (the intent's
            mine = self._root.backend.list_objects(shared.intent_key(self.name))  # mtime
            now = max((o.mtime for o in mine), default=float("-inf"))  # is the server's now)
            present |= dict.fromkeys(shared.live_passes(listed, now), 0)
        return dict(self._known), present

    def open_write(self, path: str) -> StreamWriter:
        """A file to write one object into, in parts as it grows (bounded memory)."""
        self.key(path)

        def done(size: int, crc: int) -> None:
            self._record(ObjectEntry(path, size, checksum.to_b64(crc)))

        return StreamWriter(self._root, functools.partial(self.key, path), done)

    def commit(
        self,
        *,
        reason: str = "periodic",
        epoch: int | None = None,
        metrics: Mapping[str, float] | None = None,
        world_size: int | None = None,
        parent: str | None = None,
        job: JobIdentity | Mapping[str, str] | None = None,
        samples_seen: int | None = None,
        tokens_seen: int | None = None,
        torch_version: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Manifest:
        """Write manifest.json if nobody has; CommitConflict / FencedOut otherwise."""
        where = self._root.where(self.name)
        if self._state != "open":
            raise StoreError(f"{where}: writer is {self._state}")
        if reason not in REASONS:
            raise ValueError(f"reason must be one of {REASONS}, not {reason!r}")
        if isinstance(job, Mapping):
            job = JobIdentity(job.get("name", ""), job.get("namespace", ""), job.get("uid", ""))
        if any(e.chunks and e.uid != (job.uid if job else "") for e in self.entries()):
            raise StoreError(f"{where}: shared chunks were written for another job uid")
        self._check_fence(job)
        m = Manifest(
            name=self.name,
            step=self.step,
            attempt=self.attempt,
            reason=reason,
            objects=tuple(sorted(self.entries(), key=lambda e: e.path)),
            created_at=now_rfc3339(),
            job=job or JobIdentity(),
            epoch=epoch,
            samples_seen=samples_seen,
            tokens_seen=tokens_seen,
            metrics={k: float(v) for k, v in (metrics or {}).items()},
            world_size=world_size,
            parent=parent,
            lazarus_version=_lazarus_version(),
            torch_version=torch_version,
            python_version=python_version(),
            extra=dict(extra or {}),
            schema_version=(
                CHUNKED_SCHEMA_VERSION if any(e.chunks for e in self.entries()) else SCHEMA_VERSION
            ),
        )
        raw = m.to_bytes()
        parse_manifest(raw, where=where)  # never commit what readers would reject
        marker = f"{self.name}/{MANIFEST_NAME}"
        if not self._root.backend.put_if_absent(marker, raw, checksum.crc32c(raw)):
            # Not ours to clean: the winner's objects have the same keys.
            self._state = "lost"
            raise CommitConflict(f"{where}: another writer committed this checkpoint first")
        self._state = "committed"
        if self._intent:  # the manifest now protects the chunks; the intent is garbage
            with contextlib.suppress(StoreError):
                self._root.backend.delete_many([shared.intent_key(self.name)])
        return m

    def _check_fence(self, job: JobIdentity | None) -> None:
        """FencedOut (after aborting) if a newer attempt of this job's lineage started.
        Only this lineage's: another job sharing the root by mistake has attempt
        numbers of its own and must not stop this one."""
        records = fencelog.read(self._root)
        if job is not None and job.uid:
            records = [r for r in records if same_job(Owner(job.namespace, job.name, ""), r.job)]
        newest = newest_attempt(records)
        if newest is not None and newest > self.attempt:
            self.abort()
            raise FencedOut(
                f"{self._root.where(self.name)}: attempt {newest} has started;"
                f" attempt {self.attempt} may not commit"
            )

    def abort(self) -> None:
        """Best-effort delete of what this writer wrote; leftovers are GC'd later."""
        if self._state != "open":
            return
        self._state = "aborted"
        with contextlib.suppress(StoreError):
            keys = [f"{self.name}/{p}" for p in sorted(self._written)]
            self._root.backend.delete_many(
                keys + [shared.intent_key(self.name)] * bool(self._intent)
            )

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.abort()
