"""SIGTERM/SIGINT: the handler only records the signal; the step boundary acts on it."""

from __future__ import annotations

import logging
import signal
import time
from collections import deque
from types import FrameType

log = logging.getLogger(__name__)


class StopSignal:
    """Records the first stop signal and its time; installs itself for SIGTERM and SIGINT."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.received_at: float | None = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Async-signal context: set a flag and return; no I/O, no locks.
        if self.signum is None:
            self.signum = signum
            self.received_at = time.monotonic()

    @property
    def received(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "request"


class SaveTimer:
    """Durations of past full saves, to decide whether a save fits in what is left of the grace."""

    def __init__(self, keep: int = 5) -> None:
        self.durations: deque[float] = deque(maxlen=keep)

    def record(self, seconds: float) -> None:
        self.durations.append(seconds)

    def estimate(self) -> float | None:
        """A pessimistic estimate: the slowest recent save plus 20%; None with no history."""
        return max(self.durations) * 1.2 if self.durations else None
