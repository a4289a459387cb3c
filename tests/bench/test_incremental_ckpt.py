"""bench.incremental_ckpt runs tiny against the S3 server fixture: every job and method has
its figures, the LoRA job's Lazarus checkpoint uploads less than the whole PeftModel
(the frozen base is fingerprinted, not saved), and full fine-tuning stops chunking after
its first save."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
TINY = ["--d-model", "32", "--layers", "1", "--vocab", "64", "--seq", "8", "--batch", "2"]


def test_incremental_ckpt_runs_tiny(s3: Any, bucket: str, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAZARUS_", "AWS_"))}
    env.update(AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key,
               AWS_DEFAULT_REGION=s3.region)  # fmt: skip
    args = ["--rounds", "1", "--idle", "0", "--baseline-steps", "1", "--torch-threads", "1"]
    p = subprocess.run(
        [sys.executable, "-m", "bench.incremental_ckpt", *TINY, *args,
         "--endpoint", s3.endpoint_url, "--bucket", bucket, "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    found = json.loads(out.read_text())
    assert set(found) == {"lora", "full", "frozen-emb", "args"}
    hf = "HF _save_checkpoint + boto3"
    assert set(found["lora"]["rows"]) == {"lazarus", "lazarus whole model", "lazarus before", hf}
    for job in ("lora", "full", "frozen-emb"):
        for name, row in found[job]["rows"].items():
            assert row["mb"][0] > 0 and row["requests"][0] > 0 and row["durable"][0] > 0, name
    lora = found["lora"]["rows"]
    assert lora["lazarus"]["mb"][0] < lora["lazarus before"]["mb"][0], lora
    assert found["lora"]["fingerprint"]["frozen_mb"] > 0
    # Full fine-tuning under HF's default (fused) AdamW: auto chunks the first save only,
    # then writes the whole object as `before` does, the one thing its ratio compares.
    full = found["full"]
    assert full["rows"]["lazarus"]["chunked"] == [0.0], full["rows"]["lazarus"]
    assert set(full["ratios"]) == {
        "durable lazarus / lazarus before: LAZARUS_SAVE_DEDUP default vs 0 (target <= 1.05)"
    }
    assert lora["lazarus whole model"]["chunked"][0] > 0  # the frozen base: still chunked
