"""Every classification row end to end: the test sets the pod end as kubelet or
the control plane would, the operator records the cause and charges the budget."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from .conftest import Jobs
from .harness import FakeKubelet, OperatorProcess, wait_for
from .test_operator import T, running

pytestmark = pytest.mark.cluster

ROWS: dict[str, tuple[Callable[[FakeKubelet, str], None], str, str]] = {
    "disruption-preempted": (
        lambda k, p: k.terminate(p, 137, disruption="PreemptionByScheduler"),
        "Disrupted",
        "PreemptionByScheduler",
    ),
    "disruption-evicted": (
        lambda k, p: k.terminate(p, 143, disruption="EvictionByEvictionAPI"),
        "Disrupted",
        "EvictionByEvictionAPI",
    ),
    "disruption-taint-manager": (
        lambda k, p: k.terminate(p, 137, disruption="DeletionByTaintManager"),
        "Disrupted",
        "DeletionByTaintManager",
    ),
    "disruption-kubelet": (
        lambda k, p: k.terminate(p, 137, disruption="TerminationByKubelet"),
        "Disrupted",
        "TerminationByKubelet",
    ),
    "disruption-podgc": (
        lambda k, p: k.terminate(p, 137, disruption="DeletionByPodGC"),
        "Disrupted",
        "DeletionByPodGC",
    ),
    "deleted-by-someone": (
        lambda k, p: k.core.delete_namespaced_pod(p, k.ns),
        "Disrupted",
        "PodDeleted",
    ),
    "trainer-preempted": (
        lambda k, p: k.terminate(p, 75, message={"v": 1, "outcome": "preempted", "step": 7}),
        "Disrupted",
        "TrainerPreempted",
    ),
    "node-deleted": (
        lambda k, p: k.core.delete_node((k.pod(p) or {})["spec"]["nodeName"]),
        "NodeLost",
        "NodeLost",
    ),
    "oom-killed": (lambda k, p: k.terminate(p, 137, reason="OOMKilled"), "OOMKilled", "OOMKilled"),
    "other-failure": (lambda k, p: k.terminate(p, 1), "Failed", "Error"),
}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_restart_cause(
    row: str, jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    act, cause, reason = ROWS[row]
    job = jobs.create()
    running(jobs, kubelet, job, 1)
    act(kubelet, f"{job}-a1-0")
    st = jobs.wait(job, lambda s: s.get("attempt") == 2, T, "attempt 2")
    assert (st["lastFailure"]["cause"], st["lastFailure"]["reason"]) == (cause, reason)
    key = {
        "Disrupted": "disrupted",
        "NodeLost": "nodeLost",
        "OOMKilled": "oomKilled",
        "Failed": "failed",
    }[cause]
    assert st["restarts"] == {key: 1, "total": 1}


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (78, None),
        (3, None),
        (1, {"v": 1, "outcome": "permanent-error", "message": "foreign checkpoint"}),
    ],
)
def test_permanent_error_fails_without_restart(
    code: int,
    message: dict[str, object] | None,
    jobs: Jobs,
    kubelet: FakeKubelet,
    operator: OperatorProcess,
) -> None:
    job = jobs.create(failurePolicy={"permanentExitCodes": [3]})
    running(jobs, kubelet, job, 1)
    kubelet.terminate(f"{job}-a1-1", code, message=message)
    st = jobs.wait(job, lambda s: s.get("phase") == "Failed", T, "Failed")
    assert st["attempt"] == 1 and st["lastFailure"]["cause"] == "PermanentError"
    cond = jobs.condition(job, "Failed")
    assert cond is not None and cond["reason"] == "PermanentError"


def test_success_when_every_pod_completes(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = jobs.create()
    running(jobs, kubelet, job, 1)
    kubelet.terminate(f"{job}-a1-0", 0, message={"v": 1, "outcome": "completed"})
    # Rank 0 finishing first leaves the job Running, once the operator has seen it.
    wait_for(
        lambda: "1 completed" in ((jobs.condition(job, "Running") or {}).get("message") or ""),
        T,
        "the operator seeing the first pod complete",
    )
    assert jobs.status(job).get("phase") == "Running"
    kubelet.terminate(f"{job}-a1-1", 0)
    jobs.wait(job, lambda s: s.get("phase") == "Succeeded", T, "Succeeded")
    cond = jobs.condition(job, "Succeeded")
    assert cond is not None and cond["reason"] == "Completed"


def test_finished_job_is_deleted_after_its_ttl_and_not_before(
    jobs: Jobs, kubelet: FakeKubelet, operator: OperatorProcess
) -> None:
    job = jobs.create(ttlSecondsAfterFinished=3)
    running(jobs, kubelet, job, 1)
    for i in range(2):
        kubelet.terminate(f"{job}-a1-{i}", 0, message={"v": 1, "outcome": "completed"})
    jobs.wait(job, lambda s: s.get("phase") == "Succeeded", T, "Succeeded")
    finished = time.monotonic()

    wait_for(lambda: jobs.gone(job), T, "the job deleted by its TTL")
    assert time.monotonic() - finished >= 2.0, "deleted before its TTL ran out"
