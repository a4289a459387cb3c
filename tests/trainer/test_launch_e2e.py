"""`lazarus-launch` turns torchrun's exit 1 into the contract's codes (75 on preemption)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .harness import command, losses, termination, trainer_env, wait_for

pytestmark = pytest.mark.e2e

LAUNCH = [sys.executable, "-m", "lazarus_trainer.launch"]


def test_launcher_exits_75_when_a_torchrun_worker_is_preempted(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    env = trainer_env(
        s3,
        f"s3://{bucket}/job",
        tmp_path,
        LAZARUS_ATTEMPT="1",
        LAZARUS_TEST_SIGTERM_AT_STEP="4",
        LAZARUS_TEST_SIGTERM_RANK="1",
    )
    cmd = [*LAUNCH, *command(["--steps", "12"], nproc=2)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert "exitcode  : 75" in p.stderr, p.stderr[-3000:]  # what torchrun saw from the worker
    assert p.returncode == 75, p.stderr[-3000:]
    assert termination(tmp_path)["outcome"] == "preempted"


def test_launcher_forwards_sigterm_and_exits_75(s3: Any, bucket: str, tmp_path: Path) -> None:
    log = tmp_path / "loss.jsonl"
    env = trainer_env(s3, f"s3://{bucket}/job", tmp_path, LAZARUS_ATTEMPT="1")
    args = ["--steps", "2000", "--step-sleep", "0.05", "--loss-log", str(log)]
    proc = subprocess.Popen(
        [*LAUNCH, *command(args, nproc=2)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: log.exists() and len(losses(log)) >= 3, 180, "3 steps")
        proc.send_signal(signal.SIGTERM)  # as kubelet does: to the container's PID 1 only
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 75, err[-3000:]
    term = termination(tmp_path)
    assert term["outcome"] == "preempted" and term["savedOnSignal"], term


@pytest.mark.unit
def test_exit_code_mapping(tmp_path: Path) -> None:
    from lazarus_trainer.launch import exit_code

    msg = tmp_path / "termination.json"
    assert exit_code(1, msg) == 1  # no message: the child's code
    for outcome, code in (("preempted", 75), ("permanent-error", 78), ("completed", 0)):
        msg.write_text(f'{{"outcome": "{outcome}"}}')
        assert exit_code(1, msg) == code
    msg.write_text('{"outcome": "error"}')
    assert exit_code(3, msg) == 3
    assert exit_code(-9, msg) == 137
    msg.write_text("")
    assert exit_code(1, msg) == 1


@pytest.mark.unit
def test_a_replacement_without_a_peer_keeps_its_76_through_torchrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchrun turns a worker's 76 into 1; the worker's termination message keeps it,
    so the operator restarts the whole job rather than replace the group again."""
    from lazarus_trainer.ft import NoLivePeer
    from lazarus_trainer.launch import exit_code

    msg = tmp_path / "termination.json"
    monkeypatch.setenv("LAZARUS_TERMINATION_LOG", str(msg))
    with pytest.raises(SystemExit) as raised:
        raise NoLivePeer("replica group 1: no live peer", 7)
    assert raised.value.code == 76
    assert exit_code(1, msg) == 76
    msg.write_text('{"outcome": "error", "exitCode": 1}')
    assert exit_code(1, msg) == 1  # any other error keeps the child's code


def test_the_launcher_imports_no_torch() -> None:
    """It only supervises torchrun: torch's import cost it ~5 s and ~700 MB in every pod."""
    heavy = "('torch', 'numpy', 'lazarus_store')"
    probe = (
        "import sys, lazarus_trainer.launch\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    )
    p = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert p.returncode == 0 and p.stdout.strip() == "[]", (p.stdout[-500:], p.stderr[-2000:])
