"""The local loop the end-to-end benchmarks run on (bench.goodput, bench.recovery).

A real kube-apiserver + etcd + controller-manager + scheduler and the S3 server (moto)
from the devstack, the operator as a subprocess, process kubelets (`LosableNode`, as the
e2e tests run them) whose pods are real subprocesses, and a clock on each pod's loss log.
Run with this checkout's folders on PYTHONPATH (hack/bench, hack/python): the operator
and the trainers it starts inherit it.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
import uuid
from functools import partial
from pathlib import Path

from kubernetes import client

from bench.goodput_trace import AttemptSteps
from lazarus_devstack import kueue
from lazarus_devstack.harness import (
    ControlPlane,
    LosableNode,
    OperatorProcess,
    S3Server,
    create_namespace,
    node_ready,
    wait_for,
)
from lazarus_devstack.stack import Ports, Stack, apply_crds


def attempt_of(pod_dir: str) -> int:
    """The attempt of a pod's directory, `<ns>_<job>-a<attempt>-<index>`."""
    return int(pod_dir.rsplit("-a", 1)[1].split("-", maxsplit=1)[0])


class StepClock:
    """Timestamps (monotonic) each loss-log line of a job's pods as it appears: per pod
    (`by_pod`, its directory's name: a replica group's generations apart) and per attempt,
    each step at the first time any of the attempt's pods logged it (replica groups log the
    same committed steps; a plain job has one pod per attempt here)."""

    def __init__(self, pods: Path, namespace: str, job: str) -> None:
        self.pods, self.namespace, self.job = pods, namespace, job
        self.seen: dict[int, list[tuple[int, float]]] = {}
        self.by_pod: dict[str, list[tuple[int, float]]] = {}
        self._steps: dict[int, set[int]] = {}
        self._offsets: dict[Path, int] = {}
        self._stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            time.sleep(0.02)

    def poll(self) -> None:
        now = time.monotonic()
        for path in self.pods.glob(f"{self.namespace}_{self.job}-a*/loss.jsonl"):
            attempt = attempt_of(path.parent.name)
            off = self._offsets.get(path, 0)
            with path.open("rb") as f:
                f.seek(off)
                chunk = f.read()
            done = chunk.rfind(b"\n") + 1  # a line still being written waits
            if not done:
                continue
            self._offsets[path] = off + done
            with self.lock:
                rows = self.seen.setdefault(attempt, [])
                mine = self.by_pod.setdefault(path.parent.name, [])
                steps = self._steps.setdefault(attempt, set())
                for line in chunk[:done].splitlines():
                    row = json.loads(line)
                    if "loss" in row:
                        step = int(row["step"])
                        mine.append((step, now))
                        if step not in steps:
                            steps.add(step)
                            rows.append((step, now))

    def pod_times(self, pod: str) -> list[float]:
        """When each step line of pod `pod` (its name) appeared."""
        with self.lock:
            return [t for _, t in self.by_pod.get(f"{self.namespace}_{pod}", [])]

    def steps_since(self, attempt: int, since: float) -> int:
        """Steps of `attempt` first logged after `since` (monotonic)."""
        with self.lock:
            return sum(1 for _, t in self.seen.get(attempt, []) if t > since)

    def last_step(self) -> int:
        """The highest step any pod of the job logged."""
        with self.lock:
            return max((s for rows in self.seen.values() for s, _ in rows), default=0)

    def steps_of(self, attempt: int) -> int:
        with self.lock:
            return len(self.seen.get(attempt, []))

    def first_seen(self, attempt: int) -> float | None:
        """When the attempt's first step line appeared (monotonic), if it has."""
        with self.lock:
            rows = self.seen.get(attempt)
            return rows[0][1] if rows else None

    def reached(self, after: int, steps: int) -> bool:
        """An attempt newer than `after` has run `steps` steps."""
        newest = self.newest()
        return newest > after and self.steps_of(newest) >= steps

    def newest(self) -> int:
        with self.lock:
            return max(self.seen, default=0)

    def stop(self) -> list[AttemptSteps]:
        self._stop.set()
        self.thread.join()
        self.poll()
        out = []
        for n, seen in sorted(self.seen.items()):
            rows = sorted(seen)
            out.append(AttemptSteps(n, rows[0][0], tuple(t for _, t in rows)))
        return out


class LocalLoop:
    """The stack, one namespace with the S3 secret and a bucket, the nodes, the operator.

    `with_kueue`: Kueue's controller runs in the stack too (`lazarus_devstack.kueue`; the
    controllers under their own identities, as `kueue.kueue_stack` runs them)."""

    def __init__(
        self,
        work: Path,
        namespace: str,
        nodes: tuple[str, ...],
        operator_env: dict[str, str],
        *,
        with_kueue: bool = False,
    ) -> None:
        self.work, self.ns = work, namespace
        self.stack = Stack(work / "stack", tied=True, own_identities=with_kueue)
        state = self.stack.up(
            Ports(apiserver=0, etcd_client=0, etcd_peer=0, s3=0), controllers=True, scheduler=True
        )
        self.state = state
        if with_kueue:
            kueue.start(self.stack, state)
        assert state.s3 is not None
        self.cp = ControlPlane.of(state)
        apply_crds(state)
        info = state.s3
        self.s3 = S3Server(info.endpoint, info.access_key, info.secret_key, info.region)
        api = self.cp.api_client()
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        create_namespace(self.core, namespace)
        keys = {"AWS_ACCESS_KEY_ID": info.access_key, "AWS_SECRET_ACCESS_KEY": info.secret_key}
        self.core.create_namespaced_secret(
            namespace,
            {
                "metadata": {"name": "s3"},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in keys.items()},
            },
        )
        self.bucket = f"{namespace}-{uuid.uuid4().hex[:8]}"
        self.s3.client().create_bucket(Bucket=self.bucket)
        self.pods = work / "pods"
        self.nodes = {n: LosableNode(self.cp, n, self.pods) for n in nodes}
        for node in self.nodes.values():
            node.start()
            wait_for(partial(node_ready, self.core, node.name), 60, f"node {node.name} Ready")
        self.operator = OperatorProcess(
            {**self.cp.env(), **operator_env}, namespace, work / "operator.log"
        )

    def close(self) -> None:
        self.operator.stop()
        for node in self.nodes.values():
            if node.kubelet is not None:
                node.kubelet.shutdown()
        self.stack.down()

    def checkpoint(self, prefix: str) -> dict[str, object]:
        """A job's spec.checkpoint on this loop's bucket (no save schedule)."""
        return {
            "uri": f"s3://{self.bucket}/{prefix}",
            "endpoint": self.s3.endpoint_url,
            "addressingStyle": "path",
            "secretRef": {"name": "s3"},
        }

    def node_of(self, pod: str) -> LosableNode:
        return self.nodes[self.core.read_namespaced_pod(pod, self.ns).spec.node_name]

    def evict(self, pod: str) -> None:
        """The Eviction API: DisruptionTarget, SIGTERM, the grace period."""
        self.core.create_namespaced_pod_eviction(
            pod, self.ns, client.V1Eviction(metadata=client.V1ObjectMeta(name=pod))
        )

    def crash(self, pod: str) -> None:
        """SIGKILL of the trainer's process group, as the OOM killer does."""
        os.killpg(self.node_of(pod).pid(pod), signal.SIGKILL)
