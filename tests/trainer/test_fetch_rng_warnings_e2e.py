"""Accelerate's prepared loader records the RNG at each fetch through an instance attribute of
the dataset; a dataset that takes none (`__slots__`) cannot be hooked, so its fetch-time
randomness is not resumed exactly: said once, at the first step, with what to do (was
silent). Real Accelerate in a subprocess, with a collate_fn masking from the global RNG."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .harness import trainer_env

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).with_name("accel_slots_script.py")
SAID = "takes no instance attribute (__slots__"


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "2"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("slots", [True, False], ids=["slots-dataset", "plain-dataset"])
def test_a_dataset_the_fetch_hook_cannot_take_is_warned_once(
    slots: bool, s3: Any, bucket: str, tmp_path: Path
) -> None:
    extra = {} if slots else {"ACCEL_TEST_PLAIN": "1"}
    p = _run(trainer_env(s3, f"s3://{bucket}/job", tmp_path, **extra))
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count(SAID) == (1 if slots else 0), p.stderr[-3000:]
    if slots:
        assert "the DataLoader's dataset (SlotsDataset)" in p.stderr
        assert "add '__dict__' to its __slots__" in p.stderr
