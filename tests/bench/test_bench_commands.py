"""`hack/bench`: the one command behind every table of docs/performance.md names
scripts and flags that exist, and each table's command appears in the doc."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "hack" / "bench"


def _tables() -> dict[str, str]:
    p = subprocess.run([str(BENCH), "--list"], capture_output=True, text=True, check=True)
    rows = (line.split(maxsplit=1) for line in p.stdout.splitlines() if line.strip())
    return {name: command for name, command in rows}


def test_every_table_command_names_a_script_and_flags_it_takes() -> None:
    p = subprocess.run([str(BENCH), "--check"], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr


def test_a_flag_a_script_does_not_take_is_caught(tmp_path: Path) -> None:
    """The check can fail: the same script with one table's flag renamed."""
    text = BENCH.read_text()
    broken = tmp_path / "hack" / "bench"
    broken.parent.mkdir()
    (tmp_path / "hack" / "checkout-env.sh").write_text((REPO / "hack/checkout-env.sh").read_text())
    broken.write_text(text.replace("--restarts 100", "--restartz 100"))
    broken.chmod(0o755)
    (tmp_path / "bench").symlink_to(REPO / "bench")
    p = subprocess.run([str(broken), "--check"], capture_output=True, text=True, check=False)
    assert p.returncode == 1 and "takes no --restartz" in p.stderr, p.stderr


def test_the_performance_doc_names_every_table() -> None:
    doc = (REPO / "docs" / "performance.md").read_text()
    tables = _tables()
    assert {"scale-300", "restart", "store", "datapath", "goodput-7"} <= set(tables)
    for name, command in tables.items():
        script = re.search(r"bench/\w+\.py", command)
        assert script and script.group(0) in doc, f"{name}: {command}"
