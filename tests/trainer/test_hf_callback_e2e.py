"""HF Trainer + LazarusCallback: SIGTERM, resume, same loss curve and weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .harness import same_params, termination, trainer_env

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).with_name("hf_script.py")


def _run(env: dict[str, str], tmp: Path, log: Path, sigterm_at: int, out: str) -> int:
    p = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            str(log),
            "20",
            str(sigterm_at),
            str(tmp / out),
            str(tmp / "hf-out"),
        ],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode in (0, 75), p.stderr[-3000:]
    return p.returncode


def _curve(log: Path) -> list[tuple[int, float]]:
    return [(d["step"], d["loss"]) for d in map(json.loads, log.read_text().splitlines())]


def test_hf_trainer_resumes_with_same_loss_curve(s3: Any, bucket: str, tmp_path: Path) -> None:
    ref = tmp_path / "ref.jsonl"
    env = trainer_env(s3, f"s3://{bucket}/ref", tmp_path, LAZARUS_EVAL_METRIC="eval_loss")
    assert _run(env, tmp_path, ref, 0, "a.pt") == 0

    log = tmp_path / "int.jsonl"
    root = f"s3://{bucket}/int"
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1", LAZARUS_EVAL_METRIC="eval_loss")
    assert _run(env, tmp_path, log, 8, "b.pt") == 75
    term = termination(tmp_path)
    assert term["savedOnSignal"] and term["lastCheckpoint"]["step"] == 8, term
    env.update(LAZARUS_ATTEMPT="2", LAZARUS_RESUME_FROM="auto")
    assert _run(env, tmp_path, log, 0, "b.pt") == 0

    assert _curve(log) == _curve(ref)
    assert [s for s, _ in _curve(log)] == list(range(1, 21))
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")
