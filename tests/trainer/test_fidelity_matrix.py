"""docs/trainer.md's fidelity matrix holds only where a test holds it: every cell says
exact, refused or warned with the tests behind it (or n/a), and every test it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
HEADING = "## Fidelity: exact or loud"
VERDICTS = re.compile(r"\b(exact|refused|warned|reshards|engine state)\b")


def _section(doc: str) -> str:
    start = doc.index(HEADING)
    end = doc.find("\n## ", start + len(HEADING))
    return doc[start : end if end >= 0 else len(doc)]


def matrix_problems(doc: str, tests_dir: Path) -> list[str]:
    """What is wrong with the matrix in `doc`, one line each (none: it holds)."""
    section = _section(doc)
    legend: dict[int, str] = {}
    for n, path, name in re.findall(r"^(\d+)\. `([\w/]+\.py)::(\w+)`", section, re.M):
        legend[int(n)] = f"{path}::{name}"
    problems = []
    for ref in legend.values():
        path, name = ref.split("::")
        file = tests_dir / path
        if not file.is_file() or not re.search(rf"^def {name}\(", file.read_text(), re.M):
            problems.append(f"{ref}: no such test")
    used: set[int] = set()
    rows = [r for r in section.splitlines() if r.startswith("| ") and not r.startswith("| ---")]
    for row in rows[1:]:  # the first is the header
        state, *cells = [c.strip() for c in row.strip("|").split(" | ")]
        for cell in cells:
            refs = {int(n) for n in re.findall(r"\[(\d+)\]", cell)}
            used |= refs
            if cell.startswith("n/a") or cell == "as HF":
                continue
            if not VERDICTS.search(cell):
                problems.append(f"{state!r}: cell {cell!r} says neither exact, refused nor warned")
            if not refs:
                problems.append(f"{state!r}: cell {cell!r} names no test")
            problems += [f"{state!r}: [{n}] is not in the list" for n in refs - legend.keys()]
    problems += [f"[{n}] {legend[n]} backs no cell" for n in sorted(legend.keys() - used)]
    return problems


def test_every_cell_is_held_by_a_test_that_exists() -> None:
    doc = (REPO / "docs" / "trainer.md").read_text()
    assert matrix_problems(doc, REPO / "tests" / "trainer") == []


def test_a_cell_without_a_test_and_a_test_that_is_gone_are_caught() -> None:
    """The check can fail: one cell loses its test, one listed test is renamed."""
    doc = (REPO / "docs" / "trainer.md").read_text()
    section = _section(doc)
    first_row = next(r for r in section.splitlines() if r.startswith("| model"))
    broken = doc.replace(first_row, first_row.replace("exact [1] [2]", "exact", 1))
    broken = broken.replace("::test_loop_snippet_sigterm", "::test_renamed_snippet_sigterm")
    problems = matrix_problems(broken, REPO / "tests" / "trainer")
    assert any("names no test" in p for p in problems), problems
    assert any("::test_renamed_snippet_sigterm" in p and "no such test" in p for p in problems), (
        problems
    )
