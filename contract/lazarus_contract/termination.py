"""The termination message (docs/contract.md section 4): one shape, written by the trainer
(its final word, and the progress signal while it trains) and read by the operator and
`lazarus-launch`.

`encode` is the only writer and `decode` the only reader: a reader gets typed fields, and
a message that is absent, malformed, hostile or another program's is an empty
`TerminationMessage` (every field unknown), never an exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import (
    OUTCOME_COMPLETED,
    OUTCOME_ERROR,
    OUTCOME_PERMANENT,
    OUTCOME_PREEMPTED,
    OUTCOME_RUNNING,
    TERMINATION_MESSAGE_MAX_BYTES,
    TERMINATION_MESSAGE_VERSION,
)
from .bounded_json import loads_bounded

OUTCOMES = frozenset(
    {OUTCOME_COMPLETED, OUTCOME_PREEMPTED, OUTCOME_PERMANENT, OUTCOME_ERROR, OUTCOME_RUNNING}
)
# The message is small and flat: deeper nesting is not ours (and must not recurse).
MAX_DEPTH = 8


@dataclass(frozen=True)
class LastCheckpoint:
    name: str
    step: int


@dataclass(frozen=True)
class TerminationMessage:
    """A termination message; on reading, a field the text lacks (or has wrong) is None."""

    outcome: str | None = None  # one of OUTCOMES
    step: int | None = None  # the last step reached; None: the trainer named none
    last_checkpoint: LastCheckpoint | None = None  # None: nothing committed (or not said)
    exit_code: int | None = None  # final messages only
    saved_on_signal: bool = False
    grace_shortfall: bool = False
    message: str | None = None  # free text, final messages only
    at: str | None = None  # RFC 3339: when the progress signal was written

    def encode(self) -> str:
        """The JSON the trainer writes, within the bytes Kubernetes keeps: the free-text
        message is shortened, never the facts."""
        body: dict[str, Any] = {"v": TERMINATION_MESSAGE_VERSION, "outcome": self.outcome}
        if self.exit_code is not None:
            body["exitCode"] = self.exit_code
        body["step"] = self.step
        if self.at is not None:
            body["at"] = self.at
        last = self.last_checkpoint
        body["lastCheckpoint"] = {"name": last.name, "step": last.step} if last else None
        if self.message is not None:  # a final message: every fact is said
            body["savedOnSignal"] = self.saved_on_signal
            body["graceShortfall"] = self.grace_shortfall
            body["message"] = self.message
        text = json.dumps(body)
        while len(text.encode()) > TERMINATION_MESSAGE_MAX_BYTES and body.get("message"):
            body["message"] = body["message"][: len(body["message"]) // 2] + "..."
            text = json.dumps(body)
        return text


def _count(raw: Any) -> int | None:
    """A step: a JSON integer >= 0 (not a bool); anything else is unknown."""
    return raw if type(raw) is int and raw >= 0 else None


def _last_checkpoint(raw: Any) -> LastCheckpoint | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        return None
    step = _count(raw.get("step"))
    return LastCheckpoint(raw["name"], step) if step is not None else None


def decode(text: str | bytes | None) -> TerminationMessage:
    """The message in `text` (the container's `terminated.message`, or the file). Trailing
    spaces (the progress signal's padding) are skipped; unknown keys are ignored."""
    if not text:
        return TerminationMessage()
    raw = text.encode() if isinstance(text, str) else text
    try:  # the pod writes it: 4,000 `[` must not be a RecursionError in the operator
        doc = loads_bounded(raw, max_bytes=max(len(raw), 1), max_depth=MAX_DEPTH)
    except ValueError:
        return TerminationMessage()
    if not isinstance(doc, dict):
        return TerminationMessage()
    outcome, code, message, at = (doc.get(k) for k in ("outcome", "exitCode", "message", "at"))
    return TerminationMessage(
        outcome=outcome if isinstance(outcome, str) and outcome in OUTCOMES else None,
        step=_count(doc.get("step")),
        last_checkpoint=_last_checkpoint(doc.get("lastCheckpoint")),
        exit_code=code if type(code) is int else None,
        saved_on_signal=doc.get("savedOnSignal") is True,
        grace_shortfall=doc.get("graceShortfall") is True,
        message=message if isinstance(message, str) else None,
        at=at if isinstance(at, str) else None,
    )
