"""The checkpoint store: write, commit, list, validate, read, fence and prune checkpoints.

One API over S3 and a filesystem (backends/). Everything here is synchronous;
the operator calls it through asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, BinaryIO

from lazarus_contract import (
    ATTEMPTS_LOG,
    CONTROL_PREFIX,
    MANIFEST_NAME,
    QUARANTINE_PREFIX,
    REASONS,
    checkpoint_name,
    parse_checkpoint_name,
)

from . import checksum
from .backends.base import Backend, ObjectInfo, ObjectMissing, PartUpload
from .errors import (
    AttemptTaken,
    CheckpointNotFound,
    ChecksumMismatch,
    CommitConflict,
    FencedOut,
    InvalidCheckpoint,
    StoreError,
)
from .lineage import (
    AttemptRecord,
    dump_attempts,
    lineage_attempt,
    newest_attempt,
    parse_attempts,
    why_not_in_lineage,
)
from .manifest import (
    MAX_MANIFEST_BYTES,
    JobIdentity,
    Manifest,
    ObjectEntry,
    check_object_path,
    now_rfc3339,
    parse_manifest,
    python_version,
)
from .ownership import Owner, own_records, owns_attempt, same_job, why_not_owned
from .retention import Candidate, RetentionPlan, RetentionPolicy, plan_retention

MiB = 1 << 20
DEFAULT_PART_SIZE = 16 * MiB
DEFAULT_CONCURRENCY = 8


def _lazarus_version() -> str:
    try:
        return metadata.version("lazarus")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint prefix as listed: committed or not, with its manifest if readable."""

    name: str
    step: int
    attempt: int
    committed: bool
    manifest: Manifest | None
    total_bytes: int  # bytes of every object under the prefix, as listed
    modified: float  # newest object's mtime (seconds since the epoch)
    quarantined: bool = False
    quarantine_reason: str | None = None
    manifest_error: str | None = None  # why a present manifest.json is unusable
    objects: tuple[ObjectInfo, ...] = field(default=(), repr=False)

    @property
    def created(self) -> datetime:
        if self.manifest is not None:
            with contextlib.suppress(ValueError):
                return self.manifest.created
        return datetime.fromtimestamp(self.modified, UTC)


@dataclass(frozen=True)
class Validation:
    ok: bool
    problems: list[str]
    warnings: list[str]


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass(frozen=True)
class Selection:
    chosen: CheckpointInfo | None
    skipped: list[Skipped]


def _check_listing(m: Manifest, objects: Iterable[ObjectInfo], prefix: str) -> Validation:
    """Cheap validation: every listed object exists with its size (from one LIST)."""
    sizes = {o.key[len(prefix) :]: o.size for o in objects}
    problems: list[str] = []
    for e in m.objects:
        size = sizes.get(e.path)
        if size is None:
            problems.append(f"missing object {e.path}")
        elif size != e.size:
            problems.append(f"{e.path} is {size} bytes, manifest says {e.size}")
    listed = {e.path for e in m.objects} | {MANIFEST_NAME}
    warnings = [f"unlisted object {p} (garbage, never read)" for p in sorted(set(sizes) - listed)]
    return Validation(not problems, problems, warnings)


class _VerifyingReader(io.RawIOBase):
    """Streams an object and checks its size and CRC32C when the end is reached."""

    def __init__(self, raw: BinaryIO, entry: ObjectEntry, where: str) -> None:
        self._raw = raw
        self._entry = entry
        self._where = where
        self._crc = checksum.Crc32c()
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        data = self._raw.read(len(view))
        n = len(data)
        if n:
            view[:n] = data
            self._crc.update(data)
        if n == 0 or self._crc.size >= self._entry.size:
            self._verify(eof=n == 0)
        return n

    def _verify(self, *, eof: bool) -> None:
        if self._checked:
            return
        if self._crc.size > self._entry.size or (eof and self._crc.size != self._entry.size):
            self._checked = True
            raise ChecksumMismatch(
                f"{self._where}: read {self._crc.size} bytes, manifest says {self._entry.size}"
            )
        if self._crc.size == self._entry.size:
            self._checked = True
            if self._crc.b64 != self._entry.crc32c:
                raise ChecksumMismatch(
                    f"{self._where}: CRC32C {self._crc.b64} != manifest's {self._entry.crc32c}"
                )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.close()
        super().close()


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
        self.backend = backend
        self.part_size = part_size
        self.multipart_threshold = multipart_threshold or part_size
        self.concurrency = concurrency
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CheckpointStore({self.backend.description})"

    @property
    def description(self) -> str:
        return self.backend.description

    def pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="lazarus-io")
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _where(self, name: str, path: str = "") -> str:
        return f"{self.description}/{name}" + (f"/{path}" if path else "")

    # --- writing -----------------------------------------------------------------
    def begin(self, *, step: int, attempt: int) -> CheckpointWriter:
        """Start writing checkpoint (step, attempt); CommitConflict if it is already committed."""
        name = checkpoint_name(step, attempt)
        if any(o.key == f"{name}/{MANIFEST_NAME}" for o in self.backend.list_objects(f"{name}/")):
            raise CommitConflict(f"{self._where(name)}: already committed")
        return CheckpointWriter(self, step=step, attempt=attempt)

    # --- listing -----------------------------------------------------------------
    def list_checkpoints(self) -> list[CheckpointInfo]:
        """Every checkpoint prefix under the root, newest first (one LIST, one GET per manifest)."""
        groups: dict[str, list[ObjectInfo]] = {}
        quarantined: set[str] = set()
        for o in self.backend.list_objects(""):
            head, _, rest = o.key.partition("/")
            if head == CONTROL_PREFIX and o.key.startswith(QUARANTINE_PREFIX + "/"):
                q = o.key[len(QUARANTINE_PREFIX) + 1 :].removesuffix(".json")
                quarantined.add(q)
            elif rest and parse_checkpoint_name(head):
                groups.setdefault(head, []).append(o)
        out = [self._info(n, objs, n in quarantined) for n, objs in groups.items()]
        out.sort(key=lambda c: c.name, reverse=True)
        return out

    def _info(self, name: str, objects: list[ObjectInfo], quarantined: bool) -> CheckpointInfo:
        parsed = parse_checkpoint_name(name)
        assert parsed is not None
        step, attempt = parsed
        manifest: Manifest | None = None
        error: str | None = None
        committed = any(o.key == f"{name}/{MANIFEST_NAME}" for o in objects)
        if committed:
            try:
                manifest = self._load_manifest(name)
                if (manifest.step, manifest.attempt) != (step, attempt):
                    raise InvalidCheckpoint(
                        f"{self._where(name)}: manifest is for {manifest.name}, not this prefix"
                    )
            except InvalidCheckpoint as e:
                manifest, error = None, str(e)
            except CheckpointNotFound as e:  # deleted between LIST and GET
                committed, error = False, str(e)
        reason = self._quarantine_reason(name) if quarantined else None
        return CheckpointInfo(
            name=name,
            step=step,
            attempt=attempt,
            committed=committed,
            manifest=manifest,
            total_bytes=sum(o.size for o in objects),
            modified=max((o.mtime for o in objects), default=0.0),
            quarantined=quarantined,
            quarantine_reason=reason,
            manifest_error=error,
            objects=tuple(objects),
        )

    def info(self, name: str) -> CheckpointInfo:
        """One checkpoint (one LIST of its prefix); CheckpointNotFound if nothing is there."""
        if parse_checkpoint_name(name) is None:
            raise CheckpointNotFound(f"{self._where(name)}: not a checkpoint name")
        objects = self.backend.list_objects(f"{name}/")
        if not objects:
            raise CheckpointNotFound(f"{self._where(name)}: no such checkpoint")
        return self._info(name, objects, self.is_quarantined(name))

    def _load_manifest(self, name: str) -> Manifest:
        where = self._where(name, MANIFEST_NAME)
        try:
            # At most one byte past the cap: a huge manifest costs us nothing to refuse.
            with self.backend.open_get(f"{name}/{MANIFEST_NAME}") as f:
                raw = f.read(MAX_MANIFEST_BYTES + 1)
        except ObjectMissing:
            raise CheckpointNotFound(f"{self._where(name)}: no manifest (not committed)") from None
        return parse_manifest(raw, where=where)

    def read_manifest(self, name: str) -> Manifest:
        """The checked manifest; CheckpointNotFound / InvalidCheckpoint otherwise."""
        if parse_checkpoint_name(name) is None:
            raise CheckpointNotFound(f"{self._where(name)}: not a checkpoint name")
        m = self._load_manifest(name)
        if m.name != name:
            raise InvalidCheckpoint(f"{self._where(name)}: manifest is for {m.name}")
        return m

    # --- validation --------------------------------------------------------------
    def validate(
        self, name: str, full: bool = False, *, info: CheckpointInfo | None = None
    ) -> Validation:
        """Cheap (manifest + one LIST) or full (also every byte's CRC32C) validation."""
        info = info or self.info(name)
        if not info.committed:
            return Validation(False, ["uncommitted: no manifest.json"], [])
        if info.manifest is None:
            return Validation(False, [info.manifest_error or "manifest unreadable"], [])
        v = _check_listing(info.manifest, info.objects, f"{name}/")
        if not full or not v.ok:
            return v
        problems = list(v.problems)
        for e in info.manifest.objects:
            try:
                self._verify_object(name, e)
            except ChecksumMismatch as err:
                problems.append(str(err))
            except ObjectMissing:
                problems.append(f"missing object {e.path}")
        return Validation(not problems, problems, v.warnings)

    def _verify_object(self, name: str, e: ObjectEntry) -> None:
        with self._open_verified(name, e) as f:
            while f.read(self.part_size):
                pass

    def latest_valid(
        self, attempt: int | None = None, full: bool = False, *, owner: Owner | None = None
    ) -> Selection:
        """The newest committed, valid, unquarantined checkpoint the owner owns, in
        lineage, and why others lost.

        `attempt` is the attempt that will resume (None: the one after the newest
        in the fence log). `owner` None: every job's checkpoints count (a trainer
        run by hand); otherwise only the owner's (ownership.py).
        """
        all_records = self.attempts()
        records = own_records(owner, all_records)
        current = lineage_attempt(all_records, attempt)
        skipped: list[Skipped] = []
        for c in self.list_checkpoints():
            why: str | None = None
            if c.quarantined:
                why = f"quarantined: {c.quarantine_reason or 'no reason recorded'}"
            elif not c.committed:
                why = "uncommitted: no manifest.json (in progress or abandoned)"
            elif c.manifest is not None:
                why = why_not_owned(owner, c.manifest.job, c.attempt, all_records)
            if why is None and c.committed:
                why = why_not_in_lineage(c.step, c.attempt, current, records)
            if why is None:
                v = self.validate(c.name, full, info=c)
                if not v.ok:
                    why = "; ".join(v.problems)
            if why is None:
                return Selection(c, skipped)
            skipped.append(Skipped(c.name, why))
        return Selection(None, skipped)

    # --- reading -----------------------------------------------------------------
    def _entry(self, name: str, path: str, manifest: Manifest | None) -> ObjectEntry:
        m = manifest or self.read_manifest(name)
        try:
            return m.object(path)
        except KeyError:
            raise CheckpointNotFound(
                f"{self._where(name, path)}: not listed in the manifest"
            ) from None

    def _open_verified(self, name: str, e: ObjectEntry) -> io.BufferedReader:
        where = self._where(name, e.path)
        try:
            raw = self.backend.open_get(f"{name}/{e.path}")
        except ObjectMissing:
            raise CheckpointNotFound(f"{where}: object missing") from None
        return io.BufferedReader(_VerifyingReader(raw, e, where), buffer_size=1 * MiB)

    def open_read(self, name: str, path: str, *, manifest: Manifest | None = None) -> BinaryIO:
        """A stream of one object; raises ChecksumMismatch at EOF if size or CRC32C differ."""
        f: BinaryIO = self._open_verified(name, self._entry(name, path, manifest))
        return f

    def read_bytes(self, name: str, path: str, *, manifest: Manifest | None = None) -> bytes:
        """One object's bytes, fetched in parallel ranges, verified against the manifest."""
        e = self._entry(name, path, manifest)
        buf = bytearray(e.size)
        self._fetch(name, e, lambda off, data: buf.__setitem__(slice(off, off + len(data)), data))
        return bytes(buf)

    def download_file(
        self,
        name: str,
        path: str,
        dest: str | os.PathLike[str],
        *,
        manifest: Manifest | None = None,
    ) -> None:
        """Fetch one object into a local file (parallel ranges, verified)."""
        e = self._entry(name, path, manifest)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, e.size)

            def sink(off: int, data: bytes) -> None:
                view = memoryview(data)
                while view:
                    n = os.pwrite(fd, view, off)
                    view, off = view[n:], off + n

            self._fetch(name, e, sink)
        finally:
            os.close(fd)

    def _fetch(self, name: str, e: ObjectEntry, sink: Callable[[int, bytes], None]) -> None:
        where = self._where(name, e.path)
        key = f"{name}/{e.path}"
        ranges = [
            (off, min(self.part_size, e.size - off)) for off in range(0, e.size, self.part_size)
        ]

        def one(off: int, n: int) -> int:
            data = self.backend.get_range(key, off, n)
            if len(data) != n:
                raise ChecksumMismatch(f"{where}: short read at {off} ({len(data)} of {n} bytes)")
            sink(off, data)
            return checksum.crc32c(data)

        try:
            if len(ranges) <= 1:
                data = self.backend.get(key)
                if len(data) != e.size:
                    raise ChecksumMismatch(f"{where}: {len(data)} bytes, manifest says {e.size}")
                sink(0, data)
                crc = checksum.crc32c(data)
            else:
                futs = [self.pool().submit(one, off, n) for off, n in ranges]
                crc = 0
                for (_, n), fut in zip(ranges, futs, strict=True):
                    crc = checksum.combine(crc, fut.result(), n)
        except ObjectMissing:
            raise CheckpointNotFound(f"{where}: object missing") from None
        if checksum.to_b64(crc) != e.crc32c:
            raise ChecksumMismatch(
                f"{where}: CRC32C {checksum.to_b64(crc)} != manifest's {e.crc32c}"
            )

    # --- quarantine and fencing --------------------------------------------------
    def quarantine(self, name: str, reason: str) -> None:
        """Mark `name` as never to be chosen again, keeping its bytes for inspection."""
        body = {"name": name, "reason": reason, "at": now_rfc3339()}
        data = (json.dumps(body) + "\n").encode()
        self.backend.put(f"{QUARANTINE_PREFIX}/{name}.json", data, checksum.crc32c(data))

    def _quarantine_reason(self, name: str) -> str | None:
        try:
            with self.backend.open_get(f"{QUARANTINE_PREFIX}/{name}.json") as f:
                raw = f.read(64 << 10)
        except ObjectMissing:
            return None
        try:
            return str(json.loads(raw)["reason"])
        except (ValueError, KeyError, TypeError):
            return "unreadable quarantine marker"

    def is_quarantined(self, name: str) -> bool:
        return any(
            o.key == f"{QUARANTINE_PREFIX}/{name}.json"
            for o in self.backend.list_objects(f"{QUARANTINE_PREFIX}/{name}")
        )

    def attempts(self) -> list[AttemptRecord]:
        """The fence log (empty if none was written)."""
        got = self.backend.get_versioned(ATTEMPTS_LOG)
        return [] if got is None else parse_attempts(got[0], where=self._where(ATTEMPTS_LOG))

    def next_attempt(self) -> int:
        """The next free attempt number of this root: numbers are unique per root, so
        two jobs sharing a root by mistake never write the same checkpoint names."""
        return max((r.attempt for r in self.attempts()), default=0) + 1

    def record_attempt(
        self,
        attempt: int,
        resume_from: str | None,
        resume_step: int,
        *,
        job: JobIdentity | None = None,
    ) -> None:
        """Append attempt N of `job` to the fence log (compare-and-swap, retried on a
        race); idempotent per attempt. AttemptTaken if another job recorded attempt N."""
        for _ in range(20):
            got = self.backend.get_versioned(ATTEMPTS_LOG)
            records = [] if got is None else parse_attempts(got[0], where=self._where(ATTEMPTS_LOG))
            for r in records:
                if r.attempt == attempt and r.job and job and r.job.uid != job.uid:
                    raise AttemptTaken(
                        f"{self._where(ATTEMPTS_LOG)}: attempt {attempt} is already recorded "
                        f"for job {r.job.namespace}/{r.job.name} (uid {r.job.uid})"
                    )
            records = [r for r in records if r.attempt != attempt]
            records.append(AttemptRecord(attempt, resume_from, resume_step, now_rfc3339(), job))
            records.sort(key=lambda r: r.attempt)
            if self.backend.put_if_token(ATTEMPTS_LOG, dump_attempts(records), got and got[1]):
                return
            time.sleep(0.05)
        raise StoreError(f"{self._where(ATTEMPTS_LOG)}: gave up after 20 conflicting updates")

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
        all_records = self.attempts()
        records = own_records(owner, all_records)
        current = lineage_attempt(all_records, attempt)
        out = []
        for c in checkpoints if checkpoints is not None else self.list_checkpoints():
            if not self._owned(owner, c, all_records):
                continue
            valid = (
                c.manifest is not None and _check_listing(c.manifest, c.objects, f"{c.name}/").ok
            )
            out.append(
                Candidate(
                    name=c.name,
                    step=c.step,
                    attempt=c.attempt,
                    committed=c.committed,
                    valid=valid,
                    quarantined=c.quarantined,
                    in_lineage=why_not_in_lineage(c.step, c.attempt, current, records) is None,
                    metrics=dict(c.manifest.metrics) if c.manifest else {},
                    modified=c.modified,
                )
            )
        return out

    @staticmethod
    def _owned(owner: Owner | None, c: CheckpointInfo, records: list[AttemptRecord]) -> bool:
        if c.manifest is not None:
            return why_not_owned(owner, c.manifest.job, c.attempt, records) is None
        # Uncommitted, or a manifest nobody can read: whoever ran the attempt owns it.
        return owns_attempt(owner, c.attempt, records)

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
        done = []
        for name in plan.removals:
            if parse_checkpoint_name(name) is None:
                continue
            self.backend.delete_many([f"{name}/{MANIFEST_NAME}"])
            keys = [o.key for o in self.backend.list_objects(f"{name}/")]
            self.backend.delete_many(keys)
            abort_uploads = getattr(self.backend, "abort_uploads", None)
            if abort_uploads is not None:  # S3: parts of a killed multipart upload
                abort_uploads(f"{name}/")
            done.append(name)
        return done

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
        return plan


class _PartSink:
    """Uploads parts of one object on the store's pool, with bounded memory in flight."""

    def __init__(self, store: CheckpointStore, key: str) -> None:
        self._store = store
        self._up: PartUpload = store.backend.start_parts(key)
        self._slots = threading.BoundedSemaphore(store.concurrency)
        self._futs: list[tuple[int, Future[int]]] = []
        self.size = 0

    def submit(self, get: Callable[[], bytes], length: int) -> None:
        self._slots.acquire()
        number, offset = len(self._futs) + 1, self.size

        def task() -> int:
            try:
                data = get()
                crc = checksum.crc32c(data)
                self._up.upload_part(number, offset, data, crc)
                return crc
            finally:
                self._slots.release()

        self._futs.append((length, self._store.pool().submit(task)))
        self.size += length

    def finish(self) -> int:
        try:
            crc = 0
            for n, fut in self._futs:
                crc = checksum.combine(crc, fut.result(), n)
            self._up.complete(self.size, crc)
            return crc
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        for _, fut in self._futs:
            fut.cancel()
        for _, fut in self._futs:
            with contextlib.suppress(BaseException):
                fut.result()
        self._up.abort()


class _StreamWriter(io.RawIOBase):
    """`with writer.open_write(path) as f: f.write(...)`: buffered into parts, bounded memory."""

    def __init__(self, w: CheckpointWriter, path: str) -> None:
        self._w = w
        self._path = path
        self._buf = bytearray()
        self._sink: _PartSink | None = None
        self._done = False

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = memoryview(b).cast("B")
        self._buf += data
        ps = self._w.store.part_size
        # Go multipart only once the object outgrows the threshold; then flush whole parts.
        while len(self._buf) >= ps and (
            self._sink is not None or len(self._buf) > self._w.store.multipart_threshold
        ):
            if self._sink is None:
                self._sink = _PartSink(self._w.store, self._w.key(self._path))
            part = bytes(self._buf[:ps])
            del self._buf[:ps]
            self._sink.submit(lambda part=part: part, len(part))  # type: ignore[misc]
        return len(data)

    def close(self) -> None:
        if self._done or self.closed:
            return
        self._done = True
        try:
            if self._sink is None:
                data = bytes(self._buf)
                crc = checksum.crc32c(data)
                self._w.store.backend.put(self._w.key(self._path), data, crc)
                size = len(data)
            else:
                if self._buf:
                    rest = bytes(self._buf)
                    self._sink.submit(lambda: rest, len(rest))
                crc = self._sink.finish()
                size = self._sink.size
            self._w._record(ObjectEntry(self._path, size, checksum.to_b64(crc)))
        finally:
            self._buf = bytearray()
            super().close()

    def discard(self) -> None:
        """Drop what was written (on an exception inside `with`)."""
        self._done = True
        if self._sink is not None:
            self._sink.abort()
        self._buf = bytearray()
        super().close()

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()

    def __del__(self) -> None:
        # Never upload from the garbage collector: an unclosed writer is a failed one.
        if not self._done:
            with contextlib.suppress(Exception):
                self.discard()


class CheckpointWriter:
    """One checkpoint being written: data objects first, then `commit()` writes the manifest."""

    def __init__(self, store: CheckpointStore, *, step: int, attempt: int) -> None:
        self.store = store
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
            raise ValueError(f"{self.store._where(self.name)}: {why}")
        if self._state != "open":
            raise StoreError(f"{self.store._where(self.name)}: writer is {self._state}")
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

    def put_bytes(self, path: str, data: bytes | bytearray | memoryview) -> ObjectEntry:
        """Write one object; multipart in parallel when larger than the threshold."""
        key = self.key(path)
        view = memoryview(data).cast("B")
        size = len(view)
        if size <= self.store.multipart_threshold:
            raw = bytes(view)
            crc = checksum.crc32c(raw)
            self.store.backend.put(key, raw, crc)
        else:
            crc = self._upload_parts(key, size, lambda off, n: bytes(view[off : off + n]))
        e = ObjectEntry(path, size, checksum.to_b64(crc))
        self._record(e)
        return e

    def put_file(self, path: str, local: str | os.PathLike[str]) -> ObjectEntry:
        """Write one object from a local file, read part by part (bounded memory)."""
        key = self.key(path)
        fd = os.open(local, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size <= self.store.multipart_threshold:
                raw = os.pread(fd, size, 0) if size else b""
                crc = checksum.crc32c(raw)
                self.store.backend.put(key, raw, crc)
            else:
                crc = self._upload_parts(key, size, lambda off, n: os.pread(fd, n, off))
        finally:
            os.close(fd)
        e = ObjectEntry(path, size, checksum.to_b64(crc))
        self._record(e)
        return e

    def _upload_parts(self, key: str, size: int, get: Callable[[int, int], bytes]) -> int:
        sink = _PartSink(self.store, key)
        ps = self.store.part_size
        try:
            for off in range(0, size, ps):
                n = min(ps, size - off)
                sink.submit(lambda off=off, n=n: get(off, n), n)  # type: ignore[misc]
        except BaseException:
            sink.abort()
            raise
        return sink.finish()

    def open_write(self, path: str) -> _StreamWriter:
        self.key(path)
        return _StreamWriter(self, path)

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
        where = self.store._where(self.name)
        if self._state != "open":
            raise StoreError(f"{where}: writer is {self._state}")
        if reason not in REASONS:
            raise ValueError(f"reason must be one of {REASONS}, not {reason!r}")
        if isinstance(job, Mapping):
            job = JobIdentity(job.get("name", ""), job.get("namespace", ""), job.get("uid", ""))
        # Fenced by a newer attempt of this job's lineage only: another job sharing the
        # root by mistake has attempt numbers of its own and must not stop this one.
        records = self.store.attempts()
        if job is not None and job.uid:
            records = [r for r in records if same_job(Owner(job.namespace, job.name, ""), r.job)]
        newest = newest_attempt(records)
        if newest is not None and newest > self.attempt:
            self.abort()
            raise FencedOut(
                f"{where}: attempt {newest} has started; attempt {self.attempt} may not commit"
            )
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
        )
        raw = m.to_bytes()
        parse_manifest(raw, where=where)  # never commit what readers would reject
        if not self.store.backend.put_if_absent(
            f"{self.name}/{MANIFEST_NAME}", raw, checksum.crc32c(raw)
        ):
            # Not ours to clean: the winner's objects have the same keys.
            self._state = "lost"
            raise CommitConflict(f"{where}: another writer committed this checkpoint first")
        self._state = "committed"
        return m

    def abort(self) -> None:
        """Best-effort delete of what this writer wrote; leftovers are GC'd later."""
        if self._state != "open":
            return
        self._state = "aborted"
        with contextlib.suppress(StoreError):
            self.store.backend.delete_many([f"{self.name}/{p}" for p in sorted(self._written)])

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.abort()
