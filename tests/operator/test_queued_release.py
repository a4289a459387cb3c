"""Kueue's finalizer `kueue.x-k8s.io/resource-in-use` on the operator's Workload, as
tables: set at creation (Kueue keeps the quota of a Workload being deleted while it is
there, and removes it only from its own integrations' Workloads); removed once the
Workload is being deleted and no pod of the job from before that deletion is left; a
Workload being deleted while the job runs is no admission: the pods stop and a new
Workload queues."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from lazarus_operator import kueueworkload as kw
from lazarus_operator import status as s
from lazarus_operator.decide import decide
from lazarus_operator.spec import parse_spec
from lazarus_operator.vocabulary import CreatePod, CreateWorkload, DeletePod
from lazarus_operator.workloadrelease import releasable, release_patch

from .factories import NOW, iso, pod
from .test_decide import JOB, launched, running
from .test_queued import ADMITTED_WL, SPEC, facts, of
from .test_queued_podset import OWNER, with_workloads

pytestmark = pytest.mark.unit
OTHER = "foregroundDeletion"


def deleting(*finalizers: str, at: str | None = iso(NOW)) -> dict[str, Any]:
    meta = {**ADMITTED_WL["metadata"], "finalizers": list(finalizers), "resourceVersion": "7"}
    if at is not None:
        meta["deletionTimestamp"] = at
    return {**ADMITTED_WL, "metadata": meta}


def created(name: str, seconds: int) -> dict[str, Any]:
    """A pod of the job created `seconds` after NOW (negative: before)."""
    p = pod(name)
    p["metadata"]["creationTimestamp"] = iso(NOW + timedelta(seconds=seconds))
    return p


def test_the_workload_carries_kueues_finalizer_from_its_creation() -> None:
    wl = kw.build_workload(JOB, parse_spec(SPEC), "team-a", None)
    assert wl["metadata"]["finalizers"] == [kw.FINALIZER]


@pytest.mark.parametrize(
    ("wl", "pods", "keep"),
    [
        pytest.param(deleting(kw.FINALIZER, at=None), [], None, id="not-being-deleted"),
        pytest.param(deleting(OTHER), [], None, id="not-ours-to-remove"),
        pytest.param(
            deleting(kw.FINALIZER), [created("job-a1-0", -60)], None, id="its-pods-still-there"
        ),
        pytest.param(
            deleting(kw.FINALIZER), [created("job-a1-0", 0)], None, id="a-pod-of-the-same-second"
        ),
        pytest.param(deleting(kw.FINALIZER), [], [], id="its-pods-gone"),
        pytest.param(deleting(OTHER, kw.FINALIZER), [], [OTHER], id="the-others-kept"),
        pytest.param(
            deleting(kw.FINALIZER), [created("job-a2-0", 5)], [], id="only-later-pods-left"
        ),
    ],
)
def test_the_finalizer_goes_once_no_pod_from_before_the_deletion_is_left(
    wl: dict[str, Any], pods: list[dict[str, Any]], keep: list[str] | None
) -> None:
    assert releasable(wl, pods) == keep


def test_the_release_patch_is_at_the_version_read() -> None:
    patch = release_patch(deleting(OTHER, kw.FINALIZER), [OTHER])
    assert patch == {"metadata": {"finalizers": [OTHER], "resourceVersion": "7"}}


def test_a_workload_being_deleted_under_a_running_job_stops_it_and_queues_a_new_one() -> None:
    wl = deleting(kw.FINALIZER)
    wl["metadata"] = {**wl["metadata"], **OWNER}
    d = decide(with_workloads(facts(launched(), running(), wl), wl))
    assert {a.name for a in of(d, DeletePod)} == {"job-a1-0", "job-a1-1"}  # SIGTERM save
    [create] = of(d, CreateWorkload)
    assert create.manifest["metadata"]["name"] == kw.workload_name(JOB, 1)
    assert not of(d, CreatePod)
    assert d.status["restarts"] == {"disrupted": 1, "total": 1}  # a disruption, no failure
    assert d.status["phase"] != s.RUNNING
