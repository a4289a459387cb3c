"""Settings that cannot work are one-line errors, never tracebacks or retry loops:
roots that move (`..`), empty segments, a region boto3 refuses, an endpoint that
answers HTTP but is not S3 (issue: the job's cycle crashed every 2 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LAZARUS_CHECKPOINT_URI"}
    return subprocess.run(
        [sys.executable, "-m", "lazarus_store.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


@pytest.mark.unit
def test_the_cli_reads_a_planted_deep_manifest_as_invalid_in_one_line(tmp_path: Path) -> None:
    """Issue 22: a manifest nested 100,000 deep was a RecursionError traceback."""
    root = tmp_path / "ckpt"
    store = open_store(str(root))
    w = store.begin(step=1, attempt=1)
    w.put_bytes("x", b"x")
    good = w.commit(reason="periodic").name
    evil = checkpoint_name(2, 1)
    (root / evil).mkdir()
    (root / evil / "manifest.json").write_bytes(
        b'{"extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    )
    marker = root / "_lazarus" / "quarantine" / f"{checkpoint_name(3, 1)}.json"
    marker.parent.mkdir(parents=True)
    marker.write_bytes(b"[" * 60_000)
    (root / checkpoint_name(3, 1)).mkdir()
    (root / checkpoint_name(3, 1) / "x").write_bytes(b"x")

    shown = _cli("-u", str(root), "show", evil)
    assert shown.returncode == 1 and "Traceback" not in shown.stderr, shown.stderr[-2000:]
    [line] = shown.stderr.strip().splitlines()
    assert "nested deeper than 32 levels" in line, line
    listed = _cli("-u", str(root), "list")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr[-2000:]
    assert any(
        evil in r and "INVALID" in r and "nested deeper" in r for r in listed.stdout.splitlines()
    )
    latest = _cli("-u", str(root), "latest")
    assert latest.returncode == 0 and latest.stdout.strip().splitlines()[-1] == good
    assert "quarantined: unreadable quarantine marker" in latest.stdout
