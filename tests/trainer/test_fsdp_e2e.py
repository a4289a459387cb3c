"""FSDP2 (`fully_shard`, 2 CPU processes over gloo): save through torch.distributed.checkpoint,
a real SIGTERM to one rank, resume, and end bitwise equal to an uninterrupted run; `load_best`
restores the best evaluation's weights from its DCP checkpoint."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    attempt_env,
    evals,
    losses,
    same_params,
    store_for,
    termination,
    torchrun,
    trainer_env,
)

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
        env = attempt_env(
            s3,
            f"s3://{bucket}/int",
            tmp_path,
            attempt,
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


# Evaluations at steps 4, 8 and 12; the lowest eval loss is the first (the test checks it).
BEST = {
    "FSDP_TEST_EVAL_EVERY": "4",
    "FSDP_TEST_LOAD_BEST": "1",
    "LAZARUS_EVAL_METRIC": "eval_loss",
    "LAZARUS_EVAL_MODE": "min",
}


def test_fsdp2_load_best_restores_the_best_dcp_checkpoint(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    ref = tmp_path / "ref.jsonl"
    env = trainer_env(s3, f"s3://{bucket}/ref", tmp_path, **BEST)
    p = _run(env, ref, 0, tmp_path / "a.pt")
    assert p.returncode == 0, p.stderr[-3000:]
    ref_evals = dict(evals(ref))
    assert sorted(ref_evals) == [4, 8, 12] and min(ref_evals, key=ref_evals.__getitem__) == 4
    kept = {c.step: c.manifest for c in store_for(s3, f"s3://{bucket}/ref").list_checkpoints()}
    best = kept[4]
    assert best is not None and best.reason == "eval-best", best
    assert best.extra["lazarusTrainer"]["modelOptimizer"] == "dcp", best.extra
    # load_best loaded step 4's weights (from the DCP shards), not the final ones.
    assert same_params(tmp_path / "a.pt.best", tmp_path / "a.pt.step4")
    assert not same_params(tmp_path / "a.pt.best", tmp_path / "a.pt")

    # A SIGTERM on the step-4 evaluation: its preemption checkpoint is the best, and the
    # resumed run's load_best loads it.
    log, root = tmp_path / "int.jsonl", f"s3://{bucket}/int"
    for attempt, stop in enumerate([4, 0], start=1):
        env = attempt_env(
            s3,
            root,
            tmp_path,
            attempt,
            **BEST,
        )
        p = _run(env, log, stop, tmp_path / "b.pt")
        if stop:
            assert "exitcode  : 75" in p.stderr, p.stderr[-3000:]
            assert termination(tmp_path)["lastCheckpoint"]["step"] == stop
        else:
            assert p.returncode == 0, p.stderr[-3000:]
    assert losses(log) == losses(ref) and evals(log) == evals(ref)
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")
    best = {c.step: c.manifest for c in store_for(s3, root).list_checkpoints()}[4]
    assert best is not None and best.reason == "preemption", best
    assert best.metrics["eval_loss"] == ref_evals[4], best.metrics
    assert same_params(tmp_path / "b.pt.best", tmp_path / "a.pt.step4")
