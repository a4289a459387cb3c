"""The decision core, one scenario per test: facts in, actions and status out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from lazarus_contract import ANNOTATION_CHECKPOINT_NOW
from lazarus_operator import status as s
from lazarus_operator.builders import JobRef
from lazarus_operator.decide import decide, needs_selection
from lazarus_operator.spec import parse_spec
from lazarus_operator.vocabulary import (
    AnnotatePod,
    Checkpoint,
    CreatePod,
    CreateService,
    Decision,
    DeleteJob,
    DeletePod,
    Event,
    Facts,
    RecordAttempt,
    Selection,
    StorageProblem,
)

from .factories import NOW, disruption, job_spec, node, pod

pytestmark = pytest.mark.unit
JOB = JobRef("job", "ns", "uid-1")
NODES = {"n1": node("n1"), "n2": node("n2")}


def ck(step: int, attempt: int = 1) -> Checkpoint:
    name = f"step-{step:012d}-a{attempt:04d}"
    return Checkpoint(name, step, attempt, f"s3://bucket/job/{name}")


def run(
    status: dict[str, Any],
    pods: list[dict[str, Any]],
    *,
    spec: dict[str, Any] | None = None,
    selection: Selection | None = None,
    problem: StorageProblem | None = None,
    now: datetime = NOW,
    nodes: dict[str, dict[str, Any]] | None = None,
) -> Decision:
    """One cycle as the cycle runs it: the store's answer if the decision needs it, then
    one decision."""
    facts = Facts(
        JOB, parse_spec(spec or job_spec()), status, pods, NODES if nodes is None else nodes, now
    )
    if needs_selection(facts):
        assert selection is not None or problem is not None, "decision wanted the store"
        facts = Facts(facts.job, facts.spec, status, pods, facts.nodes, now, selection, problem)
    return decide(facts)


def of(d: Decision, kind: type) -> list[Any]:
    return [a for a in d.actions if isinstance(a, kind)]


def running(attempt: int = 1, n: int = 2) -> list[dict[str, Any]]:
    return [pod(f"job-a{attempt}-{i}", attempt, node_name=f"n{i + 1}") for i in range(n)]


def launched(attempt: int = 1, resume_step: int = -1, **extra: Any) -> dict[str, Any]:
    st: dict[str, Any] = {
        "phase": s.RUNNING,
        "attempt": attempt,
        "launched": True,
        "resumedFrom": {"value": "", "name": None, "step": resume_step},
        "history": [{"attempt": attempt}],
    }
    st.update(extra)
    return st


def test_first_cycle_asks_the_store_then_launches_attempt_1() -> None:
    d = run({}, [], selection=Selection(None))
    assert [type(a) for a in d.actions[:4]] == [RecordAttempt, CreateService, CreatePod, CreatePod]
    assert of(d, RecordAttempt) == [RecordAttempt(1, None, -1)]
    assert [p.manifest["metadata"]["name"] for p in of(d, CreatePod)] == ["job-a1-0", "job-a1-1"]
    assert d.status["attempt"] == 1 and d.status["phase"] == s.PENDING


def test_first_launch_continues_the_attempt_numbers_already_on_the_root() -> None:
    d = run({}, [], selection=Selection(ck(200), (), next_attempt=4))
    assert of(d, RecordAttempt) == [RecordAttempt(4, "step-000000000200-a0001", 200)]
    assert [p.manifest["metadata"]["name"] for p in of(d, CreatePod)] == ["job-a4-0", "job-a4-1"]
    assert d.status["attempt"] == 4


@pytest.mark.parametrize(("root_next", "launched_as"), [(3, 3), (9, 9), (0, 3)])
def test_later_launches_go_above_every_attempt_the_root_recorded(
    root_next: int, launched_as: int
) -> None:
    """Attempt numbers are unique per root: if another job on the same root took 3..8,
    this job's next attempt is 9, so the two never write the same checkpoint names."""
    st = launched(attempt=2)
    st["pendingRestart"] = {"attempt": 2, "cause": "Failed", "notBefore": "2026-01-01T12:00:00Z"}
    d = run(st, [], selection=Selection(ck(200), (), next_attempt=root_next))
    assert of(d, RecordAttempt) == [RecordAttempt(launched_as, "step-000000000200-a0001", 200)]


def test_a_filesystem_root_is_delegated_to_the_trainer() -> None:
    spec = job_spec(checkpoint={"uri": "/mnt/ckpt/job"})
    d = run({}, [], spec=spec, selection=Selection(None, (), 0, delegated=True))
    env = {
        e["name"]: e.get("value")
        for e in of(d, CreatePod)[0].manifest["spec"]["containers"][0]["env"]
    }
    assert env["LAZARUS_RESUME_FROM"] == "auto" and env["LAZARUS_ATTEMPT"] == "1"
    assert of(d, RecordAttempt) == [], "the operator cannot write the pods' volume"
    cond = s.get_condition(d.status, s.COND_STORAGE)
    assert cond is not None and cond["reason"] == s.R_STORAGE_DELEGATED


def test_launch_resumes_from_the_chosen_checkpoint_and_reports_skipped() -> None:
    sel = Selection(ck(200), (("step-000000000300-a0001", "missing object shard-0"),))
    d = run({}, [], selection=sel)
    env = {
        e["name"]: e.get("value")
        for e in of(d, CreatePod)[0].manifest["spec"]["containers"][0]["env"]
    }
    assert env["LAZARUS_RESUME_FROM"] == "step-000000000200-a0001"
    assert of(d, RecordAttempt) == [RecordAttempt(1, "step-000000000200-a0001", 200)]
    assert any(e.reason == "CheckpointSkipped" and "shard-0" in e.message for e in of(d, Event))


def test_resume_none_starts_fresh_even_with_checkpoints() -> None:
    spec = job_spec(checkpoint={"uri": "s3://bucket/job", "resume": "none"})
    d = run({}, [], spec=spec, selection=Selection(ck(200)))
    env = {
        e["name"]: e.get("value")
        for e in of(d, CreatePod)[0].manifest["spec"]["containers"][0]["env"]
    }
    assert env["LAZARUS_RESUME_FROM"] == ""


def test_storage_problem_waits_with_condition_and_event() -> None:
    problem = StorageProblem(s.R_SECRET_NOT_FOUND, "Secret ns/creds not found")
    d = run({}, [], problem=problem)
    assert not of(d, CreatePod) and d.requeue_after is not None
    cond = s.get_condition(d.status, s.COND_STORAGE)
    assert cond is not None and cond["status"] == "False" and cond["reason"] == s.R_SECRET_NOT_FOUND
    assert [e.reason for e in of(d, Event)] == [s.R_SECRET_NOT_FOUND]


def test_partial_launch_creates_only_missing_pods() -> None:
    st = launched()
    st["launched"] = False
    d = run(st, running(n=1))
    assert [p.manifest["metadata"]["name"] for p in of(d, CreatePod)] == ["job-a1-1"]
    assert of(d, RecordAttempt)  # the fence record is idempotent; repeat it


def test_all_running_is_running_and_changes_nothing_else() -> None:
    d = run(launched(), running())
    assert d.status["phase"] == s.RUNNING and not of(d, CreatePod) and not of(d, DeletePod)


def test_failure_ends_the_attempt_deletes_the_gang_and_backs_off() -> None:
    pods = running()
    pods[1] = pod("job-a1-1", 1, phase="Failed", exit_code=1, node_name="n2")
    d = run(launched(), pods, selection=Selection(ck(100)))
    assert d.status["phase"] == s.RESTARTING
    assert d.status["restarts"] == {"failed": 1, "total": 1}
    assert d.status["lastFailure"]["pod"] == "job-a1-1" and d.status["lastFailure"]["exitCode"] == 1
    assert {a.name for a in of(d, DeletePod)} == {"job-a1-0", "job-a1-1"}
    assert d.requeue_after == 10.0
    assert any(e.reason == "RestartFailed" for e in of(d, Event))


def test_backoff_then_relaunch_with_lost_steps() -> None:
    st = launched(resume_step=100)
    st["latestCheckpoint"] = {"name": "x", "step": 300}
    st["pendingRestart"] = {
        "attempt": 1,
        "cause": "Failed",
        "notBefore": "2026-01-01T12:00:10Z",
        "lastStep": 350,
    }
    early = run(st, [], now=NOW + timedelta(seconds=5))
    assert not of(early, CreatePod) and early.requeue_after == pytest.approx(5.0)
    d = run(st, [], now=NOW + timedelta(seconds=10), selection=Selection(ck(300)))
    assert d.status["attempt"] == 2 and "pendingRestart" not in d.status
    assert [p.manifest["metadata"]["name"] for p in of(d, CreatePod)] == ["job-a2-0", "job-a2-1"]
    assert d.status["lostSteps"] == 50
    assert d.status["resumedFrom"]["step"] == 300


def test_relaunch_waits_for_old_pods_to_go() -> None:
    st = launched()
    st["pendingRestart"] = {"attempt": 1, "cause": "Disrupted", "notBefore": "2026-01-01T12:00:00Z"}
    old = [pod("job-a1-0", 1, deleting=NOW + timedelta(seconds=30))]
    d = run(st, old)
    assert not of(d, CreatePod) and not of(d, DeletePod)


def test_preemption_relaunches_at_once_and_spares_the_failure_budget() -> None:
    pods = running()
    pods[0] = pod(
        "job-a1-0", 1, phase="Failed", exit_code=137, conditions=disruption("PreemptionByScheduler")
    )
    d = run(launched(), pods)  # no store call needed for a disruption
    assert d.status["restarts"] == {"disrupted": 1, "total": 1}
    assert d.requeue_after is None or d.requeue_after >= 1  # only the teardown timer
    assert d.status["pendingRestart"]["notBefore"].startswith("2026-01-01T12:00:00.000")


def test_failure_budget_exhausted_fails_the_job() -> None:
    st = launched(restarts={"failed": 3, "total": 3})
    pods = [pod("job-a1-0", 1, phase="Failed", exit_code=1), *running()[1:]]
    d = run(st, pods, selection=Selection(ck(500)))
    assert d.status["phase"] == s.FAILED
    cond = s.get_condition(d.status, s.COND_FAILED)
    assert cond is not None and cond["reason"] == s.R_BACKOFF_LIMIT
    assert {a.name for a in of(d, DeletePod)} == {"job-a1-0", "job-a1-1"}


def test_preemption_budget_when_set() -> None:
    spec = job_spec(failurePolicy={"maxPreemptions": 1})
    st = launched(restarts={"disrupted": 1, "total": 1})
    pods = [pod("job-a1-0", 1, phase="Failed", exit_code=75), *running()[1:]]
    d = run(st, pods, spec=spec)
    cond = s.get_condition(d.status, s.COND_FAILED)
    assert (
        d.status["phase"] == s.FAILED
        and cond is not None
        and cond["reason"] == s.R_PREEMPTION_LIMIT
    )


def test_crash_loop_without_progress_fails_fast() -> None:
    spec = job_spec(failurePolicy={"maxFailures": 100, "maxFailuresWithoutProgress": 2})
    st = launched(resume_step=100, failuresWithoutProgress=1, consecutiveFailures=1)
    pods = [pod("job-a1-0", 1, phase="Failed", exit_code=1), *running()[1:]]
    d = run(st, pods, spec=spec, selection=Selection(ck(100)))
    cond = s.get_condition(d.status, s.COND_FAILED)
    assert cond is not None and cond["reason"] == s.R_NO_PROGRESS


def test_failure_after_progress_resets_the_streak() -> None:
    spec = job_spec(failurePolicy={"maxFailures": 100, "maxFailuresWithoutProgress": 2})
    st = launched(resume_step=100, failuresWithoutProgress=1, consecutiveFailures=4)
    pods = [pod("job-a1-0", 1, phase="Failed", exit_code=1), *running()[1:]]
    d = run(st, pods, spec=spec, selection=Selection(ck(150)))
    assert d.status["phase"] == s.RESTARTING and d.status["failuresWithoutProgress"] == 0
    assert d.requeue_after == 10.0  # backoff restarts from its initial delay


def test_permanent_error_fails_without_retry() -> None:
    pods = [pod("job-a1-0", 1, phase="Failed", exit_code=78), *running()[1:]]
    d = run(launched(), pods)
    cond = s.get_condition(d.status, s.COND_FAILED)
    assert cond is not None and cond["reason"] == s.R_PERMANENT
    assert "pendingRestart" not in d.status


def test_all_pods_completed_succeeds() -> None:
    pods = [pod(f"job-a1-{i}", 1, phase="Succeeded", exit_code=0) for i in range(2)]
    d = run(launched(), pods)
    assert d.status["phase"] == s.SUCCEEDED and not of(d, DeletePod)


def test_one_completed_one_running_keeps_running() -> None:
    pods = [pod("job-a1-0", 1, phase="Succeeded", exit_code=0), running()[1]]
    d = run(launched(), pods)
    assert d.status["phase"] in (s.RUNNING, s.PENDING)


def test_vanished_pod_is_a_disruption() -> None:
    d = run(launched(), running(n=1))
    assert d.status["lastFailure"]["reason"] == "PodDeleted"


def test_node_lost_ends_attempt() -> None:
    nodes = {"n1": node("n1", ready="Unknown", since=NOW - timedelta(seconds=30)), "n2": node("n2")}
    d = run(launched(), running(), nodes=nodes)
    assert d.status["lastFailure"]["cause"] == "NodeLost"
    assert d.status["restarts"] == {"nodeLost": 1, "total": 1}


def test_stuck_terminating_on_lost_node_is_force_deleted_after_timeout() -> None:
    st = launched()
    st["pendingRestart"] = {"attempt": 1, "cause": "NodeLost", "notBefore": "2026-01-01T12:00:00Z"}
    # deletion requested 16 s ago with a 30 s grace: on a lost node, the grace is moot
    p = pod("job-a1-0", 1, deleting=NOW + timedelta(seconds=14), grace=30)
    nodes = {"n1": node("n1", ready="Unknown", since=NOW - timedelta(seconds=60))}
    d = run(st, [p], nodes=nodes)
    assert of(d, DeletePod) == [DeletePod("job-a1-0", force=True)]
    healthy = run(st, [p])
    assert not of(healthy, DeletePod)  # a healthy kubelet still has its grace period


def test_stuck_terminating_on_healthy_node_is_forced_after_grace_plus_timeout() -> None:
    st = launched()
    st["pendingRestart"] = {"attempt": 1, "cause": "Failed", "notBefore": "2026-01-01T12:00:00Z"}
    p = pod("job-a1-0", 1, deleting=NOW - timedelta(seconds=16))
    assert of(run(st, [p]), DeletePod) == [DeletePod("job-a1-0", force=True)]


def test_disruption_taint_requests_checkpoint_once() -> None:
    taint = {"key": "ToBeDeletedByClusterAutoscaler", "value": "1", "effect": "NoSchedule"}
    nodes = {"n1": node("n1", taints=[taint]), "n2": node("n2")}
    d = run(launched(), running(), nodes=nodes)
    ann = of(d, AnnotatePod)
    assert [a.name for a in ann] == ["job-a1-0"] and ANNOTATION_CHECKPOINT_NOW in ann[0].annotations
    pods = running()
    pods[0]["metadata"]["annotations"].update(ann[0].annotations)
    assert not of(run(launched(), pods, nodes=nodes), AnnotatePod)


def test_suspend_stops_pods_then_resume_launches_next_attempt() -> None:
    spec = job_spec(suspend=True)
    d = run(launched(), running(), spec=spec)
    assert {a.name for a in of(d, DeletePod)} == {"job-a1-0", "job-a1-1"}
    cond = s.get_condition(d.status, s.COND_SUSPENDED)
    assert (
        d.status["phase"] == s.SUSPENDED and cond is not None and cond["reason"] == s.R_SUSPENDING
    )
    # Pods gone: the store is asked once, so status names the suspend-time save.
    d2 = run(d.status, [], spec=spec, selection=Selection(ck(400)))
    cond = s.get_condition(d2.status, s.COND_SUSPENDED)
    assert cond is not None and cond["reason"] == s.R_SUSPENDED and not of(d2, CreatePod)
    assert d2.status["latestCheckpoint"]["step"] == 400
    assert not needs_selection(Facts(JOB, parse_spec(spec), d2.status, [], NODES, NOW))
    d3 = run(d2.status, [], selection=Selection(ck(400)))
    assert d3.status["attempt"] == 2 and d3.status["resumedFrom"]["step"] == 400
    assert "restarts" not in d3.status  # a suspend is not a restart


def test_ttl_after_finished_deletes_the_job() -> None:
    spec = job_spec(ttlSecondsAfterFinished=60)
    st = {"phase": s.SUCCEEDED, "attempt": 1, "finishedAt": "2026-01-01T11:58:00Z"}
    assert of(run(st, [], spec=spec), DeleteJob)
    st["finishedAt"] = "2026-01-01T11:59:30Z"
    d = run(st, [], spec=spec)
    assert not of(d, DeleteJob) and d.requeue_after == pytest.approx(30.0)


def test_status_unchanged_means_no_write() -> None:
    first = run(launched(), running())
    again = run(first.status, running())
    assert s.status_patch(first.status, again.status) is None
