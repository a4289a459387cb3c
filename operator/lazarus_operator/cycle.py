"""One reconcile cycle of one TrainingJob: gather facts, decide, write status,
act, post events. Cycles of one job never overlap; kicks that arrive while one
runs fold into one more run (pods change in bursts)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import metrics, storage
from . import status as s
from .attempts import lineage_attempt
from .builders import KIND, LABEL_JOB, JobRef
from .classify import reported_step
from .decide import decide, needs_selection
from .kube import Kube, Rejected, api_unavailable
from .lanes import storage_lane
from .outbox import Outbox
from .secretcache import SecretCache
from .spec import JobSpec, SpecError, parse_spec
from .vocabulary import (
    AnnotatePod,
    CreatePod,
    CreateService,
    Decision,
    DeleteJob,
    DeletePod,
    Event,
    Facts,
    RecordAttempt,
    Selection,
    StorageProblem,
)
from .watched import Bodies, Watched, overdue, pod_uid, slim_pod, vanished

log = logging.getLogger("lazarus.cycle")

ERROR_BACKOFF_S = 2.0  # first retry after a failed cycle; doubles per failure
ERROR_BACKOFF_MAX_S = 300.0
# The API server away (refused, 5xx, 429): retry at least this often, so jobs move
# again soon after it is back (client-go's reflectors cap their backoff near 30 s).
UNAVAILABLE_BACKOFF_MAX_S = 30.0
SEEN_STEPS_LIMIT = 256  # reported steps remembered per job (a few attempts' pods)
# A pod the operator created counts as existing until its watch shows it (a cycle
# may run before the event arrives); unseen this long, one LIST asks the API (a watch
# that relisted after a gap never shows a pod created and deleted within it).
CREATED_MEMORY_S = 30.0


@dataclass
class Outcome:
    requeue_after: float | None = None
    waiting: str = ""


@dataclass
class _JobState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    dirty: bool = False
    refresh: bool = False
    last_refresh: float = 0.0
    wakeup: asyncio.TimerHandle | None = None
    # pod -> last step its trainer reported, from pod events (decide.Facts.seen_steps)
    seen_steps: dict[str, int] = field(default_factory=dict)
    failures: int = 0  # consecutive failed cycles: the backoff's exponent
    retry_at: float = 0.0  # monotonic: the periodic resync leaves a failing job alone until then
    recovered: bool = False  # a cycle acted after failures: the next status write clears it
    last_error: str = ""  # reported once (condition, event, traceback) per distinct error
    last: Outcome = field(default_factory=Outcome)
    # pod name -> (monotonic time, body) of pods created but not yet seen in the watch
    created: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    # uids of pods a LIST showed gone while the watch's index still holds them
    vanished: set[str] = field(default_factory=set)


class Reconciler:
    def __init__(self, kube: Kube, *, progress_interval: float = 30.0) -> None:
        self.kube = kube
        self.progress_interval = progress_interval
        self.jobs: dict[tuple[str, str], _JobState] = {}
        self.bodies = Bodies()  # TrainingJobs as the watch and our own writes left them
        self.watched: Watched | None = None  # attached at startup (handlers.startup)
        self.outbox = Outbox(kube.event, retryable=api_unavailable)  # survive API outages
        self.storage_lane = storage_lane()  # storage calls: threads of their own
        self.secrets = SecretCache(kube.get_secret)  # the Secrets jobs name, by GET

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
            for ns, name in list(self.jobs):
                st = self.jobs.get((ns, name))
                if st is not None and st.retry_at > time.monotonic():
                    continue  # failing: its backoff timer will run it
                try:
                    await self.kick(ns, name, refresh=True)
                except Exception:
                    log.exception("resync of %s/%s failed", ns, name)

    async def relist_forever(
        self, interval: float, namespaces: tuple[str, ...], active: Callable[[], Awaitable[bool]]
    ) -> None:
        """Compare the pod index with the API every `interval` seconds (see `relist`)."""
        while True:
            await asyncio.sleep(interval)
            if not await active():
                continue
            try:
                await self.relist(namespaces)
            except Exception:  # the API may be away; the next round tries again
                log.exception("relisting the jobs' pods failed")

    async def relist(self, namespaces: tuple[str, ...]) -> None:
        """One LIST of our pods' metadata per watched namespace (one in all for a
        cluster-wide operator): a pod the index holds but the API has not is gone.

        The watches alone can miss that for good: after an API server restart, kopf's
        watch gets "410 Gone" and re-lists, and does not report the objects deleted in
        the gap. A job would then wait on a pod that no longer exists."""
        watched = self._watched()
        for ns in namespaces or (None,):
            # Read before the LIST is sent: a pod the watch adds later is never "gone".
            held = {
                key: {pod_uid(p) for p in pods}
                for key, pods in list(watched.pods.items())
                if ns is None or key[0] == ns
            }
            listed = await self.kube.pod_metadata(ns, LABEL_JOB)
            for (job_ns, job), gone in vanished(held, listed).items():
                log.warning(
                    "%s/%s: %d pod(s) the watch still shows are gone from the API",
                    job_ns,
                    job,
                    len(gone),
                )
                self.jobs.setdefault((job_ns, job), _JobState()).vanished |= gone
                await self.kick(job_ns, job)

    def observe_pod(self, ns: str, job: str, pod: Mapping[str, Any]) -> None:
        """Remember the step an ended pod's trainer reported: a deleted pod's final
        status may be gone from the API by the time a cycle lists pods."""
        step = reported_step(pod)
        if step is None:
            return
        seen = self.jobs.setdefault((ns, job), _JobState()).seen_steps
        seen[str((pod.get("metadata") or {}).get("name", ""))] = step
        if len(seen) > SEEN_STEPS_LIMIT:  # bounded: drop the oldest entries
            for key in list(seen)[: len(seen) - SEEN_STEPS_LIMIT]:
                del seen[key]

    def pod_event(self, ns: str, job: str, pod: Mapping[str, Any]) -> None:
        """The watch shows the pod (or its deletion): it needs no stand-in any more."""
        st = self.jobs.get((ns, job))
        if st is not None and st.created:
            st.created.pop(str((pod.get("metadata") or {}).get("name", "")), None)
        self.observe_pod(ns, job, pod)

    def forget(self, ns: str, name: str) -> None:
        st = self.jobs.pop((ns, name), None)
        if st and st.wakeup:
            st.wakeup.cancel()

    async def kick(self, ns: str, name: str, *, refresh: bool = False) -> Outcome:
        """Run a cycle now, or fold into the one running; the outcome of the last cycle."""
        st = self.jobs.setdefault((ns, name), _JobState())
        st.dirty = True
        st.refresh = st.refresh or refresh
        if st.lock.locked():
            return st.last
        async with st.lock:
            while st.dirty:
                st.dirty = False
                refresh, st.refresh = st.refresh, False
                t0 = time.monotonic()
                try:
                    st.last = await self._once(ns, name, st, refresh)
                except Exception as exc:
                    metrics.METRICS.cycle_errors.inc()
                    st.last = await self._failed(ns, name, st, exc)
                metrics.METRICS.cycle.observe(time.monotonic() - t0)
        self._schedule(ns, name, st)
        return st.last

    async def _failed(self, ns: str, name: str, st: _JobState, exc: Exception) -> Outcome:
        """A cycle raised: say so once (condition, Warning event, one traceback per
        distinct error), then retry with exponential backoff, never a tight loop."""
        if time.monotonic() >= st.retry_at:
            # Only a retry that fell due counts: the cycles a burst of events runs
            # meanwhile (a re-list after an outage) must not double the wait each.
            st.failures += 1
        delay = error_backoff(st.failures, api_unavailable(exc))
        st.retry_at = time.monotonic() + delay
        reason = s.R_POD_REJECTED if isinstance(exc, Rejected) else s.R_RECONCILE_ERROR
        msg = (str(exc).splitlines() or [type(exc).__name__])[0][:1024] or type(exc).__name__
        if msg == st.last_error:
            log.warning("cycle of %s/%s failed again (%s); next try in %.0fs", ns, name, msg, delay)
        else:
            st.last_error = msg
            log.error("cycle of %s/%s failed: %s", ns, name, msg, exc_info=exc)
            try:
                await self._report_error(ns, name, reason, msg)
            except Exception as err:  # the API itself may be what fails
                log.warning("could not report the failure of %s/%s: %s", ns, name, err)
        return Outcome(delay, f"{reason}: {msg}")

    async def _report_error(self, ns: str, name: str, reason: str, msg: str) -> None:
        job = await self._job(ns, name)
        if job is None:
            return
        old: dict[str, Any] = job.get("status") or {}
        new = dict(old)
        now = datetime.now(UTC)
        s.set_condition(new, s.COND_RECONCILE_ERROR, True, reason, msg, now=now)
        await self._patch_status(job, old, new)
        self._post(job, [Event("Warning", reason, f"{msg}; retrying with backoff")])

    def _schedule(self, ns: str, name: str, st: _JobState) -> None:
        """Wake up when the decision said something falls due (backoff, timeouts): the
        operator's one requeue path (kopf's handlers never ask kopf to retry a cycle)."""
        if st.wakeup:
            st.wakeup.cancel()
            st.wakeup = None
        delay = st.last.requeue_after
        if delay is not None:
            log.debug("%s/%s: next cycle in %.2fs (%s)", ns, name, delay, st.last.waiting)
            loop = asyncio.get_running_loop()
            st.wakeup = loop.call_later(delay, lambda: loop.create_task(self.kick(ns, name)))

    async def _job(self, ns: str, name: str) -> dict[str, Any] | None:
        """The job as the watch (or our last write) left it; the API only for a job
        no event has shown yet."""
        job = self.bodies.get(ns, name)
        if job is None:
            job = await self.kube.get_job(ns, name)
            if job is not None:
                self.bodies.put(job)
        return job

    async def _refetch(self, ns: str, name: str) -> None:
        """A write conflicted: the watch has not caught up, so read the job once."""
        job = await self.kube.get_job(ns, name)
        if job is None:
            self.bodies.drop(ns, name)
        else:
            self.bodies.put(job)

    def _watched(self) -> Watched:
        if self.watched is None:
            raise RuntimeError("the operator's watches are not attached yet")
        return self.watched

    async def _once(self, ns: str, name: str, st: _JobState, refresh: bool) -> Outcome:
        job = await self._job(ns, name)
        if job is None:
            await self._gone(ns, name)
            return Outcome()
        if job["metadata"].get("deletionTimestamp"):
            return Outcome()
        old_status: dict[str, Any] = job.get("status") or {}
        now = datetime.now(UTC)
        try:
            spec = parse_spec(job.get("spec") or {})
        except SpecError as err:
            new = dict(old_status)
            s.set_condition(new, s.COND_SPEC, False, s.R_SPEC_INVALID, str(err), now=now)
            if await self._patch_status(job, old_status, new):
                self._post(job, [Event("Warning", s.R_SPEC_INVALID, str(err))])
            return Outcome(None, f"invalid spec: {err}")
        facts = await self._gather(job, spec, st, now, refresh)
        d = decide(facts)
        new_status = self._status_to_write(d, st, job, now)
        if not await self._patch_status(job, old_status, new_status):
            # Someone changed the job since we read it: decide again on fresh facts.
            metrics.METRICS.api_retries.inc()
            await self._refetch(ns, name)
            return Outcome(0.05, "job changed while deciding")
        metrics.METRICS.observe(facts.job, old_status, new_status, now, spec.checkpoint)
        if facts.selection is not None and facts.selection.chosen is not None:
            ck = facts.selection.chosen
            metrics.METRICS.observe_checkpoint(facts.job, ck.name, ck.extra)
        # The status says it happened: its events go out even if acting fails now
        # (the outbox's sender posts them; the cycle does not wait for that).
        self._post(job, d.events)
        await self._act(spec, facts.job, d)
        if st.failures:
            # Acted without raising: the error is over. Say so in the next status write
            # (this one was made before we knew).
            st.failures, st.last_error, st.retry_at, st.recovered = 0, "", 0.0, True
            return Outcome(min(d.requeue_after or 0.5, 0.5), d.waiting or "recovered")
        return Outcome(d.requeue_after, d.waiting)

    async def _gone(self, ns: str, name: str) -> None:
        """Deleted: its pods go too. The garbage collector would get there, but it
        learns new resource types only on its periodic discovery."""
        self.jobs.pop((ns, name), None)
        self.bodies.drop(ns, name)
        metrics.METRICS.forget(ns, name)
        for pod in self._watched().job_pods(ns, name):
            owners = pod["metadata"].get("ownerReferences") or []
            if any(o.get("kind") == KIND for o in owners) and not pod["metadata"].get(
                "deletionTimestamp"
            ):
                await self.kube.delete_pod(ns, pod["metadata"]["name"], force=False)

    async def _gather(
        self, job: dict[str, Any], spec: JobSpec, st: _JobState, now: datetime, refresh: bool
    ) -> Facts:
        """The facts of one cycle: pods, their nodes, and the store's answer when the
        decision needs it or a running job's progress is due a refresh."""
        meta = job["metadata"]
        ns, name = meta["namespace"], meta["name"]
        ref = JobRef(name, ns, meta["uid"])
        status: dict[str, Any] = job.get("status") or {}
        pods = await self._pods(ns, name, st, now)
        node_names = sorted({n for p in pods if (n := (p.get("spec") or {}).get("nodeName"))})
        nodes = {n: node for n in node_names if (node := self._watched().node(n)) is not None}
        for p in pods:
            self.observe_pod(ns, name, p)
        seen = dict(st.seen_steps)
        facts = Facts(ref, spec, status, pods, nodes, now, seen_steps=seen)
        need = needs_selection(facts)
        due = time.monotonic() - st.last_refresh >= self.progress_interval
        current = facts.state
        active = not current.finished and not spec.suspend
        if not (need or ((refresh or due) and active and current.current_attempt)):
            return facts
        if not need and self.storage_lane.busy(storage.lane_key(spec.checkpoint, ns)):
            return facts  # a progress refresh can wait for a free lane; a launch cannot
        answer = await self._select(
            ref, spec, lineage_attempt(current.current_attempt, launching=need)
        )
        st.last_refresh = time.monotonic()
        if isinstance(answer, StorageProblem):
            return Facts(ref, spec, status, pods, nodes, now, None, answer, seen)
        return Facts(ref, spec, status, pods, nodes, now, answer, seen_steps=seen)

    async def _pods(self, ns: str, name: str, st: _JobState, now: datetime) -> list[dict[str, Any]]:
        """The job's pods from the watch, and those we created that it does not show yet.

        A pod held past its deletion deadline is confirmed by one LIST: one the API no
        longer has is left out from then on (the watch may never report it gone)."""
        held = self._watched().job_pods(ns, name)
        st.vanished &= {pod_uid(p) for p in held}
        pods = [p for p in held if pod_uid(p) not in st.vanished]
        listed: list[dict[str, Any]] | None = None  # at most one LIST a cycle
        if any(overdue(p, now) for p in pods):
            listed = await self.kube.list_pods(ns, f"{LABEL_JOB}={name}")
            live = {pod_uid(p) for p in listed}
            st.vanished |= {pod_uid(p) for p in pods if pod_uid(p) not in live}
            pods = sorted((slim_pod(p) for p in listed), key=lambda p: p["metadata"]["name"])
        if st.created:
            for seen in {p["metadata"]["name"] for p in pods} & st.created.keys():
                del st.created[seen]
            cutoff = time.monotonic() - CREATED_MEMORY_S
            if any(at < cutoff for at, _ in st.created.values()):
                # Unseen this long: a watch that relisted past a pod created and deleted in
                # a gap, or one lagging behind a loaded loop. Only the API can tell which;
                # forgetting a pod that exists would restart its job as "vanished".
                if listed is None:
                    listed = await self.kube.list_pods(ns, f"{LABEL_JOB}={name}")
                exists = {p["metadata"]["name"]: slim_pod(p) for p in listed}
                fresh = time.monotonic()
                st.created = {n: (fresh, exists[n]) for n in st.created if n in exists}
            pods.extend(body for _, body in st.created.values())
        return pods

    @staticmethod
    def _status_to_write(
        d: Decision, st: _JobState, job: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        new_status = d.status
        s.set_condition(new_status, s.COND_SPEC, True, s.R_SPEC_VALID, "spec is valid", now=now)
        if st.recovered and s.get_condition(new_status, s.COND_RECONCILE_ERROR):
            msg = "the last cycle completed"
            s.set_condition(new_status, s.COND_RECONCILE_ERROR, False, s.R_RECONCILED, msg, now=now)
            st.recovered = False
        new_status["observedGeneration"] = job["metadata"].get("generation")
        pruned: dict[str, Any] = s.prune_none(new_status)
        return pruned

    async def _select(
        self, ref: JobRef, spec: JobSpec, attempt: int | None
    ) -> Selection | StorageProblem:
        if storage.delegated(spec.checkpoint):
            return Selection(None, (), 0, delegated=True)
        try:
            cred = await self.credentials(ref.namespace, spec)
        except storage.CredentialsError as err:
            return storage.problem_of(err, spec.checkpoint.uri)
        answer = await storage.select(spec.checkpoint, cred, attempt, ref, lane=self.storage_lane)
        if isinstance(answer, StorageProblem) and answer.reason == s.R_ACCESS_DENIED:
            self._forget_secret(ref.namespace, spec)  # rotated? the next retry reads it again
        return answer

    async def credentials(self, ns: str, spec: JobSpec) -> storage.Credentials:
        """The job's storage credentials: the keys it names of the Secret it names, by
        GET through `secrets` (no Secret is watched; at rest none is read per cycle),
        else the operator's own where the platform allows them."""
        ref = spec.checkpoint.secret_ref
        secret: dict[str, Any] | None = None
        if ref is not None:
            keys = (ref.access_key_id_key, ref.secret_access_key_key, ref.region_key)
            data = await self.secrets.data(ns, ref.name, keys)
            secret = None if data is None else {"data": data}
        try:
            return storage.credentials(spec.checkpoint, secret, ns)
        except storage.CredentialsError:
            self._forget_secret(ns, spec)  # a key missing: the fixed Secret is read next time
            raise

    def _forget_secret(self, ns: str, spec: JobSpec) -> None:
        if (ref := spec.checkpoint.secret_ref) is not None:
            self.secrets.forget(ns, ref.name)

    async def _patch_status(
        self, job: dict[str, Any], old: dict[str, Any], new: dict[str, Any]
    ) -> bool:
        """Write status once, only if changed, guarded by the resourceVersion we read."""
        meta = job["metadata"]
        patch = s.status_patch(old, new)
        if patch is None:
            return True
        written = await self.kube.patch_status(
            meta["namespace"], meta["name"], meta["resourceVersion"], patch
        )
        if written is None:
            return False
        self.bodies.put(written)  # the next cycle must not decide on the old status
        return True

    def _post(self, job: dict[str, Any], events: list[Event]) -> None:
        self.outbox.queue(job, _triples(events))

    async def _act(self, spec: JobSpec, ref: JobRef, d: Decision) -> None:
        ns = ref.namespace
        st = self.jobs.get((ns, ref.name))
        creates: list[dict[str, Any]] = []
        for a in d.actions:
            if isinstance(a, RecordAttempt):
                # Fencing: the attempt is in the log before any of its pods exist.
                cred = await self.credentials(ns, spec)
                await storage.record_attempt(
                    spec.checkpoint,
                    cred,
                    a.attempt,
                    a.resume_from,
                    a.resume_step,
                    job=ref,
                    lane=self.storage_lane,
                )
            elif isinstance(a, CreateService):
                # Every launch asks for it; the watch says whether it exists already.
                if not self._watched().has_service(ns, ref.name):
                    await self.kube.create(ns, a.manifest)
            elif isinstance(a, CreatePod):
                creates.append(a.manifest)
            elif isinstance(a, DeletePod):
                existed = await self.kube.delete_pod(ns, a.name, force=a.force)
                if not existed and st is not None:
                    # The API has no such pod, the watch still shows it: it went while
                    # the watch was away. Leave it out and decide again at once.
                    held = self._watched().job_pods(ns, ref.name)
                    st.vanished |= {pod_uid(p) for p in held if p["metadata"]["name"] == a.name}
                    st.created.pop(a.name, None)
                    st.dirty = True
            elif isinstance(a, AnnotatePod):
                await self.kube.annotate_pod(ns, a.name, a.annotations)
            elif isinstance(a, DeleteJob):
                await self.kube.delete_job(ns, ref.name)
        # The gang's pods are independent: create them concurrently.
        made = await asyncio.gather(*(self.kube.create(ns, m) for m in creates))
        if st is not None:
            now = time.monotonic()
            for m, body in zip(creates, made, strict=True):
                # As the index would hold it: while the watch lags a launch burst,
                # 4,000 full pod bodies are 60 MB (tracemalloc, 100-job launch).
                st.created[m["metadata"]["name"]] = (now, slim_pod(body or m))


def _triples(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.type, e.reason, e.message) for e in events]


def error_backoff(failures: int, unavailable: bool) -> float:
    """Seconds until a failed cycle is retried: doubling per failure, capped lower
    while the API server itself is away."""
    cap = UNAVAILABLE_BACKOFF_MAX_S if unavailable else ERROR_BACKOFF_MAX_S
    return min(cap, ERROR_BACKOFF_S * 2.0 ** min(max(failures, 1) - 1, 16))
