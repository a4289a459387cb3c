"""A run that has ended keeps its exit code: interpreter teardown cannot turn it into SIGABRT.

A thread still inside torch's C++ code when CPython finalizes (a gloo worker dropping its
last tensor, a background save) is ended by `pthread_exit` mid-unwind: "terminate called
without an active exception". The hook below makes such a thread certain instead of rare.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .harness import NoS3, run, termination, trainer_env

pytestmark = pytest.mark.e2e

# Loaded by the trainer's interpreter at start-up (site imports `sitecustomize`).
SPINNER = """
import threading


def _spin() -> None:
    import torch

    a = torch.randn(256, 256)
    while True:
        a @ a  # releases and retakes the GIL inside torch's C++ code


threading.Thread(target=_spin, name="test-torch-spinner", daemon=True).start()
"""


@pytest.mark.parametrize(
    ("extra", "code", "outcome"),
    [([], 0, "completed"), (["--sigterm-at-step", "2", "--step-sleep", "0.05"], 75, "preempted")],
    ids=["completed", "preempted"],
)
def test_a_thread_inside_torch_at_exit_leaves_the_exit_code_alone(
    tmp_path: Path, extra: list[str], code: int, outcome: str
) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SPINNER)
    env = trainer_env(NoS3(), str(tmp_path / "ckpt"), tmp_path, LAZARUS_ATTEMPT="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
    p = run(["--steps", "4", "--save-every-steps", "2", *extra], env)
    assert "terminate called" not in p.stderr, p.stderr[-2000:]
    assert p.returncode == code, p.stderr[-2000:]
    assert termination(tmp_path)["outcome"] == outcome
