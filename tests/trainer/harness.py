"""Run the reference trainer as a real subprocess against the real S3 server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lazarus_store import CheckpointStore, open_store

REPO = Path(__file__).resolve().parents[2]
TINY = ["--d-model", "32", "--layers", "1", "--heads", "2", "--seq-len", "16", "--batch-size", "4"]


def trainer_env(s3: Any, root: str, tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAZARUS_", "PET_"))}
    env.update(s3.env())
    env.update(
        LAZARUS_CHECKPOINT_URI=root,
        LAZARUS_TERMINATION_LOG=str(tmp / "termination.json"),
        LAZARUS_ANNOTATIONS_FILE=str(tmp / "annotations"),
        LAZARUS_GRACE_SECONDS="30",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class NoS3:
    """The `s3` of `trainer_env` for a filesystem root: it needs no S3 settings."""

    def env(self) -> dict[str, str]:
        return {}


def attempt_env(s3: Any, root: str, tmp: Path, attempt: int, **extra: str) -> dict[str, str]:
    """`trainer_env` for attempt N of a job as the operator launches it: the first
    starts fresh, every later one resumes from the newest valid checkpoint."""
    resume = "auto" if attempt > 1 else ""
    return trainer_env(
        s3, root, tmp, LAZARUS_ATTEMPT=str(attempt), LAZARUS_RESUME_FROM=resume, **extra
    )


def torchrun(nproc: int, *target: str) -> list[str]:
    """`torch.distributed.run` of `target` with a free rendezvous port (c10d, loopback)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(nproc),
        "--master-port",
        "0",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        "127.0.0.1:0",
        *target,
    ]


def command(args: list[str], nproc: int = 1) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "lazarus_trainer.reference", *TINY, *args]
    return torchrun(nproc, "-m", "lazarus_trainer.reference", *TINY, *args)


def run(
    args: list[str], env: dict[str, str], *, nproc: int = 1, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # the caller checks the exit code
        command(args, nproc), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def termination(tmp: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((tmp / "termination.json").read_text())
    return doc


def losses(path: Path) -> list[tuple[int, str]]:
    out = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        if "loss" in d:
            out.append((int(d["step"]), str(d["loss"])))
    return out


def evals(path: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [(int(d["step"]), float(d["eval_loss"])) for d in rows if "eval_loss" in d]


def same_params(a: Path, b: Path) -> bool:
    pa, pb = torch.load(a), torch.load(b)
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


def store_for(s3: Any, root: str) -> CheckpointStore:
    return open_store(
        root,
        endpoint_url=s3.endpoint_url,
        addressing_style="path",
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region=s3.region,
    )


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
