"""The reconciler: one cycle of one TrainingJob, as a pipeline of small stages.

  jobqueue     a kick runs the job's cycle, or folds into the one running; timers, backoff
  podview      the job's pods: the watch's index, with created/vanished stand-ins
  gather       the facts: pods, nodes, each pod's end once, the store's answer if needed
  decide       pure: facts -> decision
  transition   the typed result: old status, new status, actions, events
  statuswrite  writes the status once; then the events are queued (outbox),
  accounting   the metrics read the transition (metrics),
  act          and its actions are carried out.

This module only wires them and reports a cycle that raised."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from . import metrics
from . import status as s
from .act import Actor
from .builders import KIND, LABEL_JOB, JobRef
from .decide import decide
from .gather import Gatherer
from .jobqueue import Backoff, JobQueue, Outcome
from .jobstatus import JobStatus
from .kube import Kube, Rejected, api_unavailable
from .outbox import Outbox
from .podview import Key, PodView
from .spec import SpecError, parse_spec
from .statuswrite import StatusWriter
from .storeaccess import StoreAccess
from .transition import Transition, condition_only, decided, reconciled
from .vocabulary import Event, Facts
from .watched import Watched, pod_uid, slim_pod

log = logging.getLogger("lazarus.cycle")


class Reconciler:
    def __init__(self, kube: Kube, *, progress_interval: float = 30.0) -> None:
        self.kube = kube
        self.queue: JobQueue[Key] = JobQueue(self._cycle)
        self.pods = PodView(kube)
        self.writer = StatusWriter(kube)
        self.bodies = self.writer.bodies  # TrainingJobs as the watch and our writes left them
        self.outbox = Outbox(kube.event, retryable=api_unavailable)  # survive API outages
        self.store = StoreAccess(kube)
        self.storage_lane = self.store.lane
        self.gather = Gatherer(
            self.pods, self.storage_lane, self.store.select, progress_interval=progress_interval
        )
        self.actor = Actor(kube, self.pods, self.queue, self.storage_lane, self.store.credentials)

    @property
    def watched(self) -> Watched | None:
        return self.pods.watched

    @watched.setter
    def watched(self, watched: Watched) -> None:
        """The watches' indexes, attached at startup (handlers.startup)."""
        self.pods.watched = watched

    # --- what kicks a cycle --------------------------------------------------------
    async def kick(self, ns: str, name: str, *, refresh: bool = False) -> Outcome:
        """Run a cycle now, or fold into the one running; the outcome of the last cycle."""
        return await self.queue.kick((ns, name), refresh=refresh)

    def pod_event(self, ns: str, job: str, pod: Mapping[str, Any]) -> None:
        self.pods.observe((ns, job), pod)

    def forget(self, ns: str, name: str) -> None:
        key = (ns, name)
        self.queue.forget(key)
        self.pods.forget(key)
        self.gather.forget(key)

    async def resync_forever(self, interval: float, active: Callable[[], Awaitable[bool]]) -> None:
        """Revisit every known job regularly (progress from storage, missed events).
        Not a kopf timer: timers make kopf hold a finalizer on every job. `active`
        says whether this replica is the one acting (kopf pauses only handlers)."""
        while True:
            await asyncio.sleep(interval)
            if not await active():
                continue
            try:
                await self.outbox.flush()
            except Exception:  # never the end of the resync
                log.exception("flushing the event outbox failed")
            for ns, name in self.queue:
                if not self.queue.due((ns, name)):
                    continue  # failing: its backoff timer will run it
                try:
                    await self.kick(ns, name, refresh=True)
                except Exception:
                    log.exception("resync of %s/%s failed", ns, name)

    async def relist_forever(
        self, interval: float, namespaces: tuple[str, ...], active: Callable[[], Awaitable[bool]]
    ) -> None:
        """Compare the pod index with the API every `interval` seconds (podview.relist)."""
        while True:
            await asyncio.sleep(interval)
            if not await active():
                continue
            try:
                await self.relist(namespaces)
            except Exception:  # the API may be away; the next round tries again
                log.exception("relisting the jobs' pods failed")

    async def relist(self, namespaces: tuple[str, ...]) -> None:
        await self.pods.relist(namespaces, lambda key: self.kick(*key))

    # --- one cycle -----------------------------------------------------------------
    async def _cycle(self, key: Key, refresh: bool, backoff: Backoff) -> Outcome:
        t0 = time.monotonic()
        try:
            return await self._once(key, refresh, backoff)
        except Exception as exc:
            metrics.METRICS.cycle_errors.inc()
            return await self._failed(key, backoff, exc)
        finally:
            metrics.METRICS.cycle.observe(time.monotonic() - t0)

    async def _once(self, key: Key, refresh: bool, backoff: Backoff) -> Outcome:
        job = await self.writer.job(*key)
        if job is None:
            await self._gone(*key)
            return Outcome()
        if job["metadata"].get("deletionTimestamp"):
            return Outcome()
        now = datetime.now(UTC)
        try:
            spec = parse_spec(job.get("spec") or {})
        except SpecError as err:
            cond = (s.COND_SPEC, False, s.R_SPEC_INVALID, str(err))
            event = Event("Warning", s.R_SPEC_INVALID, str(err))
            if await self.writer.write(job, self._only(job, now, cond, event)):
                self._post(job, [event])
            return Outcome(None, f"invalid spec: {err}")
        facts = await self.gather.facts(job, spec, now, refresh)
        t, cleared = self._decide(job, facts, backoff.recovered)
        if t.books and (listed := await self._listed(facts)) is not None:
            # Decided on pods the watch showed, which the API has not (any more): the
            # watch lags (another replica acted; a loaded loop). Decide on the API's.
            metrics.METRICS.api_retries.inc()
            t, cleared = self._decide(job, listed, backoff.recovered)
        if cleared:
            backoff.recovered = False
        if not await self.writer.write(job, t):
            # Someone changed the job since we read it: decide again on fresh facts.
            metrics.METRICS.api_retries.inc()
            await self.writer.refetch(*key)
            return Outcome(0.05, "job changed while deciding")
        metrics.METRICS.observe(t, spec.checkpoint)
        if t.checkpoint is not None:
            metrics.METRICS.observe_checkpoint(t.job, t.checkpoint.name, t.checkpoint.extra)
        # The status says it happened: its events go out even if acting fails now
        # (the outbox's sender posts them; the cycle does not wait for that).
        self._post(job, t.events)
        await self.actor.act(spec, t)
        if backoff.succeeded():
            # Acted without raising: the error is over. Say so in the next status write
            # (this one was made before we knew).
            return Outcome(min(t.requeue_after or 0.5, 0.5), t.waiting or "recovered")
        return Outcome(t.requeue_after, t.waiting)

    @staticmethod
    def _decide(job: dict[str, Any], facts: Facts, recovered: bool) -> tuple[Transition, bool]:
        """The transition `facts` call for; whether it clears a recovered error."""
        d = decide(facts)
        cleared = recovered and reconciled(d.state, facts.now)
        return decided(facts, d, generation=job["metadata"].get("generation")), cleared

    async def _listed(self, facts: Facts) -> Facts | None:
        """`facts` with the job's pods as one LIST shows them now, or None when they are
        the watch's. A transition that moves the job on is decided on these: the LIST
        is served after the job was read, so no older than its status (which another
        replica may have written, having acted already)."""
        ns, name = facts.job.namespace, facts.job.name
        pods = await self.kube.list_pods(ns, f"{LABEL_JOB}={name}")
        listed = sorted((slim_pod(p) for p in pods), key=lambda p: p["metadata"]["name"])
        if _versions(listed) == _versions(facts.pods):
            return None
        index = self.pods.index()
        on = sorted({n for p in listed if (n := (p.get("spec") or {}).get("nodeName"))})
        nodes = {n: node for n in on if (node := index.node(n)) is not None}
        fresh = replace(facts, pods=listed, nodes=nodes, pod_ends=None)
        return replace(fresh, pod_ends=fresh.ends)  # classified once, as gather does

    async def _gone(self, ns: str, name: str) -> None:
        """Deleted: its pods go too. The garbage collector would get there, but it
        learns new resource types only on its periodic discovery."""
        self.forget(ns, name)
        self.bodies.drop(ns, name)
        metrics.METRICS.forget(ns, name)
        for pod in self.pods.index().job_pods(ns, name):
            owners = pod["metadata"].get("ownerReferences") or []
            if any(o.get("kind") == KIND for o in owners) and not pod["metadata"].get(
                "deletionTimestamp"
            ):
                await self.kube.delete_pod(ns, pod["metadata"]["name"], force=False)

    # --- a cycle that raised -------------------------------------------------------
    async def _failed(self, key: Key, backoff: Backoff, exc: Exception) -> Outcome:
        """A cycle raised: say so once (condition, Warning event, one traceback per
        distinct error), then retry with exponential backoff, never a tight loop."""
        delay = backoff.failed(api_unavailable(exc))
        reason = s.R_POD_REJECTED if isinstance(exc, Rejected) else s.R_RECONCILE_ERROR
        msg = (str(exc).splitlines() or [type(exc).__name__])[0][:1024] or type(exc).__name__
        ns, name = key
        if not backoff.new_error(msg):
            log.warning("cycle of %s/%s failed again (%s); next try in %.0fs", ns, name, msg, delay)
        else:
            log.error("cycle of %s/%s failed: %s", ns, name, msg, exc_info=exc)
            try:
                await self._report_error(key, reason, msg)
            except Exception as err:  # the API itself may be what fails
                log.warning("could not report the failure of %s/%s: %s", ns, name, err)
        return Outcome(delay, f"{reason}: {msg}")

    async def _report_error(self, key: Key, reason: str, msg: str) -> None:
        job = await self.writer.job(*key)
        if job is None:
            return
        cond = (s.COND_RECONCILE_ERROR, True, reason, msg)
        event = Event("Warning", reason, f"{msg}; retrying with backoff")
        await self.writer.write(job, self._only(job, datetime.now(UTC), cond, event))
        self._post(job, [event])

    @staticmethod
    def _only(
        job: dict[str, Any], now: datetime, cond: tuple[str, bool, str, str], event: Event
    ) -> Transition:
        meta = job["metadata"]
        ref = JobRef(meta["name"], meta["namespace"], meta.get("uid", ""))
        return condition_only(ref, JobStatus.from_api(job.get("status") or {}), now, cond, event)

    def _post(self, job: dict[str, Any], events: list[Event]) -> None:
        self.outbox.queue(job, [(e.type, e.reason, e.message) for e in events])


def _versions(pods: list[dict[str, Any]]) -> dict[str, str]:
    """uid -> resourceVersion: two views of the pods that agree on these agree."""
    return {pod_uid(p): str(p["metadata"].get("resourceVersion")) for p in pods}
