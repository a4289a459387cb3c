"""Rules both sides apply (docs/contract.md sections 6-8), written once: what kind a
checkpoint root is (and so who records its attempts), how attempts are numbered, and
the defaults of the retention counts. tests/contract/test_agreement.py runs the
operator's, the trainer's and the store's own code over a table and checks they agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final
from urllib.parse import urlparse

# --- defaults (section 7; the CRD's defaults are tested against these) -----------------
DEFAULT_KEEP_LATEST: Final = 3
DEFAULT_KEEP_BEST: Final = 0


# --- root kind (sections 1 and 8) ------------------------------------------------------
class RootKind(StrEnum):
    S3 = "s3"  # the operator reads it, selects and writes the fence record
    FILESYSTEM = "filesystem"  # on the pods' volume: the trainer selects and fences


def root_kind(uri: str) -> RootKind:
    """The kind of the checkpoint root `uri`, read as the store opens it: S3 when its
    scheme is `s3` (any case, leading blanks ignored, as URL parsing does), a filesystem
    for a path or `file://`. Whether the rest is a usable root is the store's to say."""
    return RootKind.S3 if urlparse(uri).scheme == "s3" else RootKind.FILESYSTEM


def operator_records_attempts(uri: str) -> bool:
    """Who records the attempt for a root: the operator for S3, the trainer otherwise."""
    return root_kind(uri) is RootKind.S3


# --- attempt numbering (section 6) ------------------------------------------------------
@dataclass(frozen=True)
class Recorded:
    """What numbering reads of one fence record: its attempt, the job's UID (None in a
    record from before records named their job), and the number the job asked for
    (its `jobAttempt`; None when the record does not say)."""

    attempt: int
    uid: str | None = None
    job_attempt: int | None = None


def first_free_attempt(history: Iterable[Recorded]) -> int:
    """The lowest number above every attempt the root has recorded."""
    return max((r.attempt for r in history), default=0) + 1


def next_attempt(asked: int, first_free: int) -> int:
    """The number an attempt takes: the one its job asked for (the operator's count for
    the job object), raised above every number the root has taken. Numbers are unique
    per root, and each of a job's attempts is above all its earlier ones."""
    return max(asked, first_free)


def attempt_number(asked: int, history: Iterable[Recorded], uid: str) -> int:
    """`next_attempt` for the job `uid` asking for `asked`, over the fence log `history`,
    stable once its own record is in: the attempt it recorded for `asked` is its number,
    so every rank of the attempt reads the same, before or after rank 0 records it."""
    records = list(history)
    for r in records:
        if r.uid == uid and r.job_attempt == asked:
            return r.attempt
    return next_attempt(asked, first_free_attempt(records))
