"""Bad settings and refused pods are surfaced once, in status and one event, and
retried with backoff: never a tight loop with empty status (issue 8, item 5/8)."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from .conftest import Jobs
from .harness import FakeKubelet, OperatorProcess, wait_for
from .test_operator import T, names, reasons, running

pytestmark = pytest.mark.cluster

RESTRICTED = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
}
HARDENED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsUser": 1000,
}


def test_an_endpoint_that_is_not_s3_is_a_storage_condition_not_a_crash_loop(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess, not_s3_endpoint: str
) -> None:
    job = jobs.create(checkpoint={"endpoint": not_s3_endpoint})
    cond = wait_for(
        lambda: (c := jobs.condition(job, "StorageReady")) and c["status"] == "False" and c,
        T,
        "StorageReady=False",
    )
    assert "does not answer as an S3 server" in cond["message"], cond
    time.sleep(3)
    assert names(kubelet, job) == [] and "Traceback" not in operator.log()


def test_a_metadata_endpoint_is_refused_within_a_cycle(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = jobs.create(checkpoint={"endpoint": "http://169.254.169.254"})
    cond = wait_for(
        lambda: (c := jobs.condition(job, "StorageReady")) and c["status"] == "False" and c,
        T,
        "StorageReady=False",
    )
    assert cond["reason"] == "EndpointNotAllowed" and "metadata" in cond["message"]
    time.sleep(3)
    assert names(kubelet, job) == [] and reasons(jobs, job).count("EndpointNotAllowed") == 1


def test_pods_refused_by_pod_security_are_a_condition_and_one_event(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    """Creating a TrainingJob amounts to creating its pods: the namespace's Pod
    Security Admission applies to the operator's pods as to anyone's."""
    jobs.core.patch_namespace(
        jobs.ns, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    job = jobs.create()  # a template with no security context: not "restricted"
    cond = wait_for(
        lambda: (c := jobs.condition(job, "ReconcileError")) and c["status"] == "True" and c,
        T,
        "ReconcileError=True",
    )
    assert cond["reason"] == "PodRejected" and "PodSecurity" in cond["message"], cond
    time.sleep(8)  # backoff 2 s, 4 s, ...: a few retries at most, one event
    rejected = [e for e in jobs.events(job) if e["reason"] == "PodRejected"]
    assert len(rejected) == 1 and rejected[0].get("count", 1) == 1, rejected
    log = operator.log()
    assert log.count("Traceback") <= 1, log[-3000:]

    # A compliant template launches, and the condition clears.
    body = jobs.body("ok")["spec"]["template"]
    body["spec"].update(RESTRICTED)
    body["spec"]["containers"][0]["securityContext"] = HARDENED
    ok = jobs.create("ok", template=body)
    running(jobs, kubelet, ok, 1)
    assert (jobs.condition(ok, "ReconcileError") or {}).get("status") != "True"


def test_the_condition_clears_once_cycles_succeed_again(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    jobs.core.patch_namespace(
        jobs.ns, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    job = jobs.create()
    wait_for(
        lambda: (jobs.condition(job, "ReconcileError") or {}).get("status") == "True",
        T,
        "ReconcileError=True",
    )
    jobs.core.patch_namespace(
        jobs.ns, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": None}}}
    )
    running(jobs, kubelet, job, 1)
    cond = wait_for(
        lambda: (c := jobs.condition(job, "ReconcileError")) and c["status"] == "False" and c,
        T,
        "ReconcileError cleared",
    )
    assert cond["reason"] == "Reconciled"
    assert isinstance(jobs.core, client.CoreV1Api)
    # The status said attempt 1 launched before its pods were refused: its event was
    # queued then, not lost with the failed action (the next cycles see it done).
    wait_for(lambda: reasons(jobs, job).count("Launched") == 1, T, "one Launched event")
