"""Uploading one object in parts: `PartSink` (parts on the root's pool, bounded
memory in flight, one combined CRC32C) and `StreamWriter` (a file that becomes
parts as it grows)."""

from __future__ import annotations

import contextlib
import functools
import io
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING

from . import checksum
from .backends.base import Data, PartUpload
from .root import Root

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


def _const(data: bytes) -> Callable[[], bytes]:
    return lambda: data


class PartSink:
    """Uploads parts of one object on a pool (the root's unless given), with bounded
    memory in flight (`concurrency` parts, the root's by default)."""

    def __init__(
        self,
        root: Root,
        key: str,
        *,
        pool: Executor | None = None,
        concurrency: int | None = None,
    ) -> None:
        self._root = root
        self._pool = pool
        self._up: PartUpload = root.backend.start_parts(key)
        self._slots = threading.BoundedSemaphore(concurrency or root.concurrency)
        self._futs: list[tuple[int, Future[int]]] = []
        self.size = 0

    def submit(self, get: Callable[[], Data], length: int) -> None:
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

        pool = self._pool or self._root.pool()
        self._futs.append((length, pool.submit(task)))
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


class StreamWriter(io.RawIOBase):
    """`with writer.open_write(path) as f: f.write(...)`: buffered into parts, bounded memory."""

    def __init__(
        self, root: Root, key: Callable[[], str], done: Callable[[int, int], None]
    ) -> None:
        self._root = root
        self._key = key  # the writer's check that it is still open, then the key
        self._done_cb = done  # (size, crc) once the object is complete
        self._buf = bytearray()
        self._sink: PartSink | None = None
        self._done = False

    def writable(self) -> bool:
        return True

    def write(self, b: ReadableBuffer) -> int:
        data = memoryview(b).cast("B")
        self._buf += data
        ps = self._root.part_size
        # Go multipart only once the object outgrows the threshold; then flush whole parts.
        while len(self._buf) >= ps and (
            self._sink is not None or len(self._buf) > self._root.multipart_threshold
        ):
            if self._sink is None:
                self._sink = PartSink(self._root, self._key())
            part = bytes(self._buf[:ps])
            del self._buf[:ps]
            self._sink.submit(_const(part), len(part))
        return len(data)

    def close(self) -> None:
        if self._done or self.closed:
            return
        self._done = True
        try:
            if self._sink is None:
                data = bytes(self._buf)
                crc = checksum.crc32c(data)
                self._root.backend.put(self._key(), data, crc)
                size = len(data)
            else:
                if self._buf:
                    self._sink.submit(_const(bytes(self._buf)), len(self._buf))
                crc = self._sink.finish()
                size = self._sink.size
            self._done_cb(size, crc)
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


def upload_parts(
    root: Root,
    key: str,
    size: int,
    get: Callable[[int, int], Data],
    *,
    pool: Executor | None = None,
    concurrency: int | None = None,
) -> int:
    """Upload `size` bytes, `get(offset, length)` per part (called on the pool, right before
    the part is checksummed and sent), in parallel; the CRC32C."""
    sink = PartSink(root, key, pool=pool, concurrency=concurrency)
    ps = root.part_size
    try:
        for off in range(0, size, ps):
            n = min(ps, size - off)
            sink.submit(functools.partial(get, off, n), n)
    except BaseException:
        sink.abort()
        raise
    return sink.finish()
