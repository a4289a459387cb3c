"""A TrainingJob labelled for Kueue, as tables (issue 25.2/25.3): the Workload the
operator owns (one pod set of `replicas`, the requests, the priority and its value),
no pods until Kueue admits it (phase Queued, Kueue's reason), pods with the admitted
flavor's placement, an eviction ended as a disruption with Kueue's reason, the pods
stopped gracefully (the SIGTERM save) before the admission is cleared, a relaunch
once admitted again, and the quota handed back when the job finishes. Jobs without
the label never see any of it."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from lazarus_operator import kueueworkload as kw
from lazarus_operator import status as s
from lazarus_operator.decide import decide, needs_selection
from lazarus_operator.spec import parse_spec
from lazarus_operator.vocabulary import (
    CreatePod,
    CreateWorkload,
    Decision,
    DeletePod,
    Facts,
    PatchWorkload,
    PatchWorkloadStatus,
    RecordAttempt,
    Selection,
)

from .factories import NOW, iso, job_spec, pod
from .test_decide import JOB, NODES, ck, launched, running

pytestmark = pytest.mark.unit
REQUESTS = {"cpu": "2", "nvidia.com/gpu": "1"}
SPEC = job_spec(
    template={
        "spec": {
            "containers": [
                {"name": "trainer", "image": "train:1", "resources": {"requests": REQUESTS}}
            ],
            "tolerations": [{"key": "own", "operator": "Exists"}],
        }
    }
)
GPU_TAINT = {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
FLAVOR: dict[str, Any] = {"nodeLabels": {"pool": "a100"}, "tolerations": [GPU_TAINT]}
EARLIER = iso(NOW - timedelta(minutes=5))


def cond(ctype: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": EARLIER,
    }


def workload(*conds: dict[str, Any], admission: bool = False) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": list(conds)}
    if admission:
        status["admission"] = {
            "clusterQueue": "cq",
            "podSetAssignments": [
                {"name": "trainer", "flavors": {"cpu": "a100", "nvidia.com/gpu": "a100"}}
            ],
        }
    # the pod set SPEC builds (another one is replaced: test_queued_podset.py)
    spec = kw.build_workload(JOB, parse_spec(SPEC), "team-a", None)["spec"]
    return {"metadata": {"name": kw.workload_name(JOB)}, "spec": spec, "status": status}


PENDING_WL = workload(cond("QuotaReserved", "False", "Pending", "insufficient quota for cpu"))
ADMITTED_WL = workload(
    cond("QuotaReserved", "True", "QuotaReserved"),
    cond("Admitted", "True", "Admitted"),
    admission=True,
)
EVICTED_WL = workload(
    cond("QuotaReserved", "True", "QuotaReserved"),
    cond("Admitted", "True", "Admitted"),
    cond("Evicted", "True", "Preempted", "Preempted to accommodate a workload (UID: x)"),
    admission=True,
)
YIELDED_WL = workload(
    cond("QuotaReserved", "False", "Pending", "Preempted to accommodate a workload"),
    cond("Evicted", "True", "Preempted", "Preempted to accommodate a workload"),
    cond("Requeued", "True", "Preempted"),
)


def facts(
    status: dict[str, Any],
    pods: list[dict[str, Any]],
    wl: dict[str, Any] | None,
    *,
    queue: str | None = "team-a",
    selection: Selection | None = None,
    now: datetime = NOW,
    suspend: bool | None = None,
) -> Facts:
    q = None if queue is None else kw.QueueFacts(queue, wl, {"a100": FLAVOR}, ("high", 1000))
    spec = SPEC if suspend is None else {**SPEC, "suspend": suspend}
    f = Facts(JOB, parse_spec(spec), status, pods, NODES, now, queue=q)
    if needs_selection(f):
        assert selection is not None, "the decision wanted the store"
        f = replace(f, selection=selection)
    return f


def of(d: Decision, kind: type) -> list[Any]:
    return [a for a in d.actions if isinstance(a, kind)]


def queued_cond(d: Decision) -> tuple[str | None, str | None]:
    c = d.state.condition(s.COND_QUEUED)
    return (c.status, c.reason) if c else (None, None)


# --- the Workload ---------------------------------------------------------------------------
def test_the_workload_is_one_pod_set_of_the_replicas_with_their_requests_and_priority() -> None:
    wl = kw.build_workload(JOB, parse_spec(SPEC), "team-a", ("high", 1000))
    assert wl["apiVersion"] == "kueue.x-k8s.io/v1beta2" and wl["kind"] == "Workload"
    assert wl["metadata"]["name"] == "trainingjob-job-uid-1"
    assert wl["metadata"]["ownerReferences"][0]["uid"] == JOB.uid
    assert wl["metadata"]["ownerReferences"][0]["controller"] is True
    spec = wl["spec"]
    assert spec["queueName"] == "team-a"
    [ps] = spec["podSets"]
    assert (ps["name"], ps["count"]) == ("trainer", 2)
    assert ps["template"]["spec"]["containers"][0]["resources"]["requests"] == REQUESTS
    assert spec["priorityClassRef"]["name"] == "high" and spec["priority"] == 1000
    plain = kw.build_workload(JOB, parse_spec(SPEC), "team-a", None)["spec"]
    assert "priorityClassRef" not in plain and "priority" not in plain


@pytest.mark.parametrize(
    ("wl", "want"),
    [
        (None, kw.WorkloadState.MISSING),
        (workload(), kw.WorkloadState.QUEUED),
        (PENDING_WL, kw.WorkloadState.QUEUED),
        (
            workload(cond("QuotaReserved", "True", "QuotaReserved"), admission=True),
            kw.WorkloadState.QUEUED,
        ),  # quota reserved, admission checks not passed yet
        (ADMITTED_WL, kw.WorkloadState.ADMITTED),
        (EVICTED_WL, kw.WorkloadState.EVICTED),
        (YIELDED_WL, kw.WorkloadState.QUEUED),  # yielded: Evicted stays True until admitted
        (workload(cond("Finished", "True", "Succeeded")), kw.WorkloadState.FINISHED),
    ],
    ids=[
        "missing",
        "new",
        "no-quota",
        "reserved-only",
        "admitted",
        "evicted",
        "yielded",
        "finished",
    ],
)
def test_what_kueues_conditions_say(wl: dict[str, Any] | None, want: kw.WorkloadState) -> None:
    assert kw.state_of(wl) == want


# --- the gate, cycle by cycle ---------------------------------------------------------------
def test_a_new_queued_job_creates_its_workload_and_no_pods() -> None:
    d = decide(facts({}, [], None))
    [made] = of(d, CreateWorkload)
    assert made.manifest["spec"]["queueName"] == "team-a"
    assert not of(d, CreatePod) and not of(d, RecordAttempt)
    assert d.status["phase"] == s.QUEUED
    assert queued_cond(d) == ("True", "Pending")


def test_no_quota_stays_queued_with_kueues_reason() -> None:
    d = decide(facts({}, [], PENDING_WL))
    assert not of(d, CreateWorkload) and not of(d, CreatePod)
    assert d.status["phase"] == s.QUEUED
    c = d.state.condition(s.COND_QUEUED)
    assert c is not None and c.message == "insufficient quota for cpu"
    assert d.requeue_after is not None  # a fallback beside the Workload watch


def test_admitted_launches_with_the_flavors_placement() -> None:
    d = decide(facts({}, [], ADMITTED_WL, selection=Selection(None)))
    made = [a.manifest for a in of(d, CreatePod)]
    assert [m["metadata"]["name"] for m in made] == ["job-a1-0", "job-a1-1"]
    for m in made:
        assert m["spec"]["nodeSelector"] == {"pool": "a100"}
        assert m["spec"]["tolerations"] == [
            {"key": "own", "operator": "Exists"},
            GPU_TAINT,
        ]
    assert d.status["phase"] == s.PENDING
    assert queued_cond(d) == ("False", s.R_ADMITTED)


def test_evicted_while_running_is_a_disruption_that_stops_the_pods_gracefully() -> None:
    d = decide(facts(launched(), running(), EVICTED_WL))
    assert of(d, DeletePod) == [DeletePod("job-a1-0"), DeletePod("job-a1-1")]  # SIGTERM
    st = d.status
    assert st["restarts"]["disrupted"] == 1 and "failed" not in st["restarts"]
    assert st["pendingRestart"]["cause"] == "Disrupted"
    assert st["lastFailure"]["reason"] == "Preempted"
    assert not of(d, PatchWorkloadStatus)  # the quota stays Kueue's until the pods are gone
    assert queued_cond(d) == ("True", "Preempted")
    assert "failuresWithoutProgress" not in st


def test_once_the_pods_are_gone_the_admission_is_cleared_and_the_job_queued() -> None:
    ended = launched(
        phase=s.RESTARTING,
        pendingRestart={
            "attempt": 1,
            "cause": "Disrupted",
            "endedAt": EARLIER,
            "notBefore": EARLIER,
        },
    )
    stopping = [pod("job-a1-0", deleting=NOW), pod("job-a1-1", deleting=NOW)]
    d = decide(facts(ended, stopping, EVICTED_WL))
    assert not of(d, PatchWorkloadStatus) and not of(d, CreatePod)
    d = decide(facts(ended, [], EVICTED_WL))
    [patch] = of(d, PatchWorkloadStatus)
    status = patch.patch["status"]
    assert status["admission"] is None
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["QuotaReserved"]["status"] == "False"
    assert by_type["Admitted"]["status"] == "False"
    assert by_type["Requeued"]["status"] == "True"
    assert by_type["Evicted"]["reason"] == "Preempted"  # Kueue's own, kept
    assert not of(d, CreatePod) and d.status["phase"] == s.QUEUED
    assert d.status.get("restarts") == ended.get("restarts")


def test_readmitted_relaunches_from_the_preemption_checkpoint_with_nothing_lost() -> None:
    ended = launched(
        phase=s.QUEUED,
        latestCheckpoint={"name": ck(300).name, "step": 300, "attempt": 1},
        pendingRestart={
            "attempt": 1,
            "cause": "Disrupted",
            "endedAt": EARLIER,
            "notBefore": EARLIER,
            "lastStep": 300,
        },
        restarts={"disrupted": 1, "total": 1},
    )
    d = decide(facts(ended, [], ADMITTED_WL, selection=Selection(ck(300), next_attempt=2)))
    assert [a.manifest["metadata"]["name"] for a in of(d, CreatePod)] == ["job-a2-0", "job-a2-1"]
    assert of(d, RecordAttempt) == [RecordAttempt(2, ck(300).name, 300)]
    assert d.status["lostSteps"] == 0
    assert d.status["restarts"] == {"disrupted": 1, "total": 1}


def test_a_finished_job_hands_its_quota_back() -> None:
    done = [pod(f"job-a1-{i}", phase="Succeeded", exit_code=0) for i in range(2)]
    d = decide(facts(launched(), done, ADMITTED_WL))
    assert d.status["phase"] == s.SUCCEEDED
    [patch] = of(d, PatchWorkloadStatus)
    fin = [c for c in patch.patch["status"]["conditions"] if c["type"] == "Finished"]
    assert fin and fin[0]["status"] == "True" and fin[0]["reason"] == "Succeeded"
    d = decide(
        facts(
            {**launched(), "phase": s.SUCCEEDED},
            [],
            workload(cond("Finished", "True", "Succeeded")),
        )
    )
    assert not of(d, PatchWorkloadStatus)


def test_jobs_without_the_label_behave_as_before() -> None:
    labelled = decide(facts({}, [], None, queue=None, selection=Selection(None)))
    assert not of(labelled, CreateWorkload) and len(of(labelled, CreatePod)) == 2
    assert "nodeSelector" not in of(labelled, CreatePod)[0].manifest["spec"]
    assert labelled.state.condition(s.COND_QUEUED) is None


# --- PodsReady (Kueue's waitForPodsReady reads it) -----------------------------------------
def pods_ready(wl: dict[str, Any], d: Decision) -> tuple[str, str] | None:
    got = [
        c
        for a in of(d, PatchWorkloadStatus)
        for c in a.patch["status"]["conditions"]
        if c["type"] == "PodsReady"
    ]
    return (got[0]["status"], got[0]["reason"]) if got else None


@pytest.mark.parametrize(
    ("before", "status", "pods", "want"),
    [
        (None, {}, "none", ("False", "WaitForStart")),  # launching
        (cond("PodsReady", "False", "WaitForStart"), launched(phase=s.PENDING), "pending", None),
        (cond("PodsReady", "False", "WaitForStart"), launched(), "running", ("True", "Started")),
        (cond("PodsReady", "True", "Started"), launched(), "running", None),
        (cond("PodsReady", "True", "Started"), launched(), "crashed", ("False", "WaitForRecovery")),
        (
            cond("PodsReady", "False", "WaitForRecovery"),
            launched(),
            "running",
            ("True", "Recovered"),
        ),
    ],
    ids=["launch", "still-pending", "all-run", "unchanged", "a-pod-failed", "recovered"],
)
def test_the_workloads_pods_ready_follows_the_gang(
    before: dict[str, Any] | None, status: dict[str, Any], pods: str, want: Any
) -> None:
    wl = workload(*ADMITTED_WL["status"]["conditions"], *([before] if before else []))
    wl["status"]["admission"] = ADMITTED_WL["status"]["admission"]
    gang = {
        "pending": [pod(f"job-a1-{i}", phase="Pending", node_name=None) for i in range(2)],
        "running": running(),
        "crashed": [pod("job-a1-0", phase="Failed", exit_code=1), running()[1]],
    }.get(pods, [])
    d = decide(facts(status, gang, wl, selection=Selection(ck(100))))
    assert pods_ready(wl, d) == want


def test_yielding_resets_pods_ready_for_the_next_admission() -> None:
    wl = workload(*EVICTED_WL["status"]["conditions"], cond("PodsReady", "True", "Started"))
    wl["status"]["admission"] = EVICTED_WL["status"]["admission"]
    ended = launched(
        phase=s.RESTARTING,
        pendingRestart={
            "attempt": 1,
            "cause": "Disrupted",
            "endedAt": EARLIER,
            "notBefore": EARLIER,
        },
    )
    d = decide(facts(ended, [], wl))
    assert pods_ready(wl, d) == ("False", "WaitForStart")


# --- spec.suspend under Kueue ---------------------------------------------------------------
def test_suspend_deactivates_the_workload_and_yields_once_the_pods_are_gone() -> None:
    d = decide(facts(launched(), running(), ADMITTED_WL, suspend=True))
    assert {a.name for a in of(d, DeletePod)} == {"job-a1-0", "job-a1-1"}  # SIGTERM save
    assert of(d, PatchWorkload) == [
        PatchWorkload(kw.workload_name(JOB), {"spec": {"active": False}})
    ]
    assert not of(d, PatchWorkloadStatus) and d.status["phase"] == s.SUSPENDED
    assert "restarts" not in d.status  # a suspend is no restart

    deactivated = workload(
        *ADMITTED_WL["status"]["conditions"],
        cond("Evicted", "True", "Deactivated", "The workload is deactivated"),
        admission=True,
    )
    deactivated["spec"] = {"active": False}
    d = decide(
        facts(
            {**launched(), "phase": s.SUSPENDED},
            [],
            deactivated,
            suspend=True,
            selection=Selection(ck(100)),
        )
    )
    assert not of(d, PatchWorkload)
    [patch] = of(d, PatchWorkloadStatus)
    assert patch.patch["status"]["admission"] is None


def test_resume_activates_the_workload_and_waits_for_admission() -> None:
    inactive = {**YIELDED_WL, "spec": {**YIELDED_WL["spec"], "active": False}}
    d = decide(facts({**launched(), "phase": s.SUSPENDED}, [], inactive, suspend=False))
    assert of(d, PatchWorkload) == [
        PatchWorkload(kw.workload_name(JOB), {"spec": {"active": True}})
    ]
    assert not of(d, CreatePod) and not of(d, RecordAttempt)
    assert queued_cond(d)[0] == "True"
