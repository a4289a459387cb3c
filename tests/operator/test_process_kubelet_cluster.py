"""The devstack's process kubelet, against the real kube-apiserver: a pod's end lands
in the API before the pod goes, as with a real kubelet's status manager, even when
the API refuses the first report (the operator books lost work from that status:
an end never heard is booked as unknown)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from lazarus_devstack.harness import node_ready
from lazarus_devstack.kubelet import LocalKubelet
from tests.conftest import ControlPlane

from .harness import wait_for

pytestmark = pytest.mark.cluster
T = 60


class RefusesFirstEnd:
    """The kubelet's API client, whose first report of a container's end gets a 500
    (an overloaded API server answers so); everything else reaches the real API."""

    def __init__(self, core: Any) -> None:
        self.core, self.refused = core, 0

    def patch_namespaced_pod_status(self, name: str, ns: str, body: Any, **kw: Any) -> Any:
        statuses = body.get("status", {}).get("containerStatuses") or [{}]
        if "terminated" in statuses[0].get("state", {}) and not self.refused:
            self.refused += 1
            raise client.ApiException(status=500, reason="Internal Server Error")
        return self.core.patch_namespaced_pod_status(name, ns, body, **kw)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.core, attr)


def test_a_refused_exit_report_is_retried_before_the_pod_is_removed(
    cluster: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    node = f"{namespace}-local"
    kubelet = LocalKubelet(str(cluster.kubeconfig), node, tmp_path / "pods")
    api = RefusesFirstEnd(kubelet.core)
    kubelet.core = api
    threading.Thread(target=kubelet.run, daemon=True).start()
    core = client.CoreV1Api(cluster.api_client())
    try:
        wait_for(lambda: node_ready(core, node), T, f"node {node} Ready")
        spec = {"nodeName": node, "restartPolicy": "Never", "terminationGracePeriodSeconds": 30}
        command = ["sh", "-c", "exec sleep 60"]
        spec["containers"] = [{"name": "c", "image": "local", "command": command}]
        core.create_namespaced_pod(namespace, {"metadata": {"name": "evicted"}, "spec": spec})
        wait_for(lambda: _phase(core, namespace) == "Running", T, "pod Running")
        rv = core.read_namespaced_pod("evicted", namespace).metadata.resource_version
        core.delete_namespaced_pod("evicted", namespace)  # graceful: SIGTERM, exit 143
        last = None
        for event in watch.Watch().stream(
            core.list_namespaced_pod,
            namespace,
            field_selector="metadata.name=evicted",
            resource_version=rv,
            timeout_seconds=T,
        ):
            last = event
            if event["type"] == "DELETED":
                break
        assert last is not None and last["type"] == "DELETED", "the pod was not removed"
        assert api.refused == 1, "the exit report was never refused: nothing tested"
        state = last["object"].status.container_statuses[0].state
        assert state.terminated is not None, "removed without its end ever reported"
        assert state.terminated.exit_code == 143
    finally:
        kubelet.shutdown()
        core.delete_node(node)


def _phase(core: Any, ns: str) -> str:
    return str(core.read_namespaced_pod("evicted", ns).status.phase)
