"""Recording the checkpoint store's answer in status: the StorageReady condition, the
latest checkpoint and the job's step rate (the trainer's, or from two checkpoints of the
running attempt)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lazarus_contract.timings import decode as decode_timings

from . import status as s
from .classify import parse_time
from .lostwork import step_rate
from .records import LatestCheckpoint
from .vocabulary import Decision, Facts


def apply_selection(f: Facts, d: Decision) -> None:
    st = d.state
    if f.storage_problem is not None:
        p = f.storage_problem
        old = st.condition(s.COND_STORAGE)
        if old is None or old.reason != p.reason or old.status != "False":
            d.event("Warning", p.reason, p.message)
        st.set_condition(s.COND_STORAGE, False, p.reason, p.message, now=f.now)
        return
    if f.selection is None:
        return
    if f.selection.delegated:
        msg = "filesystem root: the trainer selects the checkpoint and fences attempts"
        st.set_condition(s.COND_STORAGE, True, s.R_STORAGE_DELEGATED, msg, now=f.now)
        return
    st.set_condition(s.COND_STORAGE, True, s.R_STORAGE_OK, "checkpoint store reachable", now=f.now)
    ck = f.selection.chosen
    if ck is None:
        return
    prev = st.latest_checkpoint or LatestCheckpoint()
    st.latest_checkpoint = LatestCheckpoint(
        ck.name, ck.uri, ck.step, ck.attempt, ck.created or None
    )
    if (pace := trainer_pace(ck.extra)) is not None:
        # The trainer's own measure, from its first step on (contract section 4a): what
        # a node loss is estimated from, known from an attempt's first checkpoint on.
        st.step_rate = round(pace, 6)
    elif prev.attempt == ck.attempt == st.attempt and ck.name != prev.name:
        # Two checkpoints of the running attempt: its step rate, for estimating
        # what a node loss (which reports nothing) costs.
        prev_step = prev.step if prev.step is not None else -1
        rate = step_rate(prev_step, parse_time(prev.time), ck.step, parse_time(ck.created))
        if rate is not None:
            st.step_rate = round(rate, 6)


def trainer_pace(extra: Mapping[str, Any]) -> float | None:
    """Steps per second the trainer recorded with the checkpoint, if it did (a positive,
    finite number; older trainers record none)."""
    return decode_timings(extra).steps_per_second
