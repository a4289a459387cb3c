"""JobStatus keeps the API's status as it is: read and written back, every field name
and value is the same (the CRD, the alerts and the cluster tests read them)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from lazarus_operator import status as s
from lazarus_operator.jobstatus import JobStatus, Stage, stage_of

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
