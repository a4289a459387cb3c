"""`hack/bench`: the one command behind every table of docs/performance.md runs modules
(`python -m bench.<name>`) and flags that exist, and each table's command appears in the
doc; every benchmark command the docs show runs a module that exists, never a script."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "hack" / "bench"
MODULE = re.compile(r"-m (bench\.\w+)")
# `python bench/x.py` or `bench/x.py --flag`: the form before benchmarks ran as modules.
SCRIPT_RUN = re.compile(r"(?:python3?|hack/python)\s+bench/\w+\.py|bench/\w+\.py\s+--")


def _tables() -> dict[str, str]:
    p = subprocess.run([str(BENCH), "--list"], capture_output=True, text=True, check=True)
    rows = (line.split(maxsplit=1) for line in p.stdout.splitlines() if line.strip())
    return {name: command for name, command in rows}


def _docs() -> list[Path]:
    return [REPO / "README.md", *(REPO / "docs").glob("*.md"), *REPO.glob("*/README.md")]


def test_every_table_command_names_a_script_and_flags_it_takes() -> None:
    p = subprocess.run([str(BENCH), "--check"], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr


def _broken_bench(tmp_path: Path, old: str, new: str) -> subprocess.CompletedProcess[str]:
    """`hack/bench --check` on a copy with `old` replaced by `new` in its tables."""
    text = BENCH.read_text()
    assert old in text
    broken = tmp_path / "hack" / "bench"
    broken.parent.mkdir()
    (tmp_path / "hack" / "checkout-env.sh").write_text((REPO / "hack/checkout-env.sh").read_text())
    broken.write_text(text.replace(old, new))
    broken.chmod(0o755)
    (tmp_path / "bench").symlink_to(REPO / "bench")
    return subprocess.run([str(broken), "--check"], capture_output=True, text=True, check=False)


def test_a_flag_a_module_does_not_take_is_caught(tmp_path: Path) -> None:
    """The check can fail: the same script with one table's flag renamed."""
    p = _broken_bench(tmp_path, "--restarts 100", "--restartz 100")
    assert p.returncode == 1 and "takes no --restartz" in p.stderr, p.stderr


def test_a_script_path_instead_of_a_module_is_caught(tmp_path: Path) -> None:
    p = _broken_bench(
        tmp_path, "python -m bench.store_throughput", "python bench/store_throughput.py"
    )
    assert p.returncode == 1 and "not 'python -m bench.<name>'" in p.stderr, p.stderr


def test_the_performance_doc_names_every_table() -> None:
    doc = (REPO / "docs" / "performance.md").read_text()
    tables = _tables()
    named = {"scale-300", "restart", "store", "datapath", "goodput-7", "goodput-kueue"}
    assert named <= set(tables)
    for name, command in tables.items():
        module = MODULE.search(command)
        assert module and f"-m {module.group(1)}" in doc, f"{name}: {command}"


def test_docs_run_benchmarks_as_modules_that_exist() -> None:
    shown = 0
    for path in _docs():
        text = path.read_text()
        old = SCRIPT_RUN.findall(text)
        assert not old, f"{path}: run benchmarks as `hack/python -m bench.<name>`: {old}"
        for module in MODULE.findall(text):
            shown += 1
            assert (REPO / (module.replace(".", "/") + ".py")).is_file(), f"{path}: {module}"
    assert shown, "no benchmark command found in the docs"


def test_the_docs_check_catches_a_script_run() -> None:
    assert SCRIPT_RUN.search("~/.cache/lazarus/venv/bin/python bench/goodput.py --seed 7")
    assert SCRIPT_RUN.search("  bench/goodput.py --seed 7 --events 7")
    assert not SCRIPT_RUN.search("hack/python -m bench.goodput --seed 7; see bench/goodput.py")
