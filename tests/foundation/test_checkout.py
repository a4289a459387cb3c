"""Each checkout runs its own code, though every checkout shares one cached venv."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lazarus_devstack.stack import REPO

pytestmark = pytest.mark.cluster

PACKAGES = ("lazarus_contract", "lazarus_store", "lazarus_operator", "lazarus_trainer")


def test_a_second_checkout_imports_its_own_packages(tmp_path: Path) -> None:
    # A copy of the code folders stands in for another clone (CI's, a reviewer's).
    other = tmp_path / "other-checkout"
    for folder in ("contract", "store", "operator", "trainer_image", "hack"):
        shutil.copytree(REPO / folder, other / folder, ignore=shutil.ignore_patterns("__pycache__"))
    probe = "; ".join(
        [f"import {', '.join(PACKAGES)}"] + [f"print({name}.__file__)" for name in PACKAGES]
    )
    script = f'repo={other}; source "$repo/hack/checkout-env.sh"; exec {sys.executable} -c "$0"'
    out = subprocess.run(
        ["bash", "-c", script, probe], capture_output=True, text=True, check=True, timeout=60
    )
    files = [Path(line) for line in out.stdout.split()]
    assert len(files) == len(PACKAGES)
    for name, file in zip(PACKAGES, files, strict=True):
        assert file.is_relative_to(other), f"{name} came from {file}, not from the checkout"
