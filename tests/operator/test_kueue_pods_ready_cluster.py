"""Kueue's waitForPodsReady with TrainingJobs, against the real Kueue v0.17 (issue 25.3):
the operator writes its Workload's PodsReady as Kueue's own integrations do, so a gang
that runs keeps its quota past the timeout, and one that cannot start is evicted by
Kueue (PodsReadyTimeout): a disruption with Kueue's reason, its pods deleted, the job
Queued again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from lazarus_devstack.kueue_manifests import KueueOptions
from tests.conftest import ControlPlane

from .conftest import Jobs, KueueStack, queued_job
from .harness import FakeKubelet, OperatorProcess, wait_for

pytestmark = pytest.mark.cluster
TIMEOUT = 5  # seconds an admitted Workload has to get PodsReady
KUEUE_OPTIONS = KueueOptions(wait_for_pods_ready=TIMEOUT)  # conftest's kueue_stack


@pytest.fixture(scope="module")
def cluster(kueue_stack: KueueStack) -> ControlPlane:
    return kueue_stack.cluster


def pods_ready(stack: KueueStack, ns: str) -> dict[str, Any] | None:
    [wl] = stack.workloads(ns)
    conds: list[dict[str, Any]] = wl.get("status", {}).get("conditions") or []
    return next((c for c in conds if c["type"] == "PodsReady"), None)


def test_a_gang_that_runs_says_so_and_keeps_its_quota_past_the_timeout(
    jobs: Jobs,
    kubelet: FakeKubelet,
    namespace: str,
    operator: OperatorProcess,
    kueue_stack: KueueStack,
) -> None:
    kueue_stack.queues(namespace)
    job = queued_job(jobs, "runs", "1")
    jobs.wait(job, lambda st: st.get("phase") == "Running", 60, "admitted and running")
    ready: dict[str, Any] = wait_for(
        lambda: (c := pods_ready(kueue_stack, namespace)) and c["status"] == "True" and c,
        30,
        "the Workload's PodsReady written by the operator",
    )
    assert ready["reason"] == "Started"
    time.sleep(TIMEOUT + 3)  # past Kueue's deadline: it would have evicted by now
    st = jobs.status(job)
    assert st["phase"] == "Running" and not st.get("restarts"), st


@pytest.fixture
def no_nodes(cluster: ControlPlane, namespace: str) -> Iterator[FakeKubelet]:
    """A kubelet with nowhere to place pods: they stay Pending."""
    k = FakeKubelet(cluster.api_client(), namespace, [])
    k.start()
    yield k
    k.stop()


def test_a_gang_that_cannot_start_is_evicted_by_kueue_as_a_disruption(
    jobs: Jobs,
    no_nodes: FakeKubelet,
    namespace: str,
    operator: OperatorProcess,
    kueue_stack: KueueStack,
) -> None:
    kueue_stack.queues(namespace)
    job = queued_job(jobs, "stuck", "1")
    wait_for(lambda: len(no_nodes.pods(job)) == 2, 60, "admitted: its pods created")
    ended = jobs.wait(
        job, lambda st: (st.get("restarts") or {}).get("disrupted") == 1, 60, "evicted by Kueue"
    )
    assert ended["lastFailure"]["reason"] == "PodsReadyTimeout", ended["lastFailure"]
    jobs.wait(job, lambda st: st.get("phase") == "Queued", 60, "Queued after yielding")
    wait_for(lambda: not no_nodes.pods(job), 30, "its pods gone")
