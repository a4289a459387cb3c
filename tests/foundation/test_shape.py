"""The shape the code keeps (issue 24's measure): product modules (and benchmarks) of at
most 350 lines, functions of at most 60, and nothing outside tests/ importing from
`tests`. Pure and fast: it reads the source with `ast`, imports nothing."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("contract", "store", "operator", "trainer_image")
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 60
# Never scanned for imports: tests themselves, and trees that are not ours.
NOT_OURS = {"tests", ".git", ".run", ".venv", "node_modules", "bench-results", "k8s"}


def product_modules(repo: Path = REPO, tops: tuple[str, ...] = PRODUCT) -> list[Path]:
    return sorted(p for top in tops for p in (repo / top).rglob("*.py"))


def long_module(path: Path) -> str | None:
    n = len(path.read_text().splitlines())
    return f"{path}: {n} lines (max {MAX_MODULE_LINES})" if n > MAX_MODULE_LINES else None


def long_functions(path: Path) -> Iterator[str]:
    """Each function (nested ones too) over the limit, counted from its `def` (or first
    decorator) to its last line."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            n = (node.end_lineno or node.lineno) - first + 1
            if n > MAX_FUNCTION_LINES:
                yield f"{path}:{node.lineno} {node.name}: {n} lines (max {MAX_FUNCTION_LINES})"


def imports_tests(path: Path) -> Iterator[str]:
    """Each `import tests...` / `from tests... import` (absolute) in `path`."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            if name == "tests" or name.startswith("tests."):
                yield f"{path}:{node.lineno} imports {name}"


def outside_tests(repo: Path = REPO) -> list[Path]:
    return sorted(
        p for p in repo.rglob("*.py") if not NOT_OURS.intersection(p.relative_to(repo).parts[:-1])
    )


def test_product_modules_are_small() -> None:
    bad = [m for p in product_modules() if (m := long_module(p))]
    assert not bad, "split these modules by what they hold:\n" + "\n".join(bad)


def test_product_functions_are_short() -> None:
    bad = [m for p in product_modules() for m in long_functions(p)]
    assert not bad, "split these functions:\n" + "\n".join(bad)


def test_benchmarks_keep_the_same_shape() -> None:
    """Benchmarks are read as often as product code: the same limits."""
    modules = product_modules(tops=("bench",))
    bad = [m for p in modules if (m := long_module(p))]
    bad += [m for p in modules for m in long_functions(p)]
    assert not bad, "split these:\n" + "\n".join(bad)


def test_nothing_outside_tests_imports_tests() -> None:
    bad = [m for p in outside_tests() for m in imports_tests(p)]
    assert not bad, "share it through hack/lazarus_devstack instead:\n" + "\n".join(bad)


def test_each_measure_catches_an_offender(tmp_path: Path) -> None:
    """The measures can fail: a long module, a long (nested) function, an import of tests."""
    (tmp_path / "store" / "pkg").mkdir(parents=True)
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    long = tmp_path / "store" / "pkg" / "long.py"
    long.write_text(f"def outer() -> None:\n    def inner() -> None:\n{body}\n" + "\n" * 300)
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "b.py").write_text("import os\nfrom tests.operator import harness\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("from tests.conftest import S3Server\n")
    assert product_modules(tmp_path) == [long]
    assert long_module(long) is not None
    assert [m.split()[1] for m in long_functions(long)] == ["outer:", "inner:"]
    found = [m for p in outside_tests(tmp_path) for m in imports_tests(p)]
    assert found == [f"{tmp_path / 'bench' / 'b.py'}:2 imports tests.operator"]
