"""One checkpoint root as every part of the store sees it: its backend, the I/O
tuning (part size, multipart threshold, concurrency), the thread pool that parallel
reads and uploads share, and how messages name a place under it.

The reader, the writer, the fence log and retention take a `Root`, never the
`CheckpointStore` facade: this is the whole interface between them.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from .backends.base import Backend

MiB = 1 << 20
DEFAULT_PART_SIZE = 16 * MiB
DEFAULT_CONCURRENCY = 8


class Root:
    """A backend plus how to drive it; owns the I/O pool (started on first use)."""

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

    @property
    def description(self) -> str:
        return self.backend.description

    def where(self, name: str, path: str = "") -> str:
        """`<root>/<name>[/<path>]`, for error messages."""
        return f"{self.description}/{name}" + (f"/{path}" if path else "")

    def pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="lazarus-io")
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
