"""Settings that cannot work are one-line errors, never tracebacks or retry loops:
roots that move (`..`), empty segments, a region boto3 refuses, an endpoint that
answers HTTP but is not S3 (issue: the job's cycle crashed every 2 s)."""

from __future__ import annotations

import json

import pytest

from lazarus_contract import checkpoint_name
from lazarus_store import CheckpointStore, InvalidURI, StoreError, open_store
from lazarus_store.cli import main

from .conftest import Raw


@pytest.mark.unit
@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/team/../other-team",
        "s3://bucket/./x",
        "s3://bucket/a//b",
        "/mnt/ckpt/../../etc",
        "/mnt//ckpt",
        "file:///mnt/ckpt/..",
    ],
)
def test_roots_that_move_or_fold_are_refused(uri: str) -> None:
    with pytest.raises(InvalidURI, match="may not contain"):
        open_store(uri)


@pytest.mark.unit
@pytest.mark.parametrize("region", ["us east 1", "US-EAST-1", "eu-west-1\n"])
def test_a_region_that_is_not_a_region_name_is_refused(region: str) -> None:
    with pytest.raises(InvalidURI, match="region"):
        open_store("s3://bucket/x", endpoint_url="http://127.0.0.1:9", region=region)


@pytest.mark.cluster
def test_an_endpoint_that_is_not_s3_is_a_store_error(not_s3_endpoint: str) -> None:
    store = open_store(
        "s3://bucket/job",
        endpoint_url=not_s3_endpoint,
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )
    with pytest.raises(StoreError, match="does not answer as an S3 server"):
        store.latest_valid()


@pytest.mark.cluster
def test_the_cli_says_so_in_one_line(
    not_s3_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["-u", "s3://bucket/job", "--endpoint", not_s3_endpoint, "list"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("kind", ["huge", "many-objects"])
def test_an_oversized_manifest_is_invalid_and_cheap_to_refuse(
    store: CheckpointStore, raw: Raw, kind: str
) -> None:
    w = store.begin(step=1, attempt=1)
    w.put_bytes("x", b"x")
    good = w.commit(reason="periodic").name
    name = checkpoint_name(2, 1)
    if kind == "huge":  # a valid start, then 17 MiB of padding
        body = b'{"schemaVersion": 1, "pad": "' + b"a" * (17 << 20) + b'"}'
    else:
        objs = [{"path": f"o{i}", "size": 1, "crc32c": "AAAAAA=="} for i in range(100_001)]
        body = json.dumps({"schemaVersion": 1, "objects": objs}).encode()
    raw.put(f"{name}/manifest.json", body)
    sel = store.latest_valid()
    assert sel.chosen is not None and sel.chosen.name == good
    why = {k.name: k.reason for k in sel.skipped}[name]
    assert ("over 16 MiB" in why) if kind == "huge" else ("100001 objects" in why), why
