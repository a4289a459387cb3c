"""The committed dashboard is what the generator builds, and it is well formed."""

from __future__ import annotations

import json
import re

import pytest
from observability import dashboard

pytestmark = pytest.mark.unit


def test_committed_json_matches_the_generator() -> None:
    committed = dashboard.OUT.read_text()
    assert committed == dashboard.render_json(), (
        f"{dashboard.OUT} drifted from hack/observability/dashboard.py: "
        "run `python hack/observability/dashboard.py` and commit the result"
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
    titles = {p.title for p in dashboard.PANELS}
    for want in (
        "Restarts by cause",
        "Time to recover",
        "Checkpoint age",
        "Lost work by cause",
        "Goodput",
        "Jobs by phase",
        "Operator health",
    ):
        assert want in titles
