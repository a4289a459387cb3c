"""The API server rejects nonsense at admission (schema + CEL), naming the field,
and fills in the defaults."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import ControlPlane

pytestmark = pytest.mark.cluster


def job(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "template": {"spec": {"containers": [{"name": "trainer", "image": "t:1"}]}},
        "checkpoint": {"uri": "s3://bucket/prefix"},
    }
    base.update(spec)
    return {
        "apiVersion": "lazarus.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "j"},
        "spec": base,
    }


def create(cluster: ControlPlane, ns: str, body: dict[str, Any]) -> tuple[int, str]:
    r = cluster.kubectl(
        "-n",
        ns,
        "create",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        stdin=json.dumps(body),
        check=False,
    )
    return r.returncode, r.stdout + r.stderr


CK = {"uri": "s3://bucket/prefix"}


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"checkpoint": {"uri": "bucket/prefix"}}, "spec.checkpoint.uri"),
        ({"checkpoint": {"uri": "s3://Bad_Bucket/x"}}, "spec.checkpoint.uri"),
        ({"checkpoint": {**CK, "endpoint": "minio:9000"}}, "spec.checkpoint.endpoint"),
        ({"checkpoint": {**CK, "addressingStyle": "sideways"}}, "spec.checkpoint.addressingStyle"),
        ({"checkpoint": {**CK, "resume": "latest"}}, "spec.checkpoint.resume"),
        ({"checkpoint": {**CK, "retention": {"keepBest": 2}}}, "spec.checkpoint.retention.metric"),
        (
            {"checkpoint": {**CK, "retention": {"keepLatest": 0}}},
            "spec.checkpoint.retention.keepLatest",
        ),
        ({"checkpoint": {**CK, "secretRef": {}}}, "spec.checkpoint.secretRef.name"),
        ({"replicas": 0}, "spec.replicas"),
        ({"processesPerPod": 0}, "spec.processesPerPod"),
        ({"template": {"spec": {"containers": []}}}, "spec.template.spec.containers"),
        (
            {"template": {"spec": {"containers": [{"name": "t"}]}}},
            "spec.template.spec.containers[0].image",
        ),
        (
            {
                "template": {
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "containers": [{"name": "t", "image": "i"}],
                    }
                }
            },
            "spec.template.spec.restartPolicy",
        ),
        (
            {
                "template": {
                    "spec": {
                        "terminationGracePeriodSeconds": 9,
                        "containers": [{"name": "t", "image": "i"}],
                    }
                }
            },
            "spec.template.spec.terminationGracePeriodSeconds",
        ),
        ({"failurePolicy": {"maxFailures": -1}}, "spec.failurePolicy.maxFailures"),
        (
            {"failurePolicy": {"maxFailuresWithoutProgress": 0}},
            "spec.failurePolicy.maxFailuresWithoutProgress",
        ),
        ({"failurePolicy": {"permanentExitCodes": [75]}}, "spec.failurePolicy.permanentExitCodes"),
        (
            {"failurePolicy": {"permanentExitCodes": [0]}},
            "spec.failurePolicy.permanentExitCodes[0]",
        ),
        (
            {"failurePolicy": {"backoff": {"initialSeconds": 60, "maxSeconds": 5}}},
            "spec.failurePolicy.backoff.maxSeconds",
        ),
        (
            {"failurePolicy": {"backoff": {"multiplier": 0.5}}},
            "spec.failurePolicy.backoff.multiplier",
        ),
        ({"gracePeriodSeconds": -1}, "spec.gracePeriodSeconds"),
        ({"nodeLossTimeoutSeconds": -1}, "spec.nodeLossTimeoutSeconds"),
        ({"stuckTerminatingTimeoutSeconds": -5}, "spec.stuckTerminatingTimeoutSeconds"),
        ({"ttlSecondsAfterFinished": -1}, "spec.ttlSecondsAfterFinished"),
        # Trust (issue 8): roots that move or fold, settings the code cannot hold.
        ({"checkpoint": {"uri": "s3://bucket/team/../other"}}, "spec.checkpoint.uri"),
        ({"checkpoint": {"uri": "s3://bucket/a//b"}}, "spec.checkpoint.uri"),
        ({"checkpoint": {"uri": "s3://bucket/./x"}}, "spec.checkpoint.uri"),
        ({"checkpoint": {"uri": "/mnt/ckpt/.."}}, "spec.checkpoint.uri"),
        ({"checkpoint": {"uri": "/mnt//ckpt"}}, "spec.checkpoint.uri"),
        ({"checkpoint": {**CK, "region": "us east 1"}}, "spec.checkpoint.region"),
        ({"ttlSecondsAfterFinished": 10**12}, "spec.ttlSecondsAfterFinished"),
        ({"failurePolicy": {"maxFailures": 10**9}}, "spec.failurePolicy.maxFailures"),
        ({"checkpoint": {**CK, "save": {"everySeconds": 10**9}}}, "spec.checkpoint.save"),
        # Replica groups (issue 26): each is one pod; a quorum needs no more than exist.
        ({"replicas": 3, "faultTolerance": {"replicaGroups": 2}}, "must equal spec.replicas"),
        (
            {"replicas": 2, "faultTolerance": {"replicaGroups": 2, "minReplicaGroups": 3}},
            "spec.faultTolerance.minReplicaGroups",
        ),
        ({"faultTolerance": {"replicaGroups": 1}}, "spec.faultTolerance.replicaGroups"),
    ],
)
def test_invalid_spec_is_rejected_naming_the_field(
    cluster: ControlPlane, namespace: str, spec: dict[str, Any], field: str
) -> None:
    rc, out = create(cluster, namespace, job(**spec))
    assert rc != 0, out
    assert field in out, out


def test_missing_checkpoint_is_rejected(cluster: ControlPlane, namespace: str) -> None:
    body = job()
    del body["spec"]["checkpoint"]
    rc, out = create(cluster, namespace, body)
    assert rc != 0 and "spec.checkpoint" in out and "Required" in out


def test_defaults_are_filled_in(cluster: ControlPlane, namespace: str) -> None:
    rc, out = create(cluster, namespace, job(checkpoint={**CK, "secretRef": {"name": "s"}}))
    assert rc == 0, out
    spec = json.loads(out)["spec"]
    assert spec["replicas"] == 1 and spec["processesPerPod"] == 1
    assert spec["suspend"] is False and spec["gracePeriodSeconds"] == 120
    assert spec["failurePolicy"]["maxFailures"] == 6
    assert spec["failurePolicy"]["backoff"] == {
        "initialSeconds": 10,
        "maxSeconds": 600,
        "multiplier": 2,
    }
    assert "maxPreemptions" not in spec["failurePolicy"]  # unlimited
    assert spec["checkpoint"]["resume"] == "auto"
    assert spec["checkpoint"]["secretRef"]["accessKeyIdKey"] == "AWS_ACCESS_KEY_ID"


def test_valid_full_spec_is_accepted(cluster: ControlPlane, namespace: str) -> None:
    body = job(
        replicas=4,
        processesPerPod=8,
        checkpoint={
            "uri": "s3://bucket/prefix",
            "endpoint": "http://minio.minio.svc:9000",
            "resume": "step-000000001200-a0003",
            "retention": {"keepLatest": 2, "keepBest": 1, "metric": "eval_loss", "mode": "min"},
            "save": {"everySteps": 500, "everySeconds": 1800},
        },
        failurePolicy={"maxPreemptions": 50, "permanentExitCodes": [3, 4]},
        ttlSecondsAfterFinished=3600,
        disruptionTaints=["example.com/draining"],
    )
    body["spec"]["template"]["spec"].update(
        nodeSelector={"gpu": "h100"},
        tolerations=[{"key": "gpu", "operator": "Exists"}],
        priorityClassName="training",
    )
    rc, out = create(cluster, namespace, body)
    assert rc == 0, out
    assert json.loads(out)["spec"]["template"]["spec"]["priorityClassName"] == "training"
