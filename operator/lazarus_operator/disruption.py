"""Signals that a node is going away: ask its pods to save now (disruption taints),
and wake up the moment a NotReady node passes nodeLossTimeoutSeconds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from lazarus_contract import ANNOTATION_CHECKPOINT_NOW, format_time

from . import pods as p
from .classify import node_lost_since
from .vocabulary import AnnotatePod, Decision, Facts

# The taints a pod was already asked to save for (one request per taint).
ANNOTATION_CHECKPOINT_NOW_TAINT = "lazarus.dev/checkpoint-now-taint"


def checkpoint_now(f: Facts, d: Decision, pods: list[dict[str, Any]]) -> None:
    """Ask pods on nodes that announce their own termination to save now."""
    wanted = set(f.spec.disruption_taints)
    for pod in pods:
        if p.deleting(pod):
            continue
        node, _ = p.node_of(f, pod)
        taints = [t for t in ((node or {}).get("spec") or {}).get("taints") or []]
        keys = sorted({str(t.get("key")) for t in taints if t.get("key") in wanted})
        if not keys:
            continue
        ann = (pod.get("metadata") or {}).get("annotations") or {}
        done = set(str(ann.get(ANNOTATION_CHECKPOINT_NOW_TAINT, "")).split(","))
        if set(keys) <= done:
            continue
        d.actions.append(
            AnnotatePod(
                p.name(pod),
                {
                    ANNOTATION_CHECKPOINT_NOW: format_time(f.now, "microseconds"),
                    ANNOTATION_CHECKPOINT_NOW_TAINT: ",".join(sorted((done | set(keys)) - {""})),
                },
            )
        )
        d.event(
            "Normal",
            "CheckpointRequested",
            f"node {p.node_name(pod)} has taint {', '.join(keys)}: "
            f"asked pod {p.name(pod)} to save now",
        )


def wake_at_node_loss(f: Facts, d: Decision, pods: list[dict[str, Any]]) -> None:
    """A node NotReady but not yet past nodeLossTimeoutSeconds: decide again the
    moment it is (no event will say so), so a lost node costs one timeout."""
    for pod in pods:
        node, known = p.node_of(f, pod)
        since = node_lost_since(node, f.now) if known and node is not None else None
        if since is not None:
            due = since + timedelta(seconds=f.spec.node_loss_timeout_seconds)
            if due > f.now:
                d.requeue((due - f.now).total_seconds(), f"node {p.node_name(pod)} not Ready")
