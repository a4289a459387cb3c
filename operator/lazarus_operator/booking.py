"""Booking what an ended attempt lost, from the facts: the steps its trainers reported
and the point the next attempt resumes from (the rule itself: `lostwork`)."""

from __future__ import annotations

from typing import Any

from lazarus_contract import RESUME_AUTO

from .attempts import attempt_of, pod_attempt
from .builders import ResumePoint
from .classify import parse_time
from .jobstatus import JobStatus
from .lostwork import AT_LEAST, LostWork, lost_work, step_rate
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
    latest_ck = st.latest_checkpoint or LatestCheckpoint()
    latest = latest_ck.step if latest_ck.step is not None else -1
    started = parse_time(st.attempt_started_at)
    resume_time = parse_time(ck.created) if ck is not None and ck.name == resume.name else None
    if pending is None:  # resumed after suspend: a graceful stop that saved
        reported: int | None = max(latest, resume.step, 0)
        ended, own = None, None
    else:
        note_reported_steps(f, pending, f.pods)
        reported = pending.last_step
        ended = parse_time(pending.ended_at)
        # The newest checkpoint the attempt committed: its last progress anyone saw.
        mine = latest_ck.attempt is not None and latest_ck.attempt == pending.attempt
        own = (latest, parse_time(latest_ck.time)) if mine and latest >= 0 else None
    rate = st.step_rate or None
    if rate is None and own is not None:
        # One checkpoint of the ended attempt: its rate since the attempt started.
        rate = step_rate(max(st.resume_point_step(), 0), started, latest, own[1])
    lost = lost_work(
        reported=reported,
        resume_step=resume.step,
        resume_time=resume_time,
        attempt_start=started,
        ended_at=ended or f.now,
        rate=rate,
        own=own,
        # The trainer selects its checkpoint itself: the steps past 0 are a bound.
        resume_known=not (resume.value == RESUME_AUTO and resume.step < 0),
    )
    if lost.estimated and latest > max(resume.step, 0) + lost.steps:
        # A checkpoint the next attempt cannot use proves at least this much.
        lost = LostWork(latest - max(resume.step, 0), lost.seconds, True, AT_LEAST)
    return lost
