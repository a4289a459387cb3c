"""Kueue in the local stack, against the real API server: the binary hack/kueue builds,
its webhooks reached at a url on 127.0.0.1, admitting plain batch/v1 Jobs by quota.

The groundwork for TrainingJobs as Kueue workloads (issue 25.2): if this fails, Kueue
itself is not running right, whatever the operator does."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest
from kubernetes import client

from lazarus_devstack.harness import create_namespace, wait_for
from lazarus_devstack.kueue_manifests import API, QUEUE_LABEL

from .conftest import KueueStack, priority_classes

pytestmark = pytest.mark.cluster
POOL = {"lazarus.dev/pool": "train"}


def _job(name: str, cpu: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {QUEUE_LABEL: "lazarus"}},
        "spec": {
            "suspend": False,  # Kueue's webhook suspends it until admitted
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "work",
                            "image": "busybox",
                            "resources": {"requests": {"cpu": cpu}},
                        }
                    ],
                }
            },
        },
    }


def _workload(custom: client.CustomObjectsApi, ns: str, job_uid: str) -> dict[str, Any] | None:
    group, version = API.split("/")
    items = custom.list_namespaced_custom_object(group, version, ns, "workloads")["items"]
    for wl in items:
        if any(o["uid"] == job_uid for o in wl["metadata"].get("ownerReferences") or []):
            return dict(wl)
    return None


def _condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    return next(
        (c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == ctype), None
    )


def test_kueue_admits_within_quota_and_holds_the_rest(kueue_stack: KueueStack) -> None:
    api = kueue_stack.cluster.api_client()
    core, batch, custom = (
        client.CoreV1Api(api),
        client.BatchV1Api(api),
        client.CustomObjectsApi(api),
    )
    ns = f"t-{uuid.uuid4().hex[:10]}"
    create_namespace(core, ns)
    kueue_stack.queues(ns, quota={"cpu": "1"}, node_labels=POOL)
    try:
        first = batch.create_namespaced_job(ns, _job("first", "1"))
        # The create's answer is the stored object: Kueue's mutating webhook ran.
        assert first.spec.suspend is True
        admitted = wait_for(
            lambda: (j := batch.read_namespaced_job("first", ns)).spec.suspend is False and j,
            60,
            "the first Job admitted (unsuspended) by Kueue",
        )
        # Admission injects the flavor's node labels into the pod template.
        assert admitted.spec.template.spec.node_selector == POOL

        second = batch.create_namespaced_job(ns, _job("second", "1"))
        pending = wait_for(
            lambda: (
                (wl := _workload(custom, ns, second.metadata.uid))
                and (c := _condition(wl, "QuotaReserved"))
                and c["status"] == "False"
                and c
            ),
            60,
            "the second Job's Workload evaluated and left pending",
        )
        assert "insufficient" in pending["message"].lower(), pending
        assert batch.read_namespaced_job("second", ns).spec.suspend is True

        # The first one's quota comes back when it goes; the second is admitted then.
        batch.delete_namespaced_job("first", ns, propagation_policy="Background")
        wait_for(
            lambda: batch.read_namespaced_job("second", ns).spec.suspend is False,
            60,
            "the second Job admitted once the first is gone",
        )
    finally:
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(ns)


def _owned_workload(name: str, ns: str, priority_class: str, priority: int) -> dict[str, Any]:
    """A Workload as the operator would own one per TrainingJob attempt (issue 25.2's
    design in docs/kueue.md): one pod set, the replicas with their requests."""
    pod = {
        "containers": [
            {"name": "trainer", "image": "t", "resources": {"requests": {"cpu": "500m"}}}
        ]
    }
    return {
        "apiVersion": API,
        "kind": "Workload",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "queueName": "lazarus",
            "priorityClassRef": {
                "group": "kueue.x-k8s.io",
                "kind": "WorkloadPriorityClass",
                "name": priority_class,
            },
            # Kueue's webhook wants the class's value beside the reference (an
            # integration copies it from the WorkloadPriorityClass).
            "priority": priority,
            "podSets": [{"name": "trainer", "count": 2, "template": {"spec": pod}}],
        },
    }


def test_an_owned_workload_is_preempted_and_requeued_when_its_owner_yields(
    kueue_stack: KueueStack,
) -> None:
    """Kueue's contract with a Workload's owner, which the operator would keep: admission
    (status.admission, Admitted), preemption (Evicted, reason Preempted) that holds the
    quota until the owner has stopped its pods and cleared the admission, then requeued
    and admitted again when the quota comes back."""
    api = kueue_stack.cluster.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    group, version = API.split("/")
    ns = f"t-{uuid.uuid4().hex[:10]}"
    create_namespace(core, ns)
    kueue_stack.queues(ns, quota={"cpu": "1"}, extra=priority_classes(ns, low=10, high=100))

    def get(name: str) -> dict[str, Any]:
        return dict(custom.get_namespaced_custom_object(group, version, ns, "workloads", name))

    def true(name: str, ctype: str) -> dict[str, Any] | None:
        c = _condition(get(name), ctype)
        return c if c and c["status"] == "True" else None

    try:
        custom.create_namespaced_custom_object(
            group, version, ns, "workloads", _owned_workload("low", ns, f"low-{ns}", 10)
        )
        wait_for(lambda: true("low", "Admitted"), 60, "the low-priority Workload admitted")
        assert get("low")["status"]["admission"]["clusterQueue"] == f"cq-{ns}"

        custom.create_namespaced_custom_object(
            group, version, ns, "workloads", _owned_workload("high", ns, f"high-{ns}", 100)
        )
        evicted = wait_for(
            lambda: true("low", "Evicted"), 60, "the low one evicted for the high one"
        )
        assert evicted["reason"] == "Preempted", evicted
        # Kueue waits for the owner: the quota stays reserved until it says its pods are gone.
        assert "admission" in get("low")["status"]
        assert not true("high", "Admitted")

        # The owner yields: pods stopped (they save on SIGTERM), admission cleared.
        low = get("low")
        kept = [
            c for c in low["status"]["conditions"] if c["type"] not in ("QuotaReserved", "Admitted")
        ]
        now = low["status"]["conditions"][0]["lastTransitionTime"]
        cleared = [
            *kept,
            {
                "type": "QuotaReserved",
                "status": "False",
                "reason": "Pending",
                "message": "preempted",
                "lastTransitionTime": now,
            },
            {
                "type": "Admitted",
                "status": "False",
                "reason": "NoReservation",
                "message": "preempted",
                "lastTransitionTime": now,
            },
            {
                "type": "Requeued",
                "status": "True",
                "reason": "Preempted",
                "message": "preempted",
                "lastTransitionTime": now,
            },
        ]
        custom.patch_namespaced_custom_object_status(
            group,
            version,
            ns,
            "workloads",
            "low",
            {"status": {"admission": None, "conditions": cleared}},
        )
        wait_for(
            lambda: true("high", "Admitted"), 60, "the high one admitted once the low one yielded"
        )
        assert not true("low", "QuotaReserved")

        # The high one finishes (deleted here): the low one is admitted again.
        custom.delete_namespaced_custom_object(group, version, ns, "workloads", "high")
        wait_for(lambda: true("low", "Admitted"), 60, "the low one admitted again")
    finally:
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(ns)
