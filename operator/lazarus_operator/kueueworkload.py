"""A TrainingJob's Kueue Workload, as plain JSON (pure; docs/kueue.md): the one the
operator owns for a job labelled `kueue.x-k8s.io/queue-name`, what Kueue's conditions
on it say, the admitted flavors' placement, and the status patches with which the
owner yields (after an eviction) or hands the quota back (finished)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, auto
from typing import Any, Final

from . import status as s
from .builders import LABEL_JOB, JobRef, owner_reference
from .spec import JobSpec

GROUP: Final = "kueue.x-k8s.io"
VERSION: Final = "v1beta2"  # what Kueue v0.17 stores (it converts v1beta1)
PLURAL: Final = "workloads"
QUEUE_LABEL: Final = f"{GROUP}/queue-name"
PRIORITY_LABEL: Final = f"{GROUP}/priority-class"
POD_SET: Final = "trainer"
# Kueue holds a Workload's quota while it carries this; the owner removes it once the
# pods are gone (workloadrelease).
FINALIZER: Final = f"{GROUP}/resource-in-use"


@dataclass(frozen=True)
class QueueFacts:
    """A queued job's side of Kueue, read each cycle (`gather`)."""

    queue: str  # the LocalQueue (the job's label)
    workload: dict[str, Any] | None = None  # the job's current Workload (`current`)
    flavors: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    priority: tuple[str, int] | None = None  # WorkloadPriorityClass and its value
    workloads: tuple[dict[str, Any], ...] = ()  # all of the job's, replaced ones too


class WorkloadState(Enum):
    MISSING = auto()  # the operator creates it
    QUEUED = auto()  # no quota reserved (or Admitted not yet True): no pods
    ADMITTED = auto()  # launch, with the flavors' placement
    EVICTED = auto()  # Kueue wants the quota back: stop the pods, then clear the admission
    FINISHED = auto()  # the quota is handed back (or goes once it is deleted)


def workload_name(job: JobRef, replacement: int = 0) -> str:
    """The job's first Workload, then `-r<n>` for the n-th that replaced it."""
    base = f"trainingjob-{job.name}-{job.uid[:5]}"
    return f"{base}-r{replacement}" if replacement else base


def name_of(wl: Mapping[str, Any]) -> str:
    return str((wl.get("metadata") or {}).get("name", ""))


def _replacement(wl: Mapping[str, Any], job: JobRef) -> int | None:
    """n of the job's n-th replacement Workload (0: the first); None: not the job's."""
    owners = (wl.get("metadata") or {}).get("ownerReferences") or []
    if not any(o.get("uid") == job.uid for o in owners):
        return None  # a job of the same name deleted before, or no Workload of ours
    name, base = name_of(wl), workload_name(job)
    if name == base:
        return 0
    tail = name.removeprefix(f"{base}-r")
    return int(tail) if tail != name and tail.isdigit() else None


def current(workloads: Iterable[Mapping[str, Any]], job: JobRef) -> dict[str, Any] | None:
    """The job's Workload a cycle goes by: the newest not Finished, else the newest."""
    mine = [(n, w) for w in workloads if (n := _replacement(w, job)) is not None]
    live = [(n, w) for n, w in mine if not done(w)]
    if not mine:
        return None
    return dict(max(live or mine, key=lambda nw: nw[0])[1])


def next_name(workloads: Iterable[Mapping[str, Any]], job: JobRef) -> str:
    """The name of the job's next Workload (its first when it has none)."""
    taken = [n for w in workloads if (n := _replacement(w, job)) is not None]
    return workload_name(job, max(taken) + 1) if taken else workload_name(job)


def _requests(template: Mapping[str, Any] | None) -> list[dict[str, str]]:
    spec = (template or {}).get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    return [
        {str(k): str(v) for k, v in ((c.get("resources") or {}).get("requests") or {}).items()}
        for c in containers
    ]


def matches(wl: Mapping[str, Any], spec: JobSpec) -> bool:
    """Whether the Workload's pod set is the spec's (replicas, each container's
    requests): what Kueue accounts, and cannot change once it is admitted."""
    sets = (wl.get("spec") or {}).get("podSets") or []
    return (
        len(sets) == 1
        and sets[0].get("count") == spec.replicas
        and _requests(sets[0].get("template")) == _requests(spec.template)
    )


def needs_new(wl: Mapping[str, Any] | None, spec: JobSpec) -> bool:
    """Whether the job may get a new Workload: none, a Finished one, or another pod set."""
    return wl is None or done(wl) or not matches(wl, spec)


def condition(wl: Mapping[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    conds = ((wl or {}).get("status") or {}).get("conditions") or []
    return next((dict(c) for c in conds if c.get("type") == ctype), None)


def is_true(wl: Mapping[str, Any] | None, ctype: str) -> bool:
    c = condition(wl, ctype)
    return c is not None and c.get("status") == "True"


def done(wl: Mapping[str, Any]) -> bool:
    """Finished, or being deleted (its quota goes once the pods are gone): no pod may
    start under it."""
    return is_true(wl, "Finished") or bool((wl.get("metadata") or {}).get("deletionTimestamp"))


def state_of(wl: Mapping[str, Any] | None) -> WorkloadState:
    if wl is None:
        return WorkloadState.MISSING
    if done(wl):
        return WorkloadState.FINISHED
    # Kueue keeps the quota reserved after an eviction until the owner clears the
    # admission; a new admission resets Evicted, so Evicted with an admission is now.
    if is_true(wl, "Evicted") and (wl.get("status") or {}).get("admission"):
        return WorkloadState.EVICTED
    if is_true(wl, "Admitted"):
        return WorkloadState.ADMITTED
    return WorkloadState.QUEUED


def why_queued(wl: Mapping[str, Any] | None) -> tuple[str, str]:
    """Kueue's reason and message for a workload without quota (QuotaReserved=False)."""
    c = condition(wl, "QuotaReserved") or {}
    if c.get("status") == "False" and c.get("message"):
        return str(c.get("reason") or "Pending"), str(c["message"])
    return "Pending", "waiting for Kueue to admit the job's Workload"


def eviction(wl: Mapping[str, Any] | None) -> tuple[str, str]:
    """The reason (Preempted, PodsReadyTimeout, ...) and message of Kueue's eviction."""
    c = condition(wl, "Evicted") or {}
    return str(c.get("reason") or "Evicted"), str(c.get("message") or "evicted by Kueue")


def build_workload(
    job: JobRef, spec: JobSpec, queue: str, priority: tuple[str, int] | None, name: str = ""
) -> dict[str, Any]:
    """One pod set of `replicas` pods from the job's template with its requests: Kueue
    admits the gang as one unit. Priority: the class and its value (Kueue's webhook
    refuses the reference without the value)."""
    template = copy.deepcopy(spec.template)
    pod_spec: dict[str, Any] = template.get("spec") or {}
    pod_spec["restartPolicy"] = "Never"
    meta = template.get("metadata") or {}
    tmpl_meta = {k: meta[k] for k in ("labels", "annotations") if meta.get(k)}
    body: dict[str, Any] = {
        "queueName": queue,
        "podSets": [
            {
                "name": POD_SET,
                "count": spec.replicas,
                "template": {"metadata": tmpl_meta, "spec": pod_spec},
            }
        ],
    }
    if priority is not None:
        body["priorityClassRef"] = {
            "group": GROUP,
            "kind": "WorkloadPriorityClass",
            "name": priority[0],
        }
        body["priority"] = priority[1]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workload",
        "metadata": {
            "name": name or workload_name(job),
            "namespace": job.namespace,
            "labels": {LABEL_JOB: job.name},
            "ownerReferences": [owner_reference(job)],
            "finalizers": [FINALIZER],
        },
        "spec": body,
    }


def active(wl: Mapping[str, Any]) -> bool:
    """Not deactivated (`spec.active: false`: Kueue evicts it and admits it no more)."""
    return (wl.get("spec") or {}).get("active") is not False


def active_patch(on: bool) -> dict[str, Any]:
    """spec.suspend under Kueue: deactivate the Workload (Kueue takes the quota back
    once the owner yields); resume: activate it, and it queues again."""
    return {"spec": {"active": on}}


def admitted_flavors(wl: Mapping[str, Any] | None) -> list[str]:
    """The flavor names Kueue assigned to the pod set (sorted, unique)."""
    admission = ((wl or {}).get("status") or {}).get("admission") or {}
    names = {
        str(f)
        for psa in admission.get("podSetAssignments") or []
        for f in (psa.get("flavors") or {}).values()
    }
    return sorted(names)


def placement(flavors: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, str], list[Any]]:
    """The node selector and tolerations of the admitted flavors, merged."""
    selector: dict[str, str] = {}
    tolerations: list[Any] = []
    for name in sorted(flavors):
        fl = flavors[name]
        selector.update({str(k): str(v) for k, v in (fl.get("nodeLabels") or {}).items()})
        tolerations += [t for t in fl.get("tolerations") or [] if t not in tolerations]
    return selector, tolerations


def place(pod: dict[str, Any], flavors: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`pod` with the admitted flavors' node selector and tolerations (Kueue's own
    integrations inject the same on admission); the pod's own entries are kept."""
    selector, tolerations = placement(flavors)
    if not selector and not tolerations:
        return pod
    out = copy.deepcopy(pod)
    spec = out["spec"]
    spec["nodeSelector"] = {**selector, **(spec.get("nodeSelector") or {})}
    own = spec.get("tolerations") or []
    spec["tolerations"] = [*own, *(t for t in tolerations if t not in own)]
    return out


def _conditions(
    wl: Mapping[str, Any], new: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """The Workload's conditions with `new` (type, status, reason, message) set: a merge
    patch replaces the list, so the others are kept as they are."""
    stamp = s.iso(now)
    out = [dict(c) for c in ((wl.get("status") or {}).get("conditions") or [])]
    for c in new:
        old = next((o for o in out if o.get("type") == c["type"]), None)
        if old is None:
            out.append({**c, "lastTransitionTime": stamp})
            continue
        if old.get("status") != c["status"]:
            old["lastTransitionTime"] = stamp
        old.update(c)
    return out


def yield_patch(wl: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The owner's pods are gone after an eviction: clear the admission and requeue
    (what Kueue's own integrations do; until then the quota stays reserved)."""
    reason, message = eviction(wl)
    conds = [
        {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": message},
        {"type": "Admitted", "status": "False", "reason": "NoReservation", "message": message},
        {"type": "Requeued", "status": "True", "reason": reason, "message": message},
        {"type": "PodsReady", "status": "False", "reason": "WaitForStart", "message": NOT_READY},
    ]
    return {"status": {"admission": None, "conditions": _conditions(wl, conds, now)}}


NOT_READY: Final = "Not all pods are ready or succeeded"


def pods_ready_patch(wl: Mapping[str, Any], ready: bool, now: datetime) -> dict[str, Any] | None:
    """The Workload's PodsReady condition as Kueue's own integrations write it (its
    waitForPodsReady reads it): True (Started, or Recovered after a lost pod) once
    every pod runs; False WaitForStart before, WaitForRecovery after a pod was lost
    (a restart). None when it says so already."""
    old = condition(wl, "PodsReady")
    was = (old or {}).get("reason")
    if ready:
        reason = "Recovered" if was in ("WaitForRecovery", "Recovered") else "Started"
        new = {"type": "PodsReady", "status": "True", "reason": reason}
        new["message"] = "All pods reached readiness and the workload is running"
    else:
        recovering = old is not None and (old.get("status") == "True" or was == "WaitForRecovery")
        reason = "WaitForRecovery" if recovering else "WaitForStart"
        msg = "At least one pod has failed, waiting for recovery" if recovering else NOT_READY
        new = {"type": "PodsReady", "status": "False", "reason": reason, "message": msg}
    if old is not None and (old.get("status"), was) == (new["status"], new["reason"]):
        return None
    return {"status": {"conditions": _conditions(wl, [new], now)}}


def replaced_patch(wl: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Replaced by a Workload of the spec's new pod set: Finished hands its quota on."""
    msg = "the TrainingJob's pod set changed (replicas or requests): replaced"
    conds = [{"type": "Finished", "status": "True", "reason": "Replaced", "message": msg}]
    return {"status": {"conditions": _conditions(wl, conds, now)}}


def finished_patch(
    wl: Mapping[str, Any], succeeded: bool, message: str, now: datetime
) -> dict[str, Any]:
    """The job finished: Kueue hands its quota to the next workload."""
    reason = "Succeeded" if succeeded else "Failed"
    conds = [{"type": "Finished", "status": "True", "reason": reason, "message": message}]
    return {"status": {"conditions": _conditions(wl, conds, now)}}
