"""The ACTIVE stage: attempt N runs. Create its missing pods, ask for checkpoint-now
on doomed nodes, hand the automatic interval its failure rate, and read its pods' ends:
all succeeded completes the job; any other end ends the attempt (`failure_policy`)."""

from __future__ import annotations

from typing import Any

from . import failure_policy, groups, starttimeout
from . import status as s
from .attempts import older_and_current
from .autosave import advertise
from .builders import ResumePoint, pod_name
from .classify import Cause, PodEnd
from .disruption import checkpoint_now, wake_at_node_loss
from .finished import mark_finished
from .launch import create
from .lighthouse import is_lighthouse
from .pods import end_of, name, vanished
from .teardown import teardown
from .vocabulary import Decision, Facts


def _launched(f: Facts, current: list[dict[str, Any]]) -> bool:
    """Every pod of the attempt was created once (later, a missing one is an end)."""
    return bool(f.state.launched) or len(_trainers(current)) >= f.spec.replicas


def _trainers(current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The attempt's trainer pods (not a fault-tolerant job's lighthouse)."""
    return [p for p in current if not is_lighthouse(p)]


def attempt_ends(f: Facts, current: list[dict[str, Any]]) -> list[PodEnd]:
    """The ends of the attempt's pods; a pod that vanished is a disruption."""
    ends = [e for e in (end_of(f, p) for p in current) if e is not None]
    present = {name(p) for p in current}
    attempt = f.state.attempt
    for i in range(f.spec.replicas):
        pod = pod_name(f.job.name, attempt, i)
        if pod not in present:
            ends.append(vanished(pod, f.now))
    return ends


def _bad(ends: list[PodEnd]) -> list[PodEnd]:
    return [e for e in ends if e.cause != Cause.SUCCEEDED]


def needs_selection(f: Facts) -> bool:
    """An attempt that failed: did it commit anything? Only the store can say."""
    _, current = older_and_current(f.pods, f.state.attempt)
    if not _launched(f, current):
        return False
    if f.spec.fault_tolerance is not None:
        bad = groups.plan(f, f.state, current).bad()
    else:
        bad = _bad(attempt_ends(f, current))
    return bool(bad) and failure_policy.is_failure(failure_policy.primary(bad))


def decide(f: Facts, d: Decision) -> None:
    st, attempt = d.state, f.state.attempt
    older, current = older_and_current(f.pods, attempt)
    if older:
        teardown(f, d, older)
    if not st.launched:
        if len(_trainers(current)) < f.spec.replicas:
            if starttimeout.check(f, d, current, starttimeout.uncreated(f, current)):
                return  # pods refused past the deadline: the rest of the gang goes too
            r = st.resumed_from
            resume = ResumePoint(r.value, r.name, r.step) if r else ResumePoint("")
            create(f, d, attempt, resume, record=True)
            return
        st.launched = True
    checkpoint_now(f, d, current)
    advertise(f, d, current)  # the automatic interval's failure rate (contract 5a)
    wake_at_node_loss(f, d, current)
    if f.spec.fault_tolerance is not None:
        plan = groups.tend(f, d, current)
        ends, bad = plan.ends, plan.bad()
    else:
        ends = attempt_ends(f, current)
        bad = _bad(ends)
    if bad:
        failure_policy.end_attempt(f, d, bad, current)
    elif len(ends) == f.spec.replicas:
        mark_finished(st, f, True, s.R_COMPLETED, f"attempt {attempt} completed")
        d.event("Normal", s.R_COMPLETED, f"training completed in attempt {attempt}")
    else:
        # A pod that already completed is done, not pending: rank 0 often finishes
        # a moment before the rest of the gang, and the job is still Running then.
        ended = {e.pod for e in ends}
        # (A fault-tolerant job's replaced group pods have ended too, and are not waited on.)
        live = [p for p in _trainers(current) if end_of(f, p) is None]
        waiting = [p for p in live if (p.get("status") or {}).get("phase") != "Running"]
        if starttimeout.check(f, d, current, waiting):
            return  # the gang did not start in time: torn down, relaunched after a backoff
        running = not waiting
        st.phase = s.RUNNING if running else s.PENDING
        reason = s.R_ALL_RUNNING if running else s.R_PODS_PENDING
        # Not a count of running pods: each pod coming up would cost the job a status write.
        msg = f"attempt {attempt}: {len(current)} pods"
        msg += f", {len(ended)} completed" if ended else ""
        due = starttimeout.deadline(f)
        if not running and due is not None and f.state.phase != s.RUNNING:
            msg += f"; torn down at {s.iso(due)} unless all run (spec.scheduling)"
        st.set_condition(s.COND_RUNNING, running, reason, msg, now=f.now)
