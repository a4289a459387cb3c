"""The termination message (docs/contract.md section 4) and the exit codes that go with it."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lazarus_contract import (
    DEFAULT_TERMINATION_LOG,
    ENV_TERMINATION_LOG,
    EXIT_COMPLETED,
    EXIT_PERMANENT,
    EXIT_PREEMPTED,
    OUTCOME_COMPLETED,
    OUTCOME_ERROR,
    OUTCOME_PERMANENT,
    OUTCOME_PREEMPTED,
    TERMINATION_MESSAGE_MAX_BYTES,
    TERMINATION_MESSAGE_VERSION,
)

log = logging.getLogger(__name__)

EXIT_CODE_BY_OUTCOME = {
    OUTCOME_COMPLETED: EXIT_COMPLETED,
    OUTCOME_PREEMPTED: EXIT_PREEMPTED,
    OUTCOME_PERMANENT: EXIT_PERMANENT,
    OUTCOME_ERROR: 1,
}


class PermanentError(Exception):
    """A configuration or checkpoint problem that a retry cannot fix (exit EXIT_PERMANENT)."""


@dataclass
class Termination:
    outcome: str
    step: int
    last_checkpoint: tuple[str, int] | None
    message: str
    saved_on_signal: bool = False
    grace_shortfall: bool = False

    @property
    def exit_code(self) -> int:
        return EXIT_CODE_BY_OUTCOME[self.outcome]

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "v": TERMINATION_MESSAGE_VERSION,
            "outcome": self.outcome,
            "exitCode": self.exit_code,
            "step": self.step,
            "lastCheckpoint": (
                {"name": self.last_checkpoint[0], "step": self.last_checkpoint[1]}
                if self.last_checkpoint
                else None
            ),
            "savedOnSignal": self.saved_on_signal,
            "graceShortfall": self.grace_shortfall,
            "message": self.message,
        }
        text = json.dumps(body)
        # Kubernetes keeps only 4096 bytes: shorten the free-text message, never the facts.
        while len(text.encode()) > TERMINATION_MESSAGE_MAX_BYTES and body["message"]:
            body["message"] = body["message"][: len(body["message"]) // 2] + "..."
            text = json.dumps(body)
        return text


def termination_log_path() -> Path:
    return Path(os.environ.get(ENV_TERMINATION_LOG) or DEFAULT_TERMINATION_LOG)


def write_termination(term: Termination, path: Path | None = None) -> None:
    """Write the message where kubelet looks; a missing /dev/termination-log is not fatal."""
    target = path or termination_log_path()
    try:
        target.write_text(term.to_json())
    except OSError as exc:
        log.warning("could not write termination message to %s: %s", target, exc)
    log.info("termination: %s", term.to_json())
