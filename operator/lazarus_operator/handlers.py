"""The kopf edge: each handler finds the TrainingJob concerned and kicks its cycle.

Everything that decides lives in `decide` (pure); `cycle` gathers facts and acts.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from lazarus_store.errors import StoreError

from . import storage
from .builders import GROUP, LABEL_JOB, PLURAL, VERSION, JobRef
from .cycle import Outcome, Reconciler
from .spec import SpecError, parse_spec

log = logging.getLogger("lazarus.handlers")

# Set by main's startup handler.
reconciler: Reconciler | None = None
# pod (ns, name) -> (node, job): which jobs to look at when a node changes.
_pods_by_key: dict[tuple[str, str], tuple[str, str]] = {}


def _rec() -> Reconciler:
    if reconciler is None:
        raise kopf.TemporaryError("operator is still starting", delay=1)
    return reconciler


def _raise_if_waiting(out: Outcome) -> None:
    if out.spec_error:
        raise kopf.PermanentError(out.spec_error)
    if out.requeue_after is not None:
        # Backoff and timeouts: kopf calls us again after the delay (never a sleep).
        raise kopf.TemporaryError(out.waiting or "waiting", delay=out.requeue_after)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def job_changed(namespace: str | None, name: str, **_: Any) -> None:
    assert namespace is not None
    _raise_if_waiting(await _rec().kick(namespace, name))


def _deletes_checkpoints(spec: Any, **_: Any) -> bool:
    return bool((spec.get("checkpoint") or {}).get("deleteOnJobDelete"))


@kopf.on.event(GROUP, VERSION, PLURAL)
async def job_event(type: str, namespace: str | None, name: str, **_: Any) -> None:
    """A deleted job's cycle deletes its pods (and forgets the job)."""
    assert namespace is not None
    if type == "DELETED":
        await _rec().kick(namespace, name)


@kopf.on.delete(GROUP, VERSION, PLURAL, when=_deletes_checkpoints)
async def checkpoints_deleted(
    namespace: str | None, name: str, uid: str, spec: Any, **_: Any
) -> None:
    """spec.checkpoint.deleteOnJobDelete: the finalizer holds the job until its own
    checkpoints are gone; nothing else under the root is touched."""
    assert namespace is not None
    rec = _rec()
    try:
        parsed = parse_spec(dict(spec))
    except SpecError:
        return
    if storage.delegated(parsed.checkpoint):
        # Admission refuses this; a job from before that rule keeps its files.
        log.warning("%s/%s: cannot delete a filesystem root's checkpoints", namespace, name)
        return
    try:
        cred = await rec.credentials(namespace, parsed)
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


@kopf.on.event("", "v1", "pods", labels={LABEL_JOB: kopf.PRESENT})
async def pod_event(
    *, type: str, namespace: str | None, name: str, labels: Any, spec: Any, body: Any, **_: Any
) -> None:
    assert namespace is not None
    job = labels.get(LABEL_JOB)
    node = spec.get("nodeName")
    if type == "DELETED":
        _pods_by_key.pop((namespace, name), None)
    elif node:
        _pods_by_key[(namespace, name)] = (node, job)
    rec = _rec()
    rec.observe_pod(namespace, job, body)
    await rec.kick(namespace, job)


@kopf.on.event("", "v1", "nodes")
async def node_event(name: str, **_: Any) -> None:
    """Taints, readiness and deletion of a node concern the jobs with pods on it."""
    jobs = {(ns, job) for (ns, _pod), (node, job) in list(_pods_by_key.items()) if node == name}
    for ns, job in sorted(jobs):
        await _rec().kick(ns, job)
