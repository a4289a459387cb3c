"""What the local-loop e2e tests share: the checkpoint store's credentials as a Secret,
and a process kubelet on a Node of the test's own (losable, its pods' pids at hand)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from lazarus_devstack.harness import LosableNode, node_ready
from tests.conftest import ControlPlane, S3Server
from tests.operator.harness import wait_for

S3_SECRET = "s3"


@pytest.fixture
def s3_secret(cluster: ControlPlane, namespace: str, s3: S3Server) -> str:
    """The S3 server's keys in the Secret a job's checkpoint.secretRef names."""
    keys = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    client.CoreV1Api(cluster.api_client()).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": S3_SECRET},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in keys.items()},
        },
    )
    return S3_SECRET


@pytest.fixture
def local_node(cluster: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[LosableNode]:
    """A Ready node whose pods run as processes, their directories under tmp_path/pods."""
    node = LosableNode(cluster, f"{namespace}-local", tmp_path / "pods")
    node.start()
    core = client.CoreV1Api(cluster.api_client())
    wait_for(lambda: node_ready(core, node.name), 30, f"node {node.name} Ready")
    yield node
    if node.kubelet is not None:
        node.kubelet.shutdown()
    core.delete_node(node.name)
