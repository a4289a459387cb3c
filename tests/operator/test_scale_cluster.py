"""Scale without polling (issue 10), measured by the API server itself: a quiet
resync reads nothing from the API, a relaunch does not POST the Service again,
and jobs on one endpoint and Secret share one storage client.

The API server's request count has no client label, so this module has a control
plane of its own: no earlier test's namespace is terminating (the namespace
controller LISTs its pods until it goes) while a quiet window is counted."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from lazarus_devstack.procs import free_port
from lazarus_devstack.stack import Ports, Stack, apply_crds
from tests.conftest import CRD_DIR, ControlPlane

from .conftest import Jobs
from .harness import (
    FakeKubelet,
    OperatorProcess,
    api_requests,
    metric_value,
    requests_between,
)

pytestmark = pytest.mark.cluster
T = 60
# What a cycle used to read or write through the API; now watched or, the Secret,
# cached (and written only when something changes).
WATCHED = {"pods", "nodes", "secrets", "services", "trainingjobs", "trainingjobs/status"}
CYCLES = "lazarus_operator_cycle_duration_seconds_count"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    stack = Stack(tmp_path_factory.mktemp("scale-kube"), tied=True)
    ports = Ports(apiserver=0, etcd_client=0, etcd_peer=0, s3=0)
    state = stack.up(ports, s3=False, controllers=True)
    try:
        apply_crds(state, CRD_DIR)
        yield ControlPlane.of(state)
    finally:
        stack.down()


def running(jobs: Jobs, name: str, attempt: int = 1) -> None:
    jobs.wait(
        name,
        lambda s: s.get("phase") == "Running" and s.get("attempt") == attempt,
        T,
        f"attempt {attempt} Running",
    )


def test_a_quiet_resync_makes_no_api_request(
    jobs: Jobs,
    kubelet: FakeKubelet,
    start_operator: Callable[..., OperatorProcess],
    cluster: ControlPlane,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAZARUS_RESYNC_SECONDS", "1")
    port = free_port()
    start_operator("--metrics-port", str(port))
    names = [jobs.create(f"quiet-{i}") for i in range(3)]
    for name in names:
        running(jobs, name)
    api = cluster.api_client()
    kubelet.pause()  # from here on, the operator is the only client of these resources
    time.sleep(1.5)  # the last events' cycles end
    cycles, before = metric_value(port, CYCLES), api_requests(api)
    time.sleep(4.5)  # four resync periods
    after, cycles = api_requests(api), metric_value(port, CYCLES) - cycles
    kubelet.resume()
    calls = {
        f"{verb} {res}": n
        for (verb, res), n in requests_between(before, after).items()
        if res in WATCHED and verb != "WATCH"
    }
    assert cycles >= 3 * len(names), "the resync ran every job's cycle"
    assert calls == {}, "a resync reads pods, nodes and the job from the watches, the Secret cached"
    posts = requests_between(before, after).get(("POST", "events"), 0)
    assert posts == 0, "nothing happened: no event (the operator posts core v1 Events)"


def test_a_relaunch_posts_its_pods_once_and_not_the_service(
    jobs: Jobs,
    kubelet: FakeKubelet,
    operator: OperatorProcess,
    cluster: ControlPlane,
) -> None:
    name = jobs.create("relaunch")
    running(jobs, name)
    api = cluster.api_client()
    before = api_requests(api)
    kubelet.terminate(f"{name}-a1-0", 1)  # a crash: the gang relaunches after 1 s
    running(jobs, name, attempt=2)
    posts = requests_between(before, api_requests(api))
    assert posts.get(("POST", "services"), 0) == 0, "the Service exists: the watch says so"
    assert posts.get(("POST", "pods"), 0) == 2, "each pod of the new attempt, once"


def test_jobs_on_one_endpoint_and_secret_share_one_storage_client(
    jobs: Jobs,
    kubelet: FakeKubelet,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    port = free_port()
    start_operator("--metrics-port", str(port))
    names = [jobs.create(f"share-{i}") for i in range(4)]
    for name in names:
        running(jobs, name)  # each opened its own root: a selection and a fence record
    assert metric_value(port, "lazarus_operator_storage_clients") == 1


def test_a_launch_writes_the_job_only_through_its_status(
    jobs: Jobs,
    kubelet: FakeKubelet,
    operator: OperatorProcess,
    cluster: ControlPlane,
) -> None:
    """No bookkeeping PATCH of the job itself (kopf's create handler wrote an annotation
    on every job), and the events of our own status writes start no cycle of their own."""
    api = cluster.api_client()
    before = api_requests(api)
    names = [jobs.create(f"launch-{i}") for i in range(3)]
    for name in names:
        running(jobs, name)
    time.sleep(1.5)  # the last events' cycles end
    writes = requests_between(before, api_requests(api))
    assert writes.get(("PATCH", "trainingjobs"), 0) == 0
    assert 0 < writes.get(("PATCH", "trainingjobs/status"), 0) <= 3 * len(names)
