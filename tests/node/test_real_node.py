"""The loop on a real node: kubelet, containerd and runc run the trainer's containers.

What the process kubelet only imitates is real here: SIGTERM through the
runtime, the grace period, exit codes and reasons (OOMKilled from a cgroup
memory limit), `terminationMessagePath`, the downward-API annotations file and
the DisruptionTarget condition the Eviction API sets.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from lazarus_devstack.operator_pod import OperatorPod
from lazarus_devstack.stack import Stack
from tests.node.conftest import (
    Job,
    RealNode,
    job_body,
    node_healthy,
    trainer_template,
)
from tests.operator.harness import OperatorProcess, wait_for

pytestmark = pytest.mark.e2e
STEPS = 60


def test_eviction_resumes_from_the_sigterm_checkpoint(
    real_node: RealNode, node_namespace: str, bucket_on_node: str, operator_in_pod: OperatorPod
) -> None:
    """Evicted through the Eviction API mid-training, the job resumes from the
    preemption checkpoint its trainer committed on SIGTERM: 0 lost steps. The
    operator runs in a pod, from its image, with the chart's RBAC only."""
    job = Job(real_node, node_namespace, "loop")
    template = trainer_template(["--steps", str(STEPS), "--step-sleep", "0.1"])
    job.create(job_body("loop", bucket_on_node, real_node, template))
    try:
        uri = f"s3://{bucket_on_node}/loop"
        wait_for(lambda: real_node.s3.committed_step(uri) is not None, 240, "a checkpoint")
        pod = "loop-a1-0"
        job.core.create_namespaced_pod_eviction(
            pod, node_namespace, client.V1Eviction(metadata=client.V1ObjectMeta(name=pod))
        )
        st = job.wait_finished(300)
    finally:
        print(job.pod_logs())
    assert st["phase"] == "Succeeded", st
    assert st["attempt"] == 2 and st["restarts"] == {"disrupted": 1, "total": 1}, st
    assert st["history"][0]["cause"] == "Disrupted", st["history"]
    assert st["history"][0]["reason"] == "EvictionByEvictionAPI", st["history"]
    assert st["lostSteps"] == 0
    operator_pods = operator_in_pod.pods()
    # No operator process runs in this test: the pod, under the chart's ServiceAccount, did it.
    assert operator_pods and all(
        p["spec"]["serviceAccountName"] == f"{operator_in_pod.release}-lazarus"
        and p["spec"]["containers"][0]["image"] == operator_in_pod.image
        for p in operator_pods
    ), operator_pods
    resumed = st["history"][1]["resumedFrom"]
    with real_node.s3.open_store(f"s3://{bucket_on_node}/loop") as store:
        assert store.read_manifest(resumed).reason == "preemption"
        final = store.latest_valid().chosen
        assert final is not None and final.step == STEPS and final.attempt == 2


def test_container_crash_is_classified_as_a_failure(
    real_node: RealNode, node_namespace: str, bucket_on_node: str, operator: OperatorProcess
) -> None:
    """A trainer that exits 3 on its own: Failed, with the runtime's exit code and reason."""
    job = Job(real_node, node_namespace, "crash")
    template = {
        "spec": {
            "containers": [
                {
                    "name": "trainer",
                    "image": "lazarus.local/base:bookworm",
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", "import sys; print('boom'); sys.exit(3)"],
                }
            ]
        }
    }
    job.create(
        job_body("crash", bucket_on_node, real_node, template, failurePolicy={"maxFailures": 0})
    )
    st = job.wait_finished(120)
    failure = st["lastFailure"]
    assert st["phase"] == "Failed", st
    assert failure["cause"] == "Failed" and failure["reason"] == "Error", failure
    assert failure["exitCode"] == 3 and failure["node"] == real_node.node.name, failure
    assert "boom" in job.core.read_namespaced_pod_log("crash-a1-0", node_namespace)


def test_memory_limit_is_classified_as_oom_killed(
    real_node: RealNode, node_namespace: str, bucket_on_node: str, operator: OperatorProcess
) -> None:
    """Past its cgroup memory limit the kernel kills the container; kubelet says
    OOMKilled and the operator charges it as such."""
    job = Job(real_node, node_namespace, "oom")
    hog = "import time; x = b'x' * (512 << 20); time.sleep(30)"
    limit = {"memory": "64Mi", "cpu": "500m"}
    template = {
        "spec": {
            "containers": [
                {
                    "name": "trainer",
                    "image": "lazarus.local/base:bookworm",
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", hog],
                    "resources": {"limits": limit, "requests": limit},
                }
            ]
        }
    }
    job.create(
        job_body("oom", bucket_on_node, real_node, template, failurePolicy={"maxFailures": 0})
    )
    st = job.wait_finished(120)
    failure = st["lastFailure"]
    assert st["phase"] == "Failed", st
    assert failure["cause"] == "OOMKilled" and failure["reason"] == "OOMKilled", failure
    assert failure["exitCode"] == 137, failure


def test_disruption_taint_triggers_checkpoint_now(
    real_node: RealNode, node_namespace: str, bucket_on_node: str, operator: OperatorProcess
) -> None:
    """A disruption notice on the node (a karpenter taint): the operator annotates the
    pod, kubelet refreshes the downward-API file, the trainer saves at once."""
    job = Job(real_node, node_namespace, "notice")
    # No periodic saves within the run: the only checkpoint before the end is the requested one.
    template = trainer_template(["--steps", "400", "--step-sleep", "0.1"])
    body = job_body("notice", bucket_on_node, real_node, template)
    body["spec"]["checkpoint"]["save"] = {"everySteps": 100000}
    job.create(body)
    taint = {"key": "karpenter.sh/disrupted", "value": "1", "effect": "NoSchedule"}
    name = real_node.node.name
    try:
        # The trainer ignores a request already there when it starts: wait until it trains.
        wait_for(lambda: "starting fresh" in job.log("notice-a1-0"), 240, "the trainer training")
        time.sleep(2)
        job.core.patch_node(name, {"spec": {"taints": [taint]}})
        wait_for(lambda: (job.status().get("latestCheckpoint") or {}).get("step"), 120, "a ckpt")
        st = job.status()
    finally:
        job.core.patch_node(name, {"spec": {"taints": None}})
        print(job.pod_logs())
    with real_node.s3.open_store(f"s3://{bucket_on_node}/notice") as store:
        chosen = store.latest_valid().chosen
        assert chosen is not None and store.read_manifest(chosen.name).reason == "requested"
    assert st["phase"] == "Running" and st["attempt"] == 1, st


def test_node_loss_is_classified_as_node_lost_and_the_job_resumes(
    real_node: RealNode, node_namespace: str, bucket_on_node: str, operator: OperatorProcess
) -> None:
    """kubelet stops: its heartbeats stop, the node-lifecycle controller marks the node
    unreachable, and after `nodeLossTimeoutSeconds` the operator ends the attempt as
    NodeLost and launches the next one (Pending: the only node is gone). kubelet
    returns: the node is Ready a few seconds before the controller lifts its NoExecute
    taint, and the pod bound in that window runs on; the job resumes and finishes
    after exactly one relaunch."""
    job = Job(real_node, node_namespace, "lost")
    template = trainer_template(["--steps", "400", "--step-sleep", "0.1"])
    job.create(job_body("lost", bucket_on_node, real_node, template, nodeLossTimeoutSeconds=5))
    stack = Stack(real_node.run_dir, tied=True)
    stopped = False
    try:
        wait_for(lambda: (job.status().get("latestCheckpoint") or {}).get("step"), 240, "a ckpt")
        stack.stop_component("kubelet")
        stopped = True
        wait_for(lambda: job.status().get("attempt") == 2, 120, "the attempt ended as NodeLost")
        stack.start_component("kubelet")
        stopped = False
        wait_for(lambda: job.status().get("phase") == "Succeeded", 300, "the job Succeeded")
        st = job.status()
    finally:
        if stopped:
            stack.start_component("kubelet")
        # The next test needs the node back: Ready, and its taints cleared.
        wait_for(lambda: node_healthy(job.core, real_node.node.name), 120, "the node back")
        print(job.pod_logs())
    failure = st["lastFailure"]
    assert failure["cause"] == "NodeLost" and failure["reason"] == "NodeLost", failure
    assert failure["node"] == real_node.node.name and failure["attempt"] == 1, failure
    assert st["history"][0]["cause"] == "NodeLost", st["history"]
    assert st["restarts"]["nodeLost"] == 1, st
    assert st["restarts"]["total"] == 1 and st["attempt"] == 2, st
