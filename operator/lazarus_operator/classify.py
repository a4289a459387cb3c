"""Why did a pod end? Read from Kubernetes' own signals and the trainer's message.

Pure: a pod (API JSON), its node (or None when the node is gone) and the time.
The table in docs/trainingjob.md lists the rows in the order they are tried.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from lazarus_contract import (
    EXIT_COMPLETED,
    EXIT_PREEMPTED,
    OUTCOME_PERMANENT,
    OUTCOME_PREEMPTED,
)
from lazarus_contract import parse_time as contract_parse_time
from lazarus_contract.termination import TerminationMessage
from lazarus_contract.termination import decode as decode_message

# DisruptionTarget reasons Kubernetes sets before it kills a pod on purpose.
DISRUPTION_REASONS = frozenset(
    {
        "PreemptionByScheduler",
        "PreemptionByKubeScheduler",  # the pre-1.27 spelling
        "EvictionByEvictionAPI",
        "DeletionByTaintManager",
        "TerminationByKubelet",
        "DeletionByPodGC",
    }
)
UNREACHABLE_TAINTS = frozenset({"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"})


class Cause(StrEnum):
    SUCCEEDED = "Succeeded"
    DISRUPTED = "Disrupted"
    NODE_LOST = "NodeLost"
    OOM_KILLED = "OOMKilled"
    PERMANENT = "PermanentError"
    FAILED = "Failed"


# Causes charged to the disruption (preemption) budget; the rest but success
# are charged to the failure budget.
DISRUPTION_CAUSES = frozenset({Cause.DISRUPTED, Cause.NODE_LOST})


@dataclass(frozen=True)
class PodEnd:
    cause: Cause
    reason: str  # the Kubernetes/trainer signal that decided it, e.g. "EvictionByEvictionAPI"
    pod: str
    node: str | None
    exit_code: int | None
    message: str
    step: int | None  # the trainer's last step, from its termination message (reported_step)
    time: datetime


def parse_time(value: Any) -> datetime | None:
    """An API time (RFC 3339 text or a datetime), None when absent."""
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return contract_parse_time(str(value))


def _condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def trainer_container_name(pod: Mapping[str, Any]) -> str | None:
    containers = (pod.get("spec") or {}).get("containers") or []
    return containers[0].get("name") if containers else None


def _terminated(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    """The trainer container's `state.terminated` (or lastState's), if any."""
    name = trainer_container_name(pod)
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == name:
            t = (cs.get("state") or {}).get("terminated")
            if t:
                return dict(t)
    return None


def _step_in(msg: TerminationMessage) -> int:
    """The step of a termination message; -1 when it names none (or a nonsense one)."""
    return msg.step if msg.step is not None else -1


def reported_step(pod: Mapping[str, Any]) -> int | None:
    """The last step the trainer reported in its termination message (final or
    progress signal), once the container has ended: -1 when it ended without one
    (the trainer took no step: it writes the signal from its first step on), None
    while it runs or when no kubelet reported its end."""
    term = _terminated(pod)
    return _step_in(decode_message(term.get("message"))) if term else None


def node_lost_since(node: dict[str, Any] | None, now: datetime) -> datetime | None:
    """Since when the node is gone or not Ready; None while it is healthy.

    The Ready condition decides when the node reports one. The unreachable taints
    count only for a node without it: when a kubelet comes back, the
    node-lifecycle controller lifts its NoExecute taint seconds after Ready turns
    True, and a pod bound in that window is on a working node."""
    if node is None:
        return now
    ready = _condition(node, "Ready")
    if ready is not None:
        if ready.get("status") == "True":
            return None
        return parse_time(ready.get("lastTransitionTime")) or now
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("key") in UNREACHABLE_TAINTS and taint.get("effect") == "NoExecute":
            return parse_time(taint.get("timeAdded")) or now
    return None


def node_last_seen(node: dict[str, Any] | None, now: datetime) -> datetime:
    """When the node was last known to work: its kubelet's last heartbeat (the
    node-lifecycle controller keeps it when it marks the node Unknown), else when it
    went not Ready. A lost node's pods stopped training around then."""
    since = node_lost_since(node, now) or now
    ready = _condition(node or {}, "Ready") or {}
    beat = parse_time(ready.get("lastHeartbeatTime"))
    return beat if beat is not None and beat <= since else since


def node_is_lost(node: dict[str, Any] | None, now: datetime, timeout_s: float) -> bool:
    since = node_lost_since(node, now)
    return since is not None and (node is None or now - since >= timedelta(seconds=timeout_s))


def classify(
    pod: dict[str, Any],
    node: dict[str, Any] | None,
    *,
    now: datetime,
    node_loss_timeout_s: float,
    permanent_exit_codes: frozenset[int],
    node_known: bool = True,
) -> PodEnd | None:
    """The end of `pod`, or None while it still runs.

    `node` is the pod's Node, None when it does not exist; `node_known` is
    False when the pod has no node yet (not bound), so a missing node means
    nothing.
    """
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    name = str(meta.get("name", ""))
    node_name = (pod.get("spec") or {}).get("nodeName")
    phase = status.get("phase")
    term = _terminated(pod)
    msg = decode_message(term.get("message") if term else None)
    exit_code: int | None = term.get("exitCode") if term else None
    text = str(msg.message or (term or {}).get("reason") or status.get("message") or "")
    step = _step_in(msg) if term is not None else None
    when = parse_time((term or {}).get("finishedAt")) or now

    def end(cause: Cause, reason: str) -> PodEnd:
        return PodEnd(cause, reason, name, node_name, exit_code, text[:1024], step, when)

    ended = phase in ("Succeeded", "Failed") or term is not None
    # 1. success
    if phase == "Succeeded" or (
        term is not None and exit_code == EXIT_COMPLETED and phase != "Failed"
    ):
        return end(Cause.SUCCEEDED, "Completed")
    # 2. Kubernetes says it disrupted the pod on purpose.
    dt = _condition(pod, "DisruptionTarget")
    if dt is not None and dt.get("status") == "True":
        text = text or str(dt.get("message") or "")
        return end(Cause.DISRUPTED, str(dt.get("reason") or "DisruptionTarget"))
    # 3. node gone or unreachable beyond the timeout (status is stale there).
    if node_name and node_known and not ended and node_is_lost(node, now, node_loss_timeout_s):
        text = f"node {node_name} is gone" if node is None else f"node {node_name} is not Ready"
        when = node_last_seen(node, now)  # training stopped then, not at the timeout
        return end(Cause.NODE_LOST, "NodeLost")
    # 4. deleted by someone else while running (our own deletes end the attempt first).
    if meta.get("deletionTimestamp") and not ended:
        text = text or "pod deleted while running"
        return end(Cause.DISRUPTED, "PodDeleted")
    if not ended:
        return None
    # 5. the container's own end
    cause, reason = _own_end(term, msg, status, permanent_exit_codes)
    if meta.get("deletionTimestamp") and _answered_termination(cause, reason, exit_code):
        # The deletion's SIGTERM ended it: whether the operator saw the pod before
        # or after the container exited, the cause is the same deletion.
        return end(Cause.DISRUPTED, "PodDeleted")
    return end(cause, reason)


# Exit codes of a process ended by SIGTERM or, past the grace period, SIGKILL.
SIGNAL_EXIT_CODES = frozenset({128 + 15, 128 + 9})


def _answered_termination(cause: Cause, reason: str, exit_code: int | None) -> bool:
    """The container's end is how a process answers a delete: a preemption save or
    death by the signal. An OOM kill or a permanent error stays what it was."""
    if cause == Cause.DISRUPTED and reason == "TrainerPreempted":
        return True
    return cause == Cause.FAILED and exit_code in SIGNAL_EXIT_CODES


def _own_end(
    term: dict[str, Any] | None,
    msg: TerminationMessage,
    status: dict[str, Any],
    permanent_exit_codes: frozenset[int],
) -> tuple[Cause, str]:
    """Cause and reason of an ended pod from its container's end and the trainer's word."""
    exit_code: int | None = term.get("exitCode") if term else None
    if term is not None and term.get("reason") == "OOMKilled":
        return Cause.OOM_KILLED, "OOMKilled"
    outcome = msg.outcome
    if outcome == OUTCOME_PERMANENT or (
        exit_code is not None and exit_code in permanent_exit_codes
    ):
        reason = "PermanentExitCode" if outcome != OUTCOME_PERMANENT else "TrainerPermanent"
        return Cause.PERMANENT, reason
    if exit_code == EXIT_PREEMPTED or outcome == OUTCOME_PREEMPTED:
        return Cause.DISRUPTED, "TrainerPreempted"
    if status.get("reason") in ("Evicted", "Preempting", "Terminated", "Shutdown", "NodeShutdown"):
        return Cause.DISRUPTED, str(status["reason"])
    return Cause.FAILED, "Error" if term is None else str(term.get("reason") or "Error")
