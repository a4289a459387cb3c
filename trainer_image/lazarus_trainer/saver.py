"""Background saves: at most one in flight, retried on failure, committed only when complete."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class SaveOutcome:
    name: str | None  # committed checkpoint, or None
    step: int
    reason: str
    seconds: float
    error: str | None = None
    fenced: bool = False


class BackgroundSaver:
    """Runs one save job at a time on a daemon thread; the result is collected at a boundary."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._result: SaveOutcome | None = None
        self.cancel = threading.Event()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, job: Callable[[], SaveOutcome]) -> None:
        if self._thread is not None:
            raise RuntimeError("a save is already in flight")
        self.cancel.clear()

        def run() -> None:
            try:
                self._result = job()
            except BaseException as exc:  # the job reports its own errors; this is a bug guard
                log.exception("background save crashed")
                self._result = SaveOutcome(None, -1, "?", 0.0, error=repr(exc))

        self._thread = threading.Thread(target=run, name="lazarus-save", daemon=True)
        self._thread.start()

    def collect(self, timeout: float | None = 0.0) -> SaveOutcome | None:
        """The finished job's outcome (waiting up to `timeout`), or None if none finished."""
        if self._thread is None:
            return None
        self._thread.join(timeout)
        if self._thread.is_alive():
            return None
        self._thread = None
        result, self._result = self._result, None
        return result


def with_retries(
    fn: Callable[[], None],
    *,
    tries: int,
    backoff: float,
    what: str,
    cancel: threading.Event | None = None,
    deadline: float | None = None,
) -> None:
    """Call `fn` until it succeeds; log each failure; re-raise the last one."""
    delay = backoff
    for i in range(1, tries + 1):
        try:
            fn()
            return
        except Exception as exc:
            last = i == tries or (cancel is not None and cancel.is_set())
            if deadline is not None and time.monotonic() + delay > deadline:
                last = True
            log.error("%s failed (try %d/%d): %s", what, i, tries, exc)
            if last:
                raise
            if cancel is not None:
                cancel.wait(delay)
            else:
                time.sleep(delay)
            delay *= 2
