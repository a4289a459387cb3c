"""`Kube.event` against a real API server: a namespace being deleted takes no new
Events and needs none (dropped quietly), while any other refusal is raised for the
outbox to report (an RBAC 403 must not pass as "terminating")."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from kubernetes import client

from lazarus_operator.kube import Kube
from tests.conftest import ControlPlane

from .harness import wait_for

pytestmark = pytest.mark.cluster

HOLD = "lazarus.dev/test-hold"


def _job(ns: str) -> dict[str, Any]:
    meta = {"name": "j", "namespace": ns, "uid": str(uuid.uuid4())}
    return {"apiVersion": "lazarus.dev/v1alpha1", "kind": "TrainingJob", "metadata": meta}


def _phase(core: Any, ns: str) -> str:
    return str(core.read_namespace(ns).status.phase)


def test_an_event_into_a_terminating_namespace_is_dropped_an_rbac_refusal_raised(
    cluster: ControlPlane,
) -> None:
    core = client.CoreV1Api(cluster.api_client())
    ns = f"gone-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": ns}})
    # A finalizer on one object holds the namespace in Terminating for the test.
    core.create_namespaced_config_map(ns, {"metadata": {"name": "hold", "finalizers": [HOLD]}})
    try:
        asyncio.run(Kube(cluster.api_client()).event(_job(ns), "Normal", "Before", "posted"))
        core.delete_namespace(ns)
        wait_for(lambda: _phase(core, ns) == "Terminating", 30, "namespace Terminating")
        asyncio.run(Kube(cluster.api_client()).event(_job(ns), "Normal", "After", "dropped"))
        reasons = [e.reason for e in core.list_namespaced_event(ns).items]
        assert "Before" in reasons and "After" not in reasons, reasons

        # No RBAC at all: also a 403, and it must reach the caller.
        with pytest.raises(client.ApiException) as refused:
            nobody = Kube(cluster.api_client("nobody"))
            asyncio.run(nobody.event(_job("default"), "Normal", "Denied", "refused"))
        assert refused.value.status == 403
    finally:
        core.patch_namespaced_config_map("hold", ns, {"metadata": {"finalizers": None}})
