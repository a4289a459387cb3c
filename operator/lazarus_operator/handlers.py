"""The kopf edge, every decorator of the operator: each handler finds the TrainingJob
concerned and kicks its cycle; the startup handler starts the resync.

Everything that decides lives in `decide` (pure); `cycle` gathers facts and acts and
is the one requeue path (its timer runs the cycle again when something falls due).
Shared state travels in kopf's `memo` (`runtime.Runtime`), not in module globals.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from lazarus_store.errors import StoreError

from . import storage
from .builders import GROUP, LABEL_JOB, PLURAL, VERSION, JobRef
from .runtime import Runtime
from .spec import SpecError, parse_spec

log = logging.getLogger("lazarus.handlers")


@kopf.on.startup()
async def startup(memo: Runtime, **_: Any) -> None:
    rec, opts = memo.reconciler, memo.options
    if opts.peering:
        await rec.kube.ensure_peering(opts.peering_name, list(opts.namespaces))

    async def active() -> bool:
        """kopf's own rule: a replica acts unless a live peer has a higher priority."""
        if not opts.peering:
            return True
        peers = await rec.kube.peers(opts.peering_name, list(opts.namespaces))
        return not any(int(p.get("priority", 0)) > opts.priority for p in peers)

    loop = asyncio.get_running_loop()
    memo.background.add(loop.create_task(rec.resync_forever(opts.resync_seconds, active)))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def job_changed(namespace: str | None, name: str, memo: Runtime, **_: Any) -> None:
    assert namespace is not None
    out = await memo.reconciler.kick(namespace, name)
    if out.spec_error:
        raise kopf.PermanentError(out.spec_error)


def _deletes_checkpoints(spec: Any, **_: Any) -> bool:
    return bool((spec.get("checkpoint") or {}).get("deleteOnJobDelete"))


@kopf.on.event(GROUP, VERSION, PLURAL)
async def job_event(type: str, namespace: str | None, name: str, memo: Runtime, **_: Any) -> None:
    """A deleted job's cycle deletes its pods (and forgets the job)."""
    assert namespace is not None
    if type == "DELETED":
        await memo.reconciler.kick(namespace, name)


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
        cred = await memo.reconciler.credentials(namespace, parsed)
        done = await storage.delete_job(parsed.checkpoint, cred, JobRef(name, namespace, uid))
    except (storage.CredentialsError, StoreError) as err:
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
    memo.reconciler.observe_pod(namespace, job, body)
    await memo.reconciler.kick(namespace, job)


@kopf.on.event("", "v1", "nodes")
async def node_event(name: str, memo: Runtime, **kw: Any) -> None:
    """Taints, readiness and deletion of a node concern the jobs with pods on it."""
    index: kopf.Index[str, tuple[str, str]] = kw["pods_by_node"]  # kopf passes indexes by name
    for ns, job in sorted(set(index.get(name, []))):
        await memo.reconciler.kick(ns, job)
