"""The S3 server is real HTTP: boto3 round-trips an object through it."""

from __future__ import annotations

import os

import pytest

from tests.conftest import S3Server

pytestmark = pytest.mark.cluster


def test_object_round_trips_through_the_loopback_server(s3: S3Server, bucket: str) -> None:
    assert s3.endpoint_url.startswith("http://127.0.0.1:")
    client = s3.client()
    payload = os.urandom(64 * 1024)
    client.put_object(Bucket=bucket, Key="smoke/blob", Body=payload)
    assert client.get_object(Bucket=bucket, Key="smoke/blob")["Body"].read() == payload
    listed = client.list_objects_v2(Bucket=bucket, Prefix="smoke/")
    assert [o["Key"] for o in listed["Contents"]] == ["smoke/blob"]
