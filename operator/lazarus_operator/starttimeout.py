"""Gangs without a gang scheduler: an attempt whose pods are not all Running within
spec.scheduling.startTimeoutSeconds of its launch is torn down, all of it, and
relaunched after a backoff, instead of holding part of the cluster while the rest
waits. Pure; the ACTIVE stage (`running`) asks `check` while a pod is not Running.

A start timeout is not a training failure: no budget counts it (maxFailures,
maxPreemptions), status.restarts.startTimeout does. It never fails the job, and it
never loops silently either: each one waits the failure policy's backoff for the
consecutive start timeouts (so at most one attempt per backoff.maxSeconds), posts a
Warning event, counts lazarus_start_timeouts_total, which an alert reads."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from lazarus_contract import format_time

from . import status as s
from .booking import reported_steps
from .builders import pod_name
from .classify import parse_time
from .jobstatus import JobStatus
from .pods import name, node_name
from .records import LastFailure, PendingRestart
from .teardown import teardown
from .vocabulary import Decision, Facts

DESCRIBED = 3  # pods the event and the message name (the rest are counted)


def deadline(f: Facts) -> datetime | None:
    """When the running attempt must have all its pods Running (None: no timeout)."""
    timeout = f.spec.scheduling.start_timeout_seconds
    started = parse_time(f.state.attempt_started_at)
    if timeout is None or started is None:
        return None
    return started + timedelta(seconds=timeout)


def why(pod: dict[str, Any]) -> str:
    """Why a pod does not run, as Kubernetes said it: the scheduler's PodScheduled=False
    reason and message, else the container's waiting reason, else the pod's phase."""
    st = pod.get("status") or {}
    for c in st.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return _said(c.get("reason") or "Unschedulable", c.get("message"))
    for cs in st.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting:
            return _said(waiting.get("reason") or "Waiting", waiting.get("message"))
    if st.get("reason"):
        return _said(st["reason"], st.get("message"))
    if not node_name(pod):
        return "not scheduled yet"
    return str(st.get("phase") or "Pending")


def _said(reason: str, message: Any) -> str:
    return f"{reason}: {message}" if message else str(reason)


def uncreated(f: Facts, current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Before every pod of the attempt exists: the live pods not Running, and a stand-in
    for each pod not created yet (admission refused it: a quota, a webhook)."""
    present = {name(p) for p in current}
    live = [p for p in current if f.ends.get(name(p)) is None]
    out = [p for p in live if (p.get("status") or {}).get("phase") != "Running"]
    for i in range(f.spec.replicas):
        pod = pod_name(f.job.name, f.state.attempt, i)
        if pod not in present:
            msg = "its creation failed (see the ReconcileError condition)"
            out.append(
                {"metadata": {"name": pod}, "status": {"reason": "NotCreated", "message": msg}}
            )
    return out


def consecutive(st: JobStatus) -> int:
    """Start timeouts in a row, the newest attempt's included (the backoff's exponent)."""
    n = 0
    for h in reversed(st.history):
        if h.cause != s.R_START_TIMEOUT:
            break
        n += 1
    return n


def check(
    f: Facts, d: Decision, current: list[dict[str, Any]], waiting: list[dict[str, Any]]
) -> bool:
    """`waiting`: the attempt's live pods that are not Running. Past the deadline, end
    the attempt (True); before it, wake the cycle at the deadline: no pod event may
    come (a pod stays Pending quietly)."""
    due = deadline(f)
    if due is None or not waiting or f.state.phase == s.RUNNING:
        return False  # no timeout, all run, or the gang ran once in this attempt
    if f.now < due:
        d.requeue((due - f.now).total_seconds(), "start timeout")
        return False
    _end(f, d, current, waiting)
    return True


def _end(
    f: Facts, d: Decision, current: list[dict[str, Any]], waiting: list[dict[str, Any]]
) -> None:
    st, now, attempt = d.state, f.now, f.state.attempt
    timeout = f.spec.scheduling.start_timeout_seconds
    first = waiting[0]
    named = "; ".join(f"{name(p)}: {why(p)}" for p in waiting[:DESCRIBED])
    more = f"; and {len(waiting) - DESCRIBED} more" if len(waiting) > DESCRIBED else ""
    desc = (
        f"attempt {attempt}: {len(waiting)} of {f.spec.replicas} pods not running "
        f"{timeout}s after launch ({named}{more})"
    )
    reason = why(first).split(":", 1)[0]
    st.last_failure = LastFailure(
        attempt,
        s.R_START_TIMEOUT,
        reason,
        name(first),
        node_name(first),
        None,
        why(first),
        s.iso(now),
    )
    for h in st.history_of(attempt):
        h.ended_at, h.cause, h.reason = s.iso(now), s.R_START_TIMEOUT, reason
    st.restarts.count_start_timeout()
    st.restarts.count_relaunch()
    delay = f.spec.failure_policy.backoff.delay(max(consecutive(st), 1))
    steps = reported_steps(f, attempt, current)
    st.pending_restart = PendingRestart(
        attempt=attempt,
        cause=s.R_START_TIMEOUT,
        ended_at=format_time(now),
        not_before=format_time(now + timedelta(seconds=delay)),
        last_step=max(steps) if steps else -1,  # the gang never ran: no step taken
    )
    st.phase = s.RESTARTING
    st.set_condition(s.COND_RUNNING, False, s.R_START_TIMEOUT, desc, now=now)
    st.set_condition(s.COND_RESTARTING, True, s.R_START_TIMEOUT, desc, now=now)
    d.event(
        "Warning", s.R_START_TIMEOUT, f"{desc}; tearing the attempt down, relaunch in {delay:g}s"
    )
    teardown(f, d, current)
    if delay > 0:
        d.requeue(delay, "start timeout backoff")
