"""What the watches keep of an object is enough for the decision core: a pod's
projection classifies as the full pod does; a Node heartbeat changes no essence."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from lazarus_operator.classify import classify
from lazarus_operator.watched import (
    asks_for_cycle,
    node_essence,
    overdue,
    slim_pod,
    vanished,
)

from .factories import NOW, node, pod

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "p",
    [
        pod(),
        pod(exit_code=1),
        pod(exit_code=137, reason="OOMKilled"),
        pod(phase="Failed", status_reason="Evicted", exit_code=143),
        pod(deleting=NOW - timedelta(seconds=60), grace=5),
        pod(node_name=None, phase="Pending"),
    ],
)
def test_a_pods_projection_classifies_as_the_pod(p: dict[str, object]) -> None:
    full = {**p, "spec": {**p["spec"], "env": [{"name": "X", "value": "1"}]}}  # type: ignore[dict-item]
    for n in (node(), None, node(ready="False", since=NOW - timedelta(minutes=5))):
        kw = {"now": NOW, "node_loss_timeout_s": 20, "permanent_exit_codes": frozenset({3})}
        assert classify(slim_pod(full), n, **kw) == classify(full, n, **kw)  # type: ignore[arg-type]
    assert "env" not in str(slim_pod(full)["spec"])


def test_a_heartbeat_is_no_change_but_readiness_and_taints_are() -> None:
    a, b = node(), node()
    b["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T12:00:10Z"
    assert node_essence(a) == node_essence(b)
    assert node_essence(a) != node_essence(node(ready="False"))
    assert node_essence(a) != node_essence(node(taints=[{"key": "k", "effect": "NoSchedule"}]))


@pytest.mark.parametrize(
    ("deleting", "expected"),
    [
        (None, False),  # not being deleted
        (NOW + timedelta(seconds=30), False),  # within its grace period
        (NOW - timedelta(seconds=2), False),  # just past it: the watch may be a moment behind
        (NOW - timedelta(seconds=60), True),  # long past: stuck, or gone unreported; LIST it
    ],
)
def test_a_pod_held_past_its_deletion_deadline_is_overdue(
    deleting: datetime | None, expected: bool
) -> None:
    assert overdue(pod(deleting=deleting), NOW) is expected


def _listed(*uids: str) -> list[dict[str, object]]:
    return [{"metadata": {"uid": u}} for u in uids]


A, B = ("ns", "a"), ("ns", "b")


@pytest.mark.parametrize(
    ("held", "listed", "expected"),
    [
        ({A: {"1", "2"}}, _listed("1", "2"), {}),  # the index and the API agree
        ({A: {"1", "2"}}, _listed("1"), {A: {"2"}}),  # deleted while the watch was away
        ({A: {"1"}, B: {"2"}}, _listed(), {A: {"1"}, B: {"2"}}),  # every pod gone
        ({A: {"1"}}, _listed("1", "3"), {}),  # newer than the index: not ours to judge
        ({A: set()}, _listed(), {}),
        ({}, _listed("1"), {}),
    ],
)
def test_a_pod_the_index_held_before_a_list_that_lacks_it_is_gone(
    held: dict[tuple[str, str], set[str]],
    listed: list[dict[str, object]],
    expected: dict[tuple[str, str], set[str]],
) -> None:
    assert vanished(held, listed) == expected


def _job(generation: int, observed: int | None) -> dict[str, object]:
    status = {} if observed is None else {"observedGeneration": observed}
    return {"metadata": {"generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("job", "known", "expected"),
    [
        (_job(1, None), False, True),  # created
        (_job(3, 3), False, True),  # listed at start: every job gets a cycle
        (_job(1, None), True, True),  # not decided on yet
        (_job(2, 1), True, True),  # the spec changed
        (_job(2, 2), True, False),  # the echo of our own status write
    ],
)
def test_a_job_event_asks_for_a_cycle_for_a_new_job_or_a_new_spec(
    job: dict[str, object], known: bool, expected: bool
) -> None:
    assert asks_for_cycle(job, known) is expected
