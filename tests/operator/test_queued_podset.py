"""A spec change of a Kueue job's pod set (replicas or requests), as tables: Kueue's pod
sets are immutable once admitted, so the Workload is replaced at the next attempt
boundary (a launch or relaunch, or while not admitted), Finished first (its quota
handed on), then a new one of the new pod set queued, as Kueue does with an edited
Job. A running attempt keeps the Workload it was admitted under."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from lazarus_operator import kueueworkload as kw
from lazarus_operator import status as s
from lazarus_operator.builders import JobRef
from lazarus_operator.decide import decide
from lazarus_operator.queued import R_REPLACED
from lazarus_operator.spec import parse_spec
from lazarus_operator.vocabulary import (
    CreatePod,
    CreateWorkload,
    Decision,
    DeletePod,
    Facts,
    PatchWorkloadStatus,
    Selection,
)

from .factories import pod
from .test_decide import JOB, ck, launched, running
from .test_queued import ADMITTED_WL, EARLIER, PENDING_WL, SPEC, cond, facts, of, queued_cond

pytestmark = pytest.mark.unit
OWNER = {"ownerReferences": [{"uid": JOB.uid}]}


def named(wl: dict[str, Any], n: int = 0, *, replicas: int = 2, cpu: str = "2") -> dict[str, Any]:
    """`wl` as the job's n-th Workload, of a pod set of `replicas` x `cpu`."""
    changed = copy.deepcopy({**SPEC, "replicas": replicas})
    changed["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = cpu
    spec = parse_spec(changed)
    body = kw.build_workload(JOB, spec, "team-a", None, kw.workload_name(JOB, n))["spec"]
    meta = {"name": kw.workload_name(JOB, n), **OWNER}
    return {**wl, "metadata": meta, "spec": body}


def with_workloads(f: Facts, *every: dict[str, Any]) -> Facts:
    assert f.queue is not None
    return replace(f, queue=replace(f.queue, workloads=every))


@pytest.mark.parametrize(
    ("replicas", "cpu", "same"),
    [(2, "2", True), (3, "2", False), (2, "4", False), (1, "1", False)],
)
def test_a_pod_set_matches_the_spec_by_replicas_and_requests(
    replicas: int, cpu: str, same: bool
) -> None:
    wl = named(PENDING_WL, replicas=replicas, cpu=cpu)
    assert kw.matches(wl, parse_spec(SPEC)) is same


FINISHED = cond("Finished", "True", "Replaced")


@pytest.mark.parametrize(
    ("every", "current", "following"),
    [
        ((), None, kw.workload_name(JOB)),
        ((named(PENDING_WL),), kw.workload_name(JOB), kw.workload_name(JOB, 1)),
        # replaced once: the new one is the job's, the old one Finished
        (
            (named(PENDING_WL, 1), named(ADMITTED_WL) | {"status": {"conditions": [FINISHED]}}),
            kw.workload_name(JOB, 1),
            kw.workload_name(JOB, 2),
        ),
        # none live (a create after the hand-back failed): the newest, Finished
        ((named({"status": {"conditions": [FINISHED]}}, 1),), kw.workload_name(JOB, 1), None),
        # a deleted job's of the same name: not this job's
        (({**named(PENDING_WL), "metadata": {"name": kw.workload_name(JOB)}},), None, None),
    ],
)
def test_the_jobs_current_workload_and_the_next_name(
    every: tuple[dict[str, Any], ...], current: str | None, following: str | None
) -> None:
    got = kw.current(every, JOB)
    assert (None if got is None else kw.name_of(got)) == current
    if following is not None:
        assert kw.next_name(every, JOB) == following
    other = JobRef(JOB.name, JOB.namespace, "uid-2")
    assert kw.current(every, other) is None


def replaced(d: Decision, old: str, new: str, replicas: int = 2) -> None:
    """The old Workload Finished first, then the new one created; the job Queued."""
    finish, create = [a for a in d.actions if isinstance(a, PatchWorkloadStatus | CreateWorkload)]
    assert isinstance(finish, PatchWorkloadStatus) and finish.name == old
    by_type = {c["type"]: c for c in finish.patch["status"]["conditions"]}
    assert (by_type["Finished"]["status"], by_type["Finished"]["reason"]) == ("True", "Replaced")
    assert isinstance(create, CreateWorkload)
    assert create.manifest["metadata"]["name"] == new
    [ps] = create.manifest["spec"]["podSets"]
    assert ps["count"] == replicas
    assert create.manifest["spec"]["priority"] == 1000  # the class's value, as at first
    assert queued_cond(d) == ("True", R_REPLACED)
    assert [e.reason for e in d.events] == [R_REPLACED]
    assert not of(d, CreatePod)


def test_a_queued_workload_of_another_pod_set_is_replaced_at_once() -> None:
    old = named(PENDING_WL, replicas=3)
    d = decide(with_workloads(facts({}, [], old), old))
    replaced(d, kw.workload_name(JOB), kw.workload_name(JOB, 1))
    assert d.status["phase"] == s.QUEUED


def test_a_running_attempt_keeps_the_workload_it_was_admitted_under() -> None:
    old = named(ADMITTED_WL, cpu="1")
    d = decide(with_workloads(facts(launched(), running(), old), old))
    assert not of(d, CreateWorkload) and not of(d, DeletePod)
    assert not [a for a in of(d, PatchWorkloadStatus) if "Finished" in str(a.patch)]
    assert d.status["phase"] == s.RUNNING


def test_a_restart_stops_the_old_gang_then_replaces_the_admitted_workload() -> None:
    ended = launched(
        phase=s.RESTARTING,
        pendingRestart={"attempt": 1, "cause": "Failed", "endedAt": EARLIER, "notBefore": EARLIER},
        restarts={"failed": 1, "total": 1},
    )
    old = named(ADMITTED_WL, cpu="1")
    stopping = [pod("job-a1-0", exit_code=1), pod("job-a1-1")]
    d = decide(with_workloads(facts(ended, stopping, old), old))
    assert of(d, DeletePod) and not of(d, CreateWorkload) and not of(d, CreatePod)
    d = decide(with_workloads(facts(ended, [], old), old))
    replaced(d, kw.workload_name(JOB), kw.workload_name(JOB, 1))
    assert d.status["restarts"] == {"failed": 1, "total": 1}  # no restart of its own


def test_the_replacement_once_admitted_relaunches_as_the_restart_would() -> None:
    ended = launched(
        phase=s.QUEUED,
        latestCheckpoint={"name": ck(300).name, "step": 300, "attempt": 1},
        pendingRestart={"attempt": 1, "cause": "Failed", "endedAt": EARLIER, "notBefore": EARLIER},
        restarts={"failed": 1, "total": 1},
    )
    old = named(ADMITTED_WL, cpu="1") | {"status": {"conditions": [FINISHED]}}
    new = named(ADMITTED_WL, 1)
    f = facts(ended, [], new, selection=Selection(ck(300), next_attempt=2))
    d = decide(with_workloads(f, old, new))
    assert [a.manifest["metadata"]["name"] for a in of(d, CreatePod)] == ["job-a2-0", "job-a2-1"]
    assert not of(d, CreateWorkload)


def test_a_resume_with_a_changed_pod_set_queues_a_new_workload() -> None:
    yielded = named({"status": {"conditions": []}, "spec": {}}, replicas=4)
    yielded["spec"]["active"] = False
    d = decide(with_workloads(facts({**launched(), "phase": s.SUSPENDED}, [], yielded), yielded))
    replaced(d, kw.workload_name(JOB), kw.workload_name(JOB, 1))
    # Queued; the admission of the new one launches attempt 2 (test_queued_resume.py)
    assert d.status["phase"] == s.QUEUED and d.status["resumePending"] is True


def test_no_live_workload_gets_the_next_one() -> None:
    gone = named({"status": {"conditions": [FINISHED]}}, 1)
    d = decide(with_workloads(facts(launched(), [], gone), gone))
    [create] = of(d, CreateWorkload)
    assert create.manifest["metadata"]["name"] == kw.workload_name(JOB, 2)
