"""The alert rules pass promtool's checks; every alert has a unit test that fires it and
one where it must stay silent, a `for:`, and a runbook section its runbook_url names."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.tools import CHART, bin_dir
from tests.helm.tools import run as tool

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts/lazarus/files/alerts.yaml"
TESTS = Path(__file__).parent / "rules/alerts_test.yaml"
RUNBOOKS = ROOT / "docs/runbooks.md"


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


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def cases(*, firing: bool) -> set[str]:
    return {
        a["alertname"]
        for t in yaml.safe_load(TESTS.read_text())["tests"]
        for a in t.get("alert_rule_test", [])
        if bool(a.get("exp_alerts")) == firing
    }


def test_every_alert_has_a_case_that_fires_it_and_one_that_must_not() -> None:
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert alerts == cases(firing=True)
    assert alerts == cases(firing=False)
    for want in ("RestartStorm", "CheckpointTooOld", "JobFailed", "CrashLoop", "OperatorDown"):
        assert f"Lazarus{want}" in alerts
    assert "LazarusGoodputLow" in alerts
    for want in ("JobStuckPending", "JobStuckRestarting", "JobStuckQueued"):
        assert f"Lazarus{want}" in alerts


def test_every_rule_waits_with_a_for() -> None:
    """A one-evaluation blip (a scrape gap, a status flip) pages nobody."""
    for r in rules():
        assert re.fullmatch(r"([0-9]+(ms|s|m|h|d))+", str(r.get("for", ""))), r["alert"]


def anchor(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_links_its_runbook_section() -> None:
    sections = re.split(r"^## ", RUNBOOKS.read_text(), flags=re.M)[1:]
    runbooks = {anchor(s.splitlines()[0]): s for s in sections}
    for r in rules():
        url = r["annotations"]["runbook_url"]
        assert url == f"docs/runbooks.md#{r['alert'].lower()}", r["alert"]
        body = runbooks.get(url.split("#")[1])
        assert body is not None, f"{r['alert']}: no section in {RUNBOOKS.name}"
        for part in ("**Means.**", "**Check.**", "**Do.**"):
            assert part in body, (r["alert"], part)


def test_the_chart_renders_rules_promtool_accepts(tmp_path: Path) -> None:
    """The PrometheusRule's groups, with the values that change them, are still a
    valid rule file (the template edits parsed YAML, not text)."""
    rendered = tool(
        [
            str(bin_dir() / "helm"),
            "template",
            "lz",
            str(CHART),
            "--show-only",
            "templates/prometheusrule.yaml",
            "--api-versions",
            "monitoring.coreos.com/v1/PrometheusRule",
            "--set",
            "prometheusRule.enabled=true,prometheusRule.pendingFor=2h,prometheusRule.queuedFor=4h,"
            "prometheusRule.runbookBaseURL=https://git.example/lazarus/blob/v1",
        ]
    )
    groups = yaml.safe_load(rendered)["spec"]["groups"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    assert "SUCCESS" in run("check", "rules", "rules.yaml", cwd=tmp_path)
    got = {r["alert"]: r for g in groups for r in g["rules"]}
    assert got["LazarusJobStuckPending"]["for"] == "2h"
    assert got["LazarusJobStuckQueued"]["for"] == "4h"
    assert got["LazarusJobFailed"]["annotations"]["runbook_url"] == (
        "https://git.example/lazarus/blob/v1/docs/runbooks.md#lazarusjobfailed"
    )
    assert {r["alert"] for r in rules()} == set(got)
