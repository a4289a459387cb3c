"""A writer SIGKILLed mid-upload leaves no manifest, is never chosen, and is collected."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from lazarus_contract import checkpoint_name
from lazarus_store import CheckpointStore, RetentionPolicy, open_store

from .conftest import PREFIX, S3_PART, s3_store

WRITER = textwrap.dedent(
    """
    import os, sys, time
    from lazarus_store import open_store
    store = open_store(os.environ["URI"], endpoint_url=os.environ.get("EP") or None,
                       addressing_style="path", part_size=int(os.environ["PART"]), concurrency=2)
    w = store.begin(step=20, attempt=1)
    w.put_bytes("small.bin", b"x" * 100)
    with w.open_write("big.bin") as f:
        f.write(os.urandom(int(os.environ["PART"]) * 2 + 1))  # two parts go out
        time.sleep(1)
        print("MID-UPLOAD", flush=True)
        time.sleep(600)  # killed here: the upload never completes, no manifest
    w.commit()
    """
)


def _run_and_kill(env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "MID-UPLOAD", proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL


def _check(store: CheckpointStore) -> None:
    name = checkpoint_name(20, 1)
    [info] = [c for c in store.list_checkpoints() if c.name == name]
    assert not info.committed and info.manifest is None
    sel = store.latest_valid()
    assert sel.chosen is not None and sel.chosen.name == checkpoint_name(10, 1)
    assert sel.skipped[0].name == name and "uncommitted" in sel.skipped[0].reason
    policy = RetentionPolicy(keep_latest=1, gc_age_s=3600)
    assert store.prune(policy, dry_run=False).garbage == ()  # young: maybe still saving
    plan = store.prune(policy, dry_run=False, now=time.time() + 7200)
    assert plan.garbage == (name,)
    assert [c.name for c in store.list_checkpoints()] == [checkpoint_name(10, 1)]


def _seed(store: CheckpointStore) -> None:
    w = store.begin(step=10, attempt=1)
    w.put_bytes("small.bin", b"ok")
    w.commit()


@pytest.mark.e2e
def test_killed_writer_filesystem(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    store = open_store(str(root))
    _seed(store)
    _run_and_kill({"URI": str(root), "PART": str(64 * 1024)})
    leftovers = [p.name for p in (root / checkpoint_name(20, 1)).iterdir()]
    assert "manifest.json" not in leftovers and "small.bin" in leftovers
    _check(store)
    assert sorted(p.name for p in root.iterdir()) == [checkpoint_name(10, 1)]


@pytest.mark.e2e
def test_killed_writer_s3(s3: Any, bucket: str) -> None:
    store = s3_store(s3, bucket)
    _seed(store)
    _run_and_kill(
        {
            "URI": f"s3://{bucket}/{PREFIX}",
            "EP": s3.endpoint_url,
            "PART": str(S3_PART),
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
            "AWS_DEFAULT_REGION": s3.region,
        }
    )
    client = s3.client()
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == [f"{PREFIX}/{checkpoint_name(20, 1)}/big.bin"]
    _check(store)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
