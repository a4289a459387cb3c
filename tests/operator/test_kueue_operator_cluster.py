"""TrainingJobs under the real Kueue v0.17 (issue 25.2): the operator owns one Workload
per labelled job, launches only once Kueue admits it, with the flavor's node labels,
and hands the quota back when the job finishes. Two jobs in one LocalQueue whose
quota fits one: the second is Queued (Kueue's reason) until the first succeeds, then
runs and succeeds. A higher-priority job preempts a running lower-priority one: the
low one's restart is a disruption with Kueue's reason, its pods stop gracefully (the
SIGTERM save) before Kueue gets the quota back, it waits Queued, and resumes from its
checkpoint when admitted again, with nothing lost.

Kueue's webhooks see every Pod and Job, so these tests run on a stack of their own
(conftest's `kueue_stack`): `cluster` is overridden here for the operator fixtures."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ControlPlane

from .conftest import Jobs, KueueStack, priority_classes, queued_job
from .harness import FakeKubelet, OperatorProcess, api_requests, requests_between, wait_for

pytestmark = pytest.mark.cluster
POOL = {"lazarus.dev/pool": "train"}


@pytest.fixture(scope="module")
def cluster(kueue_stack: KueueStack) -> ControlPlane:
    return kueue_stack.cluster


def queued(st: dict[str, Any]) -> str:
    """The message of the job's Queued=True condition, lower case ("" if none)."""
    conds = st.get("conditions") or []
    return next(
        (c["message"].lower() for c in conds if c["type"] == "Queued" and c["status"] == "True"), ""
    )


def test_two_jobs_one_quota_the_second_waits_queued_then_runs(
    jobs: Jobs,
    kubelet: FakeKubelet,
    namespace: str,
    operator: OperatorProcess,
    kueue_stack: KueueStack,
) -> None:
    kueue_stack.queues(namespace, node_labels=POOL)
    api = kueue_stack.cluster.api_client()
    before = api_requests(api)
    first = queued_job(jobs, "first", "1")  # 2 replicas x 1 cpu: the whole quota
    jobs.wait(first, lambda st: st.get("phase") == "Running", 60, "admitted and running")
    second = queued_job(jobs, "second", "1")
    # Queued at once, then Kueue's reason once it has looked at the Workload.
    held = jobs.wait(second, lambda st: "insufficient" in queued(st), 60, "Queued, no quota")
    assert held["phase"] == "Queued"
    assert not kubelet.pods(second)
    # One Workload per job, owned by it: one pod set of the replicas with their requests.
    mine = {
        w["metadata"]["ownerReferences"][0]["name"]: w for w in kueue_stack.workloads(namespace)
    }
    [ps] = mine[first]["spec"]["podSets"]
    assert ps["count"] == 2
    assert ps["template"]["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1"}
    # The admitted flavor's node labels are in the pods.
    for p in kubelet.pods(first):
        assert p["spec"]["nodeSelector"] == POOL

    for p in kubelet.pods(first):
        kubelet.terminate(p["metadata"]["name"], 0)
    jobs.wait(first, lambda st: st.get("phase") == "Succeeded", 60, "Succeeded")
    # Its Workload is Finished: Kueue hands the quota to the second job.
    ran = jobs.wait(second, lambda st: st.get("phase") == "Running", 60, "admitted once freed")
    admitted = next(c for c in ran["conditions"] if c["type"] == "Queued")
    assert (admitted["status"], admitted["reason"]) == ("False", "Admitted")
    wait_for(lambda: len(kubelet.pods(second)) == 2, 30, "the second job's two pods")
    for p in kubelet.pods(second):
        kubelet.terminate(p["metadata"]["name"], 0)
    done = jobs.wait(second, lambda st: st.get("phase") == "Succeeded", 60, "Succeeded")
    assert done["attempt"] == 1 and not done.get("restarts")
    # Every cycle read the Workloads from the operator's watch (workloadview), none by GET.
    served = requests_between(before, api_requests(api))
    assert served.get(("GET", "workloads"), 0) == 0, served
    assert served.get(("POST", "workloads"), 0) == 2, served  # each created once


def test_a_higher_priority_job_preempts_a_running_one_which_yields_then_resumes(
    jobs: Jobs,
    kubelet: FakeKubelet,
    namespace: str,
    operator: OperatorProcess,
    kueue_stack: KueueStack,
) -> None:
    kueue_stack.queues(namespace, extra=priority_classes(namespace, low=10, high=100))
    low = queued_job(jobs, "low", "1", priority=f"low-{namespace}")
    jobs.wait(low, lambda st: st.get("phase") == "Running", 60, "admitted and running")
    saved = jobs.seed(low, 40, 1)  # what its trainers committed (their SIGTERM save)

    high = queued_job(jobs, "high", "1", priority=f"high-{namespace}")
    ended = jobs.wait(
        low, lambda st: (st.get("restarts") or {}).get("disrupted") == 1, 60, "preempted"
    )
    assert ended["lastFailure"]["reason"] == "Preempted", ended["lastFailure"]
    assert "failed" not in ended["restarts"]
    jobs.wait(low, lambda st: st.get("phase") == "Queued", 60, "Queued after yielding")
    jobs.wait(high, lambda st: st.get("phase") == "Running", 60, "the high one running")
    # Kueue gave the quota to the high one only after the low one's pods were gone.
    assert not kubelet.pods(low)

    for p in kubelet.pods(high):
        kubelet.terminate(p["metadata"]["name"], 0)
    jobs.wait(high, lambda st: st.get("phase") == "Succeeded", 60, "the high one Succeeded")
    back = jobs.wait(
        low,
        lambda st: st.get("attempt") == 2 and st.get("phase") == "Running",
        60,
        "the low one re-admitted and running again",
    )
    assert back["resumedFrom"]["name"] == saved
    wait_for(lambda: len(kubelet.pods(low)) == 2, 30, "attempt 2's pods")
    for p in kubelet.pods(low):
        kubelet.terminate(p["metadata"]["name"], 0)
    done = jobs.wait(low, lambda st: st.get("phase") == "Succeeded", 60, "Succeeded")
    assert done["restarts"] == {"disrupted": 1, "total": 1}
    assert done["lostSteps"] == 0


def test_a_suspended_job_gives_its_quota_back_and_queues_again_on_resume(
    jobs: Jobs,
    kubelet: FakeKubelet,
    namespace: str,
    operator: OperatorProcess,
    kueue_stack: KueueStack,
) -> None:
    kueue_stack.queues(namespace)
    paused = queued_job(jobs, "paused", "1")
    jobs.wait(paused, lambda st: st.get("phase") == "Running", 60, "admitted and running")
    other = queued_job(jobs, "other", "1")
    jobs.wait(other, lambda st: st.get("phase") == "Queued", 60, "Queued behind it")

    jobs.patch_spec(paused, {"suspend": True})
    jobs.wait(paused, lambda st: st.get("phase") == "Suspended", 60, "Suspended")
    # Its pods stopped (the SIGTERM save), then its Workload yielded: the other runs.
    jobs.wait(other, lambda st: st.get("phase") == "Running", 60, "the other admitted")
    assert not kubelet.pods(paused)

    jobs.patch_spec(paused, {"suspend": False})
    held = jobs.wait(
        paused,
        lambda st: any(
            c["type"] == "Queued" and c["status"] == "True" for c in st.get("conditions") or []
        ),
        60,
        "resumed, waiting for the quota",
    )
    assert held.get("attempt") == 1 and not kubelet.pods(paused)
    # Waiting says Queued, not Suspended; the record of the relaunch is in resumePending.
    assert held["phase"] == "Queued" and held.get("resumePending") is True
    for p in kubelet.pods(other):
        kubelet.terminate(p["metadata"]["name"], 0)
    jobs.wait(other, lambda st: st.get("phase") == "Succeeded", 60, "the other Succeeded")
    jobs.wait(
        paused,
        lambda st: st.get("attempt") == 2 and st.get("phase") == "Running",
        60,
        "re-admitted: attempt 2 running",
    )
    wait_for(lambda: len(kubelet.pods(paused)) == 2, 30, "attempt 2's pods")
    for p in kubelet.pods(paused):
        kubelet.terminate(p["metadata"]["name"], 0)
    done = jobs.wait(paused, lambda st: st.get("phase") == "Succeeded", 60, "Succeeded")
    assert not (done.get("restarts") or {}).get("disrupted")  # a suspend is no restart


TRAINER = {"name": "trainer", "image": "trainer:test", "command": ["train"]}


def by_name(stack: KueueStack, ns: str) -> dict[str, dict[str, Any]]:
    return {w["metadata"]["name"]: w for w in stack.workloads(ns)}


def finished(wl: dict[str, Any]) -> str | None:
    """The reason of the Workload's Finished=True condition."""
    conds = (wl.get("status") or {}).get("conditions") or []
    return next(
        (c["reason"] for c in conds if c["type"] == "Finished" and c["status"] == "True"), None
    )


def test_a_changed_pod_set_replaces_the_workload_at_the_next_attempt(
    jobs: Jobs,
    kubelet: FakeKubelet,
    namespace: str,
    operator: OperatorProcess,
    kueue_stack: KueueStack,
) -> None:
    kueue_stack.queues(namespace)  # cpu 2
    job = queued_job(jobs, "resized", "1")  # 2 replicas x 1 cpu
    jobs.wait(job, lambda st: st.get("phase") == "Running", 60, "admitted and running")
    [first] = by_name(kueue_stack, namespace)

    # 2 x 1.5 cpu is more than the queue has. The running attempt goes on under the
    # Workload it was admitted with (Kueue's pod sets are immutable once admitted).
    bigger = {**TRAINER, "resources": {"requests": {"cpu": "1500m"}}}
    jobs.patch_spec(job, {"template": {"spec": {"containers": [bigger]}}})
    jobs.wait(job, lambda st: st.get("observedGeneration") == 2, 30, "the change seen")
    assert list(by_name(kueue_stack, namespace)) == [first]
    assert len(kubelet.pods(job)) == 2 and jobs.status(job)["phase"] == "Running"

    # The attempt ends: the boundary. The old Workload is Finished (its quota handed
    # on), a new one of the new requests queues, and Kueue says it does not fit.
    kubelet.terminate(kubelet.pods(job)[0]["metadata"]["name"], 1)
    jobs.wait(job, lambda st: "insufficient" in queued(st), 60, "requeued, no quota for 3 cpu")
    wls = by_name(kueue_stack, namespace)
    assert finished(wls[first]) == "Replaced", wls[first]
    [grown] = [w for n, w in wls.items() if n != first]
    [ps] = grown["spec"]["podSets"]
    assert ps["template"]["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1500m"}
    assert finished(grown) is None
    wait_for(lambda: not kubelet.pods(job), 30, "the old gang gone")

    # One pod while queued: replaced at once, admitted (1.5 cpu fits), relaunched.
    jobs.patch_spec(job, {"replicas": 1})
    ran = jobs.wait(
        job, lambda st: st.get("phase") == "Running" and st.get("attempt") == 2, 60, "attempt 2"
    )
    assert ran["restarts"] == {"failed": 1, "total": 1}
    wait_for(lambda: len(kubelet.pods(job)) == 1, 30, "attempt 2's one pod")
    wls = by_name(kueue_stack, namespace)
    assert len(wls) == 3 and finished(wls[grown["metadata"]["name"]]) == "Replaced"
    for p in kubelet.pods(job):
        kubelet.terminate(p["metadata"]["name"], 0)
    jobs.wait(job, lambda st: st.get("phase") == "Succeeded", 60, "Succeeded")
    live = [w for w in by_name(kueue_stack, namespace).values() if finished(w) != "Replaced"]
    assert [w["spec"]["podSets"][0]["count"] for w in live] == [1]
    wait_for(
        lambda: (
            finished(by_name(kueue_stack, namespace)[live[0]["metadata"]["name"]]) == "Succeeded"
        ),
        30,
        "handed back",
    )


def test_a_deleted_running_job_holds_its_quota_until_its_pods_are_gone(
    jobs: Jobs,
    kubelet: FakeKubelet,
    namespace: str,
    operator: OperatorProcess,
    kueue_stack: KueueStack,
) -> None:
    kueue_stack.queues(namespace)
    first = queued_job(jobs, "first", "1")
    jobs.wait(first, lambda st: st.get("phase") == "Running", 60, "admitted and running")
    second = queued_job(jobs, "second", "1")
    jobs.wait(second, lambda st: st.get("phase") == "Queued", 60, "Queued behind it")

    def first_wl() -> dict[str, Any] | None:
        return next(
            (
                w
                for w in kueue_stack.workloads(namespace)
                if w["metadata"]["labels"].get("lazarus.dev/job") == first
            ),
            None,
        )

    kubelet.unresponsive = set(kubelet.nodes)  # its trainers take their time to save
    jobs.delete(first)
    wait_for(
        lambda: (
            len(kubelet.pods(first)) == 2
            and all(p["metadata"].get("deletionTimestamp") for p in kubelet.pods(first))
        ),
        30,
        "its pods terminating",
    )
    # Deleted with the job, the Workload stays while the pods do, and with it the quota.
    held = wait_for(
        lambda: (w := first_wl()) and w["metadata"].get("deletionTimestamp") and w,
        30,
        "the Workload being deleted, held by Kueue's finalizer",
    )
    assert held["metadata"]["finalizers"] == ["kueue.x-k8s.io/resource-in-use"]
    assert jobs.status(second).get("phase") == "Queued" and not kubelet.pods(second)

    kubelet.unresponsive.clear()  # the pods go: the Workload goes, the quota with it
    wait_for(lambda: first_wl() is None, 30, "the Workload gone")
    jobs.wait(second, lambda st: st.get("phase") == "Running", 60, "the second admitted")
