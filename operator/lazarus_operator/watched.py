"""What the watches hold: the facts a cycle reads from memory instead of the API.

kopf's indexes (handlers.py) keep the jobs' pods, the nodes, the headless
Services and Kueue Workloads current from watch streams (Secrets are read by
name: secretcache); kopf runs no handler before every index has its initial
listing, so an index that lacks an object means the object does not exist (as a
LIST would have said). `Watched` is the reconciler's view over them. TrainingJob
bodies come from kopf's events too (`Bodies`), written through with the operator's
own status patches, so a resync costs no API call at all.

Pure helpers: what an index keeps of an object (bodies without `managedFields`)
and the part of a Node a decision reads.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from .classify import parse_time


@dataclass(frozen=True)
class Watched:
    """Live, read-only views (kopf.Index objects): key -> the values of its objects."""

    pods: Mapping[tuple[str, str], Collection[dict[str, Any]]]  # (ns, job) -> pods
    nodes: Mapping[str, Collection[dict[str, Any]]]  # name -> the node
    services: Mapping[tuple[str, str], Collection[str]]  # (ns, job) -> Service names
    # (ns, job) -> its Kueue Workloads (empty without Kueue's CRDs: workloadview)
    workloads: Mapping[tuple[str, str], Collection[dict[str, Any]]] = field(default_factory=dict)

    def job_pods(self, ns: str, job: str) -> list[dict[str, Any]]:
        return sorted(self.pods.get((ns, job), ()), key=_name)

    def node(self, name: str) -> dict[str, Any] | None:
        return next(iter(self.nodes.get(name, ())), None)

    def has_service(self, ns: str, job: str, name: str | None = None) -> bool:
        """Whether the job's Service `name` (default: its headless one, `<job>`) exists."""
        return (name or job) in self.services.get((ns, job), ())

    def job_workloads(self, ns: str, job: str) -> list[dict[str, Any]]:
        return sorted(self.workloads.get((ns, job), ()), key=_name)


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object as a cycle reads it: without `managedFields` (often half its size,
    and no decision reads them). Shallow: the watch's dicts are fresh per event."""
    out = dict(body)
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


def slim_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    """A pod as the decision core reads it: metadata, status, and of its spec only the
    node and the trainer container's name (classify.trainer_container_name). The
    template's env, volumes and the rest are most of a pod and stay out of memory:
    5 KB a pod instead of 24 KB (1,200 bench pods)."""
    out = slim(body)
    spec = out.get("spec") or {}
    containers = spec.get("containers") or []
    out["spec"] = {
        "nodeName": spec.get("nodeName"),
        "containers": [{"name": c.get("name")} for c in containers[:1]],
    }
    return out


# How long past its deletion deadline a pod may stay in the index before a LIST confirms it.
OVERDUE: Final = timedelta(seconds=5)


def overdue(pod: Mapping[str, Any], now: datetime) -> bool:
    """Whether the index still holds a pod past its deletion deadline. Either it is stuck
    (a lost node) or it is gone and the watch never said so: kopf re-lists after a
    "410 Gone" (an API server restart) without reporting what was deleted in the gap."""
    deadline = parse_time((pod.get("metadata") or {}).get("deletionTimestamp"))
    return deadline is not None and now - deadline > OVERDUE


def pod_uid(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("uid") or _name(pod))


def node_essence(node: Mapping[str, Any] | None) -> Any:
    """The part of a Node a decision reads (taints, the Ready condition without its
    heartbeat, deletion): a node event that leaves it unchanged concerns no job."""
    if node is None:
        return None
    ready = None
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            ready = {k: v for k, v in c.items() if k != "lastHeartbeatTime"}
    spec = node.get("spec") or {}
    return (
        repr(spec.get("taints") or []),
        bool(spec.get("unschedulable")),
        repr(sorted((ready or {}).items())),
        bool((node.get("metadata") or {}).get("deletionTimestamp")),
    )


def resource_version(body: Mapping[str, Any] | None) -> int | None:
    rv = str(((body or {}).get("metadata") or {}).get("resourceVersion") or "")
    return int(rv) if rv.isdigit() else None


def newer(incoming: Mapping[str, Any], held: Mapping[str, Any] | None) -> bool:
    """Whether `incoming` is at least as new as `held`. resourceVersions are etcd
    revisions (integers) on every apiserver this runs on; anything else counts as
    newer, which is what a plain watch consumer would assume."""
    a, b = resource_version(incoming), resource_version(held)
    return held is None or a is None or b is None or a >= b


class Bodies:
    """TrainingJob bodies by (namespace, name), from kopf's events and the operator's
    own writes (a status patch answers with the new body): never older than either."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, ns: str, name: str) -> dict[str, Any] | None:
        return self._held.get((ns, name))

    def put(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if newer(body, self._held.get(key)):
            self._held[key] = slim(body)

    def drop(self, ns: str, name: str) -> None:
        self._held.pop((ns, name), None)

    def __len__(self) -> int:
        return len(self._held)


def vanished(
    held: Mapping[tuple[str, str], Collection[str]], listed: Iterable[Mapping[str, Any]]
) -> dict[tuple[str, str], set[str]]:
    """Of the pod uids each job's index held before a LIST was sent, those the LIST
    lacks: deleted before it was served, whatever the watch says. (A pod the watch
    shows after the LIST was sent is not in `held`, so it is never taken for gone.)"""
    live = {pod_uid(p) for p in listed}
    out: dict[tuple[str, str], set[str]] = {}
    for key, uids in held.items():
        if gone := set(uids) - live:
            out[key] = gone
    return out


def asks_for_cycle(job: Mapping[str, Any], known: bool) -> bool:
    """Whether a TrainingJob's event calls for a cycle: a job not seen yet (created, or
    listed at start), or a spec its status has not caught up with (`generation` ahead
    of `observedGeneration`). The events of our own status writes leave the two equal,
    so they wake nothing."""
    if not known:
        return True
    generation = (job.get("metadata") or {}).get("generation")
    return bool(generation != (job.get("status") or {}).get("observedGeneration"))
