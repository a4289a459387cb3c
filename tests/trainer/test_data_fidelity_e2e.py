"""Randomness drawn while fetching data, the data position at epoch edges and an AMP grad
scaler resume exactly (real SIGTERMs, resumed runs compared bitwise with an undisturbed
one): Accelerate's gradient accumulation over uneven epochs with a masking collate_fn, as a
prepared loader and with a ResumableSampler, and a plain step-based loop whose steps span
epoch boundaries. What cannot be exact is warned once or refused (exit 78) with what to do:
docs/trainer.md's fidelity matrix names these tests."""

from __future__ import annotations

import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from .harness import attempt_env, losses, same_params, termination, trainer_env

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
ACCEL = HERE / "accel_accum_script.py"
PLAIN = HERE / "plain_script.py"


def _run(
    script: Path, env: dict[str, str], log: Path, steps: int, stop: int, out: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), str(log), str(steps), str(stop), str(out)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _resumes_bitwise(
    s3: Any, bucket: str, tmp: Path, script: Path, steps: int, stops: list[int], **extra: str
) -> list[str]:
    """An undisturbed run, then one SIGTERMed at each of `stops` and resumed; their loss
    streams and final weights must be equal. Returns the undisturbed run's stderr, then the
    attempts'."""
    ref = tmp / "ref.jsonl"
    p = _run(
        script, trainer_env(s3, f"s3://{bucket}/ref", tmp, **extra), ref, steps, 0, tmp / "a.pt"
    )
    assert p.returncode == 0, p.stderr[-3000:]
    log, errs = tmp / "int.jsonl", [p.stderr]
    for attempt, stop in enumerate([*stops, 0], start=1):
        env = attempt_env(s3, f"s3://{bucket}/int", tmp, attempt, **extra)
        p = _run(script, env, log, steps, stop, tmp / "b.pt")
        errs.append(p.stderr)
        assert p.returncode == (75 if stop else 0), p.stderr[-3000:]
        if stop:
            assert termination(tmp)["lastCheckpoint"]["step"] == stop
    assert [s for s, _ in losses(log)] == list(range(1, steps + 1)), "a step was recomputed"
    assert losses(log) == losses(ref)
    assert same_params(tmp / "a.pt", tmp / "b.pt")
    return errs


def test_accelerate_accumulation_uneven_epochs_masking_collate(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    # Steps of 3, 3, 3, 1 batches an epoch. Step 2: mid-epoch, a batch prefetched; step 4:
    # the epoch's short last step; step 7: mid-epoch in the second epoch.
    _resumes_bitwise(s3, bucket, tmp_path, ACCEL, 10, [2, 4, 7])


def test_plain_loop_steps_spanning_epochs_masking_collate(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    # Step 3 ends an epoch's ninth batch, step 4 takes its tenth and the next epoch's first
    # two, step 7 the second epoch's last and the third's first; step 5 is mid-epoch.
    errs = _resumes_bitwise(s3, bucket, tmp_path, PLAIN, 9, [3, 4, 5, 7])
    assert not any("DataLoader workers" in e for e in errs)


def test_plain_loop_with_workers_is_warned(s3: Any, bucket: str, tmp_path: Path) -> None:
    env = trainer_env(s3, f"s3://{bucket}/job", tmp_path, PLAIN_TEST_WORKERS="2")
    p = _run(PLAIN, env, tmp_path / "log.jsonl", 2, 0, tmp_path / "a.pt")
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count("DataLoader workers") == 1, p.stderr[-3000:]
    assert "num_workers=0" in p.stderr


def test_unregistered_data_position_is_warned(s3: Any, bucket: str, tmp_path: Path) -> None:
    env = trainer_env(s3, f"s3://{bucket}/job", tmp_path, PLAIN_TEST_NO_SAMPLER="1")
    p = _run(PLAIN, env, tmp_path / "log.jsonl", 2, 0, tmp_path / "a.pt")
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count("no data position is registered") == 1, p.stderr[-3000:]
    assert "lz.register(sampler=" in p.stderr


def test_plain_loop_without_samples_is_warned(s3: Any, bucket: str, tmp_path: Path) -> None:
    env = trainer_env(s3, f"s3://{bucket}/job", tmp_path, PLAIN_TEST_NO_SAMPLES="1")
    p = _run(PLAIN, env, tmp_path / "log.jsonl", 2, 0, tmp_path / "a.pt")
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count("lz.step() is given no samples=") == 1, p.stderr[-3000:]
    assert "lz.step(samples=batch_size * accumulation * world_size)" in p.stderr


def test_plain_loop_grad_scaler_resumes_bitwise(s3: Any, bucket: str, tmp_path: Path) -> None:
    # fp16 autocast on the CPU with a GradScaler growing every 2 steps: it grows at steps 2,
    # 4 and 7 and backs off from overflowing gradients at steps 5 and 8. Stop 3 has a
    # growth tracker of 1, stop 5 a scale just backed off; the scale and tracker are logged
    # with each step's losses, so they too must equal the undisturbed run's.
    _resumes_bitwise(s3, bucket, tmp_path, PLAIN, 9, [3, 5], PLAIN_TEST_SCALER="1")
    scales = [
        float.fromhex(loss.split("scale=")[1].split("/")[0])
        for _, loss in losses(tmp_path / "ref.jsonl")
    ]
    grew = any(b > a for a, b in pairwise(scales))
    backed_off = any(b < a for a, b in pairwise(scales))
    assert grew and backed_off, scales


def test_accelerate_sampler_masking_collate_resumes_bitwise(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    # The ResumableSampler pattern: loaders built per epoch and not prepared, so Accelerate
    # syncs every 3 batches and steps 4 and 7 take batches of two epochs.
    _resumes_bitwise(s3, bucket, tmp_path, ACCEL, 9, [4, 7], ACCEL_TEST_SETUP="sampler")


def test_accelerate_prepared_loader_with_workers_is_warned(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    env = trainer_env(s3, f"s3://{bucket}/job", tmp_path, ACCEL_TEST_SETUP="workers")
    p = _run(ACCEL, env, tmp_path / "log.jsonl", 2, 0, tmp_path / "a.pt")
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count("DataLoader workers") == 1, p.stderr[-3000:]
    assert "num_workers=0" in p.stderr


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        ("iterable", ["over an IterableDataset cannot be resumed", "a map-style dataset with"]),
        ("dispatch", ["dispatch_batches=True is not supported", "use_seedable_sampler=True"]),
        ("stateful", ["use_stateful_dataloader=True is not supported", "skip_first_batches"]),
        ("micro_step", ["micro-step", "when accelerator.sync_gradients is True"]),
        ("sampler_micro_step", ["micro-step", "when accelerator.sync_gradients is True"]),
    ],
)
def test_accelerate_unsupported_setup_is_refused(
    s3: Any, bucket: str, tmp_path: Path, setup: str, says: list[str]
) -> None:
    env = trainer_env(s3, f"s3://{bucket}/job", tmp_path, ACCEL_TEST_SETUP=setup)
    p = _run(ACCEL, env, tmp_path / "log.jsonl", 2, 0, tmp_path / "a.pt")
    assert p.returncode == 78, p.stderr[-3000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    term = termination(tmp_path)
    assert term["outcome"] == "permanent-error", term
    for words in says:
        assert words in term["message"], term["message"]
