"""The benchmarks' pod clock against a real API server: its watch resumes where it
left off. Restarted from nothing, every request replayed all pods as ADDED, and at
4,000 pods decoding that replay held back the stamps of pods created meanwhile by
~8 s: the scale benchmark reported slow restarts that the pods' own creation
timestamps showed were not."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from bench.pod_clock import PodClock
from lazarus_devstack.harness import ControlPlane, wait_for

pytestmark = pytest.mark.cluster

PODS = 12


def _pod(name: str) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": {"lazarus.dev/job": "clock"}},
        "spec": {"containers": [{"name": "t", "image": "t"}]},
    }


def test_the_clock_resumes_its_watch_instead_of_replaying_every_pod(
    cluster: ControlPlane, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api_client())
    clock = PodClock(cluster.api_client(), namespace, window_s=1)
    try:
        for i in range(PODS):
            core.create_namespaced_pod(namespace, _pod(f"p{i}"))
        wait_for(lambda: len(clock.added) == PODS, 30, f"{PODS} pods seen")
        time.sleep(4)  # several one-second watch requests end and resume
        core.create_namespaced_pod(namespace, _pod("late"))
        wait_for(lambda: "late" in clock.added, 30, "the late pod seen")
        with clock.cv:
            seen = clock.events
        # One ADDED per pod; the controllers leave unscheduled pods alone.
        assert seen == PODS + 1, f"{seen} events for {PODS + 1} pods: the watch replayed"
    finally:
        clock.stop()
