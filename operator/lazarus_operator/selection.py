"""Recording the checkpoint store's answer in status: the StorageReady condition, the
latest checkpoint and, from two checkpoints of the running attempt, its step rate."""

from __future__ import annotations

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
    if prev.attempt == ck.attempt == st.attempt and ck.name != prev.name:
        # Two checkpoints of the running attempt: its step rate, for estimating
        # what a node loss (which reports nothing) costs.
        prev_step = prev.step if prev.step is not None else -1
        rate = step_rate(prev_step, parse_time(prev.time), ck.step, parse_time(ck.created))
        if rate is not None:
            st.step_rate = round(rate, 6)
