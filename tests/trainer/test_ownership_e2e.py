"""Two jobs on one root, as real trainer processes see it: each chooses and prunes only
its own checkpoints (docs/contract.md section 8); a filesystem root is fenced by the
trainer itself, and a re-created job numbers its attempts above the old job's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lazarus_store import JobIdentity, open_store

from .harness import NoS3, run, store_for, trainer_env

pytestmark = pytest.mark.e2e

A = {"LAZARUS_JOB_NAMESPACE": "team-a", "LAZARUS_JOB_NAME": "train", "LAZARUS_JOB_UID": "uid-a"}
B = {"LAZARUS_JOB_NAMESPACE": "team-b", "LAZARUS_JOB_NAME": "train", "LAZARUS_JOB_UID": "uid-b"}


def test_each_job_resumes_and_prunes_only_its_own(s3: Any, bucket: str, tmp_path: Path) -> None:
    root = f"s3://{bucket}/shared"
    common = ["--save-every-steps", "4", "--keep-latest", "1"]
    env_a = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1", **A)
    assert run(["--steps", "6", *common], env_a).returncode == 0
    # Team B runs further on the same root by mistake (attempt numbers clash too).
    env_b = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="1", **B)
    p = run(["--steps", "12", *common], env_b)
    assert p.returncode == 0, p.stderr[-2000:]

    store = store_for(s3, root)
    by_job = {c.name: c.manifest.job.uid for c in store.list_checkpoints() if c.manifest}
    # A's final checkpoint survived B's retention (keep-latest 1), and B kept its own.
    assert sorted(by_job.items()) == [
        ("step-000000000006-a0001", "uid-a"),
        ("step-000000000012-a0001", "uid-b"),
    ]

    env_a2 = trainer_env(s3, root, tmp_path, LAZARUS_ATTEMPT="2", LAZARUS_RESUME_FROM="auto", **A)
    p = run(["--steps", "8", *common], env_a2)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "resumed from step-000000000006-a0001" in p.stderr


def test_a_filesystem_root_is_fenced_by_the_trainer_and_survives_a_recreated_job(
    tmp_path: Path,
) -> None:
    root = tmp_path / "pvc" / "ckpt"
    root.parent.mkdir()  # the mounted volume
    env = trainer_env_fs(root, tmp_path, LAZARUS_ATTEMPT="1", LAZARUS_RESUME_FROM="auto", **A)
    assert run(["--steps", "4", "--save-every-steps", "2"], env).returncode == 0
    store = open_store(str(root))
    ident_a = JobIdentity("train", "team-a", "uid-a")
    assert [(r.attempt, r.resume_step, r.job) for r in store.attempts()] == [(1, -1, ident_a)]

    # Deleted and re-applied: the operator starts counting at 1 again; names must not clash.
    env = trainer_env_fs(
        root,
        tmp_path,
        LAZARUS_ATTEMPT="1",
        LAZARUS_RESUME_FROM="auto",
        **{**A, "LAZARUS_JOB_UID": "uid-a2"},
    )
    p = run(["--steps", "6", "--save-every-steps", "2"], env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "resumed from step-000000000004-a0001" in p.stderr
    records = store.attempts()
    assert [(r.attempt, r.resume_step) for r in records] == [(1, -1), (2, 4)]
    assert records[1].job == JobIdentity("train", "team-a", "uid-a2")
    assert store.latest_valid().chosen.name == "step-000000000006-a0002"  # type: ignore[union-attr]


def trainer_env_fs(root: Path, tmp: Path, **extra: str) -> dict[str, str]:
    return trainer_env(NoS3(), str(root), tmp, **extra)
