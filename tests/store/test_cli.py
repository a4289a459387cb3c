"""lazarus-ckpt: listing, validation, show, latest, quarantine, prune; one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lazarus_contract import checkpoint_name
from lazarus_store import CheckpointStore, open_store
from lazarus_store.cli import main

pytestmark = pytest.mark.unit


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "ckpt"
    store = open_store(str(root))
    for step, loss in ((1, 0.3), (2, 0.9), (3, 0.5)):
        w = store.begin(step=step, attempt=1)
        w.put_bytes("model.bin", b"m" * 2048)
        w.commit(reason="periodic" if step < 3 else "preemption", metrics={"loss": loss})
    (root / checkpoint_name(2, 1) / "model.bin").write_bytes(b"short")
    return root


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-u", str(root), "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == [
        "NAME",
        "STEP",
        "REASON",
        "SIZE",
        "SHARED",
        "AGE",
        "STATE",
    ]
    assert lines[1].startswith(checkpoint_name(3, 1)) and "preemption" in lines[1]
    assert lines[1].endswith("valid") and "2.0 KiB" in lines[1]
    assert "INVALID: model.bin is 5 bytes, manifest says 2048" in lines[2]
    code, out, _ = run(capsys, "-u", str(root), "list", "--json")
    assert json.loads(out)[0]["state"] == "valid"


def test_validate_show_latest(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "-u", str(root), "validate", checkpoint_name(3, 1), "--full")[0] == 0
    code, out, _ = run(capsys, "-u", str(root), "validate", checkpoint_name(2, 1))
    assert code == 1 and "INVALID" in out
    code, out, _ = run(capsys, "-u", str(root), "show", checkpoint_name(1, 1))
    assert code == 0 and json.loads(out)["metrics"] == {"loss": 0.3}
    code, out, _ = run(
        capsys, "-u", str(root), "quarantine", checkpoint_name(3, 1), "--reason", "bad"
    )
    assert code == 0
    code, out, _ = run(capsys, "-u", str(root), "latest")
    assert code == 0 and out.splitlines()[-1] == checkpoint_name(1, 1)
    assert "skipped step-000000000003-a0001: quarantined: bad" in out


def test_prune_is_a_dry_run_by_default(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store: CheckpointStore = open_store(str(root))
    w = store.begin(step=4, attempt=1)
    w.put_bytes("model.bin", b"x")
    w.commit(metrics={"loss": 0.8})
    args = ["-u", str(root), "prune", "--keep-latest", "1", "--keep-best", "1", "--metric", "loss"]
    code, out, _ = run(capsys, *args)
    assert code == 0 and f"would delete {checkpoint_name(3, 1)}" in out and "dry run" in out
    assert len(store.list_checkpoints()) == 4
    code, out, _ = run(capsys, *args, "--apply")
    assert code == 0 and f"deleted {checkpoint_name(3, 1)}" in out
    assert [c.name for c in store.list_checkpoints()] == [
        checkpoint_name(4, 1),
        checkpoint_name(2, 1),  # invalid: left for inspection
        checkpoint_name(1, 1),  # best loss
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list"], "no checkpoint root"),
        (["-u", "gs://x/y", "list"], "unsupported scheme 'gs'"),
        (["-u", "{root}", "show", "step-000000000099-a0001"], "no manifest (not committed)"),
        (["-u", "{root}", "validate", "nope"], "not a checkpoint name"),
        (["-u", "{root}", "prune", "--keep-latest", "0"], "keep_latest must be >= 1"),
        (["-u", "/nonexistent/mount/ckpt", "list"], "is the volume mounted"),
        (
            ["--endpoint", "http://127.0.0.1:9", "-u", "s3://bkt/p", "list"],
            "cannot reach S3 endpoint http://127.0.0.1:9",
        ),
    ],
)
def test_errors_are_one_line_without_traceback(root: Path, args: list[str], message: str) -> None:
    args = [a.replace("{root}", str(root)) for a in args]
    env = {k: v for k, v in os.environ.items() if k != "LAZARUS_CHECKPOINT_URI"}
    env.update(AWS_ACCESS_KEY_ID="a", AWS_SECRET_ACCESS_KEY="b", AWS_MAX_ATTEMPTS="1")
    r = subprocess.run(
        [sys.executable, "-m", "lazarus_store.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert r.returncode in (1, 2)
    assert "Traceback" not in r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("lazarus-ckpt: error: ") and message in line, line


def test_prune_on_a_root_shared_by_two_jobs_names_them_and_prunes_only_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "shared"
    store = open_store(str(root))
    for uid, ns, steps in (("uid-a", "team-a", (1, 2, 3)), ("uid-b", "team-b", (10, 20))):
        for step in steps:
            w = store.begin(step=step, attempt=1)
            w.put_bytes("model.bin", b"m")
            w.commit(reason="periodic", job={"namespace": ns, "name": "train", "uid": uid})
    code, _, err = run(capsys, "-u", str(root), "prune", "--keep-latest", "1", "--apply")
    assert code == 1 and "2 jobs" in err and "team-b/train (uid uid-b)" in err
    assert len(store.list_checkpoints()) == 5, "refused: nothing may be deleted"

    code, out, _ = run(
        capsys, "-u", str(root), "prune", "--keep-latest", "1", "--job", "team-a/train", "--apply"
    )
    assert code == 0, out
    left = sorted(c.name for c in store.list_checkpoints())
    assert left == [checkpoint_name(s, 1) for s in (3, 10, 20)]
