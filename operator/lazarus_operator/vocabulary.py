"""The decision core's vocabulary: the facts it is given, the checkpoint selection it
consumes, and the actions and decision it returns. Adapters (cycle, storage, kube,
handlers) import these, never the policies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from .builders import JobRef
from .classify import PodEnd, classify
from .jobstatus import JobStatus
from .kueueworkload import QueueFacts
from .spec import JobSpec

STORAGE_RETRY_S = 10.0  # a storage problem: ask the store again this much later


# --- the checkpoint selection ---------------------------------------------------------
@dataclass(frozen=True)
class Checkpoint:
    name: str
    step: int
    attempt: int
    uri: str
    created: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # the manifest's


@dataclass(frozen=True)
class Selection:
    """The store's answer: newest valid checkpoint in this attempt's lineage."""

    chosen: Checkpoint | None
    skipped: tuple[tuple[str, str], ...] = ()
    # The fence log is per checkpoint root, not per job object: attempt numbers
    # are unique per root, so a job deleted and re-created on the same root
    # continues them (its first attempt fences the old one's pods and resumes in
    # its lineage), and two jobs sharing a root never write the same names.
    next_attempt: int = 0
    # A filesystem root: the operator cannot see the pods' volume, so the trainer
    # selects (resume "auto") and writes the fence record (contract section 8).
    delegated: bool = False


@dataclass(frozen=True)
class StorageProblem:
    reason: str  # one of the status.R_* storage reasons
    message: str
    retry: bool = True  # False: asking again cannot help, only a spec or config change


# --- facts ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Facts:
    job: JobRef
    spec: JobSpec
    status: dict[str, Any]  # `.status` as read from the API
    pods: list[dict[str, Any]]
    nodes: dict[str, dict[str, Any]]  # existing nodes by name
    now: datetime
    selection: Selection | None = None
    storage_problem: StorageProblem | None = None
    # pod name -> the last step its trainer reported, from every pod event seen (a
    # deleted pod's final message may never show in a listing: it is removed at once).
    seen_steps: Mapping[str, int] = field(default_factory=dict)
    # pod name -> its end (None: it runs), when the caller classified the pods already
    # (gather does, once a cycle); else `ends` classifies them on first use.
    pod_ends: Mapping[str, PodEnd | None] | None = field(default=None, repr=False)
    # The job is labelled kueue.x-k8s.io/queue-name: its Workload and admitted flavors.
    queue: QueueFacts | None = None

    @cached_property
    def ends(self) -> Mapping[str, PodEnd | None]:
        """Each pod's end by name, classified once: every policy reads these."""
        if self.pod_ends is not None:
            return self.pod_ends
        timeout = self.spec.node_loss_timeout_seconds
        permanent = self.spec.failure_policy.permanent_exit_codes
        out: dict[str, PodEnd | None] = {}
        for pod in self.pods:
            node = (pod.get("spec") or {}).get("nodeName")
            out[str((pod.get("metadata") or {}).get("name", ""))] = classify(
                pod,
                self.nodes.get(node) if node else None,
                now=self.now,
                node_loss_timeout_s=timeout,
                permanent_exit_codes=permanent,
                node_known=bool(node),
            )
        return out

    @cached_property
    def state(self) -> JobStatus:
        """`status`, typed (read-only: `decide` works on its own copy)."""
        return JobStatus.from_api(self.status)

    @property
    def answered(self) -> bool:
        """The store was asked this cycle (a selection or a storage problem)."""
        return self.selection is not None or self.storage_problem is not None


# --- actions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordAttempt:
    attempt: int
    resume_from: str | None
    resume_step: int


@dataclass(frozen=True)
class CreateService:
    manifest: dict[str, Any]


@dataclass(frozen=True)
class CreatePod:
    manifest: dict[str, Any]


@dataclass(frozen=True)
class DeletePod:
    name: str
    force: bool = False  # grace period 0: the node will never confirm


@dataclass(frozen=True)
class AnnotatePod:
    name: str
    annotations: dict[str, str]


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class DeleteJob:
    pass


@dataclass(frozen=True)
class CreateWorkload:
    manifest: dict[str, Any]  # the job's Kueue Workload (kueueworkload.build_workload)


@dataclass(frozen=True)
class PatchWorkload:
    name: str
    patch: dict[str, Any]  # a merge patch of the Workload (spec.active: suspend, resume)


@dataclass(frozen=True)
class PatchWorkloadStatus:
    name: str
    patch: dict[str, Any]  # a merge patch of its status (yield the quota, finished)


Action = (
    RecordAttempt
    | CreateService
    | CreatePod
    | DeletePod
    | AnnotatePod
    | Event
    | DeleteJob
    | CreateWorkload
    | PatchWorkload
    | PatchWorkloadStatus
)


@dataclass
class Decision:
    state: JobStatus  # the status to write, typed
    actions: list[Action] = field(default_factory=list)
    requeue_after: float | None = None  # seconds until something is due (backoff, timeouts)
    waiting: str = ""  # why we are waiting (logged with the requeue)

    @property
    def status(self) -> dict[str, Any]:
        """The status to write, as the API holds it."""
        return self.state.to_api()

    def requeue(self, seconds: float, why: str) -> None:
        seconds = max(0.05, seconds)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after, self.waiting = seconds, why

    def wait_for_store(self) -> None:
        """A policy needs the store's answer and the caller gave none (`needs_selection`
        says when to ask for it): decide again soon."""
        self.requeue(1.0, "waiting for the checkpoint store's answer")

    def event(self, type_: str, reason: str, message: str) -> None:
        self.actions.append(Event(type_, reason, message))

    @property
    def events(self) -> list[Event]:
        return [a for a in self.actions if isinstance(a, Event)]
