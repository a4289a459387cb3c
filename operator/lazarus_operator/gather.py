"""The facts of one cycle: the job's pods (`podview`), their nodes, each pod's end
classified once (`Facts.ends`, which every policy reads), and the store's answer
when the decision needs it or a running job's progress is due a refresh."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from . import kueueworkload as kw
from . import storage
from .attempts import lineage_attempt
from .builders import JobRef
from .decide import needs_selection
from .lanes import Lane
from .podview import Key, PodView
from .spec import JobSpec
from .vocabulary import Facts, Selection, StorageProblem

Select = Callable[[JobRef, JobSpec, int | None], Awaitable[Selection | StorageProblem]]


class Gatherer:
    def __init__(
        self, pods: PodView, lane: Lane, select: Select, *, progress_interval: float
    ) -> None:
        self.pods, self.lane, self.select = pods, lane, select
        self.progress_interval = progress_interval
        self.refreshed: dict[Key, float] = {}  # monotonic: the last progress refresh

    def forget(self, key: Key) -> None:
        self.refreshed.pop(key, None)

    async def facts(
        self, job: dict[str, Any], spec: JobSpec, now: datetime, refresh: bool
    ) -> Facts:
        """`refresh`: a resync's cycle, which asks the store for a running job's
        progress (at most every `progress_interval` otherwise)."""
        meta = job["metadata"]
        key: Key = (meta["namespace"], meta["name"])
        ref = JobRef(meta["name"], meta["namespace"], meta["uid"])
        pods = await self.pods.pods(key, now)
        index = self.pods.index()
        names = sorted({n for p in pods if (n := (p.get("spec") or {}).get("nodeName"))})
        nodes = {n: node for n in names if (node := index.node(n)) is not None}
        status: dict[str, Any] = job.get("status") or {}
        queue = await self._queue(job, ref, spec, len(pods))
        facts = Facts(
            ref, spec, status, pods, nodes, now, seen_steps=self.pods.seen_steps(key), queue=queue
        )
        facts = replace(facts, pod_ends=facts.ends)  # classified once, here
        need = needs_selection(facts)
        due = time.monotonic() - self.refreshed.get(key, 0.0) >= self.progress_interval
        current = facts.state
        active = not current.finished and not spec.suspend
        if not (need or ((refresh or due) and active and current.attempt)):
            return facts
        if not need and self.lane.busy(storage.lane_key(spec.checkpoint, key[0])):
            return facts  # a progress refresh can wait for a free lane; a launch cannot
        answer = await self.select(ref, spec, lineage_attempt(current.attempt, launching=need))
        self.refreshed[key] = time.monotonic()
        if isinstance(answer, StorageProblem):
            return replace(facts, storage_problem=answer)
        return replace(facts, selection=answer)

    async def _queue(
        self, job: dict[str, Any], ref: JobRef, spec: JobSpec, n_pods: int
    ) -> kw.QueueFacts | None:
        """A job labelled for Kueue: its Workload (the watch's, workloadview: no GET),
        and what creating it or launching under it needs (the priority class's value;
        the admitted flavors)."""
        labels = job["metadata"].get("labels") or {}
        queue = labels.get(kw.QUEUE_LABEL)
        if not queue:
            return None
        kube = self.pods.kube
        every = tuple(await self.pods.workloads.of_job((ref.namespace, ref.name)))
        wl = kw.current(every, ref)
        priority: tuple[str, int] | None = None
        if kw.needs_new(wl, spec) and (pclass := labels.get(kw.PRIORITY_LABEL)):
            found = await kube.get_kueue_object("workloadpriorityclasses", str(pclass))
            if found is None:
                raise ValueError(
                    f"WorkloadPriorityClass {pclass!r} (label {kw.PRIORITY_LABEL}) not found"
                )
            priority = (str(pclass), int(found.get("value") or 0))
        flavors: dict[str, dict[str, Any]] = {}
        if kw.state_of(wl) == kw.WorkloadState.ADMITTED and n_pods < spec.replicas:
            for name in kw.admitted_flavors(wl):  # only while pods are to be created
                fl = await kube.get_kueue_object("resourceflavors", name)
                flavors[name] = (fl or {}).get("spec") or {}
        return kw.QueueFacts(str(queue), wl, flavors, priority, every)
