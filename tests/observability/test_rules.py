"""The alert rules pass promtool's checks, and every alert has a unit test that fires it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts/lazarus/files/alerts.yaml"
TESTS = Path(__file__).parent / "rules/alerts_test.yaml"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: run .ci/setup (it installs Debian's prometheus package)"
    return path


def run(*args: str, cwd: Path) -> str:
    done = subprocess.run([promtool(), *args], check=False, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_check_rules() -> None:
    assert "SUCCESS" in run("check", "rules", str(RULES), cwd=ROOT)


def test_promtool_test_rules() -> None:
    assert "SUCCESS" in run("test", "rules", TESTS.name, cwd=TESTS.parent)


def test_every_alert_has_a_case_that_fires_it() -> None:
    alerts = {
        r["alert"]
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    fired = {
        a["alertname"]
        for t in yaml.safe_load(TESTS.read_text())["tests"]
        for a in t.get("alert_rule_test", [])
        if a.get("exp_alerts")
    }
    assert alerts == fired
    for want in ("RestartStorm", "CheckpointTooOld", "JobFailed", "CrashLoop", "OperatorDown"):
        assert f"Lazarus{want}" in alerts
    assert "LazarusGoodputLow" in alerts
