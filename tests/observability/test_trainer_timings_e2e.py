"""The trainer records its save and resume timings in each manifest's extra, where
the operator reads them for its metrics (real trainer processes, real S3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.trainer.harness import run, store_for, trainer_env

pytestmark = pytest.mark.e2e
SLEEP = 0.05  # seconds each reference-trainer step sleeps, at least


def test_manifests_carry_save_and_resume_timings(s3: Any, bucket: str, tmp_path: Path) -> None:
    root = f"s3://{bucket}/timed"
    for attempt, steps in ((1, 4), (2, 8)):
        env = trainer_env(
            s3, root, tmp_path, LAZARUS_ATTEMPT=str(attempt), LAZARUS_RESUME_FROM="auto"
        )
        args = ["--steps", str(steps), "--save-every-steps", "2", "--step-sleep", str(SLEEP)]
        p = run(args, env)
        assert p.returncode == 0, p.stderr[-3000:]
    store = store_for(s3, root)
    seen = {}
    for info in store.list_checkpoints():
        assert info.manifest is not None
        t = info.manifest.extra["lazarusTrainer"]["timings"]
        seen[info.manifest.step] = t
        assert t["attempt"] == info.manifest.attempt
        assert t["bytes"] == info.manifest.total_bytes > 0
        assert 0 <= t["stallSeconds"] <= t["saveSeconds"] <= t["durableSeconds"] + 1e-6
        # a resumed attempt says how long its load took; a fresh one has nothing to say
        assert ("resumeSeconds" in t) == (info.manifest.attempt == 2)
        # the attempt's pace since its first step: no faster than its steps' sleep allows
        assert 0 < t["stepsPerSecond"] <= 1 / SLEEP, t
    assert sorted(seen) == [2, 4, 6, 8]
    assert seen[6]["resumeSeconds"] > 0
