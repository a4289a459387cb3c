"""Two replicas acting on one job at once, deterministically, against the real API server.

kopf's peering is a soft pause: a standby can still run a cycle (its timers fire, a
watch's listing can reach it as it pauses). Each replica here is a `Reconciler` in
this process with its own view of the watches (`Watched`, `Bodies`), set to the lag
a loaded replica shows; the API server and the checkpoint store are real. Replica A
launches attempt 1 for real; the job then moves on (attempt 2) as A's later cycles
would leave it, and replica B runs one cycle on its lagging view."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from lazarus_operator.builders import JobRef, ResumePoint, build_attempt
from lazarus_operator.cycle import Reconciler
from lazarus_operator.kube import Kube
from lazarus_operator.spec import parse_spec
from lazarus_operator.watched import Watched
from tests.conftest import ControlPlane

from .conftest import Jobs
from .harness import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.cluster

ATTEMPT_2 = {"attempt": 2, "launched": True, "phase": "Running"}
BOOKED = {"restarts": {"disrupted": 1, "total": 1}}


def _replica(cluster: ControlPlane) -> Reconciler:
    """A replica whose pod watch has shown none of the job's pods yet."""
    rec = Reconciler(Kube(cluster.api_client()))
    rec.watched = Watched(pods={}, nodes={}, services={})
    return rec


def _launch_attempt_1(cluster: ControlPlane, jobs: Jobs, job: str) -> dict[str, Any]:
    """Replica A's first cycle, for real: attempt 1 fenced, its pods created. The job
    as A's write left it (and as B's job watch shows it)."""

    async def run() -> dict[str, Any]:
        a = _replica(cluster)
        await a.kick(jobs.ns, job)
        body = a.bodies.get(jobs.ns, job)
        assert body is not None and body["status"]["attempt"] == 1
        return copy.deepcopy(body)

    return asyncio.run(run())


def _move_on(jobs: Jobs, job: str) -> None:
    """What A's later cycles did: attempt 1 ended (one disruption booked), its pods
    gone, attempt 2's pods created and the attempt launched."""
    for p in jobs.core.list_namespaced_pod(jobs.ns, label_selector=f"lazarus.dev/job={job}").items:
        jobs.core.delete_namespaced_pod(p.metadata.name, jobs.ns, grace_period_seconds=0)
    body = jobs.get(job)
    meta = body["metadata"]
    ref = JobRef(job, jobs.ns, meta["uid"])
    for pod in build_attempt(ref, parse_spec(body["spec"]), 2, ResumePoint("")):
        jobs.core.create_namespaced_pod(jobs.ns, pod)
    status = {**body["status"], **ATTEMPT_2, **BOOKED}
    jobs.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, jobs.ns, PLURAL, job, {"status": status}
    )


def _pod_names(jobs: Jobs, job: str) -> list[str]:
    pods = jobs.core.list_namespaced_pod(jobs.ns, label_selector=f"lazarus.dev/job={job}")
    return sorted(p.metadata.name for p in pods.items if not p.metadata.deletion_timestamp)


def _cycles(cluster: ControlPlane, rec_of: Any, jobs: Jobs, job: str, n: int) -> None:
    async def run() -> None:
        rec: Reconciler = rec_of()
        for _ in range(n):
            await rec.kick(jobs.ns, job)

    asyncio.run(run())


def test_a_replica_whose_pod_watch_lags_books_no_second_restart(
    cluster: ControlPlane, jobs: Jobs
) -> None:
    """B's job watch shows attempt 2 launched, its pod watch none of attempt 2's pods
    yet (the failure test_two_replicas_act_once showed under load: a second
    "pod vanished" restart booked for the one eviction)."""
    job = jobs.create()
    _launch_attempt_1(cluster, jobs, job)
    _move_on(jobs, job)

    _cycles(cluster, lambda: _replica(cluster), jobs, job, 2)

    st = jobs.status(job)
    assert st["attempt"] == 2 and st["restarts"] == BOOKED["restarts"]
    assert _pod_names(jobs, job) == [f"{job}-a2-0", f"{job}-a2-1"]


def test_a_replica_whose_job_watch_lags_creates_no_pods_of_an_ended_attempt(
    cluster: ControlPlane, jobs: Jobs
) -> None:
    """B's job watch still shows attempt 1 as A launched it (pods created, not yet all
    seen): its pods are gone since, and B must not create them again."""
    job = jobs.create()
    stale = _launch_attempt_1(cluster, jobs, job)
    _move_on(jobs, job)

    def lagging() -> Reconciler:
        b = _replica(cluster)
        b.bodies.put(stale)
        return b

    _cycles(cluster, lagging, jobs, job, 2)

    st = jobs.status(job)
    assert st["attempt"] == 2 and st["restarts"] == BOOKED["restarts"]
    assert _pod_names(jobs, job) == [f"{job}-a2-0", f"{job}-a2-1"]
