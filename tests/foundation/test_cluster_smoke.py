"""The control plane is real: pinned version, CRD served, schema enforced, RBAC on."""

from __future__ import annotations

import json
import uuid

import pytest

from lazarus_devstack.stack import REPO
from tests.conftest import ControlPlane

pytestmark = pytest.mark.cluster

KUBE_VERSION = (REPO / "hack" / "k8s" / "KUBE_VERSION").read_text().strip()


def training_job(name: str, uri: str = "s3://lazarus/jobs/smoke") -> str:
    return json.dumps(
        {
            "apiVersion": "lazarus.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "checkpoint": {"uri": uri},
                "template": {
                    "spec": {"containers": [{"name": "trainer", "image": "lazarus-trainer:dev"}]}
                },
            },
        }
    )


def test_server_reports_the_pinned_version(cluster: ControlPlane) -> None:
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == KUBE_VERSION
    assert cluster.version == KUBE_VERSION


def test_api_resources_lists_trainingjobs(cluster: ControlPlane) -> None:
    out = cluster.kubectl("api-resources", "--api-group=lazarus.dev", "-o", "name").stdout
    assert "trainingjobs.lazarus.dev" in out.split()


def test_create_and_read_back_a_trainingjob(cluster: ControlPlane, namespace: str) -> None:
    name = f"smoke-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("-n", namespace, "create", "-f", "-", stdin=training_job(name))
    got = json.loads(cluster.kubectl("-n", namespace, "get", "tj", name, "-o", "json").stdout)
    assert got["spec"]["checkpoint"]["uri"] == "s3://lazarus/jobs/smoke"
    listed = cluster.kubectl("-n", namespace, "get", "tj").stdout
    assert name in listed and "PHASE" in listed  # printer columns are served


def test_schema_violation_is_rejected_naming_the_field(
    cluster: ControlPlane, namespace: str
) -> None:
    bad = training_job("bad-uri", uri="ftp://nowhere")
    result = cluster.kubectl("-n", namespace, "create", "-f", "-", stdin=bad, check=False)
    assert result.returncode != 0
    assert "spec.checkpoint.uri" in result.stderr
    missing = json.loads(training_job("no-checkpoint"))
    del missing["spec"]["checkpoint"]
    result = cluster.kubectl(
        "-n", namespace, "create", "-f", "-", stdin=json.dumps(missing), check=False
    )
    assert result.returncode != 0
    assert "spec.checkpoint" in result.stderr and "Required" in result.stderr


def test_request_without_rbac_permission_is_forbidden(
    cluster: ControlPlane, namespace: str
) -> None:
    from kubernetes import client

    api = client.CoreV1Api(cluster.api_client(user="nobody"))
    with pytest.raises(client.ApiException) as err:
        api.list_namespaced_pod(namespace)
    assert err.value.status == 403
    # The same request as admin succeeds, so the 403 is RBAC, not a broken client.
    client.CoreV1Api(cluster.api_client()).list_namespaced_pod(namespace)
