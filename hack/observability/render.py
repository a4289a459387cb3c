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
        return f"{value:.1f} s"
    return (
        f"{value:.0f}" if abs(value) >= 10 or abs(value - round(value)) < 0.05 else f"{value:.1f}"
    )


def _stat(
    ax: Axes, prom: Prometheus, p: dict[str, Any], end: float, span: float, *, ns: str
) -> None:
    items: list[tuple[str, float]] = []
    for t in p["targets"]:
        for r in prom.query(expand(t["expr"], span, span, ns), at=end):
            items.append((_legend(t.get("legendFormat", ""), r["metric"]), float(r["value"][1])))
    items.sort()
    unit = p["fieldConfig"]["defaults"].get("unit", "none")
    ax.set_axis_off()
    n = max(len(items), 1)
    for i, (label, value) in enumerate(items):
        x = (i + 0.5) / n
        color = COLORS[i % len(COLORS)]
        size = 22 if n <= 2 else 15 if n <= 4 else 11
        ax.text(
            x,
            0.42,
            _fmt(value, unit),
            ha="center",
            va="center",
            fontsize=size,
            color=color,
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
    return out


def _timeseries(
    ax: Axes, prom: Prometheus, p: dict[str, Any], start: float, end: float, *, ns: str
) -> None:
    lines = _series(prom, p, start, end, ns)
    stacked = p["fieldConfig"]["defaults"].get("custom", {}).get("stacking", {}).get("mode")
    unit = p["fieldConfig"]["defaults"].get("unit", "none")
    if stacked == "normal" and lines:
        grid = sorted({x for _, xs, _ in lines for x in xs})
        ys = [[dict(zip(xs, y, strict=True)).get(x, 0.0) for x in grid] for _, xs, y in lines]
        ax.stackplot(grid, ys, labels=[n for n, _, _ in lines], colors=COLORS, alpha=0.8)
    else:
        for i, (label, xs, y) in enumerate(lines):
            ax.plot(xs, y, label=label, color=COLORS[i % len(COLORS)], linewidth=1.6)
    ax.set_facecolor(PANEL)
    ax.tick_params(colors=TEXT, labelsize=7)
    ax.grid(color=GRID, linewidth=0.6)
    for side in ax.spines.values():
        side.set_color(GRID)
    ax.set_xlim(0, end - start)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}s"))
    if unit == "percentunit":
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    elif unit == "s":
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}s"))
    if lines:
        ax.legend(
            fontsize=7, loc="upper left", facecolor=PANEL, edgecolor=GRID, labelcolor=TEXT, ncol=2
        )


def render(
    prom: Prometheus,
    panels: list[dict[str, Any]],
    start: float,
    end: float,
    out: Path,
    *,
    namespace: str = ".*",
) -> None:
    """Draw every panel over [start, end] (unix seconds) into `out` (PNG)."""
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
        "lazarus.json) against a real Prometheus after a test run with three restarts;"
        " not Grafana. x axis: seconds since the job was created.",
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
        else:
            frame.set_axis_off()
            inner = fig.add_axes(
                (left + 0.03, top - height - pad_y / total + 0.025, width - 0.04, height - 0.04)
            )
            _timeseries(inner, prom, p, start, end, ns=namespace)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, facecolor=BG)
    plt.close(fig)
