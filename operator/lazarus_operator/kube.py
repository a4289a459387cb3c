"""The few Kubernetes API calls the operator makes, as plain JSON dicts, off
the event loop: writes, and the reads no watch answers (pods, nodes, Secrets and
Services come from kopf's indexes: `watched`). Responses are not deserialised
into client models (slow, and the pure core reads the API's own camelCase JSON)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client

from lazarus_contract import format_time, parse_time

from .builders import GROUP, PLURAL, VERSION
from .kueueworkload import GROUP as KUEUE
from .kueueworkload import VERSION as KUEUE_V

MERGE = "application/merge-patch+json"
REQUEST_TIMEOUT = 30
# Metadata only: what a relist compares (uids), without the pods' specs and statuses.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
LIST_PAGE = 500


def _identity(meta: dict[str, Any]) -> dict[str, Any]:
    """What a relist compares of a pod: without `managedFields`, most of its metadata
    (17 KB a pod; a 4,000-pod relist held 68 MB until its jobs were kicked)."""
    return {k: meta.get(k) for k in ("name", "namespace", "uid", "labels") if k in meta}


class Rejected(Exception):
    """The API server refused to create an object (admission: Pod Security, quota,
    a webhook): retrying the same manifest cannot help until someone changes a policy."""


def api_unavailable(exc: BaseException) -> bool:
    """Whether the API server itself failed the call (unreachable, 5xx, throttled),
    as opposed to answering it: that passes when the server is back."""
    if isinstance(exc, client.ApiException):
        return exc.status is not None and (exc.status >= 500 or exc.status == 429)
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


def _api_message(err: client.ApiException) -> str:
    try:
        return str(json.loads(err.body or "{}").get("message") or err.reason)
    except ValueError:
        return str(err.reason)


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    async def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        """The call's JSON answer, read and decoded in the worker thread. Read on the
        loop, the answer kept its connection out of the pool after the thread was free:
        the thread's next call opened another, and the pool overflowed ("Connection pool
        is full, discarding connection", a new TLS handshake each time); and the loop
        read the socket."""
        kw.setdefault("_request_timeout", REQUEST_TIMEOUT)

        def call() -> Any:
            return json.loads(fn(*args, _preload_content=False, **kw).data)

        return await asyncio.to_thread(call)

    async def _maybe(self, fn: Any, *args: Any, ok: tuple[int, ...] = (404,), **kw: Any) -> Any:
        """The JSON answer, or None when the API answers one of the `ok` statuses."""
        try:
            return await self._call(fn, *args, **kw)
        except client.ApiException as err:
            if err.status in ok:
                return None
            raise

    async def get_job(self, ns: str, name: str) -> dict[str, Any] | None:
        got: dict[str, Any] | None = await self._maybe(
            self.custom.get_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, name
        )
        return got

    async def list_pods(self, ns: str, selector: str) -> list[dict[str, Any]]:
        got = await self._call(self.core.list_namespaced_pod, ns, label_selector=selector)
        items: list[dict[str, Any]] = got.get("items") or []
        return items

    async def pod_metadata(self, ns: str | None, selector: str) -> list[dict[str, Any]]:
        """The metadata of every pod `selector` matches in `ns` (None: every namespace),
        a page at a time and without specs or statuses (a PartialObjectMetadataList):
        a cluster's pods in a few MB."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kw: dict[str, Any] = {
                "label_selector": selector,
                "limit": LIST_PAGE,
                "_headers": {"Accept": METADATA_ONLY},
            }
            if token:
                kw["_continue"] = token
            if ns is None:
                got = await self._call(self.core.list_pod_for_all_namespaces, **kw)
            else:
                got = await self._call(self.core.list_namespaced_pod, ns, **kw)
            page = got.get("items") or []
            items += [{"metadata": _identity(i.get("metadata") or {})} for i in page]
            token = (got.get("metadata") or {}).get("continue")
            if not token:
                return items

    async def get_secret(self, ns: str, name: str) -> dict[str, Any] | None:
        got: dict[str, Any] | None = await self._maybe(self.core.read_namespaced_secret, name, ns)
        return got

    async def patch_status(
        self, ns: str, name: str, rv: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch `.status`, only if the job is still at `rv`: the job as written,
        or None on a conflict, so a cycle that read stale facts never acts (nor does a
        second replica)."""
        body = {"metadata": {"resourceVersion": rv}, "status": patch}
        try:
            written: dict[str, Any] = await self._call(
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                ns,
                PLURAL,
                name,
                body,
                _content_type=MERGE,
            )
        except client.ApiException as err:
            if err.status in (404, 409):
                return None
            raise
        return written

    async def create(self, ns: str, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create a Pod or Service: the object created, or None if it exists already
        (names are deterministic: a 409 is the idempotent launch's "done")."""
        fn = (
            self.core.create_namespaced_pod
            if manifest["kind"] == "Pod"
            else self.core.create_namespaced_service
        )
        try:
            got = await self._maybe(fn, ns, manifest, ok=(409,))
        except client.ApiException as err:
            if err.status in (400, 403, 422):  # admission (Pod Security, quota, webhooks)
                # Without the object's name: every pod of the gang is refused alike, and
                # one refusal is reported once.
                why = re.sub(r'^\w+ "[^"]*" is forbidden: ', "", _api_message(err))
                raise Rejected(f"the job's {manifest['kind']}s are refused: {why}") from None
            raise
        return got if isinstance(got, dict) else None

    async def delete_pod(self, ns: str, name: str, *, force: bool) -> bool:
        """Delete the pod; False when the API has no such pod (already gone)."""
        kw: dict[str, Any] = {"grace_period_seconds": 0} if force else {}
        return await self._maybe(self.core.delete_namespaced_pod, name, ns, **kw) is not None

    async def annotate_pod(self, ns: str, name: str, annotations: dict[str, str]) -> None:
        body = {"metadata": {"annotations": annotations}}
        await self._maybe(self.core.patch_namespaced_pod, name, ns, body, _content_type=MERGE)

    async def delete_job(self, ns: str, name: str) -> None:
        await self._maybe(
            self.custom.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            ns,
            PLURAL,
            name,
            propagation_policy="Background",
        )

    # --- Kueue (a job labelled kueue.x-k8s.io/queue-name; kueueworkload) ------------
    async def get_workload(self, ns: str, name: str) -> dict[str, Any] | None:
        got: dict[str, Any] | None = await self._maybe(
            self.custom.get_namespaced_custom_object, KUEUE, KUEUE_V, ns, "workloads", name
        )
        return got

    async def create_workload(self, ns: str, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create the job's Workload: the API's answer (None on a 409: it exists, the
        idempotent "done"); Kueue's webhook refusing it is a `Rejected`, named once."""
        fn = self.custom.create_namespaced_custom_object
        try:
            made: dict[str, Any] | None = await self._maybe(
                fn, KUEUE, KUEUE_V, ns, "workloads", manifest, ok=(409,)
            )
            return made
        except client.ApiException as err:
            if err.status in (400, 403, 422):
                raise Rejected(
                    f"the job's Kueue Workload is refused: {_api_message(err)}"
                ) from None
            raise

    async def patch_workload(
        self, ns: str, name: str, patch: dict[str, Any], *, status: bool = False
    ) -> dict[str, Any] | None:
        """The patched Workload (its spec, or with `status` its status), None if gone."""
        c = self.custom
        fn = c.patch_namespaced_custom_object_status if status else c.patch_namespaced_custom_object
        got: dict[str, Any] | None = await self._maybe(
            fn, KUEUE, KUEUE_V, ns, "workloads", name, patch, _content_type=MERGE
        )
        return got

    async def get_kueue_object(self, plural: str, name: str) -> dict[str, Any] | None:
        """A cluster-scoped Kueue object: a ResourceFlavor, a WorkloadPriorityClass."""
        got: dict[str, Any] | None = await self._maybe(
            self.custom.get_cluster_custom_object, KUEUE, KUEUE_V, plural, name
        )
        return got

    async def event(
        self,
        job: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        at: datetime | None = None,
    ) -> None:
        """Post an Event about `job` that happened `at` (now); raises if the API fails."""
        meta = job["metadata"]
        now = at or datetime.now(UTC)
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": job["apiVersion"],
                "kind": job["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": format_time(now, "microseconds"),
            "lastTimestamp": format_time(now, "microseconds"),
            "count": 1,
            "source": {"component": "lazarus-operator"},
            "reportingComponent": "lazarus.dev/operator",
            "reportingInstance": "lazarus-operator",
        }
        try:
            await self._maybe(
                self.core.create_namespaced_event, meta["namespace"], body, ok=(404, 409)
            )
        except client.ApiException as err:
            # A namespace being deleted takes no new events, and needs none; any other
            # refusal (RBAC) is the outbox's to report.
            if err.status == 403 and "being terminated" in _api_message(err):
                return
            raise

    async def ensure_peering(self, name: str, namespaces: list[str]) -> None:
        """Create the kopf peering object(s) so replicas can see each other."""
        body: dict[str, Any] = {"apiVersion": "kopf.dev/v1", "metadata": {"name": name}}
        if not namespaces:
            await self._maybe(
                self.custom.create_cluster_custom_object,
                "kopf.dev",
                "v1",
                "clusterkopfpeerings",
                {**body, "kind": "ClusterKopfPeering"},
                ok=(409,),
            )
        for ns in namespaces:
            await self._maybe(
                self.custom.create_namespaced_custom_object,
                "kopf.dev",
                "v1",
                ns,
                "kopfpeerings",
                {**body, "kind": "KopfPeering"},
                ok=(409,),
            )

    async def peers(self, name: str, namespaces: list[str]) -> list[dict[str, Any]]:
        """The live entries of the kopf peering object(s): {priority, lastseen, lifetime}."""
        objs: list[Any] = []
        if not namespaces:
            objs.append(
                await self._maybe(
                    self.custom.get_cluster_custom_object,
                    "kopf.dev",
                    "v1",
                    "clusterkopfpeerings",
                    name,
                )
            )
        for ns in namespaces:
            objs.append(
                await self._maybe(
                    self.custom.get_namespaced_custom_object,
                    "kopf.dev",
                    "v1",
                    ns,
                    "kopfpeerings",
                    name,
                )
            )
        now = datetime.now(UTC)
        out = []
        for obj in objs:
            for peer in ((obj or {}).get("status") or {}).values():
                if not isinstance(peer, dict):
                    continue
                try:
                    last = parse_time(str(peer.get("lastseen")))  # naive: UTC, as kopf writes
                except ValueError:
                    continue
                if (now - last).total_seconds() <= float(peer.get("lifetime") or 60):
                    out.append(peer)
        return out
