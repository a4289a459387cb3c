"""One operator, a thousand jobs: stores of the same endpoint and credentials share one
S3 client (and its connection pool) instead of a boto3 session each (issue: ~13 MB and
~150 ms of CPU per job)."""

from __future__ import annotations

import pytest

from lazarus_store import open_store

pytestmark = pytest.mark.unit

ENDPOINT = "http://127.0.0.1:9"  # never contacted: nothing is sent until first use


def store_client(uri: str, key: str = "k", endpoint: str = ENDPOINT) -> object:
    store = open_store(uri, endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key="s")
    return store.backend.client  # type: ignore[attr-defined]


def test_many_jobs_share_one_client() -> None:
    clients = {id(store_client(f"s3://bucket/job-{i}")) for i in range(200)}
    assert len(clients) == 1


def test_other_credentials_or_endpoints_get_their_own() -> None:
    base = store_client("s3://bucket/a")
    assert store_client("s3://bucket/a", key="rotated") is not base  # a changed Secret
    assert store_client("s3://bucket/a", endpoint="http://127.0.0.1:10") is not base
    assert store_client("s3://other/b") is base  # the bucket is per call, not per client
