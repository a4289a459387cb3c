"""A fake kubelet for pods of one namespace: tests and benchmarks play the kubelet's part
against the real API server (bind pods to fake Nodes, set their status, confirm graceful
deletions), with no process behind any pod."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any

from kubernetes import client

from lazarus_devstack.harness import now_iso


class FakeKubelet:
    """Plays kubelet for pods of one namespace on fake Nodes.

    A background thread binds new pods to Ready nodes (round robin), reports
    them Running, and confirms graceful deletions of pods whose node is
    Ready and not in `self.unresponsive` (as a trainer that saved and exited
    on SIGTERM). Tests drive everything else explicitly.
    """

    def __init__(self, api: client.ApiClient, namespace: str, nodes: list[str]) -> None:
        self.core = client.CoreV1Api(api)
        self.ns = namespace
        self.nodes = list(nodes)
        self.unresponsive: set[str] = set()
        self.auto_run = True
        self.exit_code_on_sigterm = 75
        self._stop = threading.Event()
        self._paused = threading.Event()  # no API calls at all while set (pause())
        self._ticking = threading.Lock()
        self._next = 0
        self.created_at: dict[str, float] = {}
        for n in nodes:
            self.create_node(n)
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> FakeKubelet:
        self._thread.start()
        return self

    def pause(self) -> None:
        """Stop calling the API (after the tick in progress): a test may then count
        the API server's requests as the operator's alone."""
        self._paused.set()
        with self._ticking:  # the tick in progress is over
            pass

    def resume(self) -> None:
        self._paused.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for n in self.nodes:
            with contextlib.suppress(client.ApiException):
                self.core.delete_node(n)

    # --- nodes ------------------------------------------------------------------
    def create_node(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
        with contextlib.suppress(client.ApiException):
            self.core.create_node(body)
        self.set_node_ready(name, "True")

    def set_node_ready(self, name: str, status: str) -> None:
        cond = {
            "type": "Ready",
            "status": status,
            "reason": "KubeletReady" if status == "True" else "NodeStatusUnknown",
            "message": "fake kubelet",
            "lastHeartbeatTime": now_iso(),
            "lastTransitionTime": now_iso(),
        }
        self.core.patch_node_status(name, {"status": {"conditions": [cond]}})

    def taint_node(self, name: str, key: str, effect: str = "NoSchedule") -> None:
        node = json.loads(self.core.read_node(name, _preload_content=False).data)
        taints = list(node["spec"].get("taints") or [])
        taints.append({"key": key, "value": "1", "effect": effect})
        self.core.patch_node(name, {"spec": {"taints": taints}})

    # --- pods ---------------------------------------------------------------------
    def pods(self, job: str | None = None) -> list[dict[str, Any]]:
        sel = f"lazarus.dev/job={job}" if job else "lazarus.dev/job"
        resp = self.core.list_namespaced_pod(self.ns, label_selector=sel, _preload_content=False)
        items: list[dict[str, Any]] = json.loads(resp.data)["items"]
        return items

    def pod(self, name: str) -> dict[str, Any] | None:
        try:
            resp = self.core.read_namespaced_pod(name, self.ns, _preload_content=False)
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise
        got: dict[str, Any] = json.loads(resp.data)
        return got

    def bind(self, pod: str, node: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        # The answer is a Status, not a Binding: do not parse it.
        self.core.create_namespaced_binding(self.ns, body, _preload_content=False)

    def _container(self, pod: dict[str, Any]) -> str:
        return str(pod["spec"]["containers"][0]["name"])

    def set_running(self, name: str) -> None:
        pod = self.pod(name)
        assert pod is not None
        status = {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now_iso()}],
            "containerStatuses": [
                {
                    "name": self._container(pod),
                    "image": pod["spec"]["containers"][0]["image"],
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now_iso()}},
                }
            ],
        }
        self.core.patch_namespaced_pod_status(name, self.ns, {"status": status})

    def terminate(
        self,
        name: str,
        exit_code: int,
        *,
        reason: str | None = None,
        message: dict[str, Any] | None = None,
        disruption: str | None = None,
        status_reason: str | None = None,
    ) -> None:
        """The trainer container ended: phase, state and conditions as kubelet sets them."""
        pod = self.pod(name)
        assert pod is not None
        term: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": now_iso(),
            "finishedAt": now_iso(),
        }
        if message is not None:
            term["message"] = json.dumps(message)
        conditions: list[dict[str, Any]] = [
            {"type": "Ready", "status": "False", "lastTransitionTime": now_iso()}
        ]
        if disruption:
            conditions.append(
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": disruption,
                    "message": f"test: {disruption}",
                    "lastTransitionTime": now_iso(),
                }
            )
        status: dict[str, Any] = {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "conditions": conditions,
            "containerStatuses": [
                {
                    "name": self._container(pod),
                    "image": pod["spec"]["containers"][0]["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": term},
                }
            ],
        }
        if status_reason:
            status["reason"] = status_reason
        self.core.patch_namespaced_pod_status(name, self.ns, {"status": status})

    def confirm_deletion(self, name: str) -> None:
        with contextlib.suppress(client.ApiException):
            self.core.delete_namespaced_pod(name, self.ns, grace_period_seconds=0)

    def _loop(self) -> None:
        while not self._stop.is_set():
            # The API may be busy; try again next tick.
            with contextlib.suppress(Exception), self._ticking:
                if not self._paused.is_set():
                    self._tick()
            self._stop.wait(0.1)

    def _tick(self) -> None:
        for pod in self.pods():
            meta, spec = pod["metadata"], pod["spec"]
            name = meta["name"]
            self.created_at.setdefault(name, time.monotonic())
            node = spec.get("nodeName")
            if meta.get("deletionTimestamp"):
                if node is None or node not in self.unresponsive:
                    if node is not None and (pod.get("status") or {}).get("phase") == "Running":
                        # the trainer saved on SIGTERM and exited as preempted
                        self.terminate(name, self.exit_code_on_sigterm)
                    self.confirm_deletion(name)
                continue
            if node is None and self.nodes:
                ready = [n for n in self.nodes if n not in self.unresponsive]
                if not ready:
                    continue
                target = ready[self._next % len(ready)]
                self._next += 1
                self.bind(name, target)
                if self.auto_run:
                    self.set_running(name)
