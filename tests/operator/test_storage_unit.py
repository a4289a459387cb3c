"""Credentials from the job's Secret: what is wrong is named, with a constant reason."""

from __future__ import annotations

import base64

import pytest

from lazarus_operator import owncreds
from lazarus_operator import status as s
from lazarus_operator.spec import CheckpointSpec, parse_spec
from lazarus_operator.storage import Credentials, CredentialsError, credentials, problem_of
from lazarus_store.errors import BucketMissing, StoreUnavailable

from .factories import job_spec

pytestmark = pytest.mark.unit


def b64(v: str) -> str:
    return base64.b64encode(v.encode()).decode()


def ck(**secret_ref: str) -> CheckpointSpec:
    return parse_spec(
        job_spec(checkpoint={"uri": "s3://b/p", "secretRef": {"name": "creds", **secret_ref}})
    ).checkpoint


def test_credentials_come_from_the_named_keys() -> None:
    spec = ck(accessKeyIdKey="id", secretAccessKeyKey="key")
    secret = {"data": {"id": b64("AK"), "key": b64("SK"), "AWS_REGION": b64("eu-west-1")}}
    assert credentials(spec, secret, "ns") == Credentials("AK", "SK", "eu-west-1")


def test_missing_secret_is_named() -> None:
    with pytest.raises(CredentialsError, match="ns/creds") as err:
        credentials(ck(), None, "ns")
    assert err.value.reason == s.R_SECRET_NOT_FOUND


def test_missing_keys_are_named() -> None:
    with pytest.raises(CredentialsError, match="AWS_SECRET_ACCESS_KEY") as err:
        credentials(ck(), {"data": {"AWS_ACCESS_KEY_ID": b64("AK")}}, "ns")
    assert err.value.reason == s.R_SECRET_KEY_MISSING


def test_no_secret_ref_uses_the_operators_environment_where_the_platform_allows_it() -> None:
    spec = parse_spec(job_spec(checkpoint={"uri": "s3://bkt/p", "region": "r1"})).checkpoint
    allowed = owncreds.parse('{"ns": ["s3://bkt/p"]}')
    assert credentials(spec, None, "ns", allowed) == Credentials(None, None, "r1")
    with pytest.raises(CredentialsError) as err:
        credentials(spec, None, "ns", owncreds.AllowList())
    assert err.value.reason == s.R_CREDENTIALS_REQUIRED


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (StoreUnavailable("down"), s.R_STORAGE_UNAVAILABLE),
        (BucketMissing("nope"), s.R_BUCKET_MISSING),
        (CredentialsError(s.R_SECRET_KEY_MISSING, "x"), s.R_SECRET_KEY_MISSING),
    ],
)
def test_store_errors_map_to_condition_reasons(exc: Exception, reason: str) -> None:
    assert problem_of(exc, "s3://b/p").reason == reason
