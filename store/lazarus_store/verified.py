"""Verified reads: every byte of a data object is checked against the size and
CRC32C its manifest records, streamed or fetched in parallel ranges."""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, cast

from . import checksum, shared
from .backends.base import ObjectMissing
from .buffers import part_buffer
from .errors import CheckpointNotFound, ChecksumMismatch
from .manifest import ObjectEntry
from .root import MiB, Root

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


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

    def readinto(self, b: WriteableBuffer) -> int:
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


@dataclass
class ReadStats:
    """What verified reads fetched, for a caller that times them (the trainer's resume):
    bytes, and the CRC32C time of each range (appended by the pool's threads)."""

    bytes: int = 0
    crc_seconds: list[float] = field(default_factory=list)

    @property
    def verify_seconds(self) -> float:
        return sum(self.crc_seconds)


class _Chain(io.RawIOBase):
    """An object stored as shared chunks, read as one stream, chunk after chunk."""

    def __init__(self, root: Root, keys: list[str], where: str) -> None:
        self._root, self._keys, self._where = root, keys, where
        self._cur: BinaryIO | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        view = memoryview(b).cast("B")
        while True:
            if self._cur is None:
                if not self._keys:
                    return 0
                key = self._keys.pop(0)
                try:
                    self._cur = self._root.backend.open_get(key)
                except ObjectMissing:
                    raise CheckpointNotFound(f"{self._where}: shared chunk {key} missing") from None
            data = self._cur.read(len(view))
            if data:
                view[: len(data)] = data
                return len(data)
            self._cur.close()
            self._cur = None

    def close(self) -> None:
        if self._cur is not None:
            with contextlib.suppress(Exception):
                self._cur.close()
        super().close()


def _spans(name: str, e: ObjectEntry) -> list[tuple[str, int, int]]:
    """(key, offset in the object, size) of each stored piece of an object."""
    if not e.chunks:
        return [(f"{name}/{e.path}", 0, e.size)]
    out, off = [], 0
    for c in e.chunks:
        out.append((shared.blob_key(e.uid, c.sha256), off, c.size))
        off += c.size
    return out


def open_verified(root: Root, name: str, e: ObjectEntry) -> io.BufferedReader:
    """A stream of one object; raises ChecksumMismatch at EOF if size or CRC32C differ."""
    where = root.where(name, e.path)
    raw: BinaryIO
    try:
        if e.chunks:
            raw = cast(BinaryIO, _Chain(root, [k for k, _, _ in _spans(name, e)], where))
        else:
            raw = root.backend.open_get(f"{name}/{e.path}")
    except ObjectMissing:
        raise CheckpointNotFound(f"{where}: object missing") from None
    return io.BufferedReader(_VerifyingReader(raw, e, where), buffer_size=1 * MiB)


def verify_object(root: Root, name: str, e: ObjectEntry) -> None:
    """Read one object to its end, checking it (ChecksumMismatch, CheckpointNotFound)."""
    with open_verified(root, name, e) as f:
        while f.read(root.part_size):
            pass


def _fetch(
    root: Root,
    name: str,
    e: ObjectEntry,
    into: Callable[[int, int], memoryview],
    done: Callable[[int, memoryview], None] | None = None,
    *,
    stats: ReadStats | None = None,
) -> None:
    """Every byte of one object, in parallel ranges on the root's pool, read straight into
    `into(offset, length)` (no intermediate bytes) and handed to `done(offset, view)`;
    the combined CRC32C is checked before returning."""
    where = root.where(name, e.path)
    ps = root.part_size
    # (key, offset in the key, offset in the object, length): parts of each stored piece
    ranges = [
        (key, o, base + o, min(ps, size - o))
        for key, base, size in _spans(name, e)
        for o in range(0, size, ps)
    ]

    def one(key: str, koff: int, off: int, n: int) -> int:
        view = into(off, n)
        got = root.backend.get_range_into(key, koff, view)
        if got != n:
            raise ChecksumMismatch(f"{where}: short read at {off} ({got} of {n} bytes)")
        t = time.perf_counter()
        crc = checksum.crc32c(view)
        if stats is not None:
            stats.crc_seconds.append(time.perf_counter() - t)  # list.append: thread-safe
        if done is not None:
            done(off, view)
        return crc

    try:
        if not ranges:  # empty: still there? (a range of nothing asks nothing)
            crc = 0
            for key, _, _ in _spans(name, e):
                crc = checksum.crc32c(root.backend.get(key))
        elif len(ranges) == 1:
            crc = one(*ranges[0])
        else:
            futs = [root.pool().submit(one, *r) for r in ranges]
            crc = 0
            for (*_, n), fut in zip(ranges, futs, strict=True):
                crc = checksum.combine(crc, fut.result(), n)
    except ObjectMissing:
        raise CheckpointNotFound(f"{where}: object missing") from None
    if checksum.to_b64(crc) != e.crc32c:
        stored = f" (stored as {len(e.chunks)} shared chunks)" if e.chunks else ""
        raise ChecksumMismatch(
            f"{where}: CRC32C {checksum.to_b64(crc)} != manifest's {e.crc32c}{stored}"
        )


def read_buffer(root: Root, name: str, e: ObjectEntry, stats: ReadStats | None = None) -> bytearray:
    """One object in a new bytearray, each range read into its place (one copy: the
    socket's or the page cache's into it)."""
    buf = bytearray(e.size)
    view = memoryview(buf)
    _fetch(root, name, e, lambda off, n: view[off : off + n], stats=stats)
    if stats is not None:
        stats.bytes += e.size
    return buf


def read_bytes(root: Root, name: str, e: ObjectEntry) -> bytes:
    return bytes(read_buffer(root, name, e))


def download_file(root: Root, name: str, e: ObjectEntry, dest: str | os.PathLike[str]) -> None:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, e.size)

        def write(off: int, view: memoryview) -> None:
            while view:
                n = os.pwrite(fd, view, off)
                view, off = view[n:], off + n

        _fetch(root, name, e, lambda off, n: part_buffer(n), write)
    finally:
        os.close(fd)
