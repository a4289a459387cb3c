"""The operator against the real API server and a real S3 server. The tests play
kubelet (FakeKubelet): bind pods, set their status, confirm or withhold
graceful deletions, delete nodes, add taints."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from lazarus_contract import ANNOTATION_CHECKPOINT_NOW

from .conftest import Jobs
from .harness import FakeKubelet, OperatorProcess, wait_for

pytestmark = pytest.mark.cluster
T = 30  # generous deadline for anything that should take a second or two


def names(k: FakeKubelet, job: str, attempt: int | None = None) -> list[str]:
    pods = k.pods(job)
    return sorted(
        p["metadata"]["name"]
        for p in pods
        if attempt is None or p["metadata"]["labels"]["lazarus.dev/attempt"] == str(attempt)
    )


def running(jobs: Jobs, k: FakeKubelet, job: str, attempt: int, replicas: int = 2) -> None:
    """Wait until attempt N's pods all run (bound and Running by the fake kubelet)."""
    want = [f"{job}-a{attempt}-{i}" for i in range(replicas)]
    wait_for(
        lambda: all((p := k.pod(n)) and p["status"].get("phase") == "Running" for n in want),
        T,
        f"{want} running",
    )
    jobs.wait(
        job, lambda s: s.get("phase") == "Running" and s.get("attempt") == attempt, T, "Running"
    )


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def reasons(jobs: Jobs, job: str) -> list[str]:
    return [e["reason"] for e in jobs.events(job)]


def test_launch_creates_service_and_pods_per_contract(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = "launch"
    [ck] = jobs.create_with_checkpoints(job, [(100, 1)], processesPerPod=4)
    running(jobs, kubelet, job, 1)
    pod = kubelet.pod(f"{job}-a1-1")
    assert pod is not None
    env = env_of(pod)
    assert env["LAZARUS_ATTEMPT"] == "1" and env["LAZARUS_RESUME_FROM"] == ck
    assert env["PET_NODE_RANK"] == "1" and env["WORLD_SIZE"] == "8"
    assert env["PET_MASTER_ADDR"] == f"{job}-a1-0.{job}.{jobs.ns}.svc"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 5
    owner = pod["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "TrainingJob" and owner["uid"] == jobs.get(job)["metadata"]["uid"]
    svc = jobs.core.read_namespaced_service(job, jobs.ns)
    assert svc.spec.cluster_ip == "None"
    st = jobs.status(job)
    assert st["resumedFrom"]["name"] == ck and st["resumedFrom"]["step"] == 100
    # fencing: the attempt is in the log
    assert [r.attempt for r in jobs.store(job).attempts()] == [1]
    meta = jobs.get(job)["metadata"]
    assert "lazarus.dev/finalizer" not in meta.get("finalizers", [])  # only to delete checkpoints
    assert not [a for a in meta.get("annotations", {}) if a.startswith("kopf.zalando.org")]


def test_recreated_job_continues_the_roots_attempts_and_lineage(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    """Delete + re-apply on the same root (how users change a spec) must not be
    fenced out by the old job's attempts, nor resume outside their lineage."""
    job = "again"
    store = jobs.store(job)
    store.record_attempt(1, None, -1)  # records from before records named their job
    jobs.seed(job, 50, 1, uid="old")
    jobs.seed(job, 90, 1, uid="old")  # committed after the old operator chose 50: a dead branch
    store.record_attempt(2, "step-000000000050-a0001", 50)
    newest = jobs.seed(job, 80, 2, uid="old")
    jobs.create(job)
    running(jobs, kubelet, job, 3)
    pod = kubelet.pod(f"{job}-a3-0")
    assert pod is not None
    env = env_of(pod)
    assert env["LAZARUS_ATTEMPT"] == "3" and env["LAZARUS_RESUME_FROM"] == newest
    assert [r.attempt for r in store.attempts()] == [1, 2, 3]
    assert jobs.status(job)["resumedFrom"]["step"] == 80


def test_gang_restart_after_failure_waits_out_the_backoff(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = jobs.create(failurePolicy={"backoff": {"initialSeconds": 2, "maxSeconds": 4}})
    running(jobs, kubelet, job, 1)
    t0 = time.monotonic()
    kubelet.terminate(f"{job}-a1-1", 1, message={"v": 1, "outcome": "error", "message": "boom"})
    running(jobs, kubelet, job, 2)
    first_seen = min(kubelet.created_at[n] for n in names(kubelet, job, 2))
    assert first_seen - t0 >= 2.0, "relaunched before the backoff elapsed"
    assert names(kubelet, job, 1) == []  # the rest of the gang was deleted
    st = jobs.status(job)
    assert st["restarts"] == {"failed": 1, "total": 1}
    assert st["lastFailure"]["pod"] == f"{job}-a1-1" and st["lastFailure"]["exitCode"] == 1
    assert st["lastFailure"]["message"] == "boom"
    assert [h["attempt"] for h in st["history"]] == [1, 2] and st["history"][0]["cause"] == "Failed"
    assert "RestartFailed" in reasons(jobs, job) and "Launched" in reasons(jobs, job)


def test_preemptions_spare_the_failure_budget_which_then_runs_out(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = jobs.create(failurePolicy={"maxFailures": 1})
    running(jobs, kubelet, job, 1)
    for attempt in (1, 2, 3):
        kubelet.terminate(f"{job}-a{attempt}-0", 137, disruption="PreemptionByScheduler")
        running(jobs, kubelet, job, attempt + 1)
    kubelet.terminate(f"{job}-a4-0", 1)
    running(jobs, kubelet, job, 5)
    kubelet.terminate(f"{job}-a5-1", 2)
    st = jobs.wait(job, lambda s: s.get("phase") == "Failed", T, "Failed")
    # The failure that ended the job is counted by cause, but it is no relaunch.
    assert st["restarts"] == {"disrupted": 3, "failed": 2, "total": 4}
    cond = jobs.condition(job, "Failed")
    assert cond is not None and cond["reason"] == "BackoffLimitExceeded"
    wait_for(lambda: names(kubelet, job) == [], T, "pods of the failed job gone")


def test_crash_loop_without_progress_fails_fast(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = jobs.create(
        failurePolicy={
            "maxFailures": 50,
            "maxFailuresWithoutProgress": 2,
            "backoff": {"initialSeconds": 0.2, "maxSeconds": 1},
        }
    )
    running(jobs, kubelet, job, 1)
    kubelet.terminate(f"{job}-a1-0", 1)
    running(jobs, kubelet, job, 2)
    kubelet.terminate(f"{job}-a2-0", 1)
    st = jobs.wait(job, lambda s: s.get("phase") == "Failed", T, "Failed")
    cond = jobs.condition(job, "Failed")
    assert cond is not None and cond["reason"] == "NoProgress"
    assert st["attempt"] == 2 and st["restarts"]["failed"] == 2


def test_progress_between_failures_keeps_the_job_going(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = jobs.create(
        failurePolicy={
            "maxFailuresWithoutProgress": 1,
            "backoff": {"initialSeconds": 0.2, "maxSeconds": 1},
        }
    )
    running(jobs, kubelet, job, 1)
    ck = jobs.seed(job, 50, 1)  # attempt 1 committed a checkpoint before crashing
    kubelet.terminate(f"{job}-a1-0", 1, message={"v": 1, "outcome": "error", "step": 70})
    running(jobs, kubelet, job, 2)
    st = jobs.status(job)
    assert st["resumedFrom"]["name"] == ck and st["lostSteps"] == 20
    kubelet.terminate(f"{job}-a2-0", 1)  # no progress this time: fails at once
    jobs.wait(job, lambda s: s.get("phase") == "Failed", T, "Failed")


def test_resume_skips_a_corrupt_newest_checkpoint(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = "corrupt"
    jobs.create(job, suspend=True)
    good = jobs.seed(job, 100, 1)
    bad = jobs.seed(job, 200, 1, corrupt=True)
    jobs.patch_spec(job, {"suspend": False})
    running(jobs, kubelet, job, 1)
    pod = kubelet.pod(f"{job}-a1-0")
    assert pod is not None and env_of(pod)["LAZARUS_RESUME_FROM"] == good
    skipped = [e["message"] for e in jobs.events(job) if e["reason"] == "CheckpointSkipped"]
    assert any(bad in m for m in skipped), skipped


@pytest.mark.parametrize("loss", ["NotReady", "deleted"])
def test_node_loss_relaunches_within_the_node_loss_timeout(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess, loss: str
) -> None:
    """One timeout, not two: no kubelet will confirm a lost node's pods, so they are
    force-deleted at once instead of waiting out stuckTerminatingTimeoutSeconds."""
    timeout = 3
    job = jobs.create(
        gracePeriodSeconds=60,
        nodeLossTimeoutSeconds=timeout,
        stuckTerminatingTimeoutSeconds=600,
    )
    running(jobs, kubelet, job, 1)
    pod = kubelet.pod(f"{job}-a1-0")
    assert pod is not None
    node = pod["spec"]["nodeName"]
    kubelet.unresponsive.add(node)  # its kubelet is gone: nothing confirms deletions there
    t0 = time.monotonic()
    if loss == "deleted":
        jobs.core.delete_node(node)
    else:
        kubelet.set_node_ready(node, "Unknown")
    running(jobs, kubelet, job, 2)
    relaunched = min(kubelet.created_at[n] for n in names(kubelet, job, 2)) - t0
    if loss == "NotReady":
        # The API's condition times have whole seconds: up to 1 s early is the clock.
        assert relaunched >= timeout - 1, "relaunched before the node-loss timeout"
    assert relaunched <= timeout + 10, f"relaunch took {relaunched:.1f}s"
    st = jobs.status(job)
    assert st["lastFailure"]["cause"] == "NodeLost" and st["lastFailure"]["node"] == node
    assert st["restarts"] == {"nodeLost": 1, "total": 1}
    # The gang's other pod, on a live node, ended without a step (the fake trainer takes
    # none): nothing was lost, and that is known, not estimated (the lost node's own
    # silence is estimated only when no trainer's end is heard: test_lostwork).
    lost = st["history"][-1]
    assert lost["lostSteps"] == 0 and lost["lostEstimated"] is False, lost
    assert kubelet.pod(f"{job}-a1-0") is None  # force-deleted, not waiting 60 s of grace


def test_pod_stuck_terminating_on_unresponsive_kubelet(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = jobs.create(gracePeriodSeconds=2)
    running(jobs, kubelet, job, 1)
    pod = kubelet.pod(f"{job}-a1-0")
    assert pod is not None
    kubelet.unresponsive.add(pod["spec"]["nodeName"])  # Ready, but never confirms
    kubelet.terminate(f"{job}-a1-1", 1)
    stuck = wait_for(
        lambda: (p := kubelet.pod(f"{job}-a1-0")) and p["metadata"].get("deletionTimestamp") and p,
        T,
        "a1-0 Terminating",
    )
    assert stuck
    running(jobs, kubelet, job, 2)
    assert kubelet.pod(f"{job}-a1-0") is None


def test_checkpoint_now_on_a_node_announcing_termination(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = jobs.create()
    running(jobs, kubelet, job, 1)
    pod = kubelet.pod(f"{job}-a1-0")
    assert pod is not None
    kubelet.taint_node(pod["spec"]["nodeName"], "ToBeDeletedByClusterAutoscaler")
    wait_for(
        lambda: (
            ANNOTATION_CHECKPOINT_NOW
            in ((kubelet.pod(f"{job}-a1-0") or {})["metadata"].get("annotations") or {})
        ),
        T,
        "checkpoint-now annotation",
    )
    other = kubelet.pod(f"{job}-a1-1")
    assert other is not None
    assert ANNOTATION_CHECKPOINT_NOW not in (other["metadata"].get("annotations") or {})
    assert "CheckpointRequested" in reasons(jobs, job)


def test_suspend_stops_the_pods_and_resume_continues_from_the_newest_checkpoint(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = jobs.create()
    running(jobs, kubelet, job, 1)
    jobs.patch_spec(job, {"suspend": True})
    jobs.wait(
        job,
        lambda s: (
            s.get("phase") == "Suspended"
            and any(
                c["type"] == "Suspended" and c["reason"] == "Suspended" for c in s["conditions"]
            )
        ),
        T,
        "Suspended",
    )
    assert names(kubelet, job) == []
    ck = jobs.seed(job, 300, 1)  # the save the trainer made on SIGTERM
    jobs.patch_spec(job, {"suspend": False})
    running(jobs, kubelet, job, 2)
    st = jobs.status(job)
    assert st["resumedFrom"]["name"] == ck and "restarts" not in st


def test_delete_removes_pods_and_keeps_checkpoints(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = "deleted"
    [ck] = jobs.create_with_checkpoints(job, [(10, 1)])
    running(jobs, kubelet, job, 1)
    jobs.delete(job)
    wait_for(lambda: names(kubelet, job) == [], T, "pods gone")

    last: dict[str, Any] = {}

    def gone() -> bool:
        try:
            last.update(jobs.get(job)["metadata"])
        except client.ApiException as err:
            return bool(err.status == 404)
        return False

    try:
        wait_for(lambda: jobs.gone(job), T, "job gone (finalizer released)")
    except AssertionError as err:
        raise AssertionError(f"{err}; metadata: {last}") from None
    assert [c.name for c in jobs.store(job).list_checkpoints()] == [ck]


def test_delete_with_delete_on_job_delete_removes_checkpoints_first(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = "purged"
    jobs.create_with_checkpoints(job, [(10, 1)], checkpoint={"deleteOnJobDelete": True})
    running(jobs, kubelet, job, 1)
    wait_for(
        lambda: "lazarus.dev/finalizer" in jobs.get(job)["metadata"].get("finalizers", []),
        T,
        "our finalizer",
    )
    jobs.delete(job)

    wait_for(lambda: jobs.gone(job), T, "job gone")
    assert jobs.store(job).list_checkpoints() == []


def test_missing_secret_waits_with_a_condition_then_launches(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = jobs.create(checkpoint={"secretRef": {"name": "later"}})
    jobs.wait(
        job,
        lambda s: any(
            c["type"] == "StorageReady" and c["reason"] == "SecretNotFound"
            for c in s.get("conditions", [])
        ),
        T,
        "SecretNotFound",
    )
    wait_for(lambda: "SecretNotFound" in reasons(jobs, job), T, "SecretNotFound event")
    assert names(kubelet, job) == []
    secret = jobs.core.read_namespaced_secret("s3-creds", jobs.ns)
    jobs.core.create_namespaced_secret(
        jobs.ns, {"metadata": {"name": "later"}, "data": secret.data}
    )
    running(jobs, kubelet, job, 1)
    cond = jobs.condition(job, "StorageReady")
    assert cond is not None and cond["status"] == "True"


def test_secret_without_keys_unreachable_endpoint_and_missing_bucket_surface(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    jobs.core.create_namespaced_secret(jobs.ns, {"metadata": {"name": "empty"}, "data": {}})
    a = jobs.create(checkpoint={"secretRef": {"name": "empty"}})
    b = jobs.create(checkpoint={"endpoint": "http://127.0.0.1:9"})
    c = jobs.create(checkpoint={"uri": "s3://no-such-bucket-here/x"})
    for job, reason in (
        (a, "SecretKeyMissing"),
        (b, "StorageUnavailable"),
        (c, "BucketMissing"),
    ):

        def surfaced(st: dict[str, Any], r: str = reason) -> bool:
            conds = st.get("conditions", [])
            return any(c["type"] == "StorageReady" and c["reason"] == r for c in conds)

        jobs.wait(job, surfaced, 60, reason)
        assert jobs.status(job).get("phase") != "Failed" and names(kubelet, job) == []


def test_operator_killed_mid_restart_restarts_once(
    jobs: Jobs,
    kubelet: FakeKubelet,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    first = start_operator()
    job = jobs.create(failurePolicy={"backoff": {"initialSeconds": 3, "maxSeconds": 3}})
    running(jobs, kubelet, job, 1)
    kubelet.terminate(f"{job}-a1-0", 1)
    jobs.wait(job, lambda s: s.get("phase") == "Restarting", T, "Restarting")
    # Kill it in the backoff, once the restart is announced (events follow the
    # status write, so a kill right after "Restarting" could also drop the event).
    wait_for(lambda: "RestartFailed" in reasons(jobs, job), T, "RestartFailed event")
    first.kill()
    start_operator()
    running(jobs, kubelet, job, 2)
    time.sleep(2)  # let a buggy second restart show itself
    st = jobs.status(job)
    assert st["attempt"] == 2 and st["restarts"] == {"failed": 1, "total": 1}
    assert names(kubelet, job) == [f"{job}-a2-0", f"{job}-a2-1"]
    assert [r.attempt for r in jobs.store(job).attempts()] == [1, 2]
    assert reasons(jobs, job).count("RestartFailed") == 1


def test_two_replicas_act_once(
    jobs: Jobs, kubelet: FakeKubelet, start_operator: Callable[..., OperatorProcess]
) -> None:
    a = start_operator("--peering", "--peering-lifetime", "10")
    b = start_operator("--peering", "--peering-lifetime", "10")
    custom = client.CustomObjectsApi(jobs.custom.api_client)

    def peers() -> int:
        try:
            obj = custom.get_namespaced_custom_object(
                "kopf.dev", "v1", jobs.ns, "kopfpeerings", "lazarus"
            )
        except client.ApiException:
            return 0
        return len(obj.get("status") or {})

    wait_for(lambda: peers() == 2, 2 * T, "both replicas registered as peers")
    assert a.proc.poll() is None and b.proc.poll() is None
    job = jobs.create()
    running(jobs, kubelet, job, 1)
    kubelet.terminate(f"{job}-a1-0", 137, disruption="EvictionByEvictionAPI")
    running(jobs, kubelet, job, 2)
    time.sleep(2)
    st = jobs.status(job)
    assert st["attempt"] == 2 and st["restarts"] == {"disrupted": 1, "total": 1}
    assert reasons(jobs, job).count("Launched") == 2
    assert reasons(jobs, job).count("RestartDisrupted") == 1
