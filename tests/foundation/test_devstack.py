"""hack/cluster: clean stop, and clear errors on bad input without half-started processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lazarus_devstack import procs
from lazarus_devstack.errors import DevstackError
from lazarus_devstack.stack import BUILD_SCRIPT, REPO, Ports, Stack

pytestmark = pytest.mark.cluster


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args and procs.alive(int(cmdline.parent.name)):
            found.append(args)
    return found


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_down_leaves_no_process_behind(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "run")
    state = stack.up(Ports(apiserver=0, etcd_client=0, etcd_peer=0, s3=0), controllers=True)
    assert set(state.running()) == {"etcd", "kube-apiserver", "kube-controller-manager", "s3"}
    assert _processes_mentioning(str(tmp_path / "run"))  # they really run from there
    stopped = stack.down()
    assert set(stopped) == set(state.pids)
    assert not any(procs.alive(pid) for pid in state.pids.values())
    assert _processes_mentioning(str(tmp_path / "run")) == []


def test_a_tied_stack_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    script = (
        "import sys, os; from pathlib import Path; "
        "from lazarus_devstack.stack import Stack, Ports; "
        f"s = Stack(Path({str(run_dir)!r}), tied=True); st = s.up(Ports(s3=0), kube=False); "
        "print(st.pids['s3'], flush=True); os._exit(0)"  # dies without `down`
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO / "hack")},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 10
    while procs.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not procs.alive(pid)


def test_busy_port_is_refused_before_anything_starts(tmp_path: Path, busy_port: int) -> None:
    stack = Stack(tmp_path / "run")
    with pytest.raises(DevstackError, match=rf"port {busy_port} .* is busy"):
        stack.up(Ports(apiserver=busy_port, etcd_client=0, etcd_peer=0, s3=0))
    assert stack.state() is None
    assert _processes_mentioning(str(tmp_path / "run")) == []


def test_stale_run_directory_is_reported(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "run")
    state = stack.up(Ports(s3=0), kube=False)
    for pid in state.pids.values():  # the stack dies without `down`
        procs.stop(pid)
    with pytest.raises(DevstackError, match=r"stale run directory.*hack/cluster down"):
        stack.up(Ports(s3=0), kube=False)
    assert stack.down() == ["s3"]
    stack.up(Ports(s3=0), kube=False)  # and then it starts again
    stack.down()


def test_a_second_up_on_a_live_stack_is_refused(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "run")
    stack.up(Ports(s3=0), kube=False)
    try:
        with pytest.raises(DevstackError, match="already running"):
            stack.up(Ports(s3=0), kube=False)
    finally:
        stack.down()


def test_failed_start_stops_what_it_started(tmp_path: Path, busy_port: int) -> None:
    # etcd starts, then the apiserver dies on a port taken after the pre-check:
    # simulate by pointing the apiserver at a binary that exits at once.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = Path(
        subprocess.run(
            ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    (bin_dir / "etcd").symlink_to(real / "etcd")
    (bin_dir / "kube-apiserver").write_text("#!/bin/sh\necho 'v1.0.0'\nexit 3\n")
    (bin_dir / "kube-apiserver").chmod(0o755)
    os.environ["LAZARUS_K8S_BIN"] = str(bin_dir)
    try:
        stack = Stack(tmp_path / "run")
        with pytest.raises(DevstackError, match="kube-apiserver exited during start-up"):
            stack.up(Ports(apiserver=0, etcd_client=0, etcd_peer=0, s3=0), s3=False)
    finally:
        del os.environ["LAZARUS_K8S_BIN"]
    assert _processes_mentioning(str(tmp_path / "run")) == []
    assert stack.state() is None


def test_missing_go_toolchain_says_what_to_do(tmp_path: Path) -> None:
    path_without_go = os.pathsep.join(
        d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "go").exists()
    )
    assert shutil.which("go", path=path_without_go) is None
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        env={**os.environ, "PATH": path_without_go, "LAZARUS_CACHE": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "no Go toolchain on PATH" in result.stderr and "install Go" in result.stderr


def test_cli_reports_errors_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(REPO / "hack" / "cluster"), "--run-dir", str(tmp_path / "none"), "env"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("hack/cluster env: no stack in")
    assert "Traceback" not in result.stderr
