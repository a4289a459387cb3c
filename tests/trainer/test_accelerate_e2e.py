"""Accelerate as its docs teach it: a prepared, shuffled DataLoader resumed with
`skip_first_batches` after real SIGTERMs ends bitwise equal to an uninterrupted run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .harness import attempt_env, losses, same_params, termination, trainer_env

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).with_name("accel_script.py")
STEPS = 25  # 10 batches an epoch: two epochs and a half


def _run(
    env: dict[str, str], log: Path, sigterm_at: int, out: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(log), str(STEPS), str(sigterm_at), str(out)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_prepared_shuffled_dataloader_resumes_bitwise(s3: Any, bucket: str, tmp_path: Path) -> None:
    ref = tmp_path / "ref.jsonl"
    env = trainer_env(s3, f"s3://{bucket}/ref", tmp_path)
    p = _run(env, ref, 0, tmp_path / "a.pt")
    assert p.returncode == 0, p.stderr[-3000:]

    # Mid-epoch (step 13), then on an epoch's last batch (step 20: the resume skips a whole
    # epoch's batches and goes on with the next epoch's order).
    log = tmp_path / "int.jsonl"
    for attempt, stop in enumerate([13, 20, 0], start=1):
        env = attempt_env(
            s3,
            f"s3://{bucket}/int",
            tmp_path,
            attempt,
        )
        p = _run(env, log, stop, tmp_path / "b.pt")
        assert p.returncode == (75 if stop else 0), p.stderr[-3000:]
        if stop:
            assert termination(tmp_path)["lastCheckpoint"]["step"] == stop
    assert [s for s, _ in losses(log)] == list(range(1, STEPS + 1))
    assert losses(log) == losses(ref)
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")


def test_unseedable_shuffled_dataloader_is_refused(s3: Any, bucket: str, tmp_path: Path) -> None:
    env = trainer_env(s3, f"s3://{bucket}/job", tmp_path, ACCEL_TEST_SEEDABLE="0")
    p = _run(env, tmp_path / "log.jsonl", 0, tmp_path / "a.pt")
    assert p.returncode == 78, p.stderr[-3000:]
    term = termination(tmp_path)
    assert term["outcome"] == "permanent-error" and "use_seedable_sampler=True" in term["message"]
