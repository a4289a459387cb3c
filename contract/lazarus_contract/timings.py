"""The trainer's timings in a manifest (docs/contract.md section 4a), at
`extra.lazarusTrainer.timings`: the trainer encodes them with each save, the operator
decodes them from the newest checkpoint's manifest into metrics and the job's step rate.

`decode` takes the whole `extra` object of a manifest that anyone may have written: a
value of the wrong type, a negative or non-finite number, or a missing level is unknown
(None), never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from . import TIMINGS_STEPS_PER_SECOND

EXTRA_TRAINER: Final = "lazarusTrainer"  # the trainer's part of a manifest's `extra`
EXTRA_TIMINGS: Final = "timings"  # ... and its timings in there

STALL_SECONDS: Final = "stallSeconds"
SAVE_SECONDS: Final = "saveSeconds"
DURABLE_SECONDS: Final = "durableSeconds"
BYTES: Final = "bytes"
ATTEMPT: Final = "attempt"
RESUME_SECONDS: Final = "resumeSeconds"
STEPS_PER_SECOND: Final = TIMINGS_STEPS_PER_SECOND
# Replica groups (docs/fault-tolerance.md), the writer's since its previous save: the
# survivors' longest stall at a failure, and the last failure's time until the quorum
# was whole again (its replacement's first committed step).
FT_STALL_SECONDS: Final = "ftStallSeconds"
FT_REJOIN_SECONDS: Final = "ftRejoinSeconds"


@dataclass(frozen=True)
class Timings:
    """One save's timings; on reading, what a manifest lacks (or has wrong) is None."""

    stall_seconds: float | None = None  # training paused to copy the state
    save_seconds: float | None = None  # stall plus writing, up to the commit
    durable_seconds: float | None = None  # from the state's capture to the commit
    bytes: int | None = None  # the checkpoint's data
    attempt: int | None = None  # the attempt that saved
    resume_seconds: float | None = None  # this attempt's load; None in a fresh attempt
    steps_per_second: float | None = None  # the attempt's pace; None before a second step
    ft_stall_seconds: float | None = None  # replica groups: the survivors' longest stall
    ft_rejoin_seconds: float | None = None  # ... and a failure until the quorum is whole

    def encode(self) -> dict[str, float | int]:
        """The JSON object the trainer stores; unknown values are left out."""
        pace = self.steps_per_second
        pairs: tuple[tuple[str, float | int | None], ...] = (
            (STALL_SECONDS, self.stall_seconds),
            (SAVE_SECONDS, self.save_seconds),
            (DURABLE_SECONDS, self.durable_seconds),
            (BYTES, self.bytes),
            (ATTEMPT, self.attempt),
            (RESUME_SECONDS, self.resume_seconds),
            (STEPS_PER_SECOND, round(pace, 6) if pace is not None else None),
            (FT_STALL_SECONDS, self.ft_stall_seconds),
            (FT_REJOIN_SECONDS, self.ft_rejoin_seconds),
        )
        return {k: v for k, v in pairs if v is not None}


def _seconds(raw: Any) -> float | None:
    """A duration: a finite JSON number >= 0 (a bool is none)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return float(raw) if 0 <= raw < math.inf else None


def _count(raw: Any) -> int | None:
    return raw if type(raw) is int and raw >= 0 else None


def timings_object(extra: Mapping[str, Any]) -> Mapping[str, Any]:
    """`extra.lazarusTrainer.timings` as stored, or {} when a level is missing or wrong."""
    trainer = extra.get(EXTRA_TRAINER)
    timings = trainer.get(EXTRA_TIMINGS) if isinstance(trainer, Mapping) else None
    return timings if isinstance(timings, Mapping) else {}


def decode(extra: Mapping[str, Any]) -> Timings:
    """The timings of a manifest from its `extra` (another writer's, or an older trainer's,
    has none: every field None). A pace of 0 says nothing and is None too."""
    t = timings_object(extra)
    pace = _seconds(t.get(STEPS_PER_SECOND))
    return Timings(
        stall_seconds=_seconds(t.get(STALL_SECONDS)),
        save_seconds=_seconds(t.get(SAVE_SECONDS)),
        durable_seconds=_seconds(t.get(DURABLE_SECONDS)),
        bytes=_count(t.get(BYTES)),
        attempt=_count(t.get(ATTEMPT)),
        resume_seconds=_seconds(t.get(RESUME_SECONDS)),
        steps_per_second=pace if pace else None,
        ft_stall_seconds=_seconds(t.get(FT_STALL_SECONDS)),
        ft_rejoin_seconds=_seconds(t.get(FT_REJOIN_SECONDS)),
    )
