"""A process kubelet: runs the pods bound to one local Node as plain subprocesses.

There is no container runtime here (no Docker engine), so the demo and the
end-to-end drills need something that plays kubelet honestly: it registers a
Ready Node, starts each bound pod's first container `command + args` with the
pod's env, reports Running/Succeeded/Failed with the container's exit code and
termination message, and on graceful deletion sends SIGTERM, waits the pod's
grace period, then SIGKILL — as a real kubelet does. Images are ignored: the
command runs from this machine's PATH (the project's venv).

Deliberate simplifications, all for loopback: every pod's IP is 127.0.0.1 and
`*.svc` names in env (whole values or URL hosts) resolve to 127.0.0.1; downward-API
annotations and the termination log live in a per-pod directory whose paths are passed
through the contract's LAZARUS_ANNOTATIONS_FILE / LAZARUS_TERMINATION_LOG variables.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

log = logging.getLogger("lazarus.kubelet")

ANNOTATIONS_ENV = "LAZARUS_ANNOTATIONS_FILE"
TERMINATION_ENV = "LAZARUS_TERMINATION_LOG"
MAX_MESSAGE = 4096


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _downward_annotations(annotations: dict[str, str]) -> str:
    """The downward API's file format: one `key="value"` line per annotation, sorted."""
    lines = []
    for key in sorted(annotations):
        value = annotations[key].replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'{key}="{value}"')
    return "\n".join(lines)


# A Service DNS name as a whole value, `host:port`, or the host of an http(s) URL (an
# s3:// URI's first part is a bucket, not a host).
_SVC_HOST = re.compile(
    r"^(?P<head>https?://(?:[^@/]*@)?)?"
    r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?\.svc(?:\.cluster\.local)?"
    r"(?P<tail>(?::\d+)?(?:[/?#].*)?)$",
    re.IGNORECASE | re.DOTALL,
)


def _local_host(value: str) -> str:
    """Service DNS names cannot resolve here; every pod shares 127.0.0.1. The name is
    replaced where it is the whole value or a URL's host (scheme, port and path kept:
    the lighthouse's `http://<job>-lighthouse.<ns>.svc:29510`)."""
    return _SVC_HOST.sub(r"\g<head>127.0.0.1\g<tail>", value, count=1)


@dataclass
class Running:
    pod: str
    namespace: str
    uid: str
    proc: subprocess.Popen[bytes]
    dir: Path
    started: str
    kill_at: float | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    container: str = ""
    image: str = ""
    announced: bool = False  # the Running status reached the API server


class LocalKubelet:
    def __init__(self, kubeconfig: str, node: str, work_dir: Path) -> None:
        self.api_client = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(self.api_client)
        self.node = node
        self.work_dir = work_dir
        self.running: dict[str, Running] = {}
        self.done: set[str] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    # --- node -----------------------------------------------------------------
    def register(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node,
                "labels": {"kubernetes.io/hostname": self.node, "lazarus.dev/local": "true"},
            },
        }
        with contextlib.suppress(client.ApiException):
            self.core.create_node(body)
        self.heartbeat()
        # Admission taints new nodes not-ready; the node-lifecycle controller,
        # which we do not run (it would evict the tests' fake nodes' pods),
        # would clear it once Ready. Do its part for our own node.
        node = self.core.read_node(self.node)
        taints = [
            t for t in (node.spec.taints or []) if not t.key.startswith("node.kubernetes.io/")
        ]
        self.core.patch_node(self.node, {"spec": {"taints": taints or None}})

    def heartbeat(self) -> None:
        now = _now()
        status = {
            "status": {
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "lazarus local kubelet is posting ready status",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            }
        }
        self.core.patch_node_status(self.node, status)

    # --- pods -----------------------------------------------------------------
    def _env(self, pod: Any, container: Any, pod_dir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG",))}
        meta = pod.metadata
        fields = {
            "metadata.name": meta.name,
            "metadata.namespace": meta.namespace,
            "metadata.uid": meta.uid,
            "spec.nodeName": self.node,
            "status.podIP": "127.0.0.1",
            "status.hostIP": "127.0.0.1",
        }
        for item in container.env or []:
            if item.value is not None:
                env[item.name] = _local_host(item.value)
            elif item.value_from and item.value_from.field_ref:
                path = item.value_from.field_ref.field_path
                if path.startswith("metadata.annotations["):
                    key = path[len("metadata.annotations['") : -2]
                    env[item.name] = (meta.annotations or {}).get(key, "")
                elif path.startswith("metadata.labels["):
                    key = path[len("metadata.labels['") : -2]
                    env[item.name] = (meta.labels or {}).get(key, "")
                else:
                    env[item.name] = fields.get(path, "")
            elif item.value_from and item.value_from.secret_key_ref:
                ref = item.value_from.secret_key_ref
                secret = self.core.read_namespaced_secret(ref.name, meta.namespace)
                raw = (secret.data or {}).get(ref.key)
                if raw is None and not ref.optional:
                    raise RuntimeError(f"secret {ref.name} has no key {ref.key}")
                if raw is not None:
                    env[item.name] = base64.b64decode(raw).decode()
            elif item.value_from and item.value_from.config_map_key_ref:
                ref = item.value_from.config_map_key_ref
                cm = self.core.read_namespaced_config_map(ref.name, meta.namespace)
                env[item.name] = (cm.data or {}).get(ref.key, "")
        env[ANNOTATIONS_ENV] = str(pod_dir / "annotations")
        env[TERMINATION_ENV] = str(pod_dir / "termination-log")
        env["HOSTNAME"] = meta.name
        return env

    def start_pod(self, pod: Any) -> None:
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        container = pod.spec.containers[0]
        pod_dir = self.work_dir / f"{pod.metadata.namespace}_{pod.metadata.name}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        annotations = dict(pod.metadata.annotations or {})
        (pod_dir / "annotations").write_text(_downward_annotations(annotations))
        (pod_dir / "termination-log").write_text("")
        argv = [*(container.command or []), *(container.args or [])]
        started = _now()
        try:
            if not argv:
                raise RuntimeError("the local kubelet needs an explicit container command")
            env = self._env(pod, container, pod_dir)
            logf = (pod_dir / "log").open("ab")
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=pod_dir,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            logf.close()
        except (OSError, RuntimeError, client.ApiException) as err:
            log.warning("%s: cannot start: %s", key, err)
            self._report_exit(pod.metadata.namespace, pod.metadata.name, 128, started, str(err))
            self.done.add(pod.metadata.uid)
            return
        log.info("%s: started pid %d: %s", key, proc.pid, " ".join(argv))
        run = Running(
            pod.metadata.name,
            pod.metadata.namespace,
            pod.metadata.uid,
            proc,
            pod_dir,
            started,
            annotations=annotations,
            container=container.name,
            image=container.image or "local",
        )
        self.running[key] = run
        self._announce(run)

    def _announce(self, run: Running) -> None:
        """Report the pod Running (retried by housekeeping while the API is down)."""
        self.core.patch_namespaced_pod_status(
            run.pod,
            run.namespace,
            {
                "status": {
                    "phase": "Running",
                    "podIP": "127.0.0.1",
                    "podIPs": [{"ip": "127.0.0.1"}],
                    "hostIP": "127.0.0.1",
                    "startTime": run.started,
                    "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": run.started},
                        {
                            "type": "ContainersReady",
                            "status": "True",
                            "lastTransitionTime": run.started,
                        },
                    ],
                    "containerStatuses": [
                        {
                            "name": run.container,
                            "image": run.image,
                            "imageID": "",
                            "ready": True,
                            "restartCount": 0,
                            "started": True,
                            "state": {"running": {"startedAt": run.started}},
                        }
                    ],
                }
            },
        )
        run.announced = True

    def _report_exit(
        self, namespace: str, name: str, code: int, started: str, message: str
    ) -> None:
        """Report the container's end. Raises while the API does not take it (down,
        overloaded: a 5xx or 429), so the caller keeps the pod and tries again, and
        its final delete waits: as a real kubelet's status manager, the end lands
        before the pod goes, or the operator never hears the trainer's last step.
        Only a pod already gone has nothing left to report to."""
        finished = _now()
        reason = "Completed" if code == 0 else "Error"
        try:
            pod = self.core.read_namespaced_pod(name, namespace)
            container = pod.spec.containers[0]
            self.core.patch_namespaced_pod_status(
                name,
                namespace,
                {
                    "status": {
                        "phase": "Succeeded" if code == 0 else "Failed",
                        "conditions": [
                            {"type": "Ready", "status": "False", "lastTransitionTime": finished},
                            {
                                "type": "ContainersReady",
                                "status": "False",
                                "lastTransitionTime": finished,
                            },
                        ],
                        "containerStatuses": [
                            {
                                "name": container.name,
                                "image": container.image or "local",
                                "imageID": "",
                                "ready": False,
                                "restartCount": 0,
                                "started": False,
                                "state": {
                                    "terminated": {
                                        "exitCode": code,
                                        "reason": reason,
                                        "message": message,
                                        "startedAt": started,
                                        "finishedAt": finished,
                                    }
                                },
                            }
                        ],
                    }
                },
            )
        except client.ApiException as err:
            if err.status != 404:
                raise
            log.info("%s/%s: gone before its exit was reported", namespace, name)

    def sync(self, pod: Any) -> None:
        """Act on one observed pod: start it, pass annotation changes on, or stop it."""
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        with self.lock:
            if self.stopping.is_set():
                return
            run = self.running.get(key)
            if run and run.uid != pod.metadata.uid:
                return
            if pod.metadata.deletion_timestamp is not None:
                if run is None:
                    self._finalize(pod.metadata.namespace, pod.metadata.name, pod.metadata.uid)
                elif run.kill_at is None:
                    grace = pod.metadata.deletion_grace_period_seconds or 0
                    log.info("%s: deleting: SIGTERM, %ss grace", key, grace)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(run.proc.pid, signal.SIGTERM)
                    run.kill_at = time.monotonic() + grace
                return
            if run is None:
                if pod.metadata.uid not in self.done and pod.status.phase in (None, "Pending"):
                    self.start_pod(pod)
                return
            annotations = dict(pod.metadata.annotations or {})
            if annotations != run.annotations:
                run.annotations = annotations
                tmp = run.dir / "annotations.tmp"
                tmp.write_text(_downward_annotations(annotations))
                tmp.replace(run.dir / "annotations")  # atomic, as kubelet's symlink swap

    def reap(self) -> None:
        """Report exited processes; SIGKILL those whose grace period ran out. A report
        the API server does not take (it is down) stays due and is tried again."""
        with self.lock:
            for key, run in list(self.running.items()):
                try:
                    self._reap_one(key, run)
                except Exception as err:  # API down: keep the pod, try again next tick
                    log.warning("%s: cannot report to the API server (%s); will retry", key, err)

    def _reap_one(self, key: str, run: Running) -> None:
        code = run.proc.poll()
        if code is None:
            if not run.announced:
                self._announce(run)
            if run.kill_at is not None and time.monotonic() >= run.kill_at:
                log.info("%s: grace period over: SIGKILL", key)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.proc.pid, signal.SIGKILL)
            return
        if code < 0:  # killed by a signal: report as a shell/kubelet would
            code = 128 - code
        try:
            message = (run.dir / "termination-log").read_bytes()[:MAX_MESSAGE]
        except OSError:
            message = b""
        log.info("%s: exited %d", key, code)
        # Raises while the API server is down: the pod stays due and is reported later.
        self._report_exit(
            run.namespace, run.pod, code, run.started, message.decode(errors="replace")
        )
        del self.running[key]
        self.done.add(run.uid)
        if run.kill_at is not None:
            self._finalize(run.namespace, run.pod, run.uid)

    def _finalize(self, namespace: str, name: str, uid: str) -> None:
        """Remove a pod whose deletion we have carried out (kubelet's final delete)."""
        with contextlib.suppress(client.ApiException):
            self.core.delete_namespaced_pod(
                name,
                namespace,
                grace_period_seconds=0,
                body=client.V1DeleteOptions(grace_period_seconds=0, preconditions={"uid": uid}),
            )

    # --- loops ----------------------------------------------------------------
    def run(self) -> None:
        self.register()
        threading.Thread(target=self._housekeeping, daemon=True).start()
        selector = f"spec.nodeName={self.node}"
        while not self.stopping.is_set():
            try:
                for event in watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces,
                    field_selector=selector,
                    timeout_seconds=60,
                ):
                    if self.stopping.is_set():
                        return  # shut down: a lost node starts nothing more
                    self.sync(event["object"])
            except Exception as err:  # keep going across apiserver restarts
                log.warning("watch failed: %s; retrying", err)
                time.sleep(1)

    def _housekeeping(self) -> None:
        """Reap and heartbeat forever: nothing here may end the thread, or the node
        would stop heartbeating and look lost (an API-server outage must not do that)."""
        last_beat = 0.0
        while not self.stopping.is_set():
            try:
                self.reap()
                if time.monotonic() - last_beat > 10:
                    self.heartbeat()
                    last_beat = time.monotonic()
            except Exception as err:
                log.warning("housekeeping: %s; retrying", err)
            time.sleep(0.1)

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            for run in self.running.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.proc.pid, signal.SIGKILL)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node", default="local-0")
    parser.add_argument("--work-dir", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    kubelet = LocalKubelet(args.kubeconfig, args.node, args.work_dir)

    def on_term(*_: object) -> None:
        kubelet.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    kubelet.run()


if __name__ == "__main__":
    main()
