"""`Kube` against a real API server, with more concurrent calls than connections:
each answer is read in the thread that made the call, so a connection is back in
the pool before its thread takes the next call. Read later (on the event loop), the
thread's next call opened a new connection each time, and the pool overflowed with
"Connection pool is full, discarding connection": a new TLS handshake per call."""

from __future__ import annotations

import asyncio
import base64
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client, config

from lazarus_operator.kube import Kube
from tests.conftest import ControlPlane

pytestmark = pytest.mark.cluster

CONNECTIONS = 4


def _kube(cluster: ControlPlane) -> tuple[Kube, Any]:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = CONNECTIONS
    api = client.ApiClient(cfg)
    return Kube(api), api.rest_client.pool_manager


def test_concurrent_calls_stay_within_the_connection_pool(
    cluster: ControlPlane, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    data = {"AWS_ACCESS_KEY_ID": base64.b64encode(b"k").decode()}
    client.CoreV1Api(cluster.api_client()).create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "data": data}
    )
    kube, pools = _kube(cluster)

    async def calls() -> list[Any]:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(CONNECTIONS))
        kinds = (
            lambda: kube.list_pods(namespace, "app=none"),
            lambda: kube.pod_metadata(namespace, "app=none"),
            lambda: kube.get_secret(namespace, "creds"),
            lambda: kube.get_job(namespace, "absent"),  # a 404: None
        )
        return list(await asyncio.gather(*(kinds[i % len(kinds)]() for i in range(160))))

    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        answers = asyncio.run(calls())
    assert answers[:4] == [[], [], answers[2], None] and answers[2]["data"] == data
    (key,) = list(pools.pools.keys())
    opened = pools.pools[key].num_connections
    full = [r for r in caplog.records if "pool is full" in r.getMessage()]
    assert not full and opened <= CONNECTIONS, (opened, len(full))
