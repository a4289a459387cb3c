"""Exact resume, no lost work on SIGTERM, best never missed: real trainers, signals and S3."""

from __future__ import annotations

import random
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    command,
    evals,
    losses,
    run,
    same_params,
    store_for,
    termination,
    trainer_env,
    wait_for,
)

pytestmark = pytest.mark.e2e

STEPS = 24


def _interrupted_run(
    s3: Any, root: str, tmp: Path, stops: list[int], nproc: int, common: list[str]
) -> Path:
    log = tmp / "interrupted.jsonl"
    for attempt, stop in enumerate([*stops, 0], start=1):
        env = trainer_env(
            s3,
            root,
            tmp,
            LAZARUS_ATTEMPT=str(attempt),
            LAZARUS_RESUME_FROM="auto",
            LAZARUS_TEST_SIGTERM_AT_STEP=str(stop),
            LAZARUS_TEST_SIGTERM_RANK=str(nproc - 1),  # a non-zero rank's pod is preempted
        )
        p = run(
            [*common, "--loss-log", str(log), "--final-params", str(tmp / "b.pt")], env, nproc=nproc
        )
        term = termination(tmp)
        if stop:
            if nproc == 1:
                assert p.returncode == 75, p.stderr[-3000:]
            else:
                # torchrun reports a worker failure as 1 and SIGTERMs the other workers once
                # the first exits; the workers' own codes are in its log.
                assert "exitcode  : 75" in p.stderr, p.stderr[-3000:]
            assert term["outcome"] == "preempted" and term["savedOnSignal"], term
            assert term["lastCheckpoint"]["step"] == stop, term
        else:
            assert p.returncode == 0, p.stderr[-3000:]
            assert term["outcome"] == "completed", term
    return log


@pytest.mark.parametrize("nproc", [1, 2])
def test_interrupted_run_matches_uninterrupted_bitwise(
    s3: Any, bucket: str, tmp_path: Path, nproc: int
) -> None:
    common = [
        "--steps",
        str(STEPS),
        "--save-every-steps",
        "10",
        "--eval-every",
        "5",
        "--eval-metric",
        "eval_loss",
    ]
    ref = tmp_path / "ref.jsonl"
    env = trainer_env(s3, f"s3://{bucket}/ref", tmp_path)
    p = run(
        [*common, "--loss-log", str(ref), "--final-params", str(tmp_path / "a.pt")],
        env,
        nproc=nproc,
    )
    assert p.returncode == 0, p.stderr[-3000:]

    stops = sorted(random.Random(nproc).sample(range(2, STEPS), 3))
    log = _interrupted_run(s3, f"s3://{bucket}/int", tmp_path, stops, nproc, common)

    assert [s for s, _ in losses(log)] == list(range(1, STEPS + 1)), "a step was recomputed"
    assert losses(log) == losses(ref)
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")


def test_external_sigterm_loses_no_step(s3: Any, bucket: str, tmp_path: Path) -> None:
    root = f"s3://{bucket}/job"
    log = tmp_path / "loss.jsonl"
    args = [
        "--steps",
        "400",
        "--save-every-steps",
        "7",
        "--step-sleep",
        "0.05",
        "--loss-log",
        str(log),
    ]
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1")
    proc = subprocess.Popen(
        command(args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: log.exists() and len(losses(log)) >= 12, 120, "12 steps")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 75, err[-3000:]
    last = losses(log)[-1][0]
    term = termination(tmp_path)
    assert term["savedOnSignal"] and term["lastCheckpoint"]["step"] == last, (term, last)
    manifest = store_for(s3, root).read_manifest(term["lastCheckpoint"]["name"])
    assert manifest.step == last

    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="2", LAZARUS_RESUME_FROM="auto")
    p = run(["--steps", str(last + 3), "--loss-log", str(log)], env)
    assert p.returncode == 0, p.stderr[-3000:]
    steps = [s for s, _ in losses(log)]
    assert steps == list(range(1, last + 4)), "the resumed run recomputed or skipped a step"


def test_best_eval_is_committed_and_survives_retention(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    root = f"s3://{bucket}/job"
    log = tmp_path / "loss.jsonl"
    env = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1")
    args = [
        "--steps",
        "330",
        "--eval-every",
        "50",
        "--save-every-steps",
        "200",
        "--eval-metric",
        "eval_loss",
        "--keep-latest",
        "1",
        "--keep-best",
        "1",
        "--lr",
        "1e-2",
        "--loss-log",
        str(log),
    ]
    p = run(args, env)
    assert p.returncode == 0, p.stderr[-3000:]
    best_step, best = min(evals(log), key=lambda e: e[1])
    kept = {c.step: c for c in store_for(s3, root).list_checkpoints() if c.committed}
    assert best_step in kept, (best_step, sorted(kept))
    manifest = kept[best_step].manifest
    assert manifest is not None and manifest.metrics["eval_loss"] == best
    assert 330 in kept  # the final checkpoint too
