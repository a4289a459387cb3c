"""Bad locations and bad credentials: each is one clear StoreError, never a traceback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from lazarus_devstack.procs import free_port
from lazarus_store import (
    AccessDenied,
    BucketMissing,
    InvalidURI,
    StoreUnavailable,
    open_store,
    open_store_from_env,
)

from .conftest import s3_store


@pytest.mark.cluster
def test_empty_bucket_has_no_checkpoints(s3: Any, bucket: str) -> None:
    store = s3_store(s3, bucket)
    assert store.list_checkpoints() == []
    sel = store.latest_valid()
    assert sel.chosen is None and sel.skipped == []
    assert store.attempts() == []


@pytest.mark.cluster
def test_missing_bucket(s3: Any) -> None:
    store = s3_store(s3, "no-such-bucket-lazarus")
    with pytest.raises(
        BucketMissing, match="bucket 'no-such-bucket-lazarus' does not exist at http"
    ):
        store.list_checkpoints()
    with pytest.raises(BucketMissing):
        store.backend.check()
    with pytest.raises(BucketMissing):
        store.begin(step=1, attempt=1)


@pytest.mark.cluster
def test_wrong_credentials(auth_s3_endpoint: str) -> None:
    store = open_store(
        "s3://lazarus-any/p",
        endpoint_url=auth_s3_endpoint,
        addressing_style="path",
        aws_access_key_id="AKIAWRONGWRONGWRONG0",
        aws_secret_access_key="wrong",
        region="us-east-1",
    )
    with pytest.raises(AccessDenied, match=r"access denied .*AWS_ACCESS_KEY_ID"):
        store.list_checkpoints()
    with pytest.raises(AccessDenied):
        store.latest_valid()


@pytest.mark.cluster
def test_unreachable_endpoint() -> None:
    port = free_port()  # nothing listens here
    store = open_store(
        "s3://bucket/p",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )
    start = time.monotonic()
    with pytest.raises(StoreUnavailable, match=f"cannot reach S3 endpoint http://127.0.0.1:{port}"):
        store.list_checkpoints()
    assert time.monotonic() - start < 60  # retried with backoff, but gives up


@pytest.mark.unit
def test_filesystem_root_that_cannot_exist(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "not" / "mounted"))
    with pytest.raises(BucketMissing, match="is the volume mounted"):
        store.list_checkpoints()
    (tmp_path / "file").write_text("x")
    with pytest.raises(BucketMissing, match="not a directory"):
        open_store(str(tmp_path / "file")).list_checkpoints()


@pytest.mark.unit
def test_fresh_filesystem_root_is_empty_not_an_error(tmp_path: Path) -> None:
    assert open_store(str(tmp_path / "job")).latest_valid().chosen is None


@pytest.mark.unit
@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "empty checkpoint URI"),
        ("gs://bucket/x", "unsupported scheme 'gs'"),
        ("s3://Bad_Bucket/x", "not a valid S3 bucket name"),
        ("s3:///x", "not a valid S3 bucket name"),
        ("file://host/x", "must be local"),
    ],
)
def test_invalid_uris(uri: str, message: str) -> None:
    with pytest.raises(InvalidURI, match=message):
        open_store(uri)


@pytest.mark.unit
def test_open_store_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LAZARUS_CHECKPOINT_URI", raising=False)
    with pytest.raises(InvalidURI, match="LAZARUS_CHECKPOINT_URI is not set"):
        open_store_from_env()
    monkeypatch.setenv("LAZARUS_CHECKPOINT_URI", "s3://bkt/jobs/x")
    monkeypatch.setenv("LAZARUS_S3_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("LAZARUS_S3_ADDRESSING_STYLE", "path")
    store = open_store_from_env()
    assert store.description == "s3://bkt/jobs/x (endpoint http://127.0.0.1:1)"
    monkeypatch.setenv("LAZARUS_CHECKPOINT_URI", str(tmp_path))
    assert open_store_from_env().description == str(tmp_path)
