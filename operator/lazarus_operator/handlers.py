"""The kopf edge: each handler finds the TrainingJob concerned and kicks its cycle.

Everything that decides lives in `decide` (pure); `cycle` gathers facts and acts.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from lazarus_store.errors import StoreError

from . import storage
from .builders import GROUP, LABEL_JOB, PLURAL, VERSION
from .cycle import Outcome, Reconciler
from .spec import SpecError, parse_spec

log = logging.getLogger("lazarus.handlers")
RESYNC_SECONDS = 10.0

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


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def job_changed(namespace: str | None, name: str, **_: Any) -> None:
    assert namespace is not None
    _raise_if_waiting(await _rec().kick(namespace, name))


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS)
async def job_resync(namespace: str | None, name: str, **_: Any) -> None:
    """Resync and refresh progress from storage; retried sooner when something is due."""
    assert namespace is not None
    out = await _rec().kick(namespace, name, refresh=True)
    if out.requeue_after is not None and out.requeue_after < RESYNC_SECONDS:
        raise kopf.TemporaryError(out.waiting or "waiting", delay=out.requeue_after)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def job_deleted(namespace: str | None, name: str, spec: Any, **_: Any) -> None:
    """Pods are garbage-collected by owner reference; checkpoints stay unless asked."""
    assert namespace is not None
    rec = _rec()
    rec.forget(namespace, name)
    for pod in await rec.kube.list_pods(namespace, name):
        await rec.kube.delete_pod(namespace, pod["metadata"]["name"], force=False)
    try:
        parsed = parse_spec(dict(spec))
    except SpecError:
        return
    if parsed.checkpoint.delete_on_job_delete:
        try:
            cred = await rec._credentials(namespace, parsed)
            n = await storage.delete_all(parsed.checkpoint, cred)
        except (storage.CredentialsError, StoreError) as err:
            raise kopf.TemporaryError(f"deleting checkpoints: {err}", delay=10) from err
        log.info("deleted %d checkpoint objects of %s/%s", n, namespace, name)


@kopf.on.event("", "v1", "pods", labels={LABEL_JOB: kopf.PRESENT})
async def pod_event(
    type: str, namespace: str | None, name: str, labels: Any, spec: Any, **_: Any
) -> None:
    assert namespace is not None
    job = labels.get(LABEL_JOB)
    node = spec.get("nodeName")
    if type == "DELETED":
        _pods_by_key.pop((namespace, name), None)
    elif node:
        _pods_by_key[(namespace, name)] = (node, job)
    await _rec().kick(namespace, job)


@kopf.on.event("", "v1", "nodes")
async def node_event(name: str, **_: Any) -> None:
    """Taints, readiness and deletion of a node concern the jobs with pods on it."""
    jobs = {(ns, job) for (ns, _pod), (node, job) in list(_pods_by_key.items()) if node == name}
    for ns, job in sorted(jobs):
        await _rec().kick(ns, job)
