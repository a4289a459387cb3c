"""Booking what an ended attempt lost, from the facts: the steps its trainers reported
and the point the next attempt resumes from (the rule itself: `lostwork`)."""

from __future__ import annotations

from typing import Any

from .attempts import attempt_of, pod_attempt
from .builders import ResumePoint
from .classify import parse_time
from .jobstatus import JobStatus
from .lostwork import LostWork, lost_work, step_rate
from .pods import end_of
from .records import LatestCheckpoint, PendingRestart
from .vocabulary import Checkpoint, Facts


def reported_steps(f: Facts, attempt: int, pods: list[dict[str, Any]]) -> list[int]:
    """Every step the trainers of `attempt` reported: pod events seen, then the pods."""
    steps = [v for k, v in f.seen_steps.items() if attempt_of(k) == attempt]
    for pod in pods:
        if pod_attempt(pod) == attempt and (e := end_of(f, pod)) is not None and e.step is not None:
            steps.append(e.step)
    return steps


def note_reported_steps(f: Facts, pending: PendingRestart, pods: list[dict[str, Any]]) -> None:
    """The ended attempt's other pods report their last step as they stop (their
    SIGTERM saves may fail): keep the highest, so the booking is the truth."""
    steps = reported_steps(f, pending.attempt or 0, pods)
    if steps:
        last = pending.last_step if pending.last_step is not None else -1
        pending.last_step = max(last, *steps)


def book_lost(
    f: Facts,
    st: JobStatus,
    pending: PendingRestart | None,
    resume: ResumePoint,
    ck: Checkpoint | None,
) -> LostWork:
    """What the ended attempt (`pending`; None: a suspend) lost against `resume`."""
    if pending is not None:
        note_reported_steps(f, pending, f.pods)
    last = pending.last_step if pending is not None and pending.last_step is not None else -1
    latest_ck = st.latest_checkpoint or LatestCheckpoint()
    latest = latest_ck.step if latest_ck.step is not None else -1
    started = parse_time(st.attempt_started_at)
    last_step: int | None
    if pending is None:  # resumed after suspend: a graceful stop that saved
        last_step = max(latest, resume.step, 0)
    else:
        last_step = max(last, latest) if last >= 0 else None
    rate = st.step_rate or None
    if rate is None and latest_ck.attempt == (pending.attempt if pending else None):
        # One checkpoint of the ended attempt: its rate since the attempt started.
        prev_step = st.resume_point_step()
        rate = step_rate(max(prev_step, 0), started, latest, parse_time(latest_ck.time))
    resume_time = parse_time(ck.created) if ck is not None and ck.name == resume.name else None
    ended = parse_time(pending.ended_at) if pending is not None else None
    lost = lost_work(
        last_step=last_step,
        resume_step=resume.step,
        resume_time=resume_time,
        attempt_start=started,
        ended_at=ended or f.now,
        rate=rate,
    )
    if lost.estimated and latest > max(resume.step, 0) + lost.steps:
        # A checkpoint the next attempt cannot use proves at least this much.
        lost = LostWork(latest - max(resume.step, 0), lost.seconds, True)
    return lost
