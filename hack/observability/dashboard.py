"""Generate the Grafana dashboard of Lazarus restarts (panels.py) with
grafana-foundation-sdk's typed builders: `cd hack && python -m observability.dashboard` rewrites
charts/lazarus/dashboards/lazarus.json (tests/observability/test_dashboard.py fails
when the committed file drifts from this generator)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from .panels import PANELS, PanelSpec

OUT = Path(__file__).resolve().parents[2] / "charts/lazarus/dashboards/lazarus.json"
UID = "lazarus-restarts"
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
Built = stat.Panel | timeseries.Panel | table.Panel


def _targets(p: PanelSpec) -> list[prometheus.Dataquery]:
    refs = "ABCDEFGH"
    out = []
    for i, t in enumerate(p.targets):
        q = prometheus.Dataquery().expr(t.expr).ref_id(refs[i])
        if p.kind == "table":  # one row per job, now
            q = q.instant().format(pm.PromQueryFormat.TABLE)
        else:
            q = q.legend_format(t.legend)
        out.append(q)
    return out


def _thresholds(p: PanelSpec) -> db.ThresholdsConfig | None:
    if p.red_below is not None:
        steps = [dm.Threshold(None, "red"), dm.Threshold(p.red_below, "green")]
    elif p.red_above is not None:
        steps = [dm.Threshold(None, "green"), dm.Threshold(p.red_above, "red")]
    else:
        return None
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps)


def _table(p: PanelSpec) -> table.Panel:
    built = table.Panel().with_transformation(dm.DataTransformerConfig("merge", options={}))
    rename = dict(p.columns)
    built = built.with_transformation(
        dm.DataTransformerConfig(
            "organize", options={"excludeByName": {"Time": True}, "renameByName": rename}
        )
    )
    first = next(iter(rename.values()))
    return built.sort_by([cb.TableSortByFieldState().display_name(first).desc(True)])


def _kind(p: PanelSpec) -> Built:
    if p.kind == "stat":
        return (
            stat.Panel()
            .graph_mode(common.BigValueGraphMode.NONE)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
        )
    if p.kind == "table":
        return _table(p)
    built = timeseries.Panel().fill_opacity(20 if p.stacked else 0)
    if p.stacked:
        built = built.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
    return built


def _overrides(
    p: PanelSpec, thresholds: db.ThresholdsConfig | None
) -> dict[str, list[dm.DynamicConfigValue]]:
    """Per-field settings, one override per field: colour, own unit, a table column's
    thresholds (coloured text)."""
    out: dict[str, list[dm.DynamicConfigValue]] = {}
    for name, color in p.colors.items():
        fixed = {"mode": "fixed", "fixedColor": color}
        out.setdefault(name, []).append(dm.DynamicConfigValue("color", fixed))
    for name, unit in p.units.items():
        out.setdefault(name, []).append(dm.DynamicConfigValue("unit", unit))
    if thresholds is not None and p.kind == "table":
        out.setdefault(p.threshold_on, []).extend(
            [
                dm.DynamicConfigValue("thresholds", thresholds.build()),
                dm.DynamicConfigValue("custom.cellOptions", {"type": "color-text"}),
            ]
        )
    return out


def _panel(i: int, p: PanelSpec) -> Built:
    x, y, w, h = p.grid
    built = _kind(p)
    built = built.id(i + 1).title(p.title).description(p.description).unit(p.unit)
    built = built.datasource(DS).grid_pos(dm.GridPos(h=h, w=w, x=x, y=y))
    for q in _targets(p):
        built = built.with_target(q)
    thresholds = _thresholds(p)
    if thresholds is not None and p.kind != "table":
        built = built.thresholds(thresholds)
        built = built.color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    for name, props in _overrides(p, thresholds).items():
        built = built.override_by_name(name, props)
    return built


def _variables() -> list[Any]:
    ds = db.DatasourceVariable("datasource").label("Data source").type("prometheus")
    ns = (
        db.QueryVariable("namespace")
        .label("Namespace")
        .datasource(DS)
        .query("label_values(lazarus_job_phase, namespace)")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .all_value(".*")
        .multi(True)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )
    job = (
        db.QueryVariable("job")
        .label("TrainingJob")
        .datasource(DS)
        .query('label_values(lazarus_job_phase{namespace=~"$namespace"}, trainingjob)')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .all_value(".*")
        .multi(True)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )
    return [ds, ns, job]


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    d = (
        db.Dashboard("Lazarus: restarts and goodput")
        .uid(UID)
        .tags(["lazarus", "training"])
        .description("Restarts, time to recover, checkpoint age, lost work and goodput.")
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
    )
    for v in _variables():
        d = d.with_variable(v)
    for i, p in enumerate(PANELS):
        d = d.with_panel(_panel(i, p))
    out: dict[str, Any] = json.loads(json.dumps(d.build(), cls=JSONEncoder))
    return out


def render_json() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    text = render_json()
    if argv and argv[0] == "--check":
        if OUT.read_text() != text:
            print(f"{OUT} is out of date: run cd hack && python -m observability.dashboard")
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
