"""FSDP2 (`fully_shard`, 2 CPU processes over gloo): save through torch.distributed.checkpoint,
a real SIGTERM to one rank, resume, and end bitwise equal to an uninterrupted run."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from .harness import losses, same_params, termination, torchrun, trainer_env

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).with_name("fsdp_script.py")
STEPS = 14  # 6 steps an epoch (48 samples, 2 ranks x 4)


def _run(env: dict[str, str], log: Path, stop: int, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = torchrun(2, str(SCRIPT), str(log), str(STEPS), str(stop), str(out))
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_fsdp2_sigterm_resume_is_bitwise(s3: Any, bucket: str, tmp_path: Path) -> None:
    ref = tmp_path / "ref.jsonl"
    p = _run(trainer_env(s3, f"s3://{bucket}/ref", tmp_path), ref, 0, tmp_path / "a.pt")
    assert p.returncode == 0, p.stderr[-3000:]

    log = tmp_path / "int.jsonl"
    for attempt, stop in enumerate([8, 0], start=1):
        env = trainer_env(
            s3,
            f"s3://{bucket}/int",
            tmp_path,
            LAZARUS_ATTEMPT=str(attempt),
            LAZARUS_RESUME_FROM="auto" if attempt > 1 else "",
        )
        p = _run(env, log, stop, tmp_path / "b.pt")
        if stop:
            # torchrun reports the worker's 75 as its own 1 (lazarus-launch maps it back).
            assert "exitcode  : 75" in p.stderr, p.stderr[-3000:]
            term = termination(tmp_path)
            assert term["savedOnSignal"] and term["lastCheckpoint"]["step"] == stop, term
        else:
            assert p.returncode == 0, p.stderr[-3000:]
    assert [s for s, _ in losses(log)] == list(range(1, STEPS + 1))
    assert losses(log) == losses(ref)
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")
