"""docs/trainer.md's scripts, run literally as a new user would: SIGTERM exits 75 with a
committed checkpoint, the rerun with LAZARUS_RESUME_FROM=auto finishes (0) — for the plain
loop and the Accelerate one with the weights of a run that was never stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lazarus_store import open_store

from .harness import REPO, same_params

pytestmark = pytest.mark.e2e


def snippet(name: str) -> str:
    """The ```python block after `<!-- snippet: NAME -->` in docs/trainer.md."""
    doc = (REPO / "docs" / "trainer.md").read_text()
    m = re.search(rf"<!-- snippet: {re.escape(name)} -->\n```python\n(.*?)\n```", doc, re.S)
    assert m, f"no snippet {name} in docs/trainer.md"
    return m.group(1)


def _env(tmp: Path) -> dict[str, str]:
    """A new user's environment: the checkpoint root, the termination file, nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAZARUS_")}
    env.update(
        LAZARUS_CHECKPOINT_URI=str(tmp / "ckpt"),
        LAZARUS_TERMINATION_LOG=str(tmp / "termination.json"),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def _sigterm_run(script: Path, cwd: Path, env: dict[str, str], marker: str) -> int:
    """Run `script`, SIGTERM it once its output shows `marker` (training is under way)."""
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if marker in line:
                proc.send_signal(signal.SIGTERM)
                break
        out = "".join(seen) + proc.stdout.read()
        code = proc.wait(timeout=300)
        assert code == 75, out[-3000:]
        return code
    finally:
        proc.kill()


def _run(script: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _preempted_then_resumed(tmp: Path, name: str, marker: str, steps: int) -> int:
    """SIGTERM a run of the snippet, check the promised 75, resume it to the end (0)."""
    tmp.mkdir(exist_ok=True)
    script = tmp / name
    script.write_text(snippet(name))
    env = _env(tmp)
    assert _sigterm_run(script, tmp, env, marker) == 75
    term = json.loads((tmp / "termination.json").read_text())
    assert term["outcome"] == "preempted" and term["savedOnSignal"], term
    stopped: int = term["step"]
    assert 0 < stopped < steps, term

    env["LAZARUS_RESUME_FROM"] = "auto"
    p = _run(script, tmp, env)
    assert p.returncode == 0, p.stderr[-3000:]
    term = json.loads((tmp / "termination.json").read_text())
    assert term["outcome"] == "completed" and term["step"] == steps, term
    # The rerun's first checkpoint follows the preemption checkpoint: it resumed, not restarted.
    done = [c for c in open_store(str(tmp / "ckpt")).list_checkpoints() if c.committed]
    first = min((c for c in done if c.step > stopped), key=lambda c: c.step)
    assert first.manifest is not None and first.manifest.parent is not None, first
    assert first.manifest.parent.startswith(f"step-{stopped:012d}-"), first.manifest
    return stopped


def test_hf_snippet_sigterm_exits_75_and_resumes(tmp_path: Path) -> None:
    # SIGTERM once training logs its first loss.
    _preempted_then_resumed(tmp_path, "train_hf.py", "'loss'", 300)
    assert (tmp_path / "hf-out" / "best").is_dir()


@pytest.mark.parametrize("name", ["train_plain.py", "train_accel.py"])
def test_loop_snippet_sigterm_exits_75_and_resumes_exactly(tmp_path: Path, name: str) -> None:
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / name).write_text(snippet(name))
    p = _run(ref / name, ref, _env(ref))
    assert p.returncode == 0, p.stderr[-3000:]

    # SIGTERM once the first progress line is out, well before the last of 3000 steps.
    stopped = _preempted_then_resumed(tmp_path / "int", name, "step ", 3000)
    assert stopped < 3000
    assert same_params(ref / "final.pt", tmp_path / "int" / "final.pt")
