"""Launching attempt N+1: choose the resume point, book the lost work, fence, and
create the gang; and the LAUNCHING stage (first start, resume after a suspend)."""

from __future__ import annotations

from typing import Any

from lazarus_contract import RESUME_AUTO

from . import status as s
from .attempts import next_attempt, older_and_current
from .booking import book_lost
from .builders import ResumePoint, build_attempt, build_service
from .lighthouse import build_lighthouse_pod, build_lighthouse_service
from .lostwork import LostWork
from .pods import name
from .records import HistoryEntry, ResumedFrom
from .teardown import teardown
from .vocabulary import (
    STORAGE_RETRY_S,
    CreatePod,
    CreateService,
    Decision,
    Facts,
    RecordAttempt,
    Selection,
)


def create(f: Facts, d: Decision, attempt: int, resume: ResumePoint, *, record: bool) -> None:
    """Fence (`record`), then the Service and the attempt's pods that do not exist yet."""
    existing = {name(p) for p in f.pods}
    if record:
        d.actions.append(RecordAttempt(attempt, resume.name, resume.step))
    d.actions.append(CreateService(build_service(f.job, f.spec.master_port)))
    pods = build_attempt(f.job, f.spec, attempt, resume)
    if f.spec.fault_tolerance is not None:  # the replica groups' lighthouse
        d.actions.append(CreateService(build_lighthouse_service(f.job, f.spec)))
        pods.append(build_lighthouse_pod(f.job, f.spec, attempt))
    for pod in pods:
        if pod["metadata"]["name"] not in existing:
            d.actions.append(CreatePod(pod))


def _resume_point(f: Facts, sel: Selection, first: bool) -> tuple[ResumePoint, bool]:
    """Where the attempt resumes, and whether the store's skipped list applies."""
    ck, spec = sel.chosen, f.spec.checkpoint
    if first and spec.resume == "none":
        return ResumePoint(""), False
    if first and spec.resume == "explicit":
        assert spec.resume_from is not None
        return ResumePoint(spec.resume_from, spec.resume_from), False
    if sel.delegated:
        return ResumePoint(RESUME_AUTO), True
    return (ResumePoint(ck.name, ck.name, ck.step) if ck else ResumePoint("")), True


def _record(f: Facts, d: Decision, attempt: int, resume: ResumePoint, lost: LostWork) -> None:
    st, now = d.state, f.now
    st.start_attempt(attempt, s.iso(now), (lost.steps, lost.seconds))
    st.phase = s.PENDING
    st.resumed_from = ResumedFrom(resume.value, resume.name, resume.step)
    st.add_history(
        HistoryEntry(
            attempt=attempt,
            started_at=s.iso(now),
            resumed_from=resume.name,
            resume_step=resume.step,
            lost_steps=lost.steps,
            lost_seconds=round(lost.seconds, 3),
            lost_estimated=lost.estimated,
            lost_bound=lost.bound,
        )
    )
    msg = f"launching attempt {attempt}"
    st.set_condition(s.COND_RESTARTING, False, s.R_LAUNCHING, msg, now=now)
    st.set_condition(s.COND_RUNNING, False, s.R_LAUNCHING, msg, now=now)
    if f.spec.suspend is False:
        st.set_condition(s.COND_SUSPENDED, False, s.R_RESUMED, "not suspended", now=now)


def launch(f: Facts, d: Decision, why: str) -> None:
    """Launch attempt N+1 (needs the store's selection: it proves the storage works,
    which the trainer needs too, and the fence record needs it)."""
    if not f.answered:
        d.wait_for_store()
        return
    if f.storage_problem is not None:
        # Waiting beats launching blind: the trainer could not save either. A problem
        # only a change fixes waits for it (a spec change runs a cycle), not a timer.
        if f.storage_problem.retry:
            d.requeue(STORAGE_RETRY_S, f"storage: {f.storage_problem.message}")
        return
    sel = f.selection
    assert sel is not None
    st = d.state
    first = not st.attempt
    attempt = next_attempt(st.attempt, sel.next_attempt)
    resume, report_skipped = _resume_point(f, sel, first)
    pending, st.pending_restart = st.pending_restart, None
    lost = LostWork(0, 0.0, False) if first else book_lost(f, st, pending, resume, sel.chosen)
    _record(f, d, attempt, resume, lost)
    create(f, d, attempt, resume, record=not sel.delegated)
    if not first and resume.name is None and not sel.delegated:
        uri = f.spec.checkpoint.uri
        d.event(
            "Warning",
            "NoValidCheckpoint",
            f"no valid checkpoint in {uri}: attempt {attempt} starts fresh",
        )
    for skipped, reason in sel.skipped if report_skipped else ():
        d.event("Warning", "CheckpointSkipped", f"skipped {skipped}: {reason}")
    where = f"{resume.name} (step {resume.step})" if resume.name else "scratch"
    d.event(
        "Normal", "Launched", f"attempt {attempt} ({why}) resumes from {where}; {lost.describe()}"
    )


# --- the LAUNCHING stage: no attempt yet, or resumed after a suspend ------------------------
def _in_the_way(f: Facts) -> list[dict[str, Any]]:
    """Pods that must be gone first (none of a later attempt: another job's on the root)."""
    older, current = older_and_current(f.pods, f.state.attempt)
    return older + current


def needs_selection(f: Facts) -> bool:
    return not _in_the_way(f)


def decide(f: Facts, d: Decision) -> None:
    if teardown(f, d, _in_the_way(f)):
        launch(f, d, "start" if f.state.attempt == 0 else "resumed after suspend")
