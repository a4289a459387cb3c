"""Save results (`SaveStatus`, `CommitResult`, `SaveOutcome`) and `BackgroundSaver`, which
runs at most one save job on a thread and hands its outcome back at a step boundary."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum

log = logging.getLogger(__name__)


def lower_priority(nice: int) -> None:
    """Make the calling thread `nice` steps nicer (Linux schedules threads one by one), so
    a save competing with training for the cores yields to it. Never fails a save."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:
        log.debug("could not lower the save thread's priority: %s", exc)


def background_pool(threads: int, nice: int) -> ThreadPoolExecutor:
    """The save's I/O threads: `threads` of them, each `nice` steps nicer than training."""
    return ThreadPoolExecutor(
        max(1, threads),
        thread_name_prefix="lazarus-save-io",
        initializer=lower_priority,
        initargs=(nice,),
    )


class SaveStatus(Enum):
    COMMITTED = "committed"
    FAILED = "failed"  # nothing committed; the save is retried at a later boundary
    FENCED = "fenced"  # a newer attempt owns the root: this one stops without saving


@dataclass(frozen=True)
class CommitResult:
    """Rank 0's verdict on a save, broadcast to every rank."""

    status: SaveStatus
    detail: str  # the committed checkpoint's name, else what went wrong

    @classmethod
    def failed(cls, error: str) -> CommitResult:
        return cls(SaveStatus.FAILED, error)


@dataclass
class SaveOutcome:
    """One save, as the step boundary learns it."""

    status: SaveStatus
    step: int
    reason: str
    seconds: float
    detail: str = ""  # as in CommitResult

    @classmethod
    def of(cls, result: CommitResult, step: int, reason: str, seconds: float) -> SaveOutcome:
        return cls(result.status, step, reason, seconds, result.detail)

    @property
    def name(self) -> str | None:
        """The committed checkpoint, or None."""
        return self.detail if self.status is SaveStatus.COMMITTED else None

    @property
    def error(self) -> str | None:
        return None if self.status is SaveStatus.COMMITTED else self.detail

    @property
    def fenced(self) -> bool:
        return self.status is SaveStatus.FENCED


class BackgroundSaver:
    """Runs one save job at a time on a daemon thread; the result is collected at a boundary."""

    def __init__(self, nice: int = 0) -> None:
        self.nice = nice  # the save thread's priority below training's (lower_priority)
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
            lower_priority(self.nice)
            try:
                self._result = job()
            except BaseException as exc:  # the job reports its own errors; this is a bug guard
                log.exception("background save crashed")
                self._result = SaveOutcome(SaveStatus.FAILED, -1, "?", 0.0, repr(exc))

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
