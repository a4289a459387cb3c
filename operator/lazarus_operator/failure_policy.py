"""How an attempt's end is charged: which end explains it, the failure and disruption
budgets, the no-progress rule, and the backoff before the relaunch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from lazarus_contract import format_time

from . import status as s
from .booking import reported_steps
from .classify import DISRUPTION_CAUSES, Cause, PodEnd
from .finished import fail
from .jobstatus import JobStatus
from .records import LastFailure, PendingRestart
from .teardown import teardown
from .vocabulary import Decision, Facts

FAILURE_CAUSES = (Cause.FAILED, Cause.OOM_KILLED)  # charged to maxFailures

# A permanent error anywhere wins; then a disruption (the others' crashes usually
# follow it); then the earliest failure.
_PRECEDENCE = {
    Cause.PERMANENT: 0,
    Cause.NODE_LOST: 1,
    Cause.DISRUPTED: 2,
    Cause.OOM_KILLED: 3,
    Cause.FAILED: 4,
}


def primary(ends: list[PodEnd]) -> PodEnd:
    """The end that explains the attempt."""
    return min(ends, key=lambda e: (_PRECEDENCE.get(e.cause, 9), e.time, e.pod))


def is_failure(end: PodEnd) -> bool:
    """Charged to the failure budget (and needs the store: did it make progress?)."""
    return end.cause not in DISRUPTION_CAUSES and end.cause != Cause.PERMANENT


def recorded(attempt: int, end: PodEnd) -> LastFailure:
    """A pod's end as the status records it (lastFailure, a group's lastReplacement)."""
    return LastFailure(
        attempt,
        str(end.cause),
        end.reason,
        end.pod,
        end.node,
        end.exit_code,
        end.message,
        s.iso(end.time),
    )


def _record_end(f: Facts, st: JobStatus, end: PodEnd) -> str:
    """lastFailure and the history entry; the end described for messages."""
    attempt = f.state.attempt
    st.last_failure = recorded(attempt, end)
    for h in st.history_of(attempt):
        h.ended_at, h.cause, h.reason = s.iso(f.now), str(end.cause), end.reason
    desc = f"attempt {attempt} ended: {end.cause} ({end.reason}) of pod {end.pod}"
    if end.exit_code is not None:
        desc += f", exit code {end.exit_code}"
    if end.node:
        desc += f" on node {end.node}"
    return desc


def _charge(f: Facts, st: JobStatus, end: PodEnd, desc: str) -> tuple[str, str] | None:
    """Count the end against its budget: the reason and message if that ends the job."""
    policy = f.spec.failure_policy
    st.restarts.count_end(end.cause)
    if not is_failure(end):
        used = st.restarts.count(*DISRUPTION_CAUSES)
        if policy.max_preemptions is not None and used > policy.max_preemptions:
            msg = f"{desc}; {used} disruptions exceed maxPreemptions={policy.max_preemptions}"
            return s.R_PREEMPTION_LIMIT, msg
        return None
    newest = f.selection.chosen.step if f.selection and f.selection.chosen else -1
    st.count_failure(progress=f.storage_problem is None and newest > st.resume_point_step())
    used = st.restarts.count(*FAILURE_CAUSES)
    if used > policy.max_failures:
        return (
            s.R_BACKOFF_LIMIT,
            f"{desc}; {used} failures exceed maxFailures={policy.max_failures}",
        )
    if st.failures_without_progress >= policy.max_failures_without_progress:
        msg = (
            f"{desc}; {st.failures_without_progress} consecutive failures without a new checkpoint"
        )
        return s.R_NO_PROGRESS, msg
    return None


def _schedule_restart(
    f: Facts, d: Decision, end: PodEnd, bad: list[PodEnd], desc: str, *, delay: float
) -> None:
    st, now = d.state, f.now
    st.restarts.count_relaunch()
    reported = [e.step for e in bad if e.step is not None]
    reported += reported_steps(f, f.state.attempt, [])
    st.pending_restart = PendingRestart(
        attempt=f.state.attempt,
        cause=str(end.cause),
        # Milliseconds: lost seconds are the gap to the resume checkpoint's commit.
        ended_at=format_time(min(end.time, now)),
        not_before=format_time(now + timedelta(seconds=delay)),
        last_step=max(reported) if reported else None,  # None: no trainer's end heard yet
    )
    st.phase = s.RESTARTING
    st.set_condition(s.COND_RUNNING, False, str(end.cause), desc, now=now)
    st.set_condition(s.COND_RESTARTING, True, str(end.cause), desc, now=now)
    d.event("Warning", f"Restart{end.cause}", f"{desc}: {end.message}; relaunch in {delay:g}s")


def end_attempt(f: Facts, d: Decision, bad: list[PodEnd], current: list[dict[str, Any]]) -> None:
    """One end ends the attempt: charge the budget, record the cause, delete the rest
    of the gang; then relaunch (after the backoff) or fail the job."""
    end = primary(bad)
    if is_failure(end) and not f.answered:
        d.wait_for_store()
        return
    st = d.state
    desc = _record_end(f, st, end)
    if end.cause == Cause.PERMANENT:
        fail(f, d, s.R_PERMANENT, f"{desc}: {end.message}", current, event=f"{desc}: not retried")
        return
    over = _charge(f, st, end, desc)
    if over is not None:
        fail(f, d, *over, current)
        return
    delay = f.spec.failure_policy.backoff.delay(st.consecutive_failures) if is_failure(end) else 0.0
    _schedule_restart(f, d, end, bad, desc, delay=delay)
    teardown(f, d, current)
    if delay > 0:
        d.requeue(delay, "backoff")
