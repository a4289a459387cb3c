"""Reading the job's pods as the policies need them: name, deletion, node, end."""

from __future__ import annotations

from typing import Any

from .classify import PodEnd, classify
from .vocabulary import Facts


def name(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name", ""))


def deleting(pod: dict[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def node_name(pod: dict[str, Any]) -> Any:
    return (pod.get("spec") or {}).get("nodeName")


def node_of(f: Facts, pod: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """The pod's Node (None if it is gone) and whether the pod is bound to one."""
    node = node_name(pod)
    if not node:
        return None, False
    return f.nodes.get(node), True


def end_of(f: Facts, pod: dict[str, Any]) -> PodEnd | None:
    """How the pod ended, or None while it runs."""
    node, known = node_of(f, pod)
    return classify(
        pod,
        node,
        now=f.now,
        node_loss_timeout_s=f.spec.node_loss_timeout_seconds,
        permanent_exit_codes=f.spec.failure_policy.permanent_exit_codes,
        node_known=known,
    )
