"""Bounded concurrency per kind of blocking call.

The operator's blocking calls run in threads. Kubernetes API calls use the event
loop's default executor, sized to the API client's connection pool (handlers.startup).
Storage calls get a lane of their own: an S3 endpoint that stalls holds a thread per
call until the client's timeouts give up, and on shared threads a few tenants'
stalled stores would queue every other job's restart behind them.

A call is admitted only when its endpoint (as resolved: endpoints.py) has fewer
than `per_key` calls running, its tenant (namespace) fewer than `per_tenant`, and
the lane a free thread; until then it waits on the event loop, holding no thread
and no slot, and calls behind it that fit go first. So the lane never queues work
behind a busy thread, one stalled endpoint holds at most `per_key` threads, and one
tenant's many endpoints (or spellings of one) at most `per_tenant`: the rest of
the lane stays free for everyone else. A slot is held until its thread returns,
even when the caller stopped waiting (`timeout`), so a thread stuck in a stalled
read is counted against that endpoint and tenant for as long as it is stuck.
`busy` lets optional work (a running job's progress refresh) step aside instead
of queueing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final, NamedTuple, TypeVar

T = TypeVar("T")

STORAGE_THREADS: Final = 64
STORAGE_PER_TENANT: Final = 16
STORAGE_PER_ENDPOINT: Final = 4


class LaneKey(NamedTuple):
    tenant: str  # whose call: the job's namespace
    endpoint: str  # where it goes: endpoints.py's key


class Lane:
    def __init__(self, name: str, threads: int, per_key: int, per_tenant: int) -> None:
        self._pool = ThreadPoolExecutor(threads, name)
        self.threads, self.per_key, self.per_tenant = threads, per_key, per_tenant
        # Calls holding a slot, per endpoint and per tenant (event loop only).
        self._running: Counter[str] = Counter()
        self._tenants: Counter[str] = Counter()
        self._total = 0
        self._waiting: deque[tuple[LaneKey, asyncio.Future[None]]] = deque()

    def busy(self, key: LaneKey) -> bool:
        """Whether a call for `key` would wait (its endpoint, tenant or the lane is full)."""
        return (
            self._running[key.endpoint] >= self.per_key
            or self._tenants[key.tenant] >= self.per_tenant
            or self._total >= self.threads
        )

    def _take(self, key: LaneKey) -> None:
        self._running[key.endpoint] += 1
        self._tenants[key.tenant] += 1
        self._total += 1

    def _give(self, key: LaneKey) -> None:
        for counter, k in ((self._running, key.endpoint), (self._tenants, key.tenant)):
            counter[k] -= 1
            if not counter[k]:
                del counter[k]
        self._total -= 1
        self._admit()

    def _admit(self) -> None:
        """Admit every waiting call that fits, oldest first; the others keep their place."""
        still: deque[tuple[LaneKey, asyncio.Future[None]]] = deque()
        for key, fut in self._waiting:
            if fut.done():  # its caller gave up
                continue
            if self.busy(key):
                still.append((key, fut))
                continue
            self._take(key)
            fut.set_result(None)
        self._waiting = still

    async def _admission(self, key: LaneKey) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, fut))
        self._admit()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._give(key)  # admitted just as the caller gave up
            raise

    def _released(self, loop: asyncio.AbstractEventLoop, key: LaneKey, _: Future[T]) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: the operator is exiting
            loop.call_soon_threadsafe(self._give, key)

    async def run(
        self,
        key: LaneKey,
        fn: Callable[..., T],
        *args: object,
        timeout: float | None = None,
        **kw: object,
    ) -> T:
        """`fn(*args, **kw)` on the lane's threads once `key` fits. TimeoutError after
        `timeout` seconds (waiting included); the call itself then runs on, to its end."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            await self._admission(key)
            cf = self._pool.submit(functools.partial(fn, *args, **kw))
            cf.add_done_callback(functools.partial(self._released, loop, key))
            return await asyncio.wrap_future(cf)


def storage_lane() -> Lane:
    return Lane("lazarus-storage", STORAGE_THREADS, STORAGE_PER_ENDPOINT, STORAGE_PER_TENANT)
