"""The reference trainer (`lazarus-train`) as replica groups (docs/fault-tolerance.md):
a lighthouse and two groups in real processes, one group SIGKILLed and replaced as the
operator replaces it (LAZARUS_FT_REPLACEMENT=1). The survivor trains on without a restart,
the replacement heals from it without reading a checkpoint, and both end with the same
weights. And what the mode cannot do the same way is refused with one line."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
import torch

from lazarus_trainer.reference.ft_loop import unsupported

from .ft_harness import FtJob
from .harness import wait_for

STEPS = 300  # room for the replacement to start (imports take 5-15 s here) and join


def argv(tmp: Path, group: int, generation: int) -> list[str]:
    return [
        *(sys.executable, "-m", "lazarus_trainer.reference", "--steps", str(STEPS)),
        *("--step-sleep", "0.1", "--d-model", "16", "--layers", "1", "--batch-size", "4"),
        *("--loss-log", str(tmp / f"loss-{group}.jsonl")),
        *("--final-params", str(tmp / f"final-{group}-{generation}.pt")),
    ]


def steps(tmp: Path, group: int) -> list[int]:
    path = tmp / f"loss-{group}.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["step"] for r in rows if "loss" in r]


@pytest.mark.e2e
def test_reference_trainer_survivor_trains_on_and_replacement_heals(tmp_path: Path) -> None:
    job = FtJob(tmp_path, LAZARUS_SAVE_EVERY_STEPS="40")
    try:
        job.start_lighthouse()
        survivor = job.start_group(0, STEPS, 0, argv(tmp_path, 0, 0))
        victim = job.start_group(1, STEPS, 0, argv(tmp_path, 1, 0))
        wait_for(lambda: len(steps(tmp_path, 1)) >= 30, 180, "group 1 at step 30")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = steps(tmp_path, 0)[-1]
        wait_for(lambda: steps(tmp_path, 0)[-1] >= killed_at + 15, 120, "the survivor on alone")
        replacement = job.start_group(
            1,
            STEPS,
            0,
            argv(tmp_path, 1, 1),
            LAZARUS_FT_REPLACEMENT="1",
            LAZARUS_RESUME_FROM="auto",
        )
        assert survivor.wait(240) == 0
        assert replacement.wait(240) == 0
    finally:
        job.stop()
    # The survivor: every step once, in order, from where it joined to the end (a restart
    # would repeat; a group that joined the first quorum late healed from its peer first).
    survived = steps(tmp_path, 0)
    assert survived == list(range(survived[0], STEPS + 1)) and survived[0] < killed_at
    log1 = (tmp_path / "g1.log").read_text()
    assert "joins its live peers: no checkpoint read" in log1
    assert "resumed from" not in log1, "the replacement read a checkpoint"
    healed = [line for line in log1.splitlines() if "took the live state of step" in line]
    assert healed, "the replacement took no peer's state"
    # The last: a group that joined the first quorum late healed from its peer too.
    taken = int(healed[-1].split("of step ")[1].split()[0])
    assert taken > killed_at, "it joined where the survivor was, not from a checkpoint"
    assert steps(tmp_path, 1)[-1] == STEPS
    a, b = (torch.load(tmp_path / f"final-{g}-{gen}.pt") for g, gen in ((0, 0), (1, 1)))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("step-*"))[-1].startswith(
        f"step-{STEPS:012d}"
    ), "the writer group's final save"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("env", "cuda", "says"),
    [
        ({}, False, None),
        ({"WORLD_SIZE": "1", "ACCELERATE_MIXED_PRECISION": "no"}, False, None),
        ({"WORLD_SIZE": "2"}, False, "WORLD_SIZE=2"),
        ({"ACCELERATE_MIXED_PRECISION": "bf16"}, False, "ACCELERATE_MIXED_PRECISION=bf16"),
        ({"ACCELERATE_MIXED_PRECISION": "FP16"}, False, "ACCELERATE_MIXED_PRECISION=fp16"),
        ({"ACCELERATE_USE_DEEPSPEED": "true"}, False, "ACCELERATE_USE_DEEPSPEED"),
        ({"ACCELERATE_USE_FSDP": "1"}, False, "ACCELERATE_USE_FSDP"),
        ({"ACCELERATE_USE_FSDP": "false"}, False, None),
        ({}, True, "CUDA_VISIBLE_DEVICES="),
    ],
)
def test_what_the_mode_refuses(env: dict[str, str], cuda: bool, says: str | None) -> None:
    why = unsupported(env, cuda)
    assert (why is None) if says is None else (why is not None and says in why and "\n" not in why)


@pytest.mark.e2e
def test_torchrun_group_is_refused_with_one_line(tmp_path: Path) -> None:
    """processesPerPod > 1 (torchrun's WORLD_SIZE) in this mode: exit 78, one line, no
    training, no traceback."""
    job = FtJob(tmp_path)
    proc = job.start_group(0, STEPS, 0, argv(tmp_path, 0, 0), WORLD_SIZE="2")
    assert proc.wait(120) == 78
    out = (tmp_path / "g0.log").read_text()
    assert "permanent error: the fault-tolerant mode of lazarus-train" in out
    assert "WORLD_SIZE=2" in out and "Traceback" not in out
    assert not (tmp_path / "loss-0.jsonl").exists()
