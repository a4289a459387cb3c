"""Bounded concurrency per kind of blocking call.

The operator's blocking calls run in threads. Kubernetes API calls use the event
loop's default executor, sized to the API client's connection pool (handlers.startup).
Storage calls get a lane of their own: an S3 endpoint that stalls holds a thread per
call for up to its read timeout (minutes, with retries), and on shared threads a few
tenants' stalled stores would queue every other job's restart behind them. Within
the lane, one endpoint may use only `per_key` threads at once, so one unreachable
store cannot take the lane from the others; `busy` lets optional work (a running
job's progress refresh) step aside instead of queueing.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

T = TypeVar("T")

STORAGE_THREADS: Final = 16
STORAGE_PER_ENDPOINT: Final = 4


class Lane:
    def __init__(self, name: str, threads: int, per_key: int) -> None:
        self._pool = ThreadPoolExecutor(threads, name)
        self.per_key = per_key
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._running: Counter[str] = Counter()  # calls admitted per key (event loop only)

    def busy(self, key: str) -> bool:
        """Whether `key` has every one of its threads in use (a call would wait)."""
        return self._running[key] >= self.per_key

    async def run(self, key: str, fn: Callable[..., T], *args: object, **kw: object) -> T:
        """`fn(*args, **kw)` on the lane's threads, in line behind `key`'s other calls."""
        slots = self._slots.setdefault(key, asyncio.Semaphore(self.per_key))
        async with slots:
            self._running[key] += 1
            try:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kw))
            finally:
                self._running[key] -= 1
                if not self._running[key]:
                    del self._running[key]


def storage_lane() -> Lane:
    return Lane("lazarus-storage", STORAGE_THREADS, STORAGE_PER_ENDPOINT)
