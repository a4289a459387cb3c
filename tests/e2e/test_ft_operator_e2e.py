"""Fault-tolerant replica groups run by the operator (docs/fault-tolerance.md, issue 26),
all real: operator process, kube-apiserver, process kubelet, S3 server, the job's
lighthouse pod and two replica groups of tests/trainer/ft_script.py.

- a group's process SIGKILLed mid-run: the operator replaces that group alone; the
  other never restarts, the replacement takes its state from its live peer (no store
  read), the job succeeds in its first attempt with the groups' weights equal;
- the lighthouse SIGKILLed mid-run: the operator recreates it, the groups ride it out,
  and the job succeeds in its first attempt;
- a group's node lost (its kubelet gone, its processes dead, Ready=Unknown): the group
  is replaced alone on the node left, as after the kill.
"""

from __future__ import annotations

import copy
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from lazarus_devstack.harness import GROUP, PLURAL, VERSION, LosableNode, node_ready
from lazarus_devstack.procs import free_port
from tests.conftest import ControlPlane, S3Server
from tests.operator.harness import OperatorProcess, wait_for
from tests.trainer.ft_harness import (
    SCRIPT,
    StepLogs,
    check_samples,
    contiguous_to_the_end,
    stalls,
    states_equal,
)

pytestmark = pytest.mark.e2e
# ~35 s of training left after the kill at step 60: a replacement (a lost node's is seen
# after nodeLossTimeoutSeconds) joins while its peer still trains, even on a loaded box.
STEPS, PAUSE, T = 600, 0.05, 300
LONG = 1000  # a kill, then a lost node: two replacements join while group 0 trains (one epoch)


@dataclass
class FtLoop:
    """One namespace's operator and node, and the groups' shared output directory."""

    custom: Any
    core: Any
    namespace: str
    node: LosableNode
    logs: StepLogs
    body: dict[str, Any]

    def create(self, name: str, body: dict[str, Any] | None = None) -> None:
        body = {**(body or self.body), "metadata": {"name": name}}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def status(self, name: str) -> dict[str, Any]:
        got = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return dict(got.get("status") or {})

    def finished(self, name: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            st = self.status(name)
            return st if st.get("phase") in ("Succeeded", "Failed") else None

        got: dict[str, Any] = wait_for(done, T, f"{name} to finish", every=0.5)
        return got

    def kill(self, pod: str) -> float:
        """SIGKILL the pod's process group (as the OOM killer or a crash); returns when."""
        os.killpg(self.node.pid(pod), signal.SIGKILL)
        return time.time()

    def events(self, name: str, reason: str) -> list[str]:
        got = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        return [str(e.message) for e in got.items if e.reason == reason]


def job_body(node: str, bucket: str, s3: S3Server, secret: str, out: Path) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "spec": {
            "replicas": 2,
            "gracePeriodSeconds": 30,
            "faultTolerance": {
                "replicaGroups": 2,
                "minReplicaGroups": 1,
                "heartbeatTimeoutMilliseconds": 1000,
                # Every pod here is 127.0.0.1: a lighthouse of its own, whatever else runs.
                "lighthousePort": free_port(),
            },
            "checkpoint": {
                "uri": f"s3://{bucket}/ft",
                "endpoint": s3.endpoint_url,
                "addressingStyle": "path",
                "secretRef": {"name": secret},
                "save": {"everySteps": 50},
            },
            "failurePolicy": {"backoff": {"initialSeconds": 1}},
            "template": {
                "spec": {
                    "nodeName": node,
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "lazarus-trainer:dev",
                            "command": [sys.executable],
                            "args": [SCRIPT, str(out), str(STEPS), str(PAUSE)],
                            "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
                        }
                    ],
                }
            },
        },
    }


@pytest.fixture
def loop(
    cluster: ControlPlane,
    namespace: str,
    s3: S3Server,
    bucket: str,
    s3_secret: str,
    local_node: LosableNode,
    tmp_path: Path,
) -> Iterator[FtLoop]:
    out = tmp_path / "out"
    out.mkdir()
    operator = OperatorProcess(
        {**cluster.env(), "LAZARUS_PROGRESS_SECONDS": "1"}, namespace, tmp_path / "operator.log"
    )
    api = cluster.api_client()
    body = job_body(local_node.name, bucket, s3, s3_secret, out)
    try:
        yield FtLoop(
            client.CustomObjectsApi(api),
            client.CoreV1Api(api),
            namespace,
            local_node,
            StepLogs(out),
            body,
        )
    finally:
        operator.stop()
        print(f"--- operator log (tail) ---\n{operator.log()[-4000:]}")
        for log in sorted(tmp_path.glob("pods*/*/log")):
            print(f"--- {log.parent.name} ---\n{log.read_text(errors='replace')[-1500:]}")


def one_process_throughout(logs: StepLogs, group: int, steps: int = STEPS) -> None:
    rows = logs.rows(group)
    assert len({r["pid"] for r in rows}) == 1, f"group {group} restarted"
    assert contiguous_to_the_end(logs, group, steps), f"group {group} skipped or redid steps"
    print(f"group {group}'s longest gaps: {[round(s, 3) for s in stalls(rows)[:3]]} s")


def test_a_killed_group_is_replaced_alone_and_heals_from_its_peer(loop: FtLoop) -> None:
    loop.create("ftg")
    loop.logs.wait_step(1, 60, T)
    victim = loop.node.pid("ftg-a1-1")
    loop.kill("ftg-a1-1")
    st = loop.finished("ftg")
    assert st["phase"] == "Succeeded", st
    assert st["attempt"] == 1 and "total" not in (st.get("restarts") or {}), st
    ft = st["faultTolerance"]
    assert ft["replacements"] == {"failed": 1, "total": 1}, ft
    assert ft["generations"] == [0, 1], ft
    last = ft["lastReplacement"]
    got = {k: last.get(k) for k in ("group", "attempt", "generation", "cause", "pod", "exitCode")}
    assert got == {
        "group": 1,
        "attempt": 1,
        "generation": 1,
        "cause": "Failed",
        "pod": "ftg-a1-1",
        "exitCode": 137,
    }, last
    assert loop.events("ftg", "GroupReplaced"), "no GroupReplaced event"
    healed_without_a_restart(loop.logs, victim)


def healed_without_a_restart(logs: StepLogs, victim: int) -> None:
    """Group 0 trained throughout; group 1's replacement (not `victim`) took its state
    from group 0, read nothing from the store, and ended equal to it."""
    one_process_throughout(logs, 0)
    rows = [r for r in logs.rows(1) if r["pid"] != victim]
    start = next(r for r in rows if r["event"] == "start")
    end = next(r for r in rows if r["event"] == "end")
    assert start["store_reads"] == [] and start["resumed"] is None, "the replacement read the store"
    assert end["store_reads"] == [], "the replacement read the store"
    assert end["healed_at"] is not None and end["healed_at"] >= 60, "no live state from a peer"
    print(f"live recovery of step {end['healed_at']}: {end['heal_seconds']:.3f} s to load")
    assert states_equal(logs.final(0), logs.final(1))
    # The victim may die between a step's commit and its log line: one row unwritten.
    print(f"{check_samples(logs, unlogged=1)} samples, each once")


def test_a_killed_lighthouse_is_recreated_and_the_groups_ride_it_out(loop: FtLoop) -> None:
    loop.create("ftl")
    loop.logs.wait_step(0, 60, T)
    loop.kill("ftl-a1-lighthouse")
    st = loop.finished("ftl")
    assert st["phase"] == "Succeeded", st
    assert st["attempt"] == 1 and "total" not in (st.get("restarts") or {}), st
    ft = st["faultTolerance"]
    assert ft.get("lighthouseRestarts") == 1, ft
    assert not (ft.get("replacements") or {}).get("total"), ft
    for group in range(2):
        one_process_throughout(loop.logs, group)
    assert states_equal(loop.logs.final(0), loop.logs.final(1))
    check_samples(loop.logs)


class Binder:
    """The scheduler's part (this stack runs none): binds each of the namespace's pending
    pods to the node `place` names for its labels, and remembers where."""

    def __init__(self, core: Any, namespace: str, place: Callable[[dict[str, str]], str]) -> None:
        self.core, self.namespace, self.place = core, namespace, place
        self.bound: dict[str, str] = {}
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            pending = self.core.list_namespaced_pod(
                self.namespace, field_selector="spec.nodeName="
            ).items
            for pod in pending:
                node = self.place(pod.metadata.labels or {})
                target = client.V1ObjectReference(kind="Node", name=node)
                binding = client.V1Binding(
                    metadata=client.V1ObjectMeta(name=pod.metadata.name), target=target
                )
                try:  # the client cannot read a binding's answer back: not preloaded
                    self.core.create_namespaced_pod_binding(
                        pod.metadata.name, self.namespace, binding, _preload_content=False
                    )
                except client.ApiException as err:  # gone or bound meanwhile: next round
                    print(f"binding {pod.metadata.name}: {err.status} {err.reason}")
                    continue
                self.bound[pod.metadata.name] = node


def test_a_group_killed_then_its_node_lost_is_replaced_alone_each_time(
    loop: FtLoop, cluster: ControlPlane, tmp_path: Path
) -> None:
    """The issue's sequence on one job: group 1's process SIGKILLed (replaced on its
    node), then that node lost (replaced on the node left); group 0 never stops."""
    other = LosableNode(cluster, f"{loop.namespace}-b", tmp_path / "pods-b")
    other.start()
    wait_for(lambda: node_ready(loop.core, other.name), 30, f"node {other.name} Ready")
    body = copy.deepcopy(loop.body)
    body["spec"]["nodeLossTimeoutSeconds"] = 3
    template = body["spec"]["template"]["spec"]
    del template["nodeName"]
    template["containers"][0]["args"][2] = str(LONG)  # two replacements' worth of training

    def place(labels: dict[str, str]) -> str:
        group, generation = labels.get("lazarus.dev/index"), labels.get("lazarus.dev/generation")
        return other.name if group == "1" and generation in ("0", "1") else loop.node.name

    binder = Binder(loop.core, loop.namespace, place)
    try:
        loop.create("ftn", body)
        loop.logs.wait_step(1, 60, T)
        killed = other.pid("ftn-a1-1")
        os.killpg(killed, signal.SIGKILL)
        # The replacement on the same node heals and trains beside group 0 ...
        wait_for(
            lambda: any(r["pid"] != killed and r["n"] == 2 for r in loop.logs.steps(1)),
            T,
            "group 1's replacement training with group 0",
        )
        first = other.pid("ftn-a1-1-r1")
        other.lose()  # ... then its node goes: its processes die, it stops heartbeating
        other.report_unknown(loop.core)
        st = loop.finished("ftn")
    finally:
        binder.stop.set()
        if other.kubelet is not None:
            other.kubelet.shutdown()
        loop.core.delete_node(other.name)
    assert st["phase"] == "Succeeded", st
    assert st["attempt"] == 1 and "total" not in (st.get("restarts") or {}), st
    ft = st["faultTolerance"]
    assert ft["replacements"] == {"failed": 1, "nodeLost": 1, "total": 2}, ft
    assert ft["generations"] == [0, 2], ft
    last = ft["lastReplacement"]
    assert (last.get("cause"), last.get("pod"), last.get("node")) == (
        "NodeLost",
        "ftn-a1-1-r1",
        other.name,
    ), last
    assert binder.bound.get("ftn-a1-1-r1") == other.name, binder.bound
    assert binder.bound.get("ftn-a1-1-r2") == loop.node.name, binder.bound
    one_process_throughout(loop.logs, 0, LONG)
    for victim in (killed, first):
        rows = [r for r in loop.logs.rows(1) if r["pid"] == victim]
        assert not any(r["event"] == "end" for r in rows), "a killed process logged an end"
    last_rows = [r for r in loop.logs.rows(1) if r["pid"] not in (killed, first)]
    start = next(r for r in last_rows if r["event"] == "start")
    end = next(r for r in last_rows if r["event"] == "end")
    assert start["store_reads"] == [] and end["store_reads"] == [], "a replacement read the store"
    assert end["healed_at"] is not None and end["healed_at"] > 60, "no live state from a peer"
    assert states_equal(loop.logs.final(0), loop.logs.final(1))
    print(f"{check_samples(loop.logs, unlogged=2)} samples, each once")
