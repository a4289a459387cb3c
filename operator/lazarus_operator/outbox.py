"""Events wait here until they are posted, in order, by one sender task.

A cycle writes status, queues the events of what it decided, and acts; the
sender (`send_forever`) posts them, so no cycle waits behind another's posts (a
launch of a thousand jobs queues thousands). Queued at the status write, an event
survives an action that fails afterwards (the next cycle sees the transition done
and decides no event again) and an API server that is away: a failed post stays
first in line and is retried every few seconds and on every resync. The queue is
bounded in length and age: an outage longer than the age limit costs the oldest
events, and says so in the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("lazarus.outbox")

Post = Callable[[dict[str, Any], str, str, str, datetime], Awaitable[None]]


@dataclass(frozen=True)
class Pending:
    job: dict[str, Any]  # apiVersion, kind and metadata of the TrainingJob
    type: str
    reason: str
    message: str
    at: datetime  # when it happened: the event keeps its own time
    queued: float  # monotonic, for the age limit


class Outbox:
    def __init__(
        self,
        post: Post,
        *,
        limit: int = 10_000,
        max_age_s: float = 3600.0,
        parallel: int = 8,
        retryable: Callable[[Exception], bool] = lambda _: True,
    ) -> None:
        self._post = post
        # Whether a failed post may succeed later (the API away); one that cannot (the
        # API refused that event) is dropped, or it would hold back every event after it.
        self._retryable = retryable
        self._queue: deque[Pending] = deque()
        self.limit = limit  # a launch of 1,000 jobs queues about 3,000
        self.parallel = parallel
        self.max_age_s = max_age_s
        self.dropped = 0
        # One flush at a time: two would post the same event and pop twice.
        self._flushing = asyncio.Lock()
        self._waiting = asyncio.Event()  # set when something is queued

    def __len__(self) -> int:
        return len(self._queue)

    async def post(self, job: dict[str, Any], events: list[tuple[str, str, str]]) -> None:
        """Post (type, reason, message) events for `job` after any still waiting."""
        self.queue(job, events)
        await self.flush()

    def queue(self, job: dict[str, Any], events: list[tuple[str, str, str]]) -> None:
        """Queue events for the sender (`send_forever`): once queued, only the limits
        drop them."""
        now = datetime.now(UTC)
        ref = {k: job.get(k) for k in ("apiVersion", "kind", "metadata")}
        for type_, reason, message in events:
            self._queue.append(Pending(ref, type_, reason, message, now, time.monotonic()))
        self._trim()
        if events:
            self._waiting.set()

    async def send_forever(self, retry_s: float = 2.0) -> None:
        """Post what is queued as it comes, in one task of its own: a cycle queues its
        events and goes on, so a restart never waits behind a launch's thousand event
        posts. After a failure (the API is away) it tries again every `retry_s`."""
        while True:
            await self._waiting.wait()
            self._waiting.clear()
            try:
                await self.flush()
            except Exception:  # never the end of the sender
                log.exception("posting events failed")
            if self._queue:
                await asyncio.sleep(retry_s)
                self._waiting.set()

    async def flush(self) -> int:
        """Post what waits, oldest first, up to `parallel` jobs' events at a time (one
        event per job in flight: each job's events keep their order); stop at the
        first failure (the API is down), the failed events first in line again."""
        async with self._flushing:
            self._trim()
            sent = 0
            while self._queue:
                batch = self._head()
                results = await asyncio.gather(
                    *(self._post(e.job, e.type, e.reason, e.message, e.at) for e in batch),
                    return_exceptions=True,
                )
                failed: list[Pending] = []
                why: Exception | None = None
                for e, r in zip(batch, results, strict=True):
                    if not isinstance(r, Exception):
                        sent += 1
                    elif self._retryable(r):
                        failed.append(e)
                        why = r
                    else:
                        self.dropped += 1
                        log.error("event %s for %s refused: %s", e.reason, _name(e.job), r)
                self._queue.extendleft(reversed(failed))
                if why is not None:
                    log.warning("posting events: %s; %d waiting", _one_line(why), len(self._queue))
                    return sent
            return sent

    def _head(self) -> list[Pending]:
        """Take the queue's leading events while each is of a job not taken yet."""
        batch: list[Pending] = []
        jobs: set[str] = set()
        while self._queue and len(batch) < self.parallel:
            job = _name(self._queue[0].job)
            if job in jobs:
                break
            jobs.add(job)
            batch.append(self._queue.popleft())
        return batch

    def _trim(self) -> None:
        cutoff = time.monotonic() - self.max_age_s
        while self._queue and (len(self._queue) > self.limit or self._queue[0].queued < cutoff):
            e = self._queue.popleft()
            self.dropped += 1
            log.error("dropped event %s for %s (outbox full or too old)", e.reason, _name(e.job))


def _name(job: dict[str, Any]) -> str:
    meta = job.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _one_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
