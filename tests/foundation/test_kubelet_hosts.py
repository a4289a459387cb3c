"""The process kubelet's loopback names: a Service DNS name in a pod's env, whole or as
a URL's host, becomes 127.0.0.1 (every local pod shares it); anything else is kept."""

from __future__ import annotations

import pytest

from lazarus_devstack.kubelet import _local_host

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("loop-a1-0.loop.ns.svc", "127.0.0.1"),
        ("loop-a1-0.loop.ns.svc.cluster.local", "127.0.0.1"),
        ("http://job-lighthouse.ns.svc:29510", "http://127.0.0.1:29510"),
        ("http://job-lighthouse.ns.svc.cluster.local:29510", "http://127.0.0.1:29510"),
        ("https://minio.store.svc/bucket/key?x=1", "https://127.0.0.1/bucket/key?x=1"),
        ("http://user:pw@minio.store.svc:9000/", "http://user:pw@127.0.0.1:9000/"),
        ("master.ns.svc:29500", "127.0.0.1:29500"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("s3://bucket.svc/loop", "s3://bucket.svc/loop"),
        ("s3://bucket/loop.svc", "s3://bucket/loop.svc"),
        ("http://svc.example.com:80", "http://svc.example.com:80"),
        ("a value with x.ns.svc inside", "a value with x.ns.svc inside"),
        ("", ""),
        ("29510", "29510"),
    ],
)
def test_service_names_become_loopback(value: str, want: str) -> None:
    assert _local_host(value) == want
