"""One cycle's result as a typed value: the job's status before and after, the actions
and events of the decision, and when the next cycle is due. The status write
(`statuswrite`), the actions (`act`), the events (`outbox`) and the metrics
(`accounting`) all read this one value. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from . import status as s
from .builders import JobRef
from .jobstatus import JobStatus
from .vocabulary import Action, Checkpoint, Decision, Event, Facts


@dataclass(frozen=True)
class Transition:
    job: JobRef
    old: JobStatus
    new: JobStatus
    now: datetime
    actions: tuple[Action, ...] = ()  # in order; the events among them are posted
    requeue_after: float | None = None  # seconds until something falls due
    waiting: str = ""  # why (logged with the requeue)
    checkpoint: Checkpoint | None = None  # the store's newest valid one, if asked this cycle

    @property
    def events(self) -> list[Event]:
        return [a for a in self.actions if isinstance(a, Event)]

    @property
    def books(self) -> bool:
        """Whether the job moves on (its phase, attempt or launch; a restart booked or
        counted): what the pods showed must be what the API has (cycle), not only
        what a watch that may lag showed."""
        return _moves(self.old) != _moves(self.new)

    @cached_property
    def written(self) -> dict[str, Any]:
        """The new status as the API holds it (None values dropped: the API prunes them)."""
        out: dict[str, Any] = s.prune_none(self.new.to_api())
        return out


def _moves(st: JobStatus) -> tuple[object, ...]:
    return (st.phase, st.attempt, st.launched, st.restarts, st.pending_restart is not None)


def between(job: JobRef, old: dict[str, Any], new: dict[str, Any], now: datetime) -> Transition:
    """A transition from two statuses as the API holds them (a recorded history)."""
    return Transition(job, JobStatus.from_api(old), JobStatus.from_api(new), now)


def decided(f: Facts, d: Decision, *, generation: int | None) -> Transition:
    """The transition a decision makes: its status, stamped as this cycle's (the spec
    valid, `generation` observed)."""
    new = d.state
    new.set_condition(s.COND_SPEC, True, s.R_SPEC_VALID, "spec is valid", now=f.now)
    new.observed_generation = generation
    chosen = f.selection.chosen if f.selection is not None else None
    return Transition(
        f.job, f.state, new, f.now, tuple(d.actions), d.requeue_after, d.waiting, chosen
    )


def reconciled(st: JobStatus, now: datetime) -> bool:
    """Clear the ReconcileError condition failed cycles set; False if there is none."""
    if st.condition(s.COND_RECONCILE_ERROR) is None:
        return False
    msg = "the last cycle completed"
    st.set_condition(s.COND_RECONCILE_ERROR, False, s.R_RECONCILED, msg, now=now)
    return True


def condition_only(
    job: JobRef, old: JobStatus, now: datetime, cond: tuple[str, bool, str, str], event: Event
) -> Transition:
    """A cycle that decides nothing but one condition and its event (an invalid spec,
    a failed cycle): the status is the old one with `cond` (type, value, reason, message)."""
    new = JobStatus.from_api(old.to_api())
    ctype, value, reason, message = cond
    new.set_condition(ctype, value, reason, message, now=now)
    return Transition(job, old, new, now, (event,))
