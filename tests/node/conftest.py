"""A control plane with a real node (containerd + runc + kubelet + CNI), once per session.

The trainer runs in real containers from the local base image
(`lazarus.local/base:bookworm`, built by hack/node/setup.sh). Torch is several GB,
so instead of a trainer image the project's venv, its Python and this checkout
are mounted read-only into the container at their host paths (hostPath) and the
venv's Python runs there (`with_local_code`): a local-stack convenience,
documented in hack/node/README.md. Everything else is what a real cluster does: the kubelet
starts, signals, limits and reports the containers.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from lazarus_devstack import operator_pod as chart_operator
from lazarus_devstack.node import NodeInfo, with_local_code
from lazarus_devstack.operator_pod import OperatorPod
from lazarus_devstack.stack import Ports, Stack, State, apply_crds
from tests.conftest import CRD_DIR, ControlPlane, S3Server, create_namespace
from tests.operator.harness import OperatorProcess


@dataclass
class RealNode:
    cluster: ControlPlane
    s3: S3Server
    node: NodeInfo
    run_dir: Path
    state: State


@pytest.fixture(scope="session")
def real_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNode]:
    run_dir = tmp_path_factory.mktemp("node")
    stack = Stack(run_dir, tied=True)
    state = stack.up(
        Ports(apiserver=0, etcd_client=0, etcd_peer=0, s3=0),
        controllers=True,
        scheduler=True,
        real_node=True,
    )
    try:
        assert state.node and state.s3
        apply_crds(state, CRD_DIR)
        cluster = ControlPlane(
            run_dir, Path(state.kubeconfig), state.server, state.version, state.kubectl()
        )
        s3 = S3Server(state.s3.endpoint, state.s3.access_key, state.s3.secret_key, "us-east-1")
        yield RealNode(cluster, s3, state.node, run_dir, state)
    finally:
        stack.down()


@pytest.fixture
def node_namespace(real_node: RealNode) -> Iterator[str]:
    """A fresh namespace with the S3 credentials as Secret `s3`; its pods are gone after."""
    api = client.CoreV1Api(real_node.cluster.api_client())
    name = f"t-{uuid.uuid4().hex[:10]}"
    create_namespace(api, name)
    keys = {
        "AWS_ACCESS_KEY_ID": real_node.s3.access_key,
        "AWS_SECRET_ACCESS_KEY": real_node.s3.secret_key,
    }
    api.create_namespaced_secret(
        name,
        {
            "metadata": {"name": "s3"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in keys.items()},
        },
    )
    yield name
    # Kill what is left at once, and wait: the next test must find an idle node.
    with contextlib.suppress(client.ApiException):
        api.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    deadline = time.monotonic() + 60
    while api.list_namespaced_pod(name).items and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(client.ApiException):
        api.delete_namespace(name)


@pytest.fixture
def bucket_on_node(real_node: RealNode) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    real_node.s3.client().create_bucket(Bucket=name)
    return name


def trainer_template(args: list[str], **container: Any) -> dict[str, Any]:
    """A pod template running the reference trainer in a real container on the node."""
    spec = {
        "containers": [
            {
                "name": "trainer",
                "image": "set-by-with_local_code",
                "command": ["lazarus-train"],
                "args": args,
                **container,
            }
        ]
    }
    return {"spec": with_local_code(spec)}


def operator_env(real_node: RealNode) -> dict[str, str]:
    return {
        **real_node.cluster.env(),
        "LAZARUS_PROGRESS_SECONDS": "1",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }


GROUP, VERSION, PLURAL = "lazarus.dev", "v1alpha1", "trainingjobs"


@pytest.fixture
def operator(real_node: RealNode, node_namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(operator_env(real_node), node_namespace, tmp_path / "operator.log")
    yield proc
    proc.stop()
    print(f"--- operator log (tail) ---\n{proc.log()[-3000:]}")


@pytest.fixture
def operator_in_pod(real_node: RealNode, node_namespace: str) -> Iterator[OperatorPod]:
    """The operator as users run it: its image (built from the root Dockerfile), in a
    pod the chart deploys with its ServiceAccount and RBAC, watching the namespace."""
    pod = chart_operator.install(
        real_node.state, node_namespace, f"lz-{node_namespace}", progress_seconds=1
    )
    yield pod
    print(f"--- operator pod log (tail) ---\n{pod.log()[-3000:]}")
    pod.uninstall()


def job_body(
    name: str, bucket: str, real_node: RealNode, template: dict[str, Any], **spec: Any
) -> Any:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "gracePeriodSeconds": 30,
            "checkpoint": {
                "uri": f"s3://{bucket}/{name}",
                "endpoint": real_node.s3.endpoint_url,
                "addressingStyle": "path",
                "secretRef": {"name": "s3"},
                "save": {"everySteps": 10},
            },
            "failurePolicy": {"backoff": {"initialSeconds": 1}},
            "template": template,
            **spec,
        },
    }


def node_healthy(core: Any, name: str) -> bool:
    node = core.read_node(name)
    ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
    return ready and not node.spec.taints


class Job:
    def __init__(self, real_node: RealNode, namespace: str, name: str) -> None:
        self.custom = client.CustomObjectsApi(real_node.cluster.api_client())
        self.core = client.CoreV1Api(real_node.cluster.api_client())
        self.ns, self.name = namespace, name

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    def status(self) -> dict[str, Any]:
        got = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, self.name)
        return dict(got.get("status") or {})

    def wait_finished(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (st := self.status()).get("phase") not in ("Succeeded", "Failed"):
            assert time.monotonic() < deadline, f"job did not finish: {st}"
            time.sleep(0.5)
        return st

    def log(self, pod: str) -> str:
        """The container's log, read through the API server from the kubelet."""
        try:
            return str(self.core.read_namespaced_pod_log(pod, self.ns))
        except client.ApiException:
            return ""

    def pod_logs(self) -> str:
        out = []
        for pod in self.core.list_namespaced_pod(self.ns).items:
            try:
                log = self.core.read_namespaced_pod_log(pod.metadata.name, self.ns)
            except client.ApiException as err:
                log = f"(no log: {err.status})"
            out.append(f"--- {pod.metadata.name} ---\n{log[-2000:]}")
        return "\n".join(out)
