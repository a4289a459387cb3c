"""Render the committed Grafana dashboard without Grafana: each panel's own PromQL,
asked of a real Prometheus, drawn with matplotlib where the panel's gridPos puts it.
Used by tests/observability/test_metrics_cluster.py (hack/observability/picture
makes docs/dashboard.png with it)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, PercentFormatter

from .prom import Prometheus

DASHBOARD = Path(__file__).resolve().parents[2] / "charts/lazarus/dashboards/lazarus.json"
BG, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
COLORS = ("#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff")
NAMED = {  # Grafana's named colours (dark theme)
    "green": "#73bf69",
    "red": "#f2495c",
    "yellow": "#fade2a",
    "orange": "#ff9830",
    "blue": "#5794f2",
    "purple": "#b877d9",
    "text": "#ccccdc",
}
SCRAPE_S = 1.0


def load(path: Path = DASHBOARD) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = json.loads(path.read_text())["panels"]
    return panels


def _dur(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


def expand(expr: str, range_s: float, rate_s: float, namespace: str = ".*", job: str = ".*") -> str:
    """Grafana's variables as Grafana would fill them (All = the `.*` allValue)."""
    return (
        expr.replace("$__rate_interval", _dur(rate_s))
        .replace("$__range", _dur(range_s))
        .replace("$namespace", namespace)
        .replace("$job", job)
    )


def _legend(fmt: str, metric: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        return _duration(value)
    if unit == "cps":
        return f"{value:.2g}/s"
    return (
        f"{value:.0f}" if abs(value) >= 10 or abs(value - round(value)) < 0.05 else f"{value:.1f}"
    )


def _duration(v: float) -> str:
    if abs(v) >= 3600:
        return f"{v / 3600:.1f} h"
    if abs(v) >= 120:
        return f"{v / 60:.1f} min"
    return f"{v:.1f} s"


def _fields(p: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The panel's per-field overrides (byName): field name -> {property id: value}."""
    out: dict[str, dict[str, Any]] = {}
    for o in p["fieldConfig"].get("overrides", []):
        if o["matcher"]["id"] == "byName":
            props = out.setdefault(o["matcher"]["options"], {})
            props.update({prop["id"]: prop["value"] for prop in o["properties"]})
    return out


def _by_threshold(value: float, thresholds: dict[str, Any]) -> str:
    colour = "text"
    for step in thresholds["steps"]:
        if step["value"] is None or value >= step["value"]:
            colour = str(step["color"])
    return colour


def _colour(p: dict[str, Any], name: str, value: float, i: int) -> str:
    """Grafana's choice: the field's fixed colour, else thresholds, else the palette."""
    own = _fields(p).get(name, {})
    if "color" in own:
        fixed = str(own["color"]["fixedColor"])
        return NAMED.get(fixed, fixed)
    defaults = p["fieldConfig"]["defaults"]
    if defaults.get("color", {}).get("mode") == "thresholds" and not math.isnan(value):
        return NAMED[_by_threshold(value, defaults["thresholds"])]
    return COLORS[i % len(COLORS)]


def _unit(p: dict[str, Any], name: str) -> str:
    own = _fields(p).get(name, {})
    return str(own.get("unit", p["fieldConfig"]["defaults"].get("unit", "none")))


def _stat(
    ax: Axes, prom: Prometheus, p: dict[str, Any], end: float, span: float, *, ns: str
) -> None:
    items: list[tuple[str, float]] = []
    for t in p["targets"]:
        for r in prom.query(expand(t["expr"], span, span, ns), at=end):
            items.append((_legend(t.get("legendFormat", ""), r["metric"]), float(r["value"][1])))
    ax.set_axis_off()
    n = max(len(items), 1)
    tall = p["gridPos"]["w"] < 4
    for i, (label, value) in enumerate(items):
        x = (i + 0.5) / n
        size = 22 if n <= 2 else 15 if n <= 4 else 11
        ax.text(
            x,
            0.42,
            _fmt(value, _unit(p, label)),
            ha="center",
            va="center",
            fontsize=size + (8 if tall else 0),
            color=_colour(p, label, value, i),
            weight="bold",
            transform=ax.transAxes,
        )
        ax.text(
            x, 0.08, label, ha="center", va="bottom", fontsize=8, color=TEXT, transform=ax.transAxes
        )


def _series(
    prom: Prometheus, p: dict[str, Any], start: float, end: float, ns: str
) -> list[tuple[str, list[float], list[float]]]:
    step = max(1.0, (end - start) / 300)
    rate = max(step + SCRAPE_S, 4 * SCRAPE_S)
    out = []
    for t in p["targets"]:
        for r in prom.query_range(expand(t["expr"], end - start, rate, ns), start, end, step):
            xs = [float(v[0]) - start for v in r["values"]]
            ys = [float(v[1]) for v in r["values"]]
            out.append((_legend(t.get("legendFormat", ""), r["metric"]), xs, ys))
    return sorted(out, key=lambda line: line[0])


def _axes(ax: Axes, span: float, unit: str) -> None:
    ax.set_facecolor(PANEL)
    ax.tick_params(colors=TEXT, labelsize=7)
    ax.grid(color=GRID, linewidth=0.6)
    for side in ax.spines.values():
        side.set_color(GRID)
    ax.set_xlim(0, span)
    minutes = span > 900
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda v, _: f"{v / 60:.0f} min" if minutes else f"{v:.0f}s")
    )
    if unit == "percentunit":
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    elif unit == "s":  # one scale per axis, from its top
        top = ax.get_ylim()[1]
        scale, suffix = (3600, "h") if top >= 7200 else (60, "min") if top >= 180 else (1, "s")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / scale:.3g} {suffix}"))
    elif unit == "cps":
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}/s"))


def _timeseries(
    ax: Axes, prom: Prometheus, p: dict[str, Any], start: float, end: float, *, ns: str
) -> None:
    lines = _series(prom, p, start, end, ns)
    stacked = p["fieldConfig"]["defaults"].get("custom", {}).get("stacking", {}).get("mode")
    unit = p["fieldConfig"]["defaults"].get("unit", "none")
    colours = [_colour(p, name, math.nan, i) for i, (name, _, _) in enumerate(lines)]
    if stacked == "normal" and lines:
        grid = sorted({x for _, xs, _ in lines for x in xs})
        ys = [[dict(zip(xs, y, strict=True)).get(x, 0.0) for x in grid] for _, xs, y in lines]
        ax.stackplot(grid, ys, labels=[n for n, _, _ in lines], colors=colours, alpha=0.8)
    else:
        for (label, xs, y), colour in zip(lines, colours, strict=True):
            ax.plot(xs, y, label=label, color=colour, linewidth=1.6)
    _axes(ax, end - start, unit)
    if lines:
        ax.legend(
            fontsize=7, loc="upper left", facecolor=PANEL, edgecolor=GRID, labelcolor=TEXT, ncol=3
        )


def _table(
    ax: Axes, prom: Prometheus, p: dict[str, Any], end: float, span: float, *, ns: str
) -> None:
    """Grafana's merge + organize: one row per (namespace, trainingjob), a column per
    query renamed, sorted by the first column, coloured text where thresholds are."""
    [organize] = [t["options"] for t in p["transformations"] if t["id"] == "organize"]
    names = organize["renameByName"]
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for t in p["targets"]:
        column = names[f"Value #{t['refId']}"]
        for r in prom.query(expand(t["expr"], span, span, ns), at=end):
            key = (r["metric"].get("namespace", ""), r["metric"].get("trainingjob", ""))
            rows.setdefault(key, {})[column] = float(r["value"][1])
    columns = list(names.values())
    order = sorted(rows.items(), key=lambda kv: -kv[1].get(columns[0], -math.inf))
    ax.set_axis_off()
    header = ["namespace", "trainingjob", *columns]
    xs = [0.02, 0.3, 0.62, 0.82]
    height = 0.8 / max(len(order), 10)
    for x, h in zip(xs, header, strict=True):
        ax.text(x, 0.9, h, fontsize=8, color="#8e8e8e", weight="bold", transform=ax.transAxes)
    fields = _fields(p)
    for i, ((namespace, job), values) in enumerate(order):
        y = 0.9 - (i + 1) * height
        cells = [(namespace, "text"), (job, "text")]
        for c in columns:
            v = values.get(c, math.nan)
            own = fields.get(c, {})
            colour = _by_threshold(v, own["thresholds"]) if "thresholds" in own else "text"
            cells.append((_fmt(v, _unit(p, c)), colour if not math.isnan(v) else "text"))
        for x, (text, colour) in zip(xs, cells, strict=True):
            ax.text(x, y, text, fontsize=7.5, color=NAMED[colour], transform=ax.transAxes)


def render(
    prom: Prometheus,
    panels: list[dict[str, Any]],
    start: float,
    end: float,
    out: Path,
    *,
    namespace: str = ".*",
    caption: str = "after a test run with three restarts",
) -> None:
    """Draw every panel over [start, end] (unix seconds) into `out` (PNG); `caption` says
    what run the data comes from."""
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    header = 2.0
    fig = plt.figure(figsize=(16, (rows + header) * 0.36), facecolor=BG)
    total = rows + header
    fig.text(
        0.01,
        1 - 0.7 / total,
        "Lazarus: restarts and goodput",
        color=TEXT,
        fontsize=14,
        weight="bold",
        va="center",
    )
    fig.text(
        0.01,
        1 - 1.5 / total,
        "A rendering of the Grafana dashboard's queries (charts/lazarus/dashboards/"
        f"lazarus.json) against a real Prometheus {caption}; not Grafana."
        " x axis: time since the run began.",
        color="#8e8e8e",
        fontsize=8.5,
        va="center",
    )
    pad_x, pad_y = 0.004, 0.35
    for p in panels:
        g = p["gridPos"]
        left, width = g["x"] / 24 + pad_x, g["w"] / 24 - 2 * pad_x
        top = 1 - (header + g["y"]) / total
        height = (g["h"] - 2 * pad_y) / total
        frame = fig.add_axes((left, top - height - pad_y / total, width, height))
        frame.set_facecolor(PANEL)
        frame.set_xticks([])
        frame.set_yticks([])
        for side in frame.spines.values():
            side.set_color(GRID)
        frame.set_title(p["title"], loc="left", color=TEXT, fontsize=9.5, pad=3)
        if p["type"] == "stat":
            _stat(frame, prom, p, end, end - start, ns=namespace)
        elif p["type"] == "table":
            _table(frame, prom, p, end, end - start, ns=namespace)
        else:
            frame.set_axis_off()
            inner = fig.add_axes(
                (left + 0.03, top - height - pad_y / total + 0.025, width - 0.04, height - 0.04)
            )
            _timeseries(inner, prom, p, start, end, ns=namespace)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, facecolor=BG)
    plt.close(fig)
