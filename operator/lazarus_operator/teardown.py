"""Stopping pods: graceful deletes, then force for the stuck and for lost nodes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from . import pods as p
from .classify import node_is_lost, parse_time
from .vocabulary import Decision, DeletePod, Facts


def teardown(f: Facts, d: Decision, pods: list[dict[str, Any]]) -> bool:
    """Delete `pods` gracefully, force-delete stuck ones; True when none is left."""
    for pod in pods:
        name = p.name(pod)
        node, known = p.node_of(f, pod)
        if known and node_is_lost(node, f.now, f.spec.node_loss_timeout_seconds):
            # A deleted or lost node's kubelet will never run the SIGTERM nor confirm
            # the deletion: waiting only delays the next attempt.
            d.actions.append(DeletePod(name, force=True))
            continue
        if not p.deleting(pod):
            # Graceful: the trainer gets SIGTERM and its grace period to save.
            d.actions.append(DeletePod(name))
            d.requeue(max(1.0, f.spec.stuck_terminating_timeout_seconds), f"pod {name} stopping")
            continue
        deadline = parse_time((pod.get("metadata") or {}).get("deletionTimestamp"))
        assert deadline is not None
        force_at = deadline + timedelta(seconds=f.spec.stuck_terminating_timeout_seconds)
        if f.now >= force_at:
            d.actions.append(DeletePod(name, force=True))
        else:
            d.requeue((force_at - f.now).total_seconds(), f"pod {name} terminating")
    return not pods
