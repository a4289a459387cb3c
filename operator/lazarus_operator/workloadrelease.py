"""Kueue's finalizer `kueue.x-k8s.io/resource-in-use` on the operator's Workloads
(docs/kueue.md). Kueue keeps a Workload's quota until the Workload is really gone, and
removes this finalizer only from its own integrations' Workloads: the owner must.
Set at creation (`kueueworkload.build_workload`); removed here once the Workload is
being deleted (with its TrainingJob, or by hand) and no pod of the job that existed
before that deletion is left, so the quota goes on only after the pods (and their
SIGTERM save). Runs on the Workload's and the job's pods' events, not in the job's
cycle: the job may be gone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

import urllib3
from kubernetes.client import ApiException

from . import kueueworkload as kw
from .classify import parse_time
from .kube import Kube

log = logging.getLogger("lazarus.workloadrelease")
RETRY_S: Final = (1.0, 2.0, 4.0)


def releasable(wl: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> list[str] | None:
    """The finalizers to leave on a Workload being deleted once none of the pods that
    could run under it is left; None: not to be released (yet)."""
    meta = wl.get("metadata") or {}
    deleted = parse_time(meta.get("deletionTimestamp"))
    finalizers = [str(f) for f in meta.get("finalizers") or []]
    if deleted is None or kw.FINALIZER not in finalizers:
        return None
    for p in pods:
        created = parse_time((p.get("metadata") or {}).get("creationTimestamp"))
        if created is None or created <= deleted:
            return None  # it may hold what the Workload was admitted for
    return [f for f in finalizers if f != kw.FINALIZER]


def release_patch(wl: Mapping[str, Any], keep: list[str]) -> dict[str, Any]:
    """A merge patch of the finalizer list, at the version read: a conflict (409) means
    it changed, and that change's event tries again."""
    rv = (wl.get("metadata") or {}).get("resourceVersion")
    return {"metadata": {"finalizers": keep, "resourceVersion": rv}}


async def release(
    kube: Kube, ns: str, workloads: Iterable[Mapping[str, Any]], pods: list[dict[str, Any]]
) -> None:
    """Remove the finalizer from each of the job's Workloads whose time has come."""
    for wl in workloads:
        keep = releasable(wl, pods)
        if keep is not None:
            await _patch(kube, ns, wl, keep)


async def _patch(kube: Kube, ns: str, wl: Mapping[str, Any], keep: list[str]) -> None:
    """A few tries: the last pod's deletion may be the last event that would retry it.
    A conflict ends them: the Workload changed, and that change's event decides again."""
    name = kw.name_of(wl)
    for delay in (*RETRY_S, None):
        try:
            if await kube.patch_workload(ns, name, release_patch(wl, keep)) is not None:
                log.info("Workload %s/%s released: no pod of its job left", ns, name)
            return
        except ApiException as err:
            if err.status == 409:
                return
            why = f"HTTP {err.status}"
        except (urllib3.exceptions.HTTPError, OSError) as err:
            why = type(err).__name__
        if delay is None:
            log.warning(
                "Workload %s/%s keeps Kueue's finalizer (%s): its next event, or "
                "the operator's restart, tries again",
                ns,
                name,
                why,
            )
            return
        await asyncio.sleep(delay)
