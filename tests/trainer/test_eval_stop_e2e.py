"""The plain-loop API (the reference trainer): a SIGTERM on an evaluation step evaluates
first, then commits the preemption checkpoint, which is the best one when it improved; a
fresh start into a used root is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .harness import (
    attempt_env,
    evals,
    losses,
    run,
    same_params,
    store_for,
    termination,
    trainer_env,
)

pytestmark = pytest.mark.e2e

# LAZARUS_EVAL_METRIC in HF's spelling ("loss" for the reported "eval_loss"), mode max, so the
# best evaluation is the first one (eval loss falls as it trains): the SIGTERM lands on it.
ARGS = ["--steps", "30", "--eval-every", "10", "--keep-latest", "1", "--keep-best", "1"]
EVAL = {"LAZARUS_EVAL_METRIC": "loss", "LAZARUS_EVAL_MODE": "max"}


def test_sigterm_on_the_best_evaluation_keeps_it_and_resumes_bitwise(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    ref = tmp_path / "ref.jsonl"
    env = trainer_env(s3, f"s3://{bucket}/ref", tmp_path, **EVAL)
    p = run([*ARGS, "--loss-log", str(ref), "--final-params", str(tmp_path / "a.pt")], env)
    assert p.returncode == 0, p.stderr[-3000:]
    ref_evals = dict(evals(ref))
    assert max(ref_evals, key=lambda s: ref_evals[s]) == 10, ref_evals  # the test's premise

    root, log = f"s3://{bucket}/int", tmp_path / "int.jsonl"
    for attempt, stop in enumerate([10, 0], start=1):
        env = attempt_env(
            s3,
            root,
            tmp_path,
            attempt,
            LAZARUS_TEST_SIGTERM_AT_STEP=str(stop),
            **EVAL,
        )
        p = run([*ARGS, "--loss-log", str(log), "--final-params", str(tmp_path / "b.pt")], env)
        assert p.returncode == (75 if stop else 0), p.stderr[-3000:]
        if stop:
            term = termination(tmp_path)
            assert term["savedOnSignal"] and term["lastCheckpoint"]["step"] == 10, term

    assert losses(log) == losses(ref)
    assert evals(log) == evals(ref)  # the step-10 evaluation ran before the stop, once
    assert same_params(tmp_path / "a.pt", tmp_path / "b.pt")
    kept = {c.step: c.manifest for c in store_for(s3, root).list_checkpoints() if c.committed}
    best = kept.get(10)
    assert best is not None, sorted(kept)  # the best one survived retention (keep-latest 1)
    assert best.reason == "preemption" and best.metrics["eval_loss"] == ref_evals[10], best
    assert 30 in kept


def test_a_fresh_start_into_a_used_root_is_refused(s3: Any, bucket: str, tmp_path: Path) -> None:
    env = trainer_env(s3, f"s3://{bucket}/job", tmp_path, LAZARUS_ATTEMPT="1")
    assert run(["--steps", "3"], env).returncode == 0
    p = run(["--steps", "3"], env)  # the same again: every save would be "already committed"
    assert p.returncode == 78, p.stderr[-3000:]
    term = termination(tmp_path)
    assert term["outcome"] == "permanent-error", term
    assert "LAZARUS_RESUME_FROM=auto" in term["message"], term
    assert "Traceback" not in p.stderr
    env["LAZARUS_RESUME_FROM"] = "auto"  # what the message says to do
    assert run(["--steps", "5"], env).returncode == 0
