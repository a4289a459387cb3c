"""One tenant's stalled storage holds back no other tenant (issue 22, item 2).

The noisy namespace points its jobs at S3 endpoints that accept connections and
never answer, each spelt many ways (`localhost`, `127.1`, `[::1]`, `2130706433`,
a trailing slash, another path...), with every connection held open. Before,
each spelling was a storage lane key of its own with 4 of the lane's 16
threads: a few spellings took the whole lane, and another namespace's job
waited minutes (the client's read timeout, retried) to launch. Now the lane
key is the endpoint as resolved and one namespace has at most its share of
the lane: the quiet namespace's job launches and restarts in its normal time.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from tests.conftest import ControlPlane, S3Server, create_namespace

from .conftest import SECRET, Jobs
from .harness import FakeKubelet, OperatorProcess
from .test_operator import running

pytestmark = pytest.mark.cluster

SERVERS = 5  # stalled servers of the noisy namespace: more than its share of threads


def spellings(port: int) -> list[str]:
    """Ways to write one loopback server's URL that the CRD, urllib3 and botocore take."""
    return [
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{port}/",
        f"http://localhost:{port}",
        f"http://LOCALHOST:{port}/",
        f"http://127.1:{port}",
        f"http://127.0.0.2:{port}/some/path",
        f"http://[::1]:{port}",
        f"http://[::ffff:127.0.0.1]:{port}",
        f"http://2130706433:{port}",
        f"http://0x7f000001:{port}/other",
    ]


class StalledServer:
    """Accepts every connection (IPv4 and IPv6, any loopback address), reads
    nothing, answers nothing, and holds the connection open until closed."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.sock.bind(("::", 0))
        self.sock.listen(1024)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


@contextlib.contextmanager
def stalled_servers(n: int) -> Iterator[list[StalledServer]]:
    servers = [StalledServer() for _ in range(n)]
    try:
        yield servers
    finally:
        for s in servers:
            s.close()


@pytest.fixture
def quiet(cluster: ControlPlane, s3: S3Server, bucket: str) -> Iterator[tuple[Jobs, FakeKubelet]]:
    """A second namespace with healthy storage: its Secret, jobs and kubelet."""
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    ns = f"t-{uuid.uuid4().hex[:10]}"
    create_namespace(core, ns)
    data = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    core.create_namespaced_secret(
        ns,
        {
            "metadata": {"name": SECRET},
            "stringData": data,
        },
    )
    kubelet = FakeKubelet(api, ns, [f"{ns}-n{i}" for i in range(3)]).start()
    try:
        yield Jobs(api, ns, s3, bucket), kubelet
    finally:
        kubelet.stop()
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(ns)


def test_a_stalled_store_spelt_many_ways_holds_back_no_other_namespace(
    jobs: Jobs,
    kubelet: FakeKubelet,
    quiet: tuple[Jobs, FakeKubelet],
    start_operator: Callable[..., OperatorProcess],
) -> None:
    quiet_jobs, quiet_kubelet = quiet
    operator = start_operator("-n", quiet_jobs.ns)
    with stalled_servers(SERVERS) as servers:
        stalled = [
            jobs.create(checkpoint={"endpoint": url}) for s in servers for url in spellings(s.port)
        ]
        # The noisy jobs' calls have reached the stalled servers and hang there.
        job = quiet_jobs.create(failurePolicy={"backoff": {"initialSeconds": 1, "maxSeconds": 1}})
        running(quiet_jobs, quiet_kubelet, job, 1)
        quiet_kubelet.terminate(f"{job}-a1-1", 1, message={"v": 1, "outcome": "error", "step": 5})
        running(quiet_jobs, quiet_kubelet, job, 2)
        assert any(s.held for s in servers), "the noisy jobs never reached their servers"
        # The noisy jobs wait on their own stores, not launched without them.
        assert not any(kubelet.pods(j) for j in stalled)
    assert "Traceback" not in operator.log()
