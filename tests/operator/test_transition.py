"""The typed transition a cycle hands to the status write, the actions, the events and
the metrics: the decision's status stamped as this cycle's, in the API's shape."""

from __future__ import annotations

from typing import Any

import pytest

from lazarus_operator import status as s
from lazarus_operator.builders import JobRef
from lazarus_operator.decide import decide
from lazarus_operator.jobstatus import JobStatus
from lazarus_operator.spec import parse_spec
from lazarus_operator.transition import between, condition_only, decided, reconciled
from lazarus_operator.vocabulary import CreatePod, Event, Facts, Selection

from .factories import NOW, job_spec, node

pytestmark = pytest.mark.unit
JOB = JobRef("job", "ns", "uid-1")


def _first_cycle() -> Facts:
    return Facts(
        JOB, parse_spec(job_spec()), {}, [], {"n1": node()}, NOW, Selection(None, next_attempt=1)
    )


def test_a_launch_is_one_transition_its_consumers_read() -> None:
    f = _first_cycle()
    t = decided(f, decide(f), generation=4)
    assert t.old == JobStatus() and t.new.attempt == 1
    assert [e.reason for e in t.events] == ["Launched"]
    assert [a.manifest["metadata"]["name"] for a in t.actions if isinstance(a, CreatePod)] == [
        "job-a1-0",
        "job-a1-1",
    ]
    w = t.written
    assert w["observedGeneration"] == 4 and w["phase"] == s.PENDING
    assert (w["lostSteps"], w["lostSeconds"], w["launched"]) == (0, 0.0, False)
    spec_valid = [c for c in w["conditions"] if c["type"] == s.COND_SPEC]
    assert spec_valid == [
        {
            "type": s.COND_SPEC,
            "status": "True",
            "reason": s.R_SPEC_VALID,
            "message": "spec is valid",
            "lastTransitionTime": s.iso(NOW),
        }
    ]
    assert all(v is not None for v in w["resumedFrom"].values())  # None values dropped


@pytest.mark.parametrize(
    ("status", "cleared"),
    [
        ({}, False),  # no ReconcileError to clear: none is added
        ({"conditions": [{"type": "ReconcileError", "status": "True", "reason": "X"}]}, True),
    ],
)
def test_a_recovered_job_clears_its_reconcile_error(status: dict[str, Any], cleared: bool) -> None:
    st = JobStatus.from_api(status)
    assert reconciled(st, NOW) is cleared
    cond = st.condition(s.COND_RECONCILE_ERROR)
    assert (cond is not None and cond.status == "False") is cleared


def test_a_condition_only_transition_keeps_the_rest_of_the_status() -> None:
    old = {"phase": "Running", "attempt": 2, "restarts": {}, "someFutureField": [1]}
    event = Event("Warning", s.R_SPEC_INVALID, "bad")
    cond = (s.COND_SPEC, False, s.R_SPEC_INVALID, "bad")
    t = condition_only(JOB, JobStatus.from_api(old), NOW, cond, event)
    assert t.events == [event] and t.old.to_api() == old
    assert {k: v for k, v in t.written.items() if k != "conditions"} == old
    assert [c["reason"] for c in t.written["conditions"]] == [s.R_SPEC_INVALID]


def test_between_reads_two_api_statuses() -> None:
    t = between(JOB, {"attempt": 1}, {"attempt": 2, "lostSteps": 5}, NOW)
    assert (t.old.attempt, t.new.attempt, t.new.lost_steps, t.now) == (1, 2, 5, NOW)


RUNNING: dict[str, Any] = {"phase": "Running", "attempt": 1, "launched": True}
PENDING_RESTART = {"attempt": 1, "cause": "Disrupted", "endedAt": "2026-01-01T00:00:00Z"}
CHECKPOINT = {"name": "ck-100", "step": 100, "attempt": 1}
CONDITION = {"type": "Running", "status": "True", "reason": "AllRunning", "message": "2 pods"}


@pytest.mark.parametrize(
    ("new", "books"),
    [
        (RUNNING, False),
        ({**RUNNING, "latestCheckpoint": CHECKPOINT}, False),  # progress, from the store
        ({**RUNNING, "conditions": [CONDITION]}, False),
        ({**RUNNING, "phase": "Pending"}, True),
        ({**RUNNING, "pendingRestart": PENDING_RESTART}, True),
        ({**RUNNING, "restarts": {"disrupted": 1, "total": 1}}, True),
        ({**RUNNING, "attempt": 2, "launched": False}, True),
        ({**RUNNING, "phase": "Succeeded"}, True),
    ],
)
def test_a_transition_that_moves_the_job_on_books(new: dict[str, Any], books: bool) -> None:
    """What the cycle decides on the API's pods, not only the watch's (one LIST)."""
    assert between(JOB, RUNNING, new, NOW).books is books
