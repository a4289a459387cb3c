"""Carrying out a transition's actions, in order, after its status is written: fence
the attempt in the store, then the Service, deletes and annotations; the gang's pods
are created last, together."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from . import storage
from .jobqueue import JobQueue
from .kube import Kube
from .lanes import Lane
from .podview import Key, PodView
from .spec import JobSpec
from .transition import Transition
from .vocabulary import (
    AnnotatePod,
    CreatePod,
    CreateService,
    CreateWorkload,
    DeleteJob,
    DeletePod,
    PatchWorkload,
    PatchWorkloadStatus,
    RecordAttempt,
)

Credentials = Callable[[str, JobSpec], Awaitable[storage.Credentials]]


class Actor:
    def __init__(
        self,
        kube: Kube,
        pods: PodView,
        queue: JobQueue[Key],
        lane: Lane,
        credentials: Credentials,
    ) -> None:
        self.kube, self.pods, self.queue = kube, pods, queue
        self.lane, self.credentials = lane, credentials

    async def act(self, spec: JobSpec, t: Transition) -> None:
        ns, key = t.job.namespace, (t.job.namespace, t.job.name)
        creates: list[dict[str, Any]] = []
        for a in t.actions:
            if isinstance(a, RecordAttempt):
                # Fencing: the attempt is in the log before any of its pods exist.
                cred = await self.credentials(ns, spec)
                await storage.record_attempt(
                    spec.checkpoint,
                    cred,
                    a.attempt,
                    a.resume_from,
                    a.resume_step,
                    job=t.job,
                    lane=self.lane,
                )
            elif isinstance(a, CreateService):
                # Every launch asks for it; the watch says whether it exists already.
                svc = a.manifest["metadata"]["name"]
                if not self.pods.index().has_service(ns, t.job.name, svc):
                    await self.kube.create(ns, a.manifest)
            elif isinstance(a, CreatePod):
                creates.append(a.manifest)
            elif isinstance(a, DeletePod):
                await self._delete(key, a)
            elif isinstance(a, AnnotatePod):
                await self.kube.annotate_pod(ns, a.name, a.annotations)
            elif isinstance(a, DeleteJob):
                await self.kube.delete_job(ns, t.job.name)
            elif isinstance(a, CreateWorkload | PatchWorkload | PatchWorkloadStatus):
                await self._workload(key, a)
        # The gang's pods are independent: create them concurrently.
        made = await asyncio.gather(*(self.kube.create(ns, m) for m in creates))
        if key in self.queue:
            self.pods.created(key, [body or m for m, body in zip(creates, made, strict=True)])

    async def _workload(
        self, key: Key, a: CreateWorkload | PatchWorkload | PatchWorkloadStatus
    ) -> None:
        """Create or patch the job's Workload; its answer stands in until the watch
        shows it (workloadview): the next cycle neither creates it again nor patches
        from an older version."""
        ns = key[0]
        if isinstance(a, CreateWorkload):
            body = await self.kube.create_workload(ns, a.manifest)
            if body is None:  # it exists already (another replica, a lagging watch)
                body = await self.kube.get_workload(ns, a.manifest["metadata"]["name"])
        else:
            status = isinstance(a, PatchWorkloadStatus)
            body = await self.kube.patch_workload(ns, a.name, a.patch, status=status)
        if key in self.queue:
            self.pods.workloads.wrote(key, body)

    async def _delete(self, key: Key, a: DeletePod) -> None:
        existed = await self.kube.delete_pod(key[0], a.name, force=a.force)
        if not existed and key in self.queue:
            # The API has no such pod, the watch still shows it: it went while the
            # watch was away. Leave it out and decide again at once.
            self.pods.deleted_missing(key, a.name)
            self.queue.again(key)
