"""The operator as users run it: its image, installed by the Helm chart, in a pod.

On a stack with a real node: the image is built from the root Dockerfile by
hack/images/build.sh (buildah, no Docker), imported into the node's containerd,
and `helm upgrade --install` deploys charts/lazarus with its own ServiceAccount
and RBAC (namespaced mode: a RoleBinding in the watched namespace), the image
`imagePullPolicy: Never`.

One local-stack difference, through chart values meant for it: this stack has no
kube-proxy, so the `kubernetes` Service's ClusterIP routes nowhere, and the API
server listens on 127.0.0.1 only. The pod therefore runs on the node's network
(`hostNetwork`) and its client is pointed at the API server with
KUBERNETES_SERVICE_HOST/PORT in `operator.extraEnv` (in-cluster config with the
pod's ServiceAccount token, the stack's CA). Its metrics and probe ports, open
on the node, are free ones. The S3 server listens on the node IP, which the
operator reaches as the trainer pods do.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from . import node as realnode
from .errors import DevstackError
from .procs import free_port
from .stack import REPO, State

BUILD_SCRIPT = REPO / "hack" / "images" / "build.sh"
HELM_SCRIPT = REPO / "hack" / "helm" / "build.sh"
CHART = REPO / "charts" / "lazarus"


@dataclass
class OperatorPod:
    """One Helm release of the chart, watching one namespace."""

    release: str
    namespace: str
    image: str
    kubeconfig: str
    kubectl: str
    helm: str

    def _kubectl(self, *args: str) -> str:
        got = subprocess.run(
            [self.kubectl, f"--kubeconfig={self.kubeconfig}", "-n", self.namespace, *args],
            capture_output=True,
            text=True,
            check=False,
        )
        return got.stdout if got.returncode == 0 else ""

    def pods(self) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/instance={self.release}"
        out = self._kubectl("get", "pods", "-l", selector, "-o", "json")
        return list(json.loads(out)["items"]) if out else []

    def log(self) -> str:
        """Every operator container's log, previous (restarted) ones included."""
        parts = []
        for pod in self.pods():
            name = str(pod["metadata"]["name"])
            for previous in ("--previous", ""):
                text = self._kubectl("logs", name, *([previous] if previous else []))
                if text:
                    parts.append(f"--- {name} {previous} ---\n{text}")
        return "\n".join(parts)

    def uninstall(self) -> None:
        subprocess.run(
            [
                self.helm,
                "uninstall",
                self.release,
                "-n",
                self.namespace,
                f"--kubeconfig={self.kubeconfig}",
                "--wait",
                "--timeout=60s",
            ],
            capture_output=True,
            text=True,
            check=False,
        )


def _script(path: Path) -> list[str]:
    got = subprocess.run(
        ["bash", str(path)], stdout=subprocess.PIPE, stderr=None, text=True, check=False
    )
    if got.returncode != 0:
        raise DevstackError(f"{path.relative_to(REPO)} failed (output above)")
    return got.stdout.strip().splitlines()


def build_image() -> tuple[Path, str]:
    """The operator image's docker-archive tar and reference (built or cached)."""
    *_, tar, ref = _script(BUILD_SCRIPT)
    return Path(tar), ref


def load_image(node: realnode.NodeInfo, tar: Path, ref: str) -> None:
    """Import the image into the node's containerd unless it holds it already."""
    if ref in realnode.ctr(node, "images", "ls", "-q").split():
        return
    realnode.ctr(node, "images", "import", "--no-unpack=false", str(tar), timeout=600)


def install(
    state: State,
    namespace: str,
    release: str = "lazarus",
    *,
    progress_seconds: float = 3,
    timeout: float = 180,
) -> OperatorPod:
    """Build and load the image, then install the chart to watch `namespace` (which
    must exist; the release lives there too). Returns once the Deployment is ready."""
    if state.node is None:
        raise DevstackError("the operator pod needs a real node (hack/cluster up --real-node)")
    tar, ref = build_image()
    load_image(state.node, tar, ref)
    helm = str(Path(_script(HELM_SCRIPT)[-1]) / "helm")
    repository, _, tag = ref.rpartition(":")
    api = urlparse(state.server)
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "watchNamespaces": [namespace],
        "hostNetwork": True,
        "metrics": {"port": free_port()},
        "probes": {"port": free_port()},
        "operator": {
            "progressIntervalSeconds": progress_seconds,
            "extraEnv": [
                {"name": "KUBERNETES_SERVICE_HOST", "value": api.hostname},
                {"name": "KUBERNETES_SERVICE_PORT", "value": str(api.port)},
            ],
        },
    }
    pod = OperatorPod(release, namespace, ref, state.kubeconfig, state.kubectl(), helm)
    started = time.monotonic()
    got = subprocess.run(
        [
            helm,
            "upgrade",
            "--install",
            release,
            str(CHART),
            "-n",
            namespace,
            f"--kubeconfig={state.kubeconfig}",
            "--skip-crds",  # the stack applied crds/ already
            "--values=-",
            "--wait",
            f"--timeout={int(timeout)}s",
        ],
        input=json.dumps(values),
        capture_output=True,
        text=True,
        check=False,
    )
    if got.returncode != 0:
        raise DevstackError(
            f"helm install of the operator failed after {time.monotonic() - started:.0f}s: "
            f"{got.stderr.strip()}\n{pod.log()[-3000:]}"
        )
    return pod
