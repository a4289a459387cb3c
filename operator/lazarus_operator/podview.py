"""A job's pods as a cycle sees them: the watch's index, repaired where a watch can be
wrong (docs/architecture.md, "gaps in watches").

- created but unseen: a pod the operator created counts as existing until its watch
  shows it (a cycle may run before the event arrives); unseen for CREATED_MEMORY_S,
  one LIST asks the API (a watch that relisted after a gap never shows a pod created
  and deleted within it);
- vanished: a pod the index holds but the API has not (a LIST said so: the relist,
  a pod held past its deletion deadline, a DELETE answered 404) is left out;
- reported steps: the last step each pod's trainer reported, from pod events (a
  deleted pod's final status may be gone from the API by the time a cycle lists).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from .builders import LABEL_JOB
from .classify import reported_step
from .kube import Kube
from .watched import Watched, overdue, pod_uid, slim_pod, vanished
from .workloadview import WorkloadView

log = logging.getLogger("lazarus.podview")

Key = tuple[str, str]  # (namespace, job)
SEEN_STEPS_LIMIT: Final = 256  # reported steps remembered per job (a few attempts' pods)
CREATED_MEMORY_S: Final = 30.0


def _name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name", ""))


@dataclass
class JobPods:
    """What the view remembers of one job beyond the index."""

    # pod name -> (monotonic time, body) of pods created but not yet seen in the watch
    created: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    # uids of pods a LIST showed gone while the watch's index still holds them
    vanished: set[str] = field(default_factory=set)
    # pod -> last step its trainer reported, from pod events (Facts.seen_steps)
    seen_steps: dict[str, int] = field(default_factory=dict)


class PodView:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.watched: Watched | None = None  # attached at startup (handlers.startup)
        self.jobs: dict[Key, JobPods] = {}
        self.workloads = WorkloadView(kube, self.index)  # a Kueue job's Workload

    def index(self) -> Watched:
        if self.watched is None:
            raise RuntimeError("the operator's watches are not attached yet")
        return self.watched

    def job(self, key: Key) -> JobPods:
        return self.jobs.setdefault(key, JobPods())

    def forget(self, key: Key) -> None:
        self.jobs.pop(key, None)
        self.workloads.forget(key)

    # --- what events and actions tell ----------------------------------------------
    def observe(self, key: Key, pod: Mapping[str, Any]) -> None:
        """The watch shows the pod (or its deletion): it needs no stand-in any more."""
        held = self.jobs.get(key)
        if held is not None and held.created:
            held.created.pop(_name(pod), None)
        self.note_step(key, pod)

    def note_step(self, key: Key, pod: Mapping[str, Any]) -> None:
        """Remember the step an ended pod's trainer reported."""
        step = reported_step(pod)
        if step is None:
            return
        seen = self.job(key).seen_steps
        seen[_name(pod)] = step
        if len(seen) > SEEN_STEPS_LIMIT:  # bounded: drop the oldest entries
            for name in list(seen)[: len(seen) - SEEN_STEPS_LIMIT]:
                del seen[name]

    def created(self, key: Key, bodies: list[dict[str, Any]]) -> None:
        """Pods this operator just created (the API's answers): stand-ins until seen."""
        now, held = time.monotonic(), self.job(key)
        for body in bodies:
            # As the index would hold it: while the watch lags a launch burst,
            # 4,000 full pod bodies are 60 MB (tracemalloc, 100-job launch).
            held.created[_name(body)] = (now, slim_pod(body))

    def deleted_missing(self, key: Key, name: str) -> None:
        """A DELETE answered 404 while the watch still shows the pod: it went while the
        watch was away. Leave it out from now on."""
        held = self.job(key)
        pods = self.index().job_pods(*key)
        held.vanished |= {pod_uid(p) for p in pods if _name(p) == name}
        held.created.pop(name, None)

    # --- reading ---------------------------------------------------------------------
    async def pods(self, key: Key, now: datetime) -> list[dict[str, Any]]:
        """The job's pods from the watch, and those we created that it does not show yet.

        A pod held past its deletion deadline is confirmed by one LIST: one the API no
        longer has is left out from then on (the watch may never report it gone)."""
        held, jp = self.index().job_pods(*key), self.job(key)
        jp.vanished &= {pod_uid(p) for p in held}
        pods = [p for p in held if pod_uid(p) not in jp.vanished]
        listed: list[dict[str, Any]] | None = None  # at most one LIST a cycle
        if any(overdue(p, now) for p in pods):
            listed = await self._list(key)
            live = {pod_uid(p) for p in listed}
            jp.vanished |= {pod_uid(p) for p in pods if pod_uid(p) not in live}
            pods = sorted((slim_pod(p) for p in listed), key=_name)
        if jp.created:
            await self._stand_ins(key, jp, pods, listed)
        for p in pods:
            self.note_step(key, p)
        return pods

    async def _stand_ins(
        self,
        key: Key,
        jp: JobPods,
        pods: list[dict[str, Any]],
        listed: list[dict[str, Any]] | None,
    ) -> None:
        """Add to `pods` the created ones the watch does not show yet."""
        for seen in {_name(p) for p in pods} & jp.created.keys():
            del jp.created[seen]
        cutoff = time.monotonic() - CREATED_MEMORY_S
        if any(at < cutoff for at, _ in jp.created.values()):
            # Unseen this long: a watch that relisted past a pod created and deleted in
            # a gap, or one lagging behind a loaded loop. Only the API can tell which;
            # forgetting a pod that exists would restart its job as "vanished".
            if listed is None:
                listed = await self._list(key)
            exists = {_name(p): slim_pod(p) for p in listed}
            fresh = time.monotonic()
            jp.created = {n: (fresh, exists[n]) for n in jp.created if n in exists}
        pods.extend(body for _, body in jp.created.values())

    def seen_steps(self, key: Key) -> dict[str, int]:
        return dict(self.job(key).seen_steps)

    async def _list(self, key: Key) -> list[dict[str, Any]]:
        return await self.kube.list_pods(key[0], f"{LABEL_JOB}={key[1]}")

    # --- the relist ------------------------------------------------------------------
    async def relist(
        self, namespaces: tuple[str, ...], kick: Callable[[Key], Awaitable[object]]
    ) -> None:
        """One LIST of our pods' metadata per watched namespace (one in all for a
        cluster-wide operator): a pod the index holds but the API has not is gone,
        and its job's cycle is kicked.

        The watches alone can miss that for good: after an API server restart, kopf's
        watch gets "410 Gone" and re-lists, and does not report the objects deleted in
        the gap. A job would then wait on a pod that no longer exists."""
        index = self.index()
        for ns in namespaces or (None,):
            # Read before the LIST is sent: a pod the watch adds later is never "gone".
            held = {
                key: {pod_uid(p) for p in pods}
                for key, pods in list(index.pods.items())
                if ns is None or key[0] == ns
            }
            listed = await self.kube.pod_metadata(ns, LABEL_JOB)
            for key, gone in vanished(held, listed).items():
                log.warning(
                    "%s/%s: %d pod(s) the watch still shows are gone from the API",
                    *key,
                    len(gone),
                )
                self.job(key).vanished |= gone
                await kick(key)
