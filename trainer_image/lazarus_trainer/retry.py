"""`retry`: call a function until it returns, backing off between tries; its value comes back.

Pure of torch and the store, so the save path's uploads, the writer's `begin` and anything
else that talks to storage share one loop (tests/trainer/test_retry.py tables it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def retry(
    fn: Callable[[], T],
    *,
    tries: int,
    backoff: float,
    what: str,
    cancel: threading.Event | None = None,
    deadline: float | None = None,
    sleep: Callable[[float], object] | None = None,
) -> T:
    """`fn()`'s value, trying up to `tries` times; each failure is logged, the last re-raised.

    The wait starts at `backoff` seconds and doubles. A set `cancel` event, or a wait that
    would end after `deadline` (a `time.monotonic()` time), makes the current failure the
    last. The wait is `cancel.wait` when there is an event (so a cancel cuts it short),
    else `time.sleep`; `sleep` replaces both.
    """
    delay = backoff
    wait: Callable[[float], object] = sleep or (cancel.wait if cancel is not None else time.sleep)
    for i in range(1, tries + 1):
        try:
            return fn()
        except Exception as exc:
            last = i == tries or (cancel is not None and cancel.is_set())
            if deadline is not None and time.monotonic() + delay > deadline:
                last = True
            log.error("%s failed (try %d/%d): %s", what, i, tries, exc)
            if last:
                raise
            wait(delay)
            delay *= 2
    raise ValueError(f"{what}: tries must be >= 1, got {tries}")
