"""Kueue's priority preemption with real parts: the real Kueue v0.17, the operator
process, a process kubelet, the reference trainer, the S3 server (issue 25).

One LocalQueue whose quota fits one job. A low-priority TrainingJob trains; a
high-priority one enters the queue; Kueue preempts the low one, whose trainer saves
on SIGTERM; it waits Queued, is re-admitted once the high one succeeded, resumes from
its preemption checkpoint and succeeds with final parameters bitwise equal to an
undisturbed run of the same job, 0 lost steps booked (exact), one `disrupted` restart
with Kueue's reason. Kueue's webhooks see every Pod and Job, so it runs on a stack of
its own (`kueue.kueue_stack`): `cluster` is overridden here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from kubernetes import client

from lazarus_devstack import kueue
from lazarus_devstack.harness import GROUP, PLURAL, VERSION, LosableNode, node_ready, wait_for
from lazarus_devstack.kueue_manifests import Queues
from lazarus_devstack.kueue_preempt import Preempter, in_queue, priority_classes
from lazarus_devstack.stack import State, apply_crds
from tests.conftest import CRD_DIR, ControlPlane, S3Server
from tests.operator.harness import OperatorProcess

pytestmark = pytest.mark.e2e
STEPS = 150  # ~15 s of steps: room for the preemption to land under load
T = 240


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[State, ControlPlane]]:
    """A control plane of its own with Kueue, and the TrainingJob CRD."""
    with kueue.kueue_stack(tmp_path_factory.mktemp("kueue-e2e")) as state:
        apply_crds(state, CRD_DIR)
        cp = ControlPlane.of(state)
        yield state, cp


@pytest.fixture(scope="module")
def cluster(stack: tuple[State, ControlPlane]) -> ControlPlane:
    return stack[1]


@pytest.fixture
def env(
    stack: tuple[State, ControlPlane], namespace: str, s3: S3Server, bucket: str, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """The S3 secret, a process kubelet, the operator, and a queue whose quota fits one job."""
    state, cluster = stack
    core = client.CoreV1Api(cluster.api_client())
    keys = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "s3"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in keys.items()},
        },
    )
    queues = Queues(namespace, {"cpu": "1"}, f"f-{namespace}", f"cq-{namespace}")
    low, high = f"low-{namespace}", f"high-{namespace}"
    kueue.apply(state, [*queues.docs(), *priority_classes(low, high)])
    node = LosableNode(cluster, f"{namespace}-local", tmp_path / "pods")
    node.start()
    wait_for(lambda: node_ready(core, node.name), 30, f"node {node.name} Ready")
    operator = OperatorProcess(
        {**cluster.env(), "LAZARUS_PROGRESS_SECONDS": "1"}, namespace, tmp_path / "operator.log"
    )
    yield {
        "custom": client.CustomObjectsApi(cluster.api_client()),
        "node": node.name,
        "pods": tmp_path / "pods",
        "ns": namespace,
        "s3": s3,
        "bucket": bucket,
        "queue": queues.local_queue,
        "low": low,
        "high": high,
    }
    operator.stop()
    print(f"--- operator log (tail) ---\n{operator.log()[-3000:]}")
    if node.kubelet is not None:
        node.kubelet.shutdown()
    for log in (tmp_path / "pods").glob("*/log"):
        print(f"--- {log.parent.name} ---\n{log.read_text(errors='replace')[-1500:]}")
    core.delete_node(node.name)


def body(e: dict[str, Any], name: str, priority: str, steps: int = STEPS) -> dict[str, Any]:
    """The reference trainer as a queued TrainingJob: 1 cpu, the whole quota."""
    venv_bin = str(Path(sys.executable).parent)
    container = {
        "name": "trainer",
        "image": "lazarus-trainer:dev",
        "command": [f"{venv_bin}/lazarus-train"],
        "args": [
            *("--steps", str(steps), "--step-sleep", "0.1", "--seed", "0"),
            *("--loss-log", "loss.jsonl", "--final-params", "final.pt"),
        ],
        "resources": {"requests": {"cpu": "1"}},
    }
    job = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "gracePeriodSeconds": 30,
            "checkpoint": {
                "uri": f"s3://{e['bucket']}/{name}",
                "endpoint": e["s3"].endpoint_url,
                "addressingStyle": "path",
                "secretRef": {"name": "s3"},
                "save": {"everySteps": 25},
            },
            "failurePolicy": {"backoff": {"initialSeconds": 1}},
            "template": {"spec": {"nodeName": e["node"], "containers": [container]}},
        },
    }
    return in_queue(job, e["queue"], priority)


def pod_file(e: dict[str, Any], job: str, attempt: int, name: str) -> Path:
    return Path(e["pods"]) / f"{e['ns']}_{job}-a{attempt}-0" / name


def logged_steps(e: dict[str, Any], job: str, attempt: int) -> list[int]:
    """The steps attempt `attempt`'s trainer logged: the truth the booking is held to."""
    try:
        lines = pod_file(e, job, attempt, "loss.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    steps = []
    for line in lines:
        with contextlib.suppress(ValueError, KeyError):  # the line being written
            steps.append(int(json.loads(line)["step"]))
    return steps


def finished(preempter: Preempter, name: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        st = preempter.status(name)
        return st if st.get("phase") in ("Succeeded", "Failed") else None

    return wait_for(done, T, f"{name} finished")


def test_a_job_preempted_by_kueue_resumes_bitwise_equal_losing_nothing(
    env: dict[str, Any],
) -> None:
    preempter = Preempter(env["custom"], env["ns"], T)

    def create(job: dict[str, Any]) -> None:
        env["custom"].create_namespaced_custom_object(GROUP, VERSION, env["ns"], PLURAL, job)

    create(body(env, "undisturbed", env["low"]))
    ref = finished(preempter, "undisturbed")
    assert ref["phase"] == "Succeeded" and not ref.get("restarts"), ref

    create(body(env, "low", env["low"]))
    # Past a periodic save and well short of the next one: a save on SIGTERM is the only
    # way to lose nothing.
    wait_for(lambda: len(logged_steps(env, "low", 1)) >= 30, T, "low at step 30", every=0.05)
    got = preempter.preempt("low", body(env, "high", env["high"], steps=10))
    assert got.reason == "Preempted"
    st = finished(preempter, "low")

    assert st["phase"] == "Succeeded", st
    assert st["restarts"] == {"disrupted": 1, "total": 1}, st
    assert st["lastFailure"]["reason"] == "Preempted", st["lastFailure"]
    assert st["lostSteps"] == 0, st
    resumed = st["history"][1]
    assert resumed["lostSteps"] == 0 and resumed["lostEstimated"] is False, resumed
    with env["s3"].open_store(f"s3://{env['bucket']}/low") as store:
        manifest = store.read_manifest(resumed["resumedFrom"])
    assert manifest.reason == "preemption", manifest
    # Exactly where attempt 1 stopped: the last step its trainer logged.
    assert manifest.step == max(logged_steps(env, "low", 1)), manifest
    assert logged_steps(env, "low", 2)[0] == manifest.step + 1

    want = torch.load(pod_file(env, "undisturbed", 1, "final.pt"), weights_only=True)
    have = torch.load(pod_file(env, "low", 2, "final.pt"), weights_only=True)
    assert have.keys() == want.keys()
    unequal = [k for k in want if not torch.equal(have[k], want[k])]
    assert not unequal, f"final parameters differ from the undisturbed run's: {unequal}"
