"""The progress signal for ungraceful ends (docs/contract.md section 4).

A crash, an OOM kill or a SIGKILL leaves no time to write a termination message,
yet the operator must book the steps such an end loses. So the trainer keeps the
termination-message file current while it trains: outcome `running`, the last
step reached and when. Kubernetes copies the file into the container's
`terminated.message` however the container ended; the final message overwrites it.

The signal must be fresh whenever the process is alive, not only when `step()` is
called: after a burst of fast steps, in a long save, in `close()`. So a daemon
thread writes it, at most once per interval and only when the step or the last
checkpoint changed; `step()` only starts that thread (one attribute test a step).
Leaving (`termination.leave`) or exiting writes the newest step at once.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from lazarus_contract import ENV_TERMINATION_LOG, OUTCOME_RUNNING, format_time
from lazarus_contract.termination import LastCheckpoint, TerminationMessage

from . import termination

log = logging.getLogger(__name__)

ENV_PROGRESS_SECONDS = "LAZARUS_PROGRESS_SIGNAL_SECONDS"
DEFAULT_INTERVAL = 0.25  # a write costs ~20 us: 4 a second is nothing, and bounds the lag

# (step, last checkpoint (name, step) or None), read from the training loop's state
Reading = tuple[int, tuple[str, int] | None]


def interval_from_env() -> float:
    raw = os.environ.get(ENV_PROGRESS_SECONDS, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_INTERVAL
    except ValueError:
        value = -1.0
    if not 0.01 <= value <= 60:
        log.warning(
            "%s=%r is not 0.01-60 seconds: using %s", ENV_PROGRESS_SECONDS, raw, DEFAULT_INTERVAL
        )
        return DEFAULT_INTERVAL
    return value


class ProgressReport:
    """Keeps the termination-message file at the newest step (`read()`), within `interval`."""

    def __init__(
        self,
        read: Callable[[], Reading],
        path: Path | None = None,
        interval: float | None = None,
    ) -> None:
        self.read = read
        self.path = path or termination.termination_log_path()
        self.interval = interval if interval is not None else interval_from_env()
        self._written: tuple[Reading, int] | None = None  # (what, bytes) in the file
        self._lock = threading.Lock()  # one writer at a time: the thread, a flush
        self._thread: threading.Thread | None = None
        self._pid = 0
        # Kubernetes creates the default file; a run by hand must not create it in /dev.
        configured = path is not None or os.environ.get(ENV_TERMINATION_LOG)
        self._broken = not configured and not self.path.exists()
        termination.reopen(self.path)  # a new run in this process signals again

    def start(self) -> None:
        """Begin signalling (from the first step on); later calls cost one test."""
        if self._thread is not None or self._broken:
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="lazarus-progress", daemon=True)
        self._thread.start()
        termination.before_leave(self.flush)
        atexit.register(self.flush)  # an uncaught exception ends the script: its last step

    def _run(self) -> None:
        # Ends with the run: once its final message is in the file, nothing is left to say.
        while not self._broken and not termination.final_written(self.path):
            self.flush()
            time.sleep(self.interval)

    def flush(self) -> None:
        """Write the newest step now, if it changed since the last write."""
        if self._thread is None or self._broken or os.getpid() != self._pid:
            return  # not started, off, or a forked child (a data worker): not its file
        with self._lock:
            now = self.read()
            if self._written is None or self._written[0] != now:
                self._write(now)

    def _write(self, now: Reading) -> None:
        step, last = now
        data = (
            TerminationMessage(
                outcome=OUTCOME_RUNNING,
                step=step,
                at=format_time(datetime.now(UTC)),
                last_checkpoint=LastCheckpoint(*last) if last else None,
            )
            .encode()
            .encode()
        )
        # In place with one write of at least the previous length (kubelet bind-mounts
        # this one file, so no rename): a kill never leaves a truncated file behind, and
        # a shorter record is padded with spaces, which JSON readers skip.
        size = max(len(data), self._written[1] if self._written else 0)
        try:
            with termination.message_file(self.path) as ours:
                if not ours:  # the final message is in: it stays
                    self._broken = True
                    return
                # The first write also clears what the file held before (a run by hand).
                first = os.O_TRUNC if self._written is None else 0
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | first, 0o644)
                try:
                    os.pwrite(fd, data.ljust(size), 0)
                finally:
                    os.close(fd)
        except OSError as exc:
            self._broken = True  # not under Kubernetes (no /dev/termination-log): say so once
            log.info("progress signal off: cannot write %s (%s)", self.path, exc)
            return
        self._written = (now, size)
