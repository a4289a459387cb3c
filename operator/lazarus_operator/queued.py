"""Kueue's gate around the stages (docs/kueue.md), for a job labelled
`kueue.x-k8s.io/queue-name` only. Pure; `decide` calls it.

- `holds`: the Workload is not admitted (missing, queued, evicted): this cycle the gate
  decides instead of the stage's policy. No pods run: a missing Workload is created,
  a queued one says why (phase `Queued`, Kueue's reason), an evicted one ends the
  running attempt as `disrupted` (reason from Kueue), stops its pods gracefully (they
  save on SIGTERM, as for a suspend), and only once they are gone clears the admission,
  so the preemptor gets the quota after the save.
- a pod set the spec changed (replicas, requests) is Kueue's to account anew: at the
  next attempt boundary (a launch or relaunch, or while not admitted) the Workload is
  replaced, Finished first (its quota handed on), then a new one queued, as Kueue does
  with an edited Job; a running attempt keeps the Workload it was admitted under.
- `after`: the stage's policy ran under an admitted Workload: its pods get the admitted
  flavors' placement, the Workload's PodsReady says whether all run (Kueue's
  waitForPodsReady reads it); a finished job hands the quota back.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from . import failure_policy
from . import kueueworkload as kw
from . import status as s
from .attempts import older_and_current
from .builders import pod_name
from .classify import Cause, PodEnd
from .jobstatus import Stage
from .pods import name, node_name
from .teardown import teardown
from .vocabulary import (
    CreatePod,
    CreateWorkload,
    Decision,
    DeletePod,
    Facts,
    PatchWorkload,
    PatchWorkloadStatus,
)

POLL_S = 30.0  # the Workload watch wakes the job; this is the fallback
R_REPLACED: Final = "PodSetChanged"  # event and Queued reason: the Workload replaced


def holds(f: Facts, stage: Stage) -> bool:
    """Whether the gate decides this cycle (not for finished or suspending jobs)."""
    if f.queue is None or stage in (Stage.FINISHED, Stage.SUSPENDING):
        return False
    return kw.state_of(f.queue.workload) != kw.WorkloadState.ADMITTED or _replacing(f, stage)


def _replacing(f: Facts, stage: Stage) -> bool:
    """An admitted Workload at an attempt boundary whose pod set the spec changed."""
    q = f.queue
    return (
        q is not None
        and q.workload is not None
        and stage in (Stage.LAUNCHING, Stage.RESTARTING)
        and not kw.matches(q.workload, f.spec)
    )


def decide(f: Facts, d: Decision, stage: Stage) -> None:
    q = f.queue
    assert q is not None
    state = kw.state_of(q.workload)
    if state in (kw.WorkloadState.MISSING, kw.WorkloadState.FINISHED):  # none live: a new one
        name_ = kw.next_name(q.workloads, f.job)
        d.actions.append(
            CreateWorkload(kw.build_workload(f.job, f.spec, q.queue, q.priority, name_))
        )
    if stage == Stage.ACTIVE:
        _end_attempt(f, d, state)
        if d.state.finished:
            return  # maxPreemptions passed: failed, its pods deleted
    asked = {a.name for a in d.actions if isinstance(a, DeletePod)}
    teardown(f, d, [p for p in f.pods if name(p) not in asked])
    gone = not f.pods
    if state == kw.WorkloadState.EVICTED and not gone:
        reason, msg = kw.eviction(q.workload)
        msg = f"{msg}; stopping pods (they save on SIGTERM) to yield the quota"
        d.state.set_condition(s.COND_QUEUED, True, reason, msg, now=f.now)
        return
    if state == kw.WorkloadState.EVICTED:
        assert q.workload is not None
        patch = kw.yield_patch(q.workload, f.now)
        d.actions.append(PatchWorkloadStatus(kw.name_of(q.workload), patch))
        _queued(f, d, *kw.eviction(q.workload))
        return
    wl = q.workload
    changed = wl is not None and state != kw.WorkloadState.FINISHED and not kw.matches(wl, f.spec)
    if gone and changed and wl is not None:  # a boundary: nothing runs
        _replace(f, d, wl)
        return
    if gone:
        _queued(f, d, *kw.why_queued(q.workload))


def _replace(f: Facts, d: Decision, old: dict[str, Any]) -> None:
    """The pod set changed and no pod runs: Finished hands the old Workload's quota on
    (first: a failed create leaves none live, and the next cycle creates again), then
    a Workload of the new pod set queues."""
    q = f.queue
    assert q is not None
    new = kw.build_workload(f.job, f.spec, q.queue, q.priority, kw.next_name(q.workloads, f.job))
    d.actions.append(PatchWorkloadStatus(kw.name_of(old), kw.replaced_patch(old, f.now)))
    d.actions.append(CreateWorkload(new))
    msg = f"the pod set changed (replicas or requests): Workload {kw.name_of(new)} queued"
    d.event("Normal", R_REPLACED, f"{msg}, replacing {kw.name_of(old)}")
    _queued(f, d, R_REPLACED, msg, event=False)  # the event above says it


def _end_attempt(f: Facts, d: Decision, state: kw.WorkloadState) -> None:
    """The running attempt ends: Kueue took its quota back (a preemption, a pods-ready
    timeout), or the Workload was deactivated or deleted. A disruption, not a failure."""
    q = f.queue
    assert q is not None
    reason, msg = kw.eviction(q.workload)
    if state != kw.WorkloadState.EVICTED:
        reason, msg = kw.why_queued(q.workload)
    _, current = older_and_current(f.pods, f.state.attempt)
    first = current[0] if current else None
    pod = name(first) if first else pod_name(f.job.name, f.state.attempt, 0)
    node = node_name(first) if first else None
    end = PodEnd(Cause.DISRUPTED, reason, pod, node, None, f"Kueue: {msg}", None, f.now)
    failure_policy.end_attempt(f, d, [end], current)


def _queued(f: Facts, d: Decision, reason: str, msg: str, *, event: bool = True) -> None:
    st, queue = d.state, f.queue.queue if f.queue else ""
    if st.phase == s.SUSPENDED:
        # Resumed after a suspend: the record, not the phase, keeps the LAUNCHING stage
        # (a new attempt from the newest checkpoint) for the re-admission to reach.
        st.resume_pending = True
        resumed = f"resumed; waiting for Kueue's admission (queue {queue})"
        st.set_condition(s.COND_SUSPENDED, False, s.R_RESUMED, resumed, now=f.now)
    st.phase = s.QUEUED
    old = f.state.condition(s.COND_QUEUED)
    if event and (old is None or old.status != "True"):
        d.event("Normal", s.COND_QUEUED, f"waiting for Kueue (queue {queue}): {msg}")
    st.set_condition(s.COND_QUEUED, True, reason, msg, now=f.now)
    st.set_condition(s.COND_RUNNING, False, s.COND_QUEUED, msg, now=f.now)
    d.requeue(POLL_S, "queued in Kueue")


def after(f: Facts, d: Decision, stage: Stage) -> None:
    """The policy decided under an admitted Workload (or the job finished)."""
    q = f.queue
    if q is None:
        return
    st, state = d.state, kw.state_of(q.workload)
    if st.finished:
        if state not in (kw.WorkloadState.MISSING, kw.WorkloadState.FINISHED):
            assert q.workload is not None
            ok = st.phase == s.SUCCEEDED
            patch = kw.finished_patch(q.workload, ok, f"the TrainingJob {st.phase}", f.now)
            d.actions.append(PatchWorkloadStatus(kw.name_of(q.workload), patch))
        return
    if q.workload is None or any(isinstance(a, CreateWorkload) for a in d.actions):
        return  # none yet, or the gate replaced it: the new one waits for admission
    if _replacing(f, stage):
        return  # its pods stop first
    if stage == Stage.SUSPENDING:
        _suspend(f, d, state)
        return
    if not kw.active(q.workload):  # resumed: queue again
        d.actions.append(PatchWorkload(kw.name_of(q.workload), kw.active_patch(True)))
    if state != kw.WorkloadState.ADMITTED:
        return
    old = f.state.condition(s.COND_QUEUED)
    if old is not None and old.status == "True":
        d.event("Normal", s.R_ADMITTED, f"admitted by Kueue (queue {q.queue})")
    st.set_condition(s.COND_QUEUED, False, s.R_ADMITTED, "admitted by Kueue", now=f.now)
    ready = kw.pods_ready_patch(q.workload, st.phase == s.RUNNING, f.now)
    if ready is not None:  # Kueue's waitForPodsReady reads it
        d.actions.append(PatchWorkloadStatus(kw.name_of(q.workload), ready))
    d.actions[:] = [
        replace(a, manifest=kw.place(a.manifest, q.flavors)) if isinstance(a, CreatePod) else a
        for a in d.actions
    ]


def _suspend(f: Facts, d: Decision, state: kw.WorkloadState) -> None:
    """spec.suspend (the `suspend` policy stops the pods, they save on SIGTERM): the
    Workload is deactivated, and once the pods are gone its admission cleared, so the
    quota goes to the next job only after the save."""
    assert f.queue is not None and f.queue.workload is not None
    wl = f.queue.workload
    name = kw.name_of(wl)
    if kw.active(wl):
        d.actions.append(PatchWorkload(name, kw.active_patch(False)))
    if state == kw.WorkloadState.EVICTED and not f.pods:
        d.actions.append(PatchWorkloadStatus(name, kw.yield_patch(wl, f.now)))
