"""The TrainingJob bodies a cycle reads, and its one status write.

Bodies come from the watch (`watched.Bodies`) and from our own writes; the API is
read only for a job no event has shown yet, or after a write conflicted. The write
is the cycle's lock (docs/architecture.md, "more than one replica"): it carries the
resourceVersion the cycle decided on, and only a cycle whose write won acts."""

from __future__ import annotations

from typing import Any

from . import status as s
from .kube import Kube
from .transition import Transition
from .watched import Bodies


class StatusWriter:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.bodies = Bodies()  # TrainingJobs as the watch and our own writes left them

    async def job(self, ns: str, name: str) -> dict[str, Any] | None:
        """The job as the watch (or our last write) left it; the API only for a job
        no event has shown yet."""
        job = self.bodies.get(ns, name)
        if job is None:
            job = await self.kube.get_job(ns, name)
            if job is not None:
                self.bodies.put(job)
        return job

    async def refetch(self, ns: str, name: str) -> None:
        """A write conflicted: the watch has not caught up, so read the job once."""
        job = await self.kube.get_job(ns, name)
        if job is None:
            self.bodies.drop(ns, name)
        else:
            self.bodies.put(job)

    async def write(self, job: dict[str, Any], t: Transition) -> bool:
        """Write `t`'s status once, guarded by the resourceVersion `job` was read at;
        False when someone changed the job since (another replica, a lagging watch).
        A transition that acts but changes no status still sends the guard, as an
        empty patch (the API server writes nothing then): its actions must not be
        carried out for a job that moved on."""
        meta = job["metadata"]
        patch = s.status_patch(job.get("status") or {}, t.written)
        if patch is None:
            if not t.actions:
                return True
            patch = {}
        written = await self.kube.patch_status(
            meta["namespace"], meta["name"], meta["resourceVersion"], patch
        )
        if written is None:
            return False
        self.bodies.put(written)  # the next cycle must not decide on the old status
        return True
