"""Reading the job's pods as the policies need them: name, deletion, node, end."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .classify import Cause, PodEnd
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
    """How the pod ended, or None while it runs: the cycle's one classification."""
    return f.ends.get(name(pod))


def vanished(pod: str, now: datetime) -> PodEnd:
    """The end of a pod the attempt made that no longer exists: a disruption."""
    return PodEnd(Cause.DISRUPTED, "PodDeleted", pod, None, None, "pod vanished", None, now)
