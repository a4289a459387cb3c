"""A DeepSpeed engine with gradient accumulation (ZeRO-1, one real process, gloo): `lz.step()`
once per optimizer step resumes bitwise after a real SIGTERM; called where the engine holds
gradients no optimizer step applied yet (a micro-step, or before `engine.step()`), a
checkpoint would drop them, so it is refused (exit 78) with what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .harness import losses, termination
from .test_deepspeed_e2e import _env, _exited, _run, _same

pytestmark = pytest.mark.e2e

STEPS = 6
ARGS = ["--stage", "1", "--steps", str(STEPS)]


def test_accumulation_resumes_bitwise_with_lz_step_at_boundaries(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    args = [*ARGS, "--accum", "2"]
    ref_log, log = tmp_path / "ref.jsonl", tmp_path / "loss.jsonl"
    p = _run(
        [*args, "--loss-log", str(ref_log), "--dump", str(tmp_path / "ref")],
        _env(s3, f"s3://{bucket}/ref", tmp_path, 1),
        nproc=1,
    )
    _exited(p, 0)
    reference = losses(ref_log)
    assert [s for s, _ in reference] == list(range(1, STEPS + 1))
    assert all(len(micro.split(",")) == 2 for _, micro in reference)  # 2 micro-batches a step
    run = [*args, "--loss-log", str(log), "--dump", str(tmp_path / "run")]
    for attempt, stop, code in [(1, 3, 75), (2, 0, 0)]:  # SIGTERM after step 3, resumed
        p = _run(
            [*run, "--sigterm-at", str(stop)],
            _env(s3, f"s3://{bucket}/job", tmp_path, attempt, LAZARUS_RESUME_FROM="auto"),
            nproc=1,
        )
        _exited(p, code)
        assert termination(tmp_path)["lastCheckpoint"]["step"] == (stop or STEPS)
    assert losses(log) == reference, "a resumed step's micro-batch losses differ"
    _same(tmp_path / "ref-end.pt", tmp_path / "run-end.pt")


@pytest.mark.parametrize(
    ("accum", "lz_step", "said"),
    [
        (2, "every-micro", "micro-step (1 of gradient_accumulation_steps=2 micro-batches"),
        (1, "before-engine-step", "no optimizer step since the last lz.step() or the resume"),
    ],
    ids=["every-micro-step", "before-engine-step"],
)
def test_lz_step_where_gradients_are_held_is_refused(
    accum: int, lz_step: str, said: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    p = _run(
        [*ARGS, "--accum", str(accum), "--lz-step", lz_step],
        _env(s3, f"s3://{bucket}/job", tmp_path, 1),
        nproc=1,
    )
    _exited(p, 78)
    term = termination(tmp_path)
    assert term["outcome"] == "permanent-error" and term["lastCheckpoint"] is None, term
    assert said in term["message"], term
    assert "once per optimizer step, after the engine.step()" in term["message"], term
