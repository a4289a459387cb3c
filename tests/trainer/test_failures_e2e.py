"""Corrupt checkpoints, wrong resume pointers and storage outages, with real processes and S3."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from lazarus_store import shared
from lazarus_trainer.state import COMMON_OBJECT

from .harness import command, losses, run, store_for, termination, trainer_env, wait_for
from .proxy import Proxy

pytestmark = pytest.mark.e2e


def test_corrupt_newest_checkpoint_falls_back_and_is_quarantined(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    root = f"s3://{bucket}/job"
    log = tmp_path / "loss.jsonl"
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1")
    p = run(["--steps", "20", "--save-every-steps", "10", "--loss-log", str(log)], env)
    assert p.returncode == 0, p.stderr[-3000:]
    first = losses(log)
    newest = "step-000000000020-a0001"
    key = _newest_bytes_key(store_for(s3, root), newest, "step-000000000010-a0001")
    client = s3.client()
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF  # same size: only the full checksum can tell
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))

    log.unlink()
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="2", LAZARUS_RESUME_FROM="auto")
    p = run(["--steps", "20", "--loss-log", str(log)], env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"checkpoint {newest} failed validation" in p.stderr
    assert "resumed from step-000000000010-a0001" in p.stderr
    assert store_for(s3, root).is_quarantined(newest)
    assert losses(log) == first[10:], "the fallback run did not continue exactly from step 10"


def _newest_bytes_key(store: Any, newest: str, older: str) -> str:
    """Where the newest checkpoint's common object keeps bytes no older one shares: the
    object itself, or (stored as shared chunks) its largest chunk of its own."""
    e = store.read_manifest(newest).object(COMMON_OBJECT)
    if not e.chunks:
        return f"job/{newest}/{COMMON_OBJECT}"
    theirs = store.read_manifest(older).chunk_digests()
    mine = max((c for c in e.chunks if c.sha256 not in theirs), key=lambda c: c.size)
    return f"job/{shared.blob_key(e.uid, mine.sha256)}"


def test_wrong_resume_pointers_fail_fast_as_permanent(s3: Any, bucket: str, tmp_path: Path) -> None:
    root = f"s3://{bucket}/job"
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1", LAZARUS_JOB_UID="uid-a")
    assert run(["--steps", "5"], env).returncode == 0
    good = "step-000000000005-a0001"
    client = s3.client()
    manifest = json.loads(
        client.get_object(Bucket=bucket, Key=f"job/{good}/manifest.json")["Body"].read()
    )
    manifest.update(schemaVersion=99, name="step-000000000006-a0001", step=6)
    client.put_object(
        Bucket=bucket,
        Key="job/step-000000000006-a0001/manifest.json",
        Body=json.dumps(manifest).encode(),
    )

    cases = [
        ({"LAZARUS_RESUME_FROM": "step-000000000999-a0001"}, [], "no such checkpoint"),
        (
            {"LAZARUS_RESUME_FROM": good, "LAZARUS_JOB_UID": "uid-b", "LAZARUS_JOB_NAME": "other"},
            [],
            "belongs to job",
        ),
        ({"LAZARUS_RESUME_FROM": f"s3://other/job/{good}"}, [], "not under this job's"),
        ({"LAZARUS_RESUME_FROM": f"{root}/{good}"}, ["--d-model", "48"], "has shape"),
        ({"LAZARUS_RESUME_FROM": "step-000000000006-a0001"}, [], "schema version"),
    ]
    for extra, args, phrase in cases:
        env = trainer_env(s3, root, tmp_path, **{"LAZARUS_JOB_UID": "uid-a", **extra})
        env["LAZARUS_ATTEMPT"] = "2"
        p = run(["--steps", "8", *args], env)
        assert p.returncode == 78, (extra, p.stderr[-2000:])
        term = termination(tmp_path)
        assert term["outcome"] == "permanent-error" and phrase in term["message"], (extra, term)

    # The same job deleted and re-applied (same namespace/name, new UID) resumes.
    env = trainer_env(s3, root, tmp_path, LAZARUS_JOB_UID="uid-new", LAZARUS_RESUME_FROM=good)
    env["LAZARUS_ATTEMPT"] = "3"
    p = run(["--steps", "8"], env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "the job was re-created" in p.stderr


def test_storage_outage_during_periodic_saves_is_retried(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    url = urlparse(s3.endpoint_url)
    proxy = Proxy(url.hostname or "127.0.0.1", url.port or 80)
    root = f"s3://{bucket}/job"
    log = tmp_path / "loss.jsonl"
    err = tmp_path / "stderr.log"
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1")
    env["LAZARUS_S3_ENDPOINT"] = env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy.port}"
    args = [
        "--steps",
        "60",
        "--save-every-steps",
        "5",
        "--step-sleep",
        "0.1",
        "--loss-log",
        str(log),
    ]
    store = store_for(s3, root)
    with err.open("w") as errf:
        proc = subprocess.Popen(command(args), env=env, stdout=subprocess.DEVNULL, stderr=errf)
        try:
            wait_for(lambda: any(c.committed for c in store.list_checkpoints()), 120, "a commit")
            proxy.set_up(False)
            try:
                wait_for(lambda: "failed (try" in err.read_text(), 120, "a failed save")
            except AssertionError:
                raise AssertionError(
                    f"no failed save logged; trainer log:\n{err.read_text()[-3000:]}"
                ) from None
            during = max(losses(log))[0]
            proxy.set_up(True)
            assert proc.wait(timeout=300) == 0, err.read_text()[-3000:]
        finally:
            proc.kill()
            proxy.close()
    assert [s for s, _ in losses(log)] == list(range(1, 61)), "training did not continue"
    committed = sorted(c.step for c in store.list_checkpoints() if c.committed)
    assert committed[-1] == 60
    assert any(during <= s < 60 for s in committed), (during, committed)
