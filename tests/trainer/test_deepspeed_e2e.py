"""DeepSpeed ZeRO 1/2/3 engines on 2 real processes (gloo), interrupted by real SIGTERMs.

One test per stage shares its runs: an uninterrupted reference, then the same job cut by two
SIGTERMs (and a checkpoint-now request) and resumed twice; losses, fp32 weights and Adam
moments must be bitwise the reference's, with dropout on. Stage 3 then corrupts a ZeRO shard
of the newest checkpoint (the previous one must be used), stage 1 resumes with one process
(refused: exit 78, naming the supported path).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from .harness import losses, store_for, termination, torchrun, trainer_env

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).with_name("ds_script.py")
STEPS = 12
# The shared-memory op DeepSpeed compiles at its first init_distributed (hack/deepspeed-ops.sh).
EXTENSIONS = Path.home() / ".cache" / "lazarus" / "torch_extensions"


def _run(args: list[str], env: dict[str, str], nproc: int = 2) -> subprocess.CompletedProcess[str]:
    cmd = torchrun(nproc, str(SCRIPT), *args)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)


def _env(s3: Any, root: str, tmp: Path, attempt: int, **extra: str) -> dict[str, str]:
    env = trainer_env(
        s3,
        root,
        tmp,
        LAZARUS_ATTEMPT=str(attempt),
        LAZARUS_SAVE_EVERY_STEPS="5",
        LAZARUS_EVAL_METRIC="eval_loss",
        LAZARUS_EVAL_MODE="min",
        **extra,
    )
    env.setdefault("TORCH_EXTENSIONS_DIR", str(EXTENSIONS))
    return env


def _exited(p: subprocess.CompletedProcess[str], code: int) -> None:
    """torchrun exits 1 for a worker's 75 or 78 and names the worker's code."""
    ok = p.returncode == 0 if code == 0 else f"exitcode  : {code}" in p.stderr
    assert ok, p.stderr[-4000:]


def _same(a: Path, b: Path) -> None:
    ta, tb = torch.load(a), torch.load(b)
    assert ta.keys() == tb.keys() and len(ta) == 12, sorted(ta)  # 4 params x fp32/m/v
    for k in ta:
        assert torch.equal(ta[k], tb[k]), f"{k} differs from the uninterrupted run"


def _corrupt(client: Any, bucket: str, key: str) -> None:
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF  # same size: only the checksum can tell
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_zero_stage_resumes_bitwise_after_sigterms(
    stage: int, s3: Any, bucket: str, tmp_path: Path
) -> None:
    ref_log, log = tmp_path / "ref.jsonl", tmp_path / "loss.jsonl"
    args = ["--stage", str(stage), "--steps", str(STEPS)]
    p = _run(
        [*args, "--loss-log", str(ref_log), "--dump", str(tmp_path / "ref")],
        _env(s3, f"s3://{bucket}/ref", tmp_path, 1),
    )
    _exited(p, 0)
    reference = losses(ref_log)
    assert [s for s, _ in reference] == list(range(1, STEPS + 1))

    root = f"s3://{bucket}/job"
    store = store_for(s3, root)
    # (attempt, SIGTERM after this step, on this rank, exit code); after step 6 attempt 2
    # sets the checkpoint-now annotation, so step 6 commits a `requested` checkpoint.
    for attempt, stop, rank, code in [(1, 5, 1, 75), (2, 9, 0, 75), (3, 0, 0, 0)]:
        leg = ["--sigterm-at", str(stop), "--sigterm-rank", str(rank), "--request-at", "6"]
        p = _run(
            [*args, "--loss-log", str(log), "--dump", str(tmp_path / "run"), *leg],
            _env(s3, root, tmp_path, attempt, LAZARUS_RESUME_FROM="auto"),
        )
        _exited(p, code)
        term = termination(tmp_path)
        assert term["lastCheckpoint"]["step"] == (stop or STEPS), term
        if code:
            assert term["outcome"] == "preempted" and term["savedOnSignal"], term
    assert losses(log) == reference, "a resumed step's loss differs (or a step was lost/redone)"
    _same(tmp_path / "ref-end.pt", tmp_path / "run-end.pt")

    listed = [c.manifest for c in store.list_checkpoints() if c.committed]
    manifests = sorted((m for m in listed if m is not None), key=lambda m: m.name)
    reasons = {(m.step, m.reason) for m in manifests}
    # SIGTERMs at 5 and 9, checkpoint-now at 6, eval-best at 4 (and later improvements),
    # periodic at 10 (5 was the preemption save), final at 12 unless an eval-best took it.
    assert {(4, "eval-best"), (5, "preemption"), (6, "requested"), (9, "preemption")} <= reasons
    assert (10, "periodic") in reasons and manifests[-1].step == STEPS, reasons
    newest = manifests[-1]
    paths = {o.path for o in newest.objects}
    kinds = ["optim"] + (["model"] if stage == 3 else [])
    for r in range(2):  # every rank's own ZeRO files are objects of the one checkpoint
        for kind in kinds:
            assert f"deepspeed/zero_pp_rank_{r}_mp_rank_00_{kind}_states.pt" in paths, paths
    assert newest.extra["lazarusTrainer"]["modelOptimizer"] == "deepspeed"
    assert newest.world_size == 2

    if stage == 3:  # rank 1's optimizer shard of the newest checkpoint is corrupt
        shard = "deepspeed/zero_pp_rank_1_mp_rank_00_optim_states.pt"
        _corrupt(s3.client(), bucket, f"job/{newest.name}/{shard}")
        previous = manifests[-2]
        fallback_log = tmp_path / "fallback.jsonl"
        p = _run(
            [*args, "--loss-log", str(fallback_log), "--dump", str(tmp_path / "fallback")],
            _env(s3, root, tmp_path, 4, LAZARUS_RESUME_FROM="auto"),
        )
        _exited(p, 0)
        assert f"checkpoint {newest.name} failed validation" in p.stderr, p.stderr[-4000:]
        assert f"resumed from {previous.name}" in p.stderr
        assert store.is_quarantined(newest.name)
        assert losses(fallback_log) == reference[previous.step :]
        _same(tmp_path / "ref-end.pt", tmp_path / "fallback-end.pt")

    if stage == 1:  # ZeRO partitions are laid out for 2 ranks: 1 process is refused
        p = _run(args, _env(s3, root, tmp_path, 4, LAZARUS_RESUME_FROM="auto"), nproc=1)
        _exited(p, 78)
        term = termination(tmp_path)
        assert term["outcome"] == "permanent-error", term
        assert "written by 2 DeepSpeed processes, this run has 1" in term["message"], term
        assert "ds_to_universal" in term["message"], term
