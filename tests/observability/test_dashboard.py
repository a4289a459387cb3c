"""The committed dashboard is what the generator builds, and it is well formed."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from observability import dashboard, panels

pytestmark = pytest.mark.unit


def test_committed_json_matches_the_generator() -> None:
    committed = dashboard.OUT.read_text()
    assert committed == dashboard.render_json(), (
        f"{dashboard.OUT} drifted from hack/observability/dashboard.py: "
        "run `cd hack && python -m observability.dashboard` and commit the result"
    )


def test_panels_tile_the_grid_and_query_through_the_variables() -> None:
    d = json.loads(dashboard.OUT.read_text())
    names = {v["name"] for v in d["templating"]["list"]}
    assert {"datasource", "namespace", "job"} <= names
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
        assert p["targets"], p["title"]
        for t in p["targets"]:
            used = set(re.findall(r"\$(\w+)", t["expr"])) - {"__range", "__rate_interval"}
            assert used <= names, (p["title"], used)
            if "lazarus_operator" not in t["expr"]:
                assert "$namespace" in t["expr"], (p["title"], t["expr"])


def test_the_issue_panels_are_there() -> None:
    titles = {p.title for p in panels.PANELS}
    for want in (
        "Restarts by cause",
        "Time to recover",
        "Oldest checkpoints (top 10)",
        "Most restarts (top 10)",
        "Lost steps by cause",
        "Lost running time by cause",
        "Goodput",
        "Jobs by phase",
        "Operator cycle time",
        "Operator errors and retries",
    ):
        assert want in titles


PANELS = json.loads(dashboard.OUT.read_text())["panels"]
COUNT = {"none", "short"}


def quantity(expr: str) -> str:
    """What a query measures, from its metrics and functions: the unit it needs."""
    if 'state="productive"' in expr and "/" in expr:
        return "percentunit"
    if expr.startswith("histogram_quantile("):
        return "s"
    if re.search(r"\brate\(", expr):
        return "cps"
    if all("_seconds" in m for m in re.findall(r"lazarus_\w+", expr)):
        return "s"
    return "none"


def field_unit(p: dict[str, Any], name: str) -> str:
    for o in p["fieldConfig"]["overrides"]:
        if o["matcher"] == {"id": "byName", "options": name}:
            for prop in o["properties"]:
                if prop["id"] == "unit":
                    return str(prop["value"])
    return str(p["fieldConfig"]["defaults"].get("unit", ""))


def same(a: str, b: str) -> bool:
    return a == b or {a, b} <= COUNT


def test_every_timeseries_has_one_unit_that_fits_each_query() -> None:
    """Steps and seconds never share an axis, nor rates a seconds axis."""
    for p in PANELS:
        if p["type"] != "timeseries":
            continue
        unit = p["fieldConfig"]["defaults"].get("unit")
        assert unit, p["title"]
        for o in p["fieldConfig"]["overrides"]:
            assert all(prop["id"] != "unit" for prop in o["properties"]), p["title"]
        for t in p["targets"]:
            assert same(quantity(t["expr"]), unit), (p["title"], unit, t["expr"])


def test_every_stat_field_shows_its_own_unit() -> None:
    for p in PANELS:
        if p["type"] != "stat":
            continue
        for t in p["targets"]:
            legend = t["legendFormat"]
            if "{{" in legend:  # one field per label value: the panel's unit
                legend = ""
            unit = field_unit(p, legend)
            assert same(quantity(t["expr"]), unit), (p["title"], legend, unit)


def colours(p: dict[str, Any]) -> dict[str, str]:
    out = {}
    for o in p["fieldConfig"]["overrides"]:
        for prop in o["properties"]:
            if prop["id"] == "color" and o["matcher"]["id"] == "byName":
                out[o["matcher"]["options"]] = prop["value"]["fixedColor"]
    return out


BAD = {"Failed", "failed", "lost_progress", "failed cycles"}
GOOD = {"Succeeded", "succeeded", "productive"}


def test_colours_mean_what_they_say() -> None:
    by_title = {p["title"]: p for p in PANELS}
    phases = colours(by_title["Jobs by phase"])
    assert set(phases) == {
        *("Queued", "Pending", "Running", "Restarting", "Suspended", "Succeeded", "Failed")
    }
    states = colours(next(p for t, p in by_title.items() if t.startswith("Job time by state")))
    assert set(states) == {"productive", "lost_progress", "pending", "restarting", "suspended"}
    lost = by_title["Lost work"]
    assert set(colours(lost).values()) == {"red"}
    assert len(colours(lost)) == len(lost["targets"])
    for p in PANELS:
        for name, colour in colours(p).items():
            if name in BAD:
                assert colour == "red", (p["title"], name)
            if name in GOOD:
                assert colour == "green", (p["title"], name)
    goodput = by_title["Goodput"]["fieldConfig"]["defaults"]
    assert goodput["color"]["mode"] == "thresholds"
    assert [s["color"] for s in goodput["thresholds"]["steps"]] == ["red", "green"]


def per_job(expr: str) -> bool:
    """A query with a series per job: its outermost grouping keeps `trainingjob`."""
    by = re.search(r"\bby \(([^)]*)\)", expr)
    aggregated = re.search(r"\b(sum|max|min|avg|count|topk|bottomk|histogram_quantile)\b", expr)
    return not aggregated or bool(by and "trainingjob" in by.group(1))


def test_per_job_queries_are_top_n_tables() -> None:
    """At 1,000 jobs no panel draws 1,000 lines: per-job data only as a top-N table."""
    tables = 0
    for p in PANELS:
        for t in p["targets"]:
            if p["type"] == "table":
                assert t["instant"] and t["format"] == "table", p["title"]
                n = re.search(r"\b(topk|bottomk)\((\d+),", t["expr"])
                assert n and int(n.group(2)) <= 20, (p["title"], t["expr"])
            else:
                assert not per_job(t["expr"]), (p["title"], t["expr"])
                assert "trainingjob" not in t["legendFormat"], p["title"]
        tables += p["type"] == "table"
    assert tables >= 1
    assert any(per_job(t["expr"]) for p in PANELS for t in p["targets"])


PHASES = "sum by (phase) (max by (namespace, trainingjob, phase) (lazarus_job_phase"


def test_jobs_by_phase_counts_a_job_once_as_the_docs_say() -> None:
    """max over the replicas that export a job, then sum over jobs (docs/observability.md)."""
    [phase] = [p for p in PANELS if p["title"] == "Jobs by phase"]
    [target] = phase["targets"]
    assert target["expr"].startswith(PHASES)
    docs = (dashboard.OUT.parents[3] / "docs/observability.md").read_text()
    assert PHASES in docs
