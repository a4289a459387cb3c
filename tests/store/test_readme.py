"""store/README.md's example runs as written (on a filesystem root), so it stays true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

README = Path(__file__).resolve().parents[2] / "store" / "README.md"


def example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1, "store/README.md should hold one python example"
    return str(blocks[0])


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAZARUS_CHECKPOINT_URI", str(tmp_path / "root"))
    exec(compile(example(), str(README), "exec"), {"__file__": str(README)})
    assert (tmp_path / "root").is_dir()
