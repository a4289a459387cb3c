"""JobStatus keeps the API's status as it is: read and written back, every field name
and value is the same (the CRD, the alerts and the cluster tests read them)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from lazarus_operator import accounting as acc
from lazarus_operator import status as s
from lazarus_operator.classify import DISRUPTION_CAUSES, Cause
from lazarus_operator.jobstatus import JobStatus, Stage, stage_of
from lazarus_operator.records import RESTART_KEYS, restart_key

from .test_decide import FAILURE_POLICY, FINISHED, LAUNCH, RESTART, RUNNING, Row, check
from .test_decide_props import statuses

pytestmark = pytest.mark.unit


def round_trip(status: dict[str, Any]) -> dict[str, Any]:
    return JobStatus.from_api(status).to_api()


@settings(max_examples=300, deadline=None)
@given(status=statuses)
def test_any_status_reads_back_as_it_was(status: dict[str, Any]) -> None:
    assert s.prune_none(round_trip(status)) == s.prune_none(status)


@pytest.mark.parametrize("row", [*LAUNCH, *RUNNING, *FAILURE_POLICY, *RESTART, *FINISHED], ids=str)
def test_every_status_the_core_writes_reads_back_as_it_was(row: Row) -> None:
    written = s.prune_none(check(row).status)
    assert s.prune_none(round_trip(written)) == written


def test_unknown_fields_are_kept() -> None:
    status = {"phase": "Running", "attempt": 1, "someFutureField": {"a": [1]}}
    assert round_trip(status) == status


@pytest.mark.parametrize(
    ("status", "suspend", "want"),
    [
        ({}, False, Stage.LAUNCHING),
        ({}, True, Stage.SUSPENDING),
        ({"phase": "Succeeded", "attempt": 1}, True, Stage.FINISHED),
        ({"phase": "Failed", "attempt": 2}, False, Stage.FINISHED),
        ({"phase": "Suspended", "attempt": 2}, False, Stage.LAUNCHING),
        ({"phase": "Suspended", "attempt": 2}, True, Stage.SUSPENDING),
        (
            {"phase": "Restarting", "attempt": 2, "pendingRestart": {"attempt": 2}},
            False,
            Stage.RESTARTING,
        ),
        ({"phase": "Running", "attempt": 2}, False, Stage.ACTIVE),
        ({"phase": "Pending", "attempt": 1, "launched": False}, False, Stage.ACTIVE),
    ],
)
def test_stage_of(status: dict[str, Any], suspend: bool, want: Stage) -> None:
    assert stage_of(JobStatus.from_api(status), suspend) == want


def test_counts_flags_and_lists_always_have_a_value() -> None:
    st = JobStatus.from_api({})
    assert (st.attempt, st.launched, st.lost_steps, st.lost_seconds) == (0, False, 0, 0.0)
    assert (st.failures_without_progress, st.consecutive_failures) == (0, 0)
    assert st.history == [] and st.conditions == [] and st.restarts.count(*Cause) == 0
    assert st.to_api() == {}  # nothing was read, nothing set: nothing written


@pytest.mark.parametrize(
    ("lost", "written"),
    [
        ((0, 0.0), {"lostSteps": 0, "lostSeconds": 0.0}),  # a first launch writes its zeros
        ((12, 3.25), {"lostSteps": 12, "lostSeconds": 3.25}),
    ],
)
def test_a_launch_writes_its_counts_even_at_zero(
    lost: tuple[int, float], written: dict[str, Any]
) -> None:
    st = JobStatus()
    st.start_attempt(1, "2026-01-01T00:00:00Z", lost)
    api = st.to_api()
    assert {k: api[k] for k in written} == written
    assert api["attempt"] == 1 and api["launched"] is False


@pytest.mark.parametrize(
    ("progress", "before", "after"),
    [
        (True, {}, {"failuresWithoutProgress": 0, "consecutiveFailures": 1}),
        (False, {}, {"failuresWithoutProgress": 1, "consecutiveFailures": 1}),
        (
            False,
            {"failuresWithoutProgress": 1, "consecutiveFailures": 3},
            {"failuresWithoutProgress": 2, "consecutiveFailures": 4},
        ),
    ],
)
def test_a_failure_counts_progress_and_the_streak(
    progress: bool, before: dict[str, int], after: dict[str, int]
) -> None:
    st = JobStatus.from_api(before)
    st.count_failure(progress=progress)
    assert st.to_api() == after


def test_restarts_are_keyed_by_cause_once() -> None:
    """The API's keys, the budgets' causes and the metrics' labels are one table."""
    st = JobStatus.from_api({"restarts": {"failed": 2, "nodeLost": 1, "total": 3}})
    assert st.restarts.count(Cause.FAILED, Cause.OOM_KILLED) == 2
    assert st.restarts.count(*DISRUPTION_CAUSES) == 1
    st.restarts.count_end(Cause.OOM_KILLED)
    st.restarts.count_relaunch()
    assert st.to_api()["restarts"] == {"failed": 2, "nodeLost": 1, "oomKilled": 1, "total": 4}
    assert tuple(RESTART_KEYS.values()) == acc.CAUSES
    assert [restart_key(c) for c in ("NodeLost", "OOMKilled", "PermanentError", None)] == [
        "nodeLost",
        "oomKilled",
        "failed",
        "failed",
    ]
