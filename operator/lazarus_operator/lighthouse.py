"""The lighthouse of a fault-tolerant job (spec.faultTolerance): its pod and Service.

torchft's lighthouse forms each step's quorum of the live replica groups. It runs from
the trainer's own image (`lazarus-lighthouse`, docs/fault-tolerance.md: torchft's Rust
extension without torch, ~17 MB), one pod per attempt under a fixed name, so the API
server itself holds at most one: a replacement is created only once the old pod is gone.
The groups reach it by the name of a headless Service, `<job>-lighthouse`: DNS answers
with the current pod's address (ready or not, so a new pod is reachable at once) and
needs no kube-proxy; torchft's clients resolve it again when they reconnect.
"""

from __future__ import annotations

from typing import Any

from lazarus_contract.ft import (
    ENV_FT_GROUPS,
    ENV_FT_HEARTBEAT_TIMEOUT_MS,
    ENV_FT_LIGHTHOUSE_PORT,
    ENV_FT_MIN_GROUPS,
)

from .builders import (
    LABEL_JOB,
    JobRef,
    labels,
    lighthouse_service,
    owner_reference,
)
from .spec import JobSpec

LABEL_ROLE = "lazarus.dev/role"
ROLE_LIGHTHOUSE = "lighthouse"
COMMAND = "lazarus-lighthouse"
# What the lighthouse keeps of the trainer's pod and container: where it may run, how
# its image is pulled, and the environment its command runs in (volumes, env, mounts:
# an image may rely on them for PATH or its packages); not its resources (no GPU).
_KEPT = (
    "imagePullSecrets",
    "nodeSelector",
    "tolerations",
    "priorityClassName",
    "serviceAccountName",
    "securityContext",
    "volumes",
)
_KEPT_CONTAINER = ("imagePullPolicy", "env", "envFrom", "volumeMounts", "workingDir")
_RESOURCES = {"cpu": "50m", "memory": "64Mi"}


def lighthouse_pod_name(job: str, attempt: int) -> str:
    return f"{job}-a{attempt}-lighthouse"


def is_lighthouse(pod: dict[str, Any]) -> bool:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_ROLE) == ROLE_LIGHTHOUSE


def _command(trainer: dict[str, Any]) -> list[str]:
    """`lazarus-lighthouse` beside the trainer's own command when that is a path to
    the image's scripts (a venv's bin), else from PATH."""
    first = str((trainer.get("command") or [""])[0])
    if first.startswith("/") and first.rsplit("/", 1)[-1].startswith("lazarus-"):
        return [f"{first.rsplit('/', 1)[0]}/{COMMAND}"]
    return [COMMAND]


def build_lighthouse_pod(job: JobRef, spec: JobSpec, attempt: int) -> dict[str, Any]:
    ft = spec.fault_tolerance
    assert ft is not None
    tmpl_spec: dict[str, Any] = spec.template["spec"]
    trainer = tmpl_spec["containers"][0]
    env = {
        ENV_FT_GROUPS: ft.groups,
        ENV_FT_MIN_GROUPS: ft.min_groups,
        ENV_FT_LIGHTHOUSE_PORT: ft.lighthouse_port,
        ENV_FT_HEARTBEAT_TIMEOUT_MS: ft.heartbeat_timeout_ms,
    }
    container: dict[str, Any] = {k: trainer[k] for k in _KEPT_CONTAINER if k in trainer}
    ours = [{"name": k, "value": str(v)} for k, v in env.items()]
    container |= {
        "name": "lighthouse",
        "image": trainer["image"],
        "command": _command(trainer),
        "env": ours + [e for e in container.get("env") or [] if e.get("name") not in env],
        "ports": [{"name": "lighthouse", "containerPort": ft.lighthouse_port}],
        "readinessProbe": {"tcpSocket": {"port": ft.lighthouse_port}, "periodSeconds": 2},
        "resources": {"requests": dict(_RESOURCES)},
    }
    pod_spec = {k: tmpl_spec[k] for k in _KEPT if k in tmpl_spec}
    pod_spec |= {
        "containers": [container],
        # The operator replaces it (once the old pod is gone), not the kubelet: a
        # restart in place would hide the death the groups just survived.
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 5,
    }
    if "nodeName" in tmpl_spec:  # a template pinned to a node (tests, the local loop)
        pod_spec["nodeName"] = tmpl_spec["nodeName"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": lighthouse_pod_name(job.name, attempt),
            "namespace": job.namespace,
            "labels": {**labels(job.name, attempt), LABEL_ROLE: ROLE_LIGHTHOUSE},
            "ownerReferences": [owner_reference(job)],
        },
        "spec": pod_spec,
    }


def build_lighthouse_service(job: JobRef, spec: JobSpec) -> dict[str, Any]:
    ft = spec.fault_tolerance
    assert ft is not None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": lighthouse_service(job.name),
            "namespace": job.namespace,
            "labels": labels(job.name),
            "ownerReferences": [owner_reference(job)],
        },
        "spec": {
            "clusterIP": "None",
            "selector": {LABEL_JOB: job.name, LABEL_ROLE: ROLE_LIGHTHOUSE},
            "publishNotReadyAddresses": True,
            "ports": [{"name": "lighthouse", "port": ft.lighthouse_port}],
        },
    }
