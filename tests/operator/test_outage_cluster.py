"""The kube-apiserver goes away and comes back (a control-plane upgrade, a crash):
restarts around the outage keep every event, and the devstack's process kubelet
reports what happened while it was gone instead of dying."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from lazarus_devstack.harness import node_ready
from lazarus_devstack.kubelet import LocalKubelet
from lazarus_devstack.stack import Stack
from tests.conftest import ControlPlane

from .conftest import Jobs
from .harness import FakeKubelet, OperatorProcess, wait_for
from .test_operator import T, reasons, running

pytestmark = pytest.mark.cluster


@contextmanager
def apiserver_down(cluster: ControlPlane) -> Iterator[None]:
    stack = Stack(cluster.run_dir, tied=True)
    stack.stop_component("kube-apiserver")
    try:
        yield
    finally:
        stack.start_component("kube-apiserver")
        _controllers_caught_up(cluster)


def _controllers_caught_up(cluster: ControlPlane) -> None:
    """The controller-manager re-lists after the outage, with backoff: wait until it
    serves a new namespace again (its default ServiceAccount), so the tests after this
    one find the control plane as they expect it."""
    core = client.CoreV1Api(cluster.api_client())
    probe = f"probe-{int(time.monotonic() * 1000)}"
    core.create_namespace({"metadata": {"name": probe}})
    try:
        wait_for(lambda: _has_default_sa(core, probe), 180, "controllers after the outage")
    finally:
        core.delete_namespace(probe)


def _has_default_sa(core: Any, ns: str) -> bool:
    try:
        core.read_namespaced_service_account("default", ns)
    except client.ApiException:
        return False
    return True


def test_events_of_restarts_around_an_apiserver_outage_all_exist(
    cluster: ControlPlane, jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = jobs.create(failurePolicy={"backoff": {"initialSeconds": 1, "maxSeconds": 1}})
    running(jobs, kubelet, job, 1)
    kubelet.terminate(f"{job}-a1-1", 1, message={"v": 1, "outcome": "error", "step": 5})
    # Down while the operator is ending the attempt and relaunching: its writes and
    # event posts in flight fail, and it must carry on once the server is back.
    with apiserver_down(cluster):
        time.sleep(4)
    running(jobs, kubelet, job, 2)
    kubelet.terminate(f"{job}-a2-0", 137, disruption="PreemptionByScheduler")
    with apiserver_down(cluster):
        time.sleep(2)
    running(jobs, kubelet, job, 3)
    want = {"RestartFailed": 1, "RestartDisrupted": 1, "Launched": 3}
    wait_for(
        lambda: all(reasons(jobs, job).count(r) >= n for r, n in want.items()),
        T,
        f"events {want}",
    )
    launched = [e["message"] for e in jobs.events(job) if e["reason"] == "Launched"]
    assert sorted(m.split(" (")[0] for m in launched) == ["attempt 1", "attempt 2", "attempt 3"]


@contextmanager
def deleted_behind_the_watch(cluster: ControlPlane, operator: OperatorProcess) -> Iterator[None]:
    """What the body does happens where the operator's watches never report it: the
    operator is frozen across an API server restart, so its watches resume from a
    resourceVersion the new server no longer has, get "410 Gone" and re-list, and
    kopf reports no deletion from the gap."""
    operator.pause()
    try:
        with apiserver_down(cluster):
            pass
        yield
    finally:
        operator.resume()


def test_a_pod_deleted_while_the_watch_was_away_is_found_by_the_relist(
    cluster: ControlPlane,
    jobs: Jobs,
    kubelet: FakeKubelet,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    operator = start_operator(env={"LAZARUS_RELIST_SECONDS": "3"})
    job = jobs.create(failurePolicy={"backoff": {"initialSeconds": 1, "maxSeconds": 1}})
    running(jobs, kubelet, job, 1)
    with deleted_behind_the_watch(cluster, operator):
        kubelet.confirm_deletion(f"{job}-a1-0")  # a running pod, force-deleted
    running(jobs, kubelet, job, 2)
    assert "gone from the API" in operator.log()


def test_a_pod_the_operator_deletes_that_the_api_no_longer_has_is_not_waited_for(
    cluster: ControlPlane, jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    """The default relist (minutes) is not what ends the wait: the DELETE's 404 is."""
    job = jobs.create(failurePolicy={"backoff": {"initialSeconds": 1, "maxSeconds": 1}})
    running(jobs, kubelet, job, 1)
    with deleted_behind_the_watch(cluster, operator):
        kubelet.terminate(f"{job}-a1-1", 1, message={"v": 1, "outcome": "error", "step": 5})
        kubelet.confirm_deletion(f"{job}-a1-0")
    running(jobs, kubelet, job, 2)
    assert "gone from the API" not in operator.log()


def test_the_process_kubelet_reports_an_exit_that_happened_during_an_outage(
    cluster: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    node = f"{namespace}-local"
    kubelet = LocalKubelet(str(cluster.kubeconfig), node, tmp_path / "pods")
    threading.Thread(target=kubelet.run, daemon=True).start()
    core = client.CoreV1Api(cluster.api_client())
    try:
        wait_for(lambda: node_ready(core, node), T, f"node {node} Ready")
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": "short"},
                "spec": {
                    "nodeName": node,
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "c", "image": "local", "command": ["sh", "-c", "sleep 3; exit 3"]}
                    ],
                },
            },
        )
        wait_for(lambda: _phase(core, namespace) == "Running", T, "pod Running")
        with apiserver_down(cluster):
            time.sleep(5)  # the process exits while nobody can be told
        wait_for(lambda: _phase(core, namespace) == "Failed", T, "exit reported after the outage")
        got = core.read_namespaced_pod("short", namespace)
        assert got.status.container_statuses[0].state.terminated.exit_code == 3
        before = _heartbeat(core, node)
        wait_for(lambda: _heartbeat(core, node) > before, T, "the node still heartbeats")
    finally:
        kubelet.shutdown()
        core.delete_node(node)


def _phase(core: Any, ns: str) -> str:
    return str(core.read_namespaced_pod("short", ns).status.phase)


def _heartbeat(core: Any, node: str) -> float:
    got = core.read_node(node)
    ready = next(c for c in got.status.conditions if c.type == "Ready")
    return float(ready.last_heartbeat_time.timestamp())
