"""The progress signal for ungraceful ends (docs/contract.md section 4).

A crash, an OOM kill or a SIGKILL leaves no time to write a termination message,
yet the operator must book the steps such an end loses. So the trainer keeps the
termination-message file current while it trains: outcome `running`, the last
step reached and when. Kubernetes copies the file into the container's
`terminated.message` however the container ended; the final message overwrites it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from lazarus_contract import (
    ENV_TERMINATION_LOG,
    OUTCOME_RUNNING,
    TERMINATION_MESSAGE_VERSION,
    format_time,
)

from .termination import termination_log_path

log = logging.getLogger(__name__)


class ProgressReport:
    """Rewrites the termination-message file at most every `interval` seconds."""

    def __init__(self, path: Path | None = None, interval: float = 1.0) -> None:
        self.path = path or termination_log_path()
        self.interval = interval
        self._next = 0.0
        # Kubernetes creates the default file; a run by hand must not create it in /dev.
        configured = path is not None or os.environ.get(ENV_TERMINATION_LOG)
        self._broken = not configured and not self.path.exists()

    def step(self, step: int, last_checkpoint: tuple[str, int] | None) -> None:
        now = time.monotonic()
        if now < self._next or self._broken:
            return
        self._next = now + self.interval
        body = {
            "v": TERMINATION_MESSAGE_VERSION,
            "outcome": OUTCOME_RUNNING,
            "step": step,
            "at": format_time(datetime.now(UTC)),
            "lastCheckpoint": (
                {"name": last_checkpoint[0], "step": last_checkpoint[1]}
                if last_checkpoint
                else None
            ),
        }
        try:
            # In place (kubelet bind-mounts this one file, so no rename); a torn write
            # from a kill mid-write is unparsable and read as "no signal".
            self.path.write_text(json.dumps(body))
        except OSError as exc:
            self._broken = True  # not under Kubernetes (no /dev/termination-log): say so once
            log.info("progress signal off: cannot write %s (%s)", self.path, exc)
