"""A run that has ended keeps its exit code: interpreter teardown cannot turn it into SIGABRT.

A thread still inside torch's C++ code when CPython finalizes (a gloo worker dropping its
last tensor, a background save) is ended by `pthread_exit` mid-unwind: "terminate called
without an active exception". The hook below makes such a thread certain instead of rare.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .harness import NoS3, run, termination, trainer_env
from .test_docs_e2e import _env, _run, snippet

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
    env = trainer_env(NoS3(), str(tmp_path / "ckpt"), tmp_path, LAZARUS_ATTEMPT="1")
    env = _hooked(env, tmp_path)
    p = run(["--steps", "4", "--save-every-steps", "2", *extra], env)
    assert "terminate called" not in p.stderr, p.stderr[-2000:]
    assert p.returncode == code, p.stderr[-2000:]
    assert termination(tmp_path)["outcome"] == outcome


def _hooked(env: dict[str, str], tmp: Path) -> dict[str, str]:
    """`env` with SPINNER loaded into every interpreter it starts."""
    hook = tmp / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SPINNER)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
    return env


def test_the_hf_snippet_keeps_its_exit_code_with_a_thread_inside_torch(tmp_path: Path) -> None:
    # HF's train() returns into the user's script, so only the script can skip teardown:
    # docs/trainer.md's `with leaving():` does.
    (tmp_path / "train_hf.py").write_text(snippet("train_hf.py"))
    env = _hooked(_env(tmp_path), tmp_path)
    p = _run(tmp_path / "train_hf.py", tmp_path, env)
    assert "terminate called" not in p.stderr, p.stderr[-2000:]
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((tmp_path / "termination.json").read_text())["outcome"] == "completed"
    assert (tmp_path / "hf-out" / "best").is_dir()


@pytest.mark.parametrize(
    ("body", "code", "said"),
    [
        ("pass", 0, None),
        ("sys.exit(75)", 75, None),
        ("raise SystemExit(None)", 0, None),
        ("sys.exit('no checkpoint fits')", 1, "no checkpoint fits"),
        ("raise ValueError('bad batch')", 1, "training failed"),
        ("raise KeyboardInterrupt", 130, None),
    ],
)
def test_leaving_exits_with_the_code_the_block_ends_with(
    tmp_path: Path, body: str, code: int, said: str | None
) -> None:
    script = tmp_path / "s.py"
    script.write_text(
        textwrap.dedent(f"""
            import atexit, logging, sys
            from lazarus_trainer import leaving
            logging.basicConfig()
            atexit.register(print, "teardown ran")
            with leaving():
                print("block ran", flush=True)
                {body}
            print("after the block")
        """)
    )
    p = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert p.returncode == code, p.stderr
    assert p.stdout.splitlines() == ["block ran"], p.stdout  # teardown and what follows: skipped
    if said is not None:
        assert said in p.stderr, p.stderr
