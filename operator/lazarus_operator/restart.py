"""The RESTARTING stage: an attempt ended; wait until its pods are gone (forcing the
stuck), wait out the backoff, then launch the next attempt."""

from __future__ import annotations

from . import status as s
from .attempts import older_and_current
from .booking import note_reported_steps
from .classify import parse_time
from .launch import launch
from .teardown import teardown
from .vocabulary import Decision, Facts


def _ready(f: Facts) -> bool:
    """Old pods gone and the backoff over: the relaunch is due."""
    pending = f.state.pending_restart
    assert pending is not None
    older, current = older_and_current(f.pods, f.state.attempt)
    not_before = parse_time(pending.not_before) or f.now
    return not older + current and f.now >= not_before


def needs_selection(f: Facts) -> bool:
    return _ready(f)


def decide(f: Facts, d: Decision) -> None:
    st, now = d.state, f.now
    pending = st.pending_restart
    assert pending is not None
    older, current = older_and_current(f.pods, st.attempt)
    note_reported_steps(f, pending, older + current)
    if not teardown(f, d, older + current):
        msg = "waiting for pods to stop"
        st.set_condition(s.COND_RESTARTING, True, s.R_TEARDOWN, msg, now=now)
        return
    not_before = parse_time(pending.not_before) or now
    if now < not_before:
        msg = f"relaunch at {s.iso(not_before)}"
        st.set_condition(s.COND_RESTARTING, True, s.R_BACKOFF, msg, now=now)
        d.requeue((not_before - now).total_seconds(), "backoff")
        return
    launch(f, d, f"restart after {pending.cause}")
