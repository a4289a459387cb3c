"""The progress signal is fresh whenever the trainer is alive (issue 23 item 6): after a
burst of fast steps the file holds the last step, also while the trainer blocks (user
code, a stuck save, a stuck close) and after it dies of an exception. Real subprocesses,
the real file; the steps take far less than a second, the signal's old write interval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .harness import NoS3, trainer_env, wait_for

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).with_name("progress_script.py")
STEPS = 40


def signal_of(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def start(tmp: Path, mode: str) -> subprocess.Popen[str]:
    env = trainer_env(NoS3(), str(tmp / "ckpt"), tmp, LAZARUS_ATTEMPT="1")
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(STEPS), mode],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("mode", ["sleep", "save", "close"])
def test_the_signal_reaches_the_last_step_while_the_trainer_blocks(
    tmp_path: Path, mode: str
) -> None:
    proc = start(tmp_path, mode)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"blocked at {STEPS}", (line, proc.stderr and proc.stderr.read())
        path = tmp_path / "termination.json"
        # No step() comes any more: only a writer of its own can bring the file there.
        wait_for(lambda: signal_of(path).get("step") == STEPS, 30, f"the signal at {STEPS}")
        sig = signal_of(path)
        assert sig["outcome"] == "running" and sig["at"], sig
        assert proc.poll() is None  # still blocked: the signal did not wait for an end
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("mode", ["raise", "leave"])
def test_a_trainer_that_dies_leaves_its_last_step(tmp_path: Path, mode: str) -> None:
    proc = start(tmp_path, mode)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-2000:]
    sig = signal_of(tmp_path / "termination.json")
    assert sig.get("outcome") == "running" and sig.get("step") == STEPS, (sig, err[-2000:])
