"""Gangs without a gang scheduler, against the real API server: a 2-pod attempt of
which only one pod can be placed is torn down whole after
spec.scheduling.startTimeoutSeconds, with a Warning event naming the pod that did not
run and the scheduler's reason; once capacity exists the next attempt starts whole
and the job succeeds. Resync and relist are an hour apart: only the cycle's own timer
can wake it at the deadline (no pod changes meanwhile)."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lazarus_devstack.procs import free_port
from tests.conftest import ControlPlane

from .conftest import Jobs
from .harness import FakeKubelet, OperatorProcess, wait_for
from .test_crd import create, job

pytestmark = pytest.mark.cluster
UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
}


@pytest.fixture
def full_cluster(cluster: ControlPlane, namespace: str) -> Iterator[FakeKubelet]:
    """A kubelet with no node to place pods on (it still confirms deletions); the
    test places what fits itself."""
    k = FakeKubelet(cluster.api_client(), namespace, [])
    k.start()
    yield k
    k.nodes = [f"{namespace}-gpu{i}" for i in range(3)]  # stop() deletes these
    k.stop()


def start_timeouts(port: int, ns: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    series = f'lazarus_start_timeouts_total{{namespace="{ns}"}} '
    return next((float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(series)), 0.0)


def pods_of(kubelet: FakeKubelet, name: str, attempt: int) -> list[dict[str, Any]]:
    prefix = f"{name}-a{attempt}-"
    return [p for p in kubelet.pods(name) if p["metadata"]["name"].startswith(prefix)]


def test_gang_that_cannot_start_is_torn_down_then_starts_whole(
    jobs: Jobs,
    full_cluster: FakeKubelet,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    kubelet, gpu0 = full_cluster, f"{namespace}-gpu0"
    port = free_port()
    quiet = {"LAZARUS_RESYNC_SECONDS": "3600", "LAZARUS_RELIST_SECONDS": "3600"}
    start_operator("--metrics-port", str(port), env=quiet)
    kubelet.create_node(gpu0)
    name = jobs.create("gang", scheduling={"startTimeoutSeconds": 4})

    # Room for one pod: rank 0 is placed and runs, rank 1 waits as the scheduler says.
    wait_for(lambda: len(pods_of(kubelet, name, 1)) == 2, 30, "attempt 1's two pods")
    rank0, rank1 = sorted(p["metadata"]["name"] for p in pods_of(kubelet, name, 1))
    kubelet.bind(rank0, gpu0)
    kubelet.set_running(rank0)
    kubelet.core.patch_namespaced_pod_status(
        rank1, namespace, {"status": {"phase": "Pending", "conditions": [UNSCHEDULABLE]}}
    )

    # The deadline passes with no pod event: the timer ends the attempt, all of it.
    ended = jobs.wait(
        name,
        lambda st: (st.get("restarts") or {}).get("startTimeout") == 1,
        30,
        "the attempt torn down after its start timeout",
    )
    assert ended["history"][0]["cause"] == "StartTimeout"
    assert ended["lastFailure"]["pod"] == rank1
    assert ended["lastFailure"]["reason"] == "Unschedulable"
    event = wait_for(
        lambda: next((e for e in jobs.events(name) if e["reason"] == "StartTimeout"), None),
        10,
        "the StartTimeout event",
    )
    assert event["type"] == "Warning"
    assert "attempt 1: 1 of 2 pods not running 4s after launch" in event["message"]
    assert f"{rank1}: Unschedulable: 0/1 nodes are available" in event["message"]
    wait_for(lambda: not pods_of(kubelet, name, 1), 30, "attempt 1's pods all gone")
    assert start_timeouts(port, namespace) == 1

    # Capacity arrives: the next attempt is placed whole, runs, and completes.
    more = [f"{namespace}-gpu1", f"{namespace}-gpu2"]
    for n in more:
        kubelet.create_node(n)
    kubelet.nodes.extend([gpu0, *more])
    jobs.wait(
        name,
        lambda st: st.get("attempt") == 2 and st.get("phase") == "Running",
        30,
        "attempt 2 running whole",
    )
    for p in pods_of(kubelet, name, 2):
        kubelet.terminate(p["metadata"]["name"], 0)
    done = jobs.wait(name, lambda st: st.get("phase") == "Succeeded", 30, "Succeeded")
    # Not a failure nor a disruption: only the start timeout and its relaunch count.
    assert done["restarts"] == {"startTimeout": 1, "total": 1}
    assert done["lostSteps"] == 0


@pytest.mark.parametrize("timeout", [0, -1, 604801, "4m"])
def test_start_timeout_bounds_are_checked_at_admission(
    cluster: ControlPlane, namespace: str, timeout: Any
) -> None:
    rc, out = create(cluster, namespace, job(scheduling={"startTimeoutSeconds": timeout}))
    assert rc != 0, out
    assert "spec.scheduling.startTimeoutSeconds" in out, out
    rc, out = create(cluster, namespace, job(scheduling={"startTimeoutSeconds": 604800}))
    assert rc == 0, out
