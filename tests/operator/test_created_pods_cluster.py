"""Pods the operator created that its watch has not shown yet, against a real API server.

A loaded event loop can lag its pod watch by more than `CREATED_MEMORY_S` behind its own
creates (a 1,000-job launch did). Forgetting such a pod made its job restart as "pod
vanished"; the API, asked once, says which of them exist. The lag is the index here: a
Watched whose pod index has not caught up (empty), with the real API behind `Kube`."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from lazarus_operator.builders import LABEL_JOB
from lazarus_operator.kube import Kube
from lazarus_operator.podview import CREATED_MEMORY_S, PodView
from lazarus_operator.watched import Watched, slim_pod
from tests.conftest import ControlPlane

pytestmark = pytest.mark.cluster


def _pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {LABEL_JOB: "j"}},
        "spec": {"containers": [{"name": "trainer", "image": "local"}]},
    }


def test_pods_unseen_too_long_are_kept_when_the_api_has_them(
    cluster: ControlPlane, namespace: str
) -> None:
    core = client.CoreV1Api(cluster.api_client())
    made = core.api_client.sanitize_for_serialization(
        core.create_namespaced_pod(namespace, _pod("j-a1-0"))
    )
    view = PodView(Kube(cluster.api_client()))
    view.watched = Watched(pods={}, nodes={}, services={})  # the lagging watch
    st = view.job((namespace, "j"))
    long_ago = time.monotonic() - CREATED_MEMORY_S - 1
    # j-a1-0 exists; j-a1-1 was created and deleted while the watch was away.
    st.created = {
        n: (long_ago, slim_pod(made if n == "j-a1-0" else _pod(n))) for n in ("j-a1-0", "j-a1-1")
    }

    pods = asyncio.run(view.pods((namespace, "j"), datetime.now(UTC)))

    assert [p["metadata"]["name"] for p in pods] == ["j-a1-0"]
    assert pods[0]["metadata"]["uid"] == made["metadata"]["uid"]
    # Remembered afresh: the next cycles need no LIST until it ages again.
    assert list(st.created) == ["j-a1-0"] and st.created["j-a1-0"][0] > long_ago
