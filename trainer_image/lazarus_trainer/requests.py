"""The pod annotations the trainer serves, read from a downward-API file: checkpoint-now
requests (contract s.5) and the failure rate of the automatic interval (s.5a)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from lazarus_contract import (
    ANNOTATION_CHECKPOINT_NOW,
    DEFAULT_ANNOTATIONS_FILE,
    ENV_ANNOTATIONS_FILE,
)
from lazarus_contract.interval import ANNOTATION_FAILURE_RATE, parse_rate

log = logging.getLogger(__name__)


def parse_annotations(text: str) -> dict[str, str]:
    """Parse kubelet's downward-API format: one `key="value"` per line, value JSON-quoted."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        raw = raw.strip()
        try:
            value = json.loads(raw) if raw.startswith('"') else raw
        except json.JSONDecodeError:
            value = raw.strip('"')
        out[key.strip()] = str(value)
    return out


class CheckpointRequestWatcher:
    """Reports a new checkpoint-now value at most once per `min_interval` seconds, and
    keeps the newest valid failure rate (per second; None before one was seen)."""

    def __init__(self, path: Path | None = None, min_interval: float = 1.0) -> None:
        self.path = path or Path(os.environ.get(ENV_ANNOTATIONS_FILE) or DEFAULT_ANNOTATIONS_FILE)
        self.min_interval = min_interval
        self._last_read = float("-inf")
        self.failure_rate: float | None = None
        self._bad_rate: str | None = None
        # The value present at start-up was served by an earlier attempt (or is stale): ignore it.
        self.served: str | None = self._read()

    def _read(self) -> str | None:
        try:
            text = self.path.read_text()
        except OSError:
            return None
        annotations = parse_annotations(text)
        raw = annotations.get(ANNOTATION_FAILURE_RATE)
        rate = parse_rate(raw)
        if rate is not None:
            self.failure_rate = rate
        elif raw is not None and raw != self._bad_rate:
            self._bad_rate = raw  # said once per value; the last good rate stays
            log.warning(
                "%s=%r is not failures per hour >= 0: ignored", ANNOTATION_FAILURE_RATE, raw
            )
        return annotations.get(ANNOTATION_CHECKPOINT_NOW) or None

    def poll(self) -> bool:
        """True once per new annotation value."""
        now = time.monotonic()
        if now - self._last_read < self.min_interval:
            return False
        self._last_read = now
        value = self._read()
        if value is not None and value != self.served:
            log.info("checkpoint-now requested (%s=%s)", ANNOTATION_CHECKPOINT_NOW, value)
            self.served = value
            return True
        return False
