"""Finishing a job (Succeeded or Failed), and what a finished job still needs: its
pods cleaned up and, with ttlSecondsAfterFinished, its own deletion."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from . import status as s
from .classify import parse_time
from .jobstatus import JobStatus
from .pods import end_of
from .teardown import teardown
from .vocabulary import Decision, DeleteJob, Facts


def mark_finished(st: JobStatus, f: Facts, ok: bool, reason: str, message: str) -> None:
    st.phase = s.SUCCEEDED if ok else s.FAILED
    st.finished_at = s.iso(f.now)
    st.pending_restart = None
    st.set_condition(s.COND_SUCCEEDED if ok else s.COND_FAILED, True, reason, message, now=f.now)
    st.set_condition(s.COND_RUNNING, False, reason, message, now=f.now)
    st.set_condition(s.COND_RESTARTING, False, reason, message, now=f.now)


def fail(
    f: Facts,
    d: Decision,
    reason: str,
    message: str,
    pods: list[dict[str, Any]],
    *,
    event: str | None = None,
) -> None:
    """The job failed for good: say so (status, a Warning with `event` or `message`)
    and stop the attempt's pods."""
    mark_finished(d.state, f, False, reason, message)
    d.event("Warning", reason, event or message)
    teardown(f, d, pods)


def needs_selection(f: Facts) -> bool:
    return False


def decide(f: Facts, d: Decision) -> None:
    """Failed: nothing may keep running. Succeeded: leave finished pods for their logs."""
    pods = f.pods if d.state.phase == s.FAILED else [p for p in f.pods if end_of(f, p) is None]
    teardown(f, d, pods)
    ttl = f.spec.ttl_seconds_after_finished
    if ttl is None:
        return
    due = (parse_time(d.state.finished_at) or f.now) + timedelta(seconds=ttl)
    if f.now >= due:
        d.actions.append(DeleteJob())
    else:
        d.requeue((due - f.now).total_seconds(), "TTL after finish")
