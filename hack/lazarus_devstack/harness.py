"""Handles on a running devstack for tests and benchmarks: the control plane and S3
server as clients see them, the operator as a subprocess, a process kubelet that can
be lost, and the polling wait both use. Nothing here starts a stack (stack.py does)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from lazarus_devstack.kubelet import LocalKubelet
from lazarus_devstack.stack import S3Info, State

T = TypeVar("T")
GROUP, VERSION, PLURAL = "lazarus.dev", "v1alpha1", "trainingjobs"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def wait_for(fn: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll `fn` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class S3Server:
    """A running S3-compatible server (moto's server mode) on 127.0.0.1."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def open_store(self, uri: str, **kw: Any) -> Any:
        """A lazarus_store CheckpointStore for `uri` (s3://bucket/prefix) on this server."""
        from lazarus_store import open_store

        return open_store(
            uri,
            endpoint_url=self.endpoint_url,
            addressing_style="path",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region=self.region,
            **kw,
        )

    def committed_step(self, uri: str) -> int | None:
        """The step of the newest valid checkpoint under `uri`, read from the store itself.

        Tests that disrupt a job "after its first checkpoint" wait on this, not on the
        job's status: the operator books a checkpoint only on its next refresh (the
        resync, 10 s), by which time a short run may have finished its training."""
        with self.open_store(uri) as store:
            chosen = store.latest_valid().chosen
            return None if chosen is None else int(chosen.step)

    def env(self) -> dict[str, str]:
        """What a client subprocess (operator, trainer, boto3) needs to reach this server."""
        info = S3Info(self.endpoint_url, "", self.access_key, self.secret_key, self.region)
        return info.env()


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver (+ controller-manager) built from source."""

    run_dir: Path
    kubeconfig: Path
    server: str
    version: str
    kubectl_bin: str = "kubectl"

    @classmethod
    def of(cls, state: State) -> ControlPlane:
        """The control plane of a devstack that is up."""
        return cls(
            Path(state.run_dir),
            Path(state.kubeconfig),
            state.server,
            state.version,
            state.kubectl(),
        )

    def user_kubeconfig(self, user: str) -> Path:
        """Kubeconfig of another identity: "admin" (system:masters) or "nobody" (no RBAC)."""
        return self.kubeconfig if user == "admin" else self.run_dir / f"{user}.kubeconfig"

    def api_client(self, user: str = "admin") -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.user_kubeconfig(user)))

    def kubectl(
        self, *args: str, user: str = "admin", check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.kubectl_bin, f"--kubeconfig={self.user_kubeconfig(user)}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}


def create_namespace(api: Any, name: str) -> None:
    """Create namespace `name` and wait until it is ready for pods (its default
    ServiceAccount exists)."""
    from kubernetes import client

    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 30
    while True:
        try:
            api.read_namespaced_service_account("default", name)
            break
        except client.ApiException as err:
            if err.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def node_ready(core: Any, node: str) -> bool:
    """The Node is Ready and untainted: pods bound to it will run."""
    from kubernetes import client

    try:
        got = core.read_node(node)
    except client.ApiException:
        return False
    return not got.spec.taints and any(
        c.type == "Ready" and c.status == "True" for c in got.status.conditions or []
    )


class OperatorProcess:
    """`python -m lazarus_operator.main -n <ns>` with its log in a file."""

    def __init__(self, env: dict[str, str], namespace: str, log: Path, *extra: str) -> None:
        self.log_path = log
        self._log = log.open("ab")
        # Metrics off unless a test asks for a port: tests run side by side.
        full_env = {**os.environ, "LAZARUS_METRICS_PORT": "0", **env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lazarus_operator.main", "-n", namespace, *extra],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pause(self) -> None:
        """SIGSTOP: the process holds its connections and state but reads nothing."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crashed or evicted operator pod."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


class LosableNode:
    """A process kubelet that can be lost (its processes die, it stops heartbeating)."""

    def __init__(self, cluster: ControlPlane, name: str, work: Path) -> None:
        self.cluster, self.name, self.work = cluster, name, work
        self.kubelet: LocalKubelet | None = None

    def start(self) -> None:
        self.kubelet = LocalKubelet(str(self.cluster.kubeconfig), self.name, self.work)
        threading.Thread(target=self.kubelet.run, daemon=True).start()

    def lose(self) -> None:
        assert self.kubelet is not None
        self.kubelet.shutdown()  # SIGKILLs its pods' processes
        self.kubelet = None

    def report_unknown(self, core: Any) -> None:
        """What the node-lifecycle controller (off in this stack) writes for a node that
        stopped heartbeating: Ready=Unknown, as of now (about when training stopped)."""
        now = datetime.now(UTC).isoformat()
        cond = {
            "type": "Ready",
            "status": "Unknown",
            "reason": "NodeStatusUnknown",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        core.patch_node_status(self.name, {"status": {"conditions": [cond]}})

    def pid(self, pod: str) -> int:
        assert self.kubelet is not None
        return next(r.proc.pid for r in self.kubelet.running.values() if r.pod == pod)
