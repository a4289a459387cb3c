"""A Kueue job resumed after a suspend, as tables: while it waits for re-admission its
phase is `Queued` (not `Suspended`), and `status.resumePending` (not the phase) says
that the admission starts a new attempt from the newest checkpoint: no restart
counted, nothing booked lost. The other ways into `Queued` (never admitted, preempted,
pod set replaced) leave the record unset. A resume whose pod set changed:
test_queued_podset.py."""

from __future__ import annotations

from typing import Any

import pytest

from lazarus_operator import status as s
from lazarus_operator.decide import decide, stage
from lazarus_operator.jobstatus import Stage
from lazarus_operator.queued import R_REPLACED
from lazarus_operator.vocabulary import CreatePod, RecordAttempt, Selection

from .test_decide import ck, launched
from .test_queued import (
    ADMITTED_WL,
    EARLIER,
    EVICTED_WL,
    PENDING_WL,
    YIELDED_WL,
    facts,
    of,
    queued_cond,
)
from .test_queued_podset import named

pytestmark = pytest.mark.unit
INACTIVE_WL = {**YIELDED_WL, "spec": {**YIELDED_WL["spec"], "active": False}}
SAVED = {"name": ck(300).name, "step": 300, "attempt": 1}


def suspended(**extra: Any) -> dict[str, Any]:
    """Attempt 1 stopped by spec.suspend, its pods gone, its SIGTERM save selected."""
    conds = [{"type": s.COND_SUSPENDED, "status": "True", "reason": s.R_SUSPENDED, "message": ""}]
    return launched(phase=s.SUSPENDED, latestCheckpoint=SAVED, conditions=conds, **extra)


def cond_of(status: dict[str, Any], ctype: str) -> tuple[str, str]:
    c = next(c for c in status["conditions"] if c["type"] == ctype)
    return c["status"], c["reason"]


def test_a_resumed_job_waits_queued_with_the_record_of_its_relaunch() -> None:
    d = decide(facts(suspended(), [], INACTIVE_WL, suspend=False))
    assert d.status["phase"] == s.QUEUED and d.status["resumePending"] is True
    assert queued_cond(d)[0] == "True"
    assert cond_of(d.status, s.COND_SUSPENDED) == ("False", s.R_RESUMED)
    assert not of(d, CreatePod) and not of(d, RecordAttempt)

    # Still waiting, a cycle later: the record keeps it out of the running attempt's
    # stage (which would end attempt 1 once more, as a disruption).
    again = facts(d.status, [], PENDING_WL, suspend=False)
    assert stage(again) == Stage.LAUNCHING
    d = decide(again)
    assert d.status["phase"] == s.QUEUED and d.status["resumePending"] is True
    assert "restarts" not in d.status and "pendingRestart" not in d.status


def test_the_admission_launches_a_new_attempt_from_the_newest_checkpoint() -> None:
    waiting = decide(facts(suspended(), [], INACTIVE_WL, suspend=False)).status
    d = decide(
        facts(
            waiting,
            [],
            ADMITTED_WL,
            suspend=False,
            selection=Selection(ck(300), next_attempt=2),
        )
    )
    assert [a.manifest["metadata"]["name"] for a in of(d, CreatePod)] == ["job-a2-0", "job-a2-1"]
    assert of(d, RecordAttempt) == [RecordAttempt(2, ck(300).name, 300)]
    assert d.status["attempt"] == 2 and d.status["phase"] == s.PENDING
    assert d.status["resumePending"] is False  # written: the API server merges the status
    assert "restarts" not in d.status and d.status.get("lostSteps", 0) == 0


def test_suspended_again_while_waiting_is_suspended_and_resumes_the_same_way() -> None:
    waiting = decide(facts(suspended(), [], INACTIVE_WL, suspend=False)).status
    d = decide(facts(waiting, [], INACTIVE_WL, suspend=True, selection=Selection(ck(300))))
    assert d.status["phase"] == s.SUSPENDED and not of(d, CreatePod)
    d = decide(facts(d.status, [], INACTIVE_WL, suspend=False))
    assert d.status["phase"] == s.QUEUED and d.status["resumePending"] is True


PREEMPTED = launched(
    phase=s.RESTARTING,
    pendingRestart={"attempt": 1, "cause": "Disrupted", "endedAt": EARLIER, "notBefore": EARLIER},
)


@pytest.mark.parametrize(
    ("status", "wl", "reason"),
    [
        ({}, None, None),  # never admitted: its Workload created
        ({}, PENDING_WL, "Pending"),  # no quota yet
        (PREEMPTED, EVICTED_WL, "Preempted"),  # preempted: its pods gone, the quota yielded
        (
            launched(phase=s.RESTARTING, pendingRestart=PREEMPTED["pendingRestart"]),
            named(PENDING_WL, replicas=3),
            R_REPLACED,
        ),  # restarting with a changed pod set
    ],
)
def test_the_other_ways_into_queued_keep_no_record(
    status: dict[str, Any], wl: dict[str, Any] | None, reason: str | None
) -> None:
    d = decide(facts(status, [], wl))
    assert d.status["phase"] == s.QUEUED
    assert "resumePending" not in d.status
    if reason is not None:
        assert queued_cond(d) == ("True", reason)
