"""The work queue of the cycles: per job, at most one run at a time; kicks that arrive
while one runs fold into one more run (pods change in bursts); one timer per job for
when its last run said something falls due; and the backoff of a failing job.

Generic over the key and the run: the queue knows nothing of TrainingJobs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

log = logging.getLogger("lazarus.jobqueue")

ERROR_BACKOFF_S: Final = 2.0  # first retry after a failed run; doubles per failure
ERROR_BACKOFF_MAX_S: Final = 300.0
# The API server away (refused, 5xx, 429): retry at least this often, so jobs move
# again soon after it is back (client-go's reflectors cap their backoff near 30 s).
UNAVAILABLE_BACKOFF_MAX_S: Final = 30.0

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Outcome:
    """What a run asks of the queue: run again after `requeue_after` seconds (None:
    only when kicked), and why (logged)."""

    requeue_after: float | None = None
    waiting: str = ""


def error_backoff(failures: int, unavailable: bool) -> float:
    """Seconds until a failed run is retried: doubling per failure, capped lower
    while the API server itself is away."""
    cap = UNAVAILABLE_BACKOFF_MAX_S if unavailable else ERROR_BACKOFF_MAX_S
    return min(cap, ERROR_BACKOFF_S * 2.0 ** min(max(failures, 1) - 1, 16))


@dataclass
class Backoff:
    """A job whose runs fail: the retry's exponent and time, and the error last reported."""

    failures: int = 0  # consecutive failed runs
    retry_at: float = 0.0  # monotonic: the periodic resync leaves the job alone until then
    last_error: str = ""  # reported once (condition, event, traceback) per distinct error
    recovered: bool = False  # a run succeeded after failures: the next status write says so

    def failed(self, unavailable: bool) -> float:
        """Count a failure; the seconds until the retry."""
        if time.monotonic() >= self.retry_at:
            # Only a retry that fell due counts: the runs a burst of events starts
            # meanwhile (a re-list after an outage) must not double the wait each.
            self.failures += 1
        delay = error_backoff(self.failures, unavailable)
        self.retry_at = time.monotonic() + delay
        return delay

    def new_error(self, message: str) -> bool:
        """Whether `message` differs from the error last reported (then it is now)."""
        if message == self.last_error:
            return False
        self.last_error = message
        return True

    def succeeded(self) -> bool:
        """A run went through: whether it ends a run of failures (then `recovered`)."""
        if not self.failures:
            return False
        self.failures, self.last_error, self.retry_at, self.recovered = 0, "", 0.0, True
        return True


@dataclass
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    dirty: bool = False  # kicked since the current run started
    refresh: bool = False  # a kick asked for a refresh (the resync's)
    wakeup: asyncio.TimerHandle | None = None
    last: Outcome = field(default_factory=Outcome)
    backoff: Backoff = field(default_factory=Backoff)


Run = Callable[[K, bool, Backoff], Awaitable[Outcome]]


class JobQueue(Generic[K]):
    """`run(key, refresh, backoff)` per key, never two at once for one key. A run
    must not raise: it turns its errors into an Outcome (see `Backoff`)."""

    def __init__(self, run: Run[K]) -> None:
        self._run = run
        self._slots: dict[K, _Slot] = {}

    def __contains__(self, key: K) -> bool:
        return key in self._slots

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._slots))

    def due(self, key: K) -> bool:
        """Not waiting out a failure's backoff (its timer will run it)."""
        slot = self._slots.get(key)
        return slot is None or slot.backoff.retry_at <= time.monotonic()

    def again(self, key: K) -> None:
        """Run once more after the run in progress (it learnt its facts were stale)."""
        if (slot := self._slots.get(key)) is not None:
            slot.dirty = True

    def forget(self, key: K) -> None:
        slot = self._slots.pop(key, None)
        if slot is not None and slot.wakeup is not None:
            slot.wakeup.cancel()

    async def kick(self, key: K, *, refresh: bool = False) -> Outcome:
        """Run now, or fold into the run in progress; the outcome of the last run."""
        slot = self._slots.setdefault(key, _Slot())
        slot.dirty = True
        slot.refresh = slot.refresh or refresh
        if slot.lock.locked():
            return slot.last
        async with slot.lock:
            while slot.dirty:
                slot.dirty = False
                refresh, slot.refresh = slot.refresh, False
                slot.last = await self._run(key, refresh, slot.backoff)
        self._schedule(key, slot)
        return slot.last

    def _schedule(self, key: K, slot: _Slot) -> None:
        """Wake up when the last run said something falls due (backoff, timeouts): the
        operator's one requeue path (kopf's handlers never ask kopf to retry a cycle)."""
        if slot.wakeup:
            slot.wakeup.cancel()
            slot.wakeup = None
        delay = slot.last.requeue_after
        if delay is not None:
            log.debug("%s: next run in %.2fs (%s)", key, delay, slot.last.waiting)
            loop = asyncio.get_running_loop()
            slot.wakeup = loop.call_later(delay, lambda: loop.create_task(self.kick(key)))
