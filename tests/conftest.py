"""Session fixtures: a real kube-apiserver + etcd and a real S3 server on loopback.

Each is started once per session in a run directory of its own and stopped at
the end. `--reuse-stack` (or LAZARUS_REUSE_STACK=1) keeps them in `.run/` and
reuses them across sessions, for fast local iteration. Tests get a fresh
namespace and a fresh bucket each.

Safety: KUBECONFIG and the AWS config files are pointed at nothing for the
whole session, so code that forgets to use these fixtures fails loudly instead
of reaching the user's own cluster or cloud account.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from lazarus_devstack.harness import ControlPlane, S3Server, create_namespace
from lazarus_devstack.stack import REPO, Ports, Stack, State, apply_crds

os.environ["KUBECONFIG"] = "/nonexistent/lazarus-tests-never-use-your-kubeconfig"
os.environ["AWS_CONFIG_FILE"] = "/nonexistent/lazarus-tests-aws-config"
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/lazarus-tests-aws-credentials"
for _var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
    os.environ.pop(_var, None)

# Tests import these from here or from lazarus_devstack.harness (benchmarks do).
__all__ = ["CRD_DIR", "ControlPlane", "S3Server", "create_namespace"]

LAYERS = ("unit", "cluster", "e2e")
CRD_DIR = REPO / "crds"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reuse-stack",
        action="store_true",
        default=os.environ.get("LAZARUS_REUSE_STACK") == "1",
        help="keep the control plane and S3 server running in .run/ and reuse them",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = [i.nodeid for i in items if not any(i.get_closest_marker(m) for m in LAYERS)]
    if unmarked:
        raise pytest.UsageError(
            f"every test needs a layer marker ({', '.join(LAYERS)}); missing on: {unmarked[:10]}"
        )


def _session_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str, **kw: Any
) -> Iterator[State]:
    reuse = bool(request.config.getoption("--reuse-stack"))
    run_dir = REPO / ".run" / f"test-{name}" if reuse else tmp_path_factory.mktemp(name)
    stack = Stack(run_dir, tied=not reuse)
    state = stack.state()
    if reuse and state and state.running() and len(state.running()) == len(state.pids):
        stack.wait_ready(state)
    else:
        if state:
            stack.down()
        ports = Ports(apiserver=0, etcd_client=0, etcd_peer=0, s3=0)
        state = stack.up(ports, **kw)
    yield state
    if not reuse:
        stack.down()


@pytest.fixture(scope="session")
def s3(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Server]:
    """The S3 server; LAZARUS_TEST_S3_ENDPOINT (+ AWS keys) points tests at another, e.g. MinIO."""
    endpoint = os.environ.get("LAZARUS_TEST_S3_ENDPOINT")
    if endpoint:
        yield S3Server(
            endpoint,
            os.environ.get("LAZARUS_TEST_S3_ACCESS_KEY", "minioadmin"),
            os.environ.get("LAZARUS_TEST_S3_SECRET_KEY", "minioadmin"),
            os.environ.get("LAZARUS_TEST_S3_REGION", "us-east-1"),
        )
        return
    for state in _session_stack(request, tmp_path_factory, "s3", kube=False):
        assert state.s3
        yield S3Server(state.s3.endpoint, state.s3.access_key, state.s3.secret_key, state.s3.region)


@pytest.fixture
def bucket(s3: S3Server) -> Iterator[str]:
    """A fresh, empty bucket; emptied and removed afterwards (moto holds objects in RAM)."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    client = s3.client()
    client.create_bucket(Bucket=name)
    yield name
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=name)
    except Exception:
        pass


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver (RBAC on) + controller-manager; no scheduler, no kubelet.

    Tests play the kubelet's part: they bind pods to Node objects and set pod
    status themselves. The TrainingJob CRD from crds/ is applied and Established.
    """
    for state in _session_stack(request, tmp_path_factory, "kube", s3=False, controllers=True):
        cp = ControlPlane.of(state)
        apply_crds(state, CRD_DIR)
        yield cp


@pytest.fixture
def namespace(cluster: ControlPlane) -> Iterator[str]:
    """A fresh namespace, ready for pods (its default ServiceAccount exists)."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    api = client.CoreV1Api(cluster.api_client())
    create_namespace(api, name)
    yield name
    with contextlib.suppress(client.ApiException):
        api.delete_namespace(name)


@pytest.fixture
def not_s3_endpoint() -> Iterator[str]:
    """An HTTP server that is not S3 (a web page where an endpoint should be)."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>hello</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
