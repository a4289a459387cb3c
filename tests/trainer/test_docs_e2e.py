"""docs/trainer.md's HF `Trainer` script, run literally as a new user would: SIGTERM exits 75
with a committed checkpoint, the rerun with LAZARUS_RESUME_FROM=auto finishes (0)."""

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

from .harness import REPO

pytestmark = pytest.mark.e2e


def snippet(name: str) -> str:
    """The ```python block after `<!-- snippet: NAME -->` in docs/trainer.md."""
    doc = (REPO / "docs" / "trainer.md").read_text()
    m = re.search(rf"<!-- snippet: {re.escape(name)} -->\n```python\n(.*?)\n```", doc, re.S)
    assert m, f"no snippet {name} in docs/trainer.md"
    return m.group(1)


def test_hf_snippet_sigterm_exits_75_and_resumes(tmp_path: Path) -> None:
    script = tmp_path / "train_hf.py"
    script.write_text(snippet("train_hf.py"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAZARUS_")}
    env.update(
        LAZARUS_CHECKPOINT_URI=str(tmp_path / "ckpt"),
        LAZARUS_TERMINATION_LOG=str(tmp_path / "termination.json"),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # SIGTERM once training logs its first loss
            seen.append(line)
            if "'loss'" in line:
                proc.send_signal(signal.SIGTERM)
                break
        out = "".join(seen) + proc.stdout.read()
        assert proc.wait(timeout=300) == 75, out[-3000:]
    finally:
        proc.kill()
    term = json.loads((tmp_path / "termination.json").read_text())
    assert term["outcome"] == "preempted" and term["savedOnSignal"], term
    stopped = term["step"]
    assert 0 < stopped < 300, term

    env["LAZARUS_RESUME_FROM"] = "auto"
    p = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    term = json.loads((tmp_path / "termination.json").read_text())
    assert term["outcome"] == "completed" and term["step"] == 300, term
    # The rerun's first checkpoint follows the preemption checkpoint: it resumed, not restarted.
    done = [c for c in open_store(str(tmp_path / "ckpt")).list_checkpoints() if c.committed]
    first = min((c for c in done if c.step > stopped), key=lambda c: c.step)
    assert first.manifest is not None and first.manifest.parent is not None, first
    assert first.manifest.parent.startswith(f"step-{stopped:012d}-"), first.manifest
    assert (tmp_path / "hf-out" / "best").is_dir()
