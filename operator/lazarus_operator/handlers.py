"""The kopf edge, every decorator of the operator: each handler finds the TrainingJob
concerned and kicks its cycle; the startup handler starts the resync.

Everything that decides lives in `decide` (pure); `cycle` runs a job's stages (gather,
decide, write, act) and `jobqueue` is the one requeue path (its timer runs the cycle
again when something falls due).
Shared state travels in kopf's `memo` (`runtime.Runtime`), not in module globals.

The facts a cycle reads come from the indexes below (`watched`): kopf keeps them
current from its watch streams and starts no handler before their first listing
(a resource it cannot serve, Kueue's Workloads without their CRDs, has no index
listing to wait for: it stays empty).
Secrets are not watched: a job's is read by name when needed (secretcache).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from lazarus_store.errors import StoreError

from . import autosave, heap, storage, workloadrelease
from . import kueueworkload as kw
from . import status as s
from .builders import GROUP, LABEL_JOB, PLURAL, VERSION, JobRef
from .runtime import Runtime
from .spec import SpecError, parse_spec
from .watched import Watched, asks_for_cycle, node_essence, slim, slim_pod

log = logging.getLogger("lazarus.handlers")


@kopf.on.startup()
async def startup(memo: Runtime, **kw: Any) -> None:
    rec, opts = memo.reconciler, memo.options
    # The indexes are live objects, empty until kopf's first listing (no handler
    # runs before it completes): the reconciler reads them from here on.
    rec.watched = Watched(
        pods=kw["pods_by_job"],
        nodes=kw["nodes"],
        services=kw["services"],
        workloads=kw["workloads_by_job"],
    )
    # API calls run in threads: as many as the client has connections (the default,
    # cores + 4, queued every job's calls behind a few slow ones).
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(opts.api_threads, "lazarus-api"))
    if opts.peering:
        await rec.kube.ensure_peering(opts.peering_name, list(opts.namespaces))

    async def active() -> bool:
        """kopf's own rule: a replica acts unless a live peer has a higher priority."""
        if not opts.peering:
            return True
        peers = await rec.kube.peers(opts.peering_name, list(opts.namespaces))
        return not any(int(p.get("priority", 0)) > opts.priority for p in peers)

    memo.background.add(loop.create_task(rec.outbox.send_forever()))
    memo.background.add(loop.create_task(rec.resync_forever(opts.resync_seconds, active)))
    relist = rec.relist_forever(opts.relist_seconds, opts.namespaces, active)
    memo.background.add(loop.create_task(relist))
    memo.background.add(loop.create_task(heap.trim_forever(heap.TRIM_SECONDS)))


def _deletes_checkpoints(spec: Any, **_: Any) -> bool:
    return bool((spec.get("checkpoint") or {}).get("deleteOnJobDelete"))


@kopf.on.event(GROUP, VERSION, PLURAL)
async def job_event(
    type: str, namespace: str | None, name: str, body: Any, memo: Runtime, **_: Any
) -> None:
    """Every event keeps the job's body current for its cycles; a new job or a changed
    spec runs one (kopf's create/update handlers would also PATCH their bookkeeping
    annotation on every job, and re-run while our status writes raced it). A deleted
    job's cycle deletes its pods (and forgets the job)."""
    assert namespace is not None
    rec = memo.reconciler
    if type == "DELETED":
        rec.bodies.drop(namespace, name)
        # Its exposure no longer informs its neighbours' automatic interval.
        autosave.POOL.forget(namespace, str(body.get("metadata", {}).get("uid", "")))
        await rec.kick(namespace, name)
        return
    rec.bodies.put(body)
    if asks_for_cycle(body, known=(namespace, name) in rec.queue):
        await rec.kick(namespace, name)


@kopf.on.delete(GROUP, VERSION, PLURAL, when=_deletes_checkpoints)
async def checkpoints_deleted(
    namespace: str | None, name: str, uid: str, spec: Any, memo: Runtime, **_: Any
) -> None:
    """spec.checkpoint.deleteOnJobDelete: the finalizer holds the job until its own
    checkpoints are gone; nothing else under the root is touched."""
    assert namespace is not None
    try:
        parsed = parse_spec(dict(spec))
    except SpecError:
        return
    if storage.delegated(parsed.checkpoint):
        # Admission refuses this; a job from before that rule keeps its files.
        log.warning("%s/%s: cannot delete a filesystem root's checkpoints", namespace, name)
        return
    try:
        cred = await memo.reconciler.store.credentials(namespace, parsed)
    except storage.CredentialsError as err:
        if err.reason != s.R_CREDENTIALS_REQUIRED:
            raise kopf.TemporaryError(f"deleting checkpoints: {err}", delay=10) from err
        # Only the spec or the platform could change that: holding the job (and its
        # namespace's deletion) for it would wait for ever. Its checkpoints stay.
        log.warning("%s/%s: checkpoints not deleted: %s", namespace, name, err)
        return
    try:
        ref, lane = JobRef(name, namespace, uid), memo.reconciler.storage_lane
        done = await storage.delete_job(parsed.checkpoint, cred, ref, lane=lane)
    except StoreError as err:
        raise kopf.TemporaryError(f"deleting checkpoints: {err}", delay=10) from err
    log.info(
        "deleted %d checkpoints (%d objects) of %s/%s under %s; kept %d of other jobs",
        len(done.checkpoints),
        done.objects,
        namespace,
        name,
        parsed.checkpoint.uri,
        done.kept_foreign,
    )


@kopf.index("", "v1", "pods", labels={LABEL_JOB: kopf.PRESENT})
async def pods_by_job(
    namespace: str | None, labels: Any, body: Any, **_: Any
) -> dict[tuple[str, str], dict[str, Any]] | None:
    """(namespace, job) -> each of the job's pods: a cycle's pods."""
    if namespace is None:
        return None
    return {(namespace, str(labels.get(LABEL_JOB))): slim_pod(body)}


@kopf.index("", "v1", "nodes")
async def nodes(name: str, body: Any, **_: Any) -> dict[str, dict[str, Any]]:
    """name -> the Node: readiness and taints of the nodes a job's pods run on."""
    return {name: slim(body)}


@kopf.index("", "v1", "services", labels={LABEL_JOB: kopf.PRESENT})
async def services(
    namespace: str | None, name: str, labels: Any, **_: Any
) -> dict[tuple[str, str], str] | None:
    """(namespace, job) -> its headless Service's name: a relaunch does not POST it again."""
    if namespace is None:
        return None
    return {(namespace, str(labels.get(LABEL_JOB))): name}


@kopf.index("", "v1", "pods", labels={LABEL_JOB: kopf.PRESENT})
async def pods_by_node(
    namespace: str | None, labels: Any, spec: Any, **_: Any
) -> dict[str, tuple[str, str]] | None:
    """node -> (namespace, job) of each of our pods on it: the jobs a node concerns."""
    node = spec.get("nodeName")
    if not node or namespace is None:
        return None
    return {str(node): (namespace, str(labels.get(LABEL_JOB)))}


@kopf.on.event("", "v1", "pods", labels={LABEL_JOB: kopf.PRESENT})
async def pod_event(
    *, namespace: str | None, labels: Any, body: Any, memo: Runtime, **_: Any
) -> None:
    assert namespace is not None
    job = labels.get(LABEL_JOB)
    memo.reconciler.pod_event(namespace, job, body)
    await memo.reconciler.kick(namespace, job)
    await _release(memo, namespace, str(job))


@kopf.index(kw.GROUP, kw.VERSION, kw.PLURAL, labels={LABEL_JOB: kopf.PRESENT})
async def workloads_by_job(
    namespace: str | None, labels: Any, body: Any, **_: Any
) -> dict[tuple[str, str], dict[str, Any]] | None:
    """(namespace, job) -> its Kueue Workload: a cycle reads it without a GET
    (workloadview). Without Kueue's CRDs it stays empty."""
    if namespace is None:
        return None
    return {(namespace, str(labels.get(LABEL_JOB))): slim(body)}


@kopf.on.event(kw.GROUP, kw.VERSION, kw.PLURAL, labels={LABEL_JOB: kopf.PRESENT})
async def workload_event(*, namespace: str | None, labels: Any, memo: Runtime, **_: Any) -> None:
    """A Kueue Workload the operator made for a job (admitted, evicted, requeued) wakes
    that job. Without Kueue's CRDs kopf serves nothing here (it logs so once)."""
    if namespace is not None:
        await memo.reconciler.kick(namespace, str(labels.get(LABEL_JOB)))
        await _release(memo, namespace, str(labels.get(LABEL_JOB)))


async def _release(memo: Runtime, ns: str, job: str) -> None:
    """The job's Workloads being deleted let go of Kueue's finalizer once its pods are
    gone (workloadrelease): on their events and its pods' (the job may be gone)."""
    w = memo.reconciler.watched
    if w is not None:
        wls, pods = w.job_workloads(ns, job), w.job_pods(ns, job)
        await workloadrelease.release(memo.reconciler.kube, ns, wls, pods)


@kopf.on.event("", "v1", "nodes")
async def node_event(type: str, name: str, body: Any, memo: Runtime, **kw: Any) -> None:
    """Taints, readiness and deletion of a node concern the jobs with pods on it;
    a heartbeat that changes none of them concerns no job."""
    essence = None if type == "DELETED" else node_essence(body)
    if essence is not None and memo.node_essences.get(name) == essence:
        return
    if essence is None:
        memo.node_essences.pop(name, None)
    else:
        memo.node_essences[name] = essence
    index: kopf.Index[str, tuple[str, str]] = kw["pods_by_node"]  # kopf passes indexes by name
    for ns, job in sorted(set(index.get(name, []))):
        await memo.reconciler.kick(ns, job)
