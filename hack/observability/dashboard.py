"""Generate the Grafana dashboard of Lazarus restarts with grafana-foundation-sdk's
typed builders: `python hack/observability/dashboard.py` rewrites
charts/lazarus/dashboards/lazarus.json (tests/observability/test_dashboard.py fails
when the committed file drifts from this generator)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

OUT = Path(__file__).resolve().parents[2] / "charts/lazarus/dashboards/lazarus.json"
UID = "lazarus-restarts"
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'namespace=~"$namespace", trainingjob=~"$job"'


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    kind: str  # "stat" | "timeseries"
    grid: tuple[int, int, int, int]  # x, y, w, h on Grafana's 24-column grid
    unit: str
    targets: tuple[Target, ...]
    description: str
    stacked: bool = False


def _goodput(window: str) -> str:
    return (
        f'sum(increase(lazarus_job_seconds_total{{{SEL}, state="productive"}}[{window}]))'
        f" / sum(increase(lazarus_job_seconds_total{{{SEL}}}[{window}]))"
    )


def _mean(hist: str, window: str) -> str:
    return (
        f"sum(increase({hist}_sum{{{SEL}}}[{window}]))"
        f" / sum(increase({hist}_count{{{SEL}}}[{window}]))"
    )


def _p95(hist: str, sel: str = SEL) -> str:
    return f"histogram_quantile(0.95, sum by (le) (rate({hist}_bucket{{{sel}}}[$__rate_interval])))"


R = "$__range"
PANELS: tuple[PanelSpec, ...] = (
    PanelSpec(
        "Goodput",
        "stat",
        (0, 0, 6, 4),
        "percentunit",
        (Target(_goodput(R), "goodput"),),
        "Productive time whose progress survived / all job time, over the dashboard's range.",
    ),
    PanelSpec(
        "Restarts",
        "stat",
        (6, 0, 6, 4),
        "none",
        (Target(f"sum by (cause) (increase(lazarus_restarts_total{{{SEL}}}[{R}]))", "{{cause}}"),),
        "Restarts in the dashboard's range, by cause.",
    ),
    PanelSpec(
        "Lost work",
        "stat",
        (12, 0, 6, 4),
        "none",
        (
            Target(f"sum(increase(lazarus_lost_steps_total{{{SEL}}}[{R}]))", "steps"),
            Target(f"sum(increase(lazarus_lost_seconds_total{{{SEL}}}[{R}]))", "seconds"),
        ),
        "Steps and running seconds lost by restarts (after the checkpoint resumed from).",
    ),
    PanelSpec(
        "Jobs by phase",
        "stat",
        (18, 0, 6, 4),
        "none",
        (Target('sum by (phase) (lazarus_job_phase{namespace=~"$namespace"})', "{{phase}}"),),
        "TrainingJobs per phase now.",
    ),
    PanelSpec(
        "Restarts by cause",
        "timeseries",
        (0, 4, 12, 8),
        "none",
        (
            Target(
                f"sum by (cause) (increase(lazarus_restarts_total{{{SEL}}}[$__rate_interval]))",
                "{{cause}}",
            ),
        ),
        "Restarts per interval: preemption (disrupted), node lost, OOM killed, failed.",
        stacked=True,
    ),
    PanelSpec(
        "Time to recover",
        "timeseries",
        (12, 4, 12, 8),
        "s",
        (
            Target(
                f"sum by (cause) (increase(lazarus_recovery_seconds_sum{{{SEL}}}[{R}]))"
                f" / sum by (cause) (increase(lazarus_recovery_seconds_count{{{SEL}}}[{R}]))",
                "mean {{cause}} (range)",
            ),
            Target(_p95("lazarus_recovery_seconds"), "p95 all causes"),
        ),
        "From an attempt's end until every pod of the next attempt runs.",
    ),
    PanelSpec(
        "Checkpoint age",
        "timeseries",
        (0, 12, 12, 8),
        "s",
        (
            Target(
                f"time() - max by (namespace, trainingjob) "
                f"(lazarus_checkpoint_timestamp_seconds{{{SEL}}})",
                "{{namespace}}/{{trainingjob}}",
            ),
        ),
        "Seconds since the newest valid checkpoint committed: the work a failure now would lose.",
    ),
    PanelSpec(
        "Lost work by cause",
        "timeseries",
        (12, 12, 12, 8),
        "none",
        (
            Target(
                f"sum by (cause) (increase(lazarus_lost_steps_total{{{SEL}}}[$__rate_interval]))",
                "steps {{cause}}",
            ),
            Target(
                f"sum by (cause) (increase(lazarus_lost_seconds_total{{{SEL}}}[$__rate_interval]))",
                "seconds {{cause}}",
            ),
        ),
        "Steps and running seconds lost per interval, by the cause of the restart.",
    ),
    PanelSpec(
        "Goodput (1h window)",
        "timeseries",
        (0, 20, 12, 8),
        "percentunit",
        (Target(_goodput("1h"), "goodput"),),
        "increase(productive) / increase(all states) over the hour before each point.",
    ),
    PanelSpec(
        "Job time by state (1h window)",
        "timeseries",
        (12, 20, 12, 8),
        "s",
        (
            Target(
                f"sum by (state) (increase(lazarus_job_seconds_total{{{SEL}}}[1h]))",
                "{{state}}",
            ),
        ),
        "Job seconds in each state over the hour before each point; running time counts"
        " once a checkpoint or a relaunch settles it.",
        stacked=True,
    ),
    PanelSpec(
        "Trainer: save and resume",
        "timeseries",
        (0, 28, 12, 8),
        "s",
        (
            Target(_mean("lazarus_checkpoint_save_seconds", R), "save (mean)"),
            Target(_mean("lazarus_checkpoint_stall_seconds", R), "training stall per save (mean)"),
            Target(_mean("lazarus_checkpoint_durable_seconds", R), "step to durable (mean)"),
            Target(_mean("lazarus_resume_seconds", R), "resume load (mean)"),
        ),
        "From the trainer's timings in the checkpoint manifests the operator reads.",
    ),
    PanelSpec(
        "Operator health",
        "timeseries",
        (12, 28, 12, 8),
        "s",
        (
            Target(_p95("lazarus_operator_cycle_duration_seconds", ""), "cycle p95"),
            Target("sum(rate(lazarus_operator_cycle_errors_total[$__rate_interval]))", "errors/s"),
            Target("sum(rate(lazarus_operator_api_retries_total[$__rate_interval]))", "retries/s"),
            Target("sum(lazarus_operator_info)", "replicas up"),
        ),
        "Reconcile cycle latency, failed cycles, status-write retries and scraped replicas.",
    ),
)


def _targets(p: PanelSpec) -> list[prometheus.Dataquery]:
    refs = "ABCDEFGH"
    return [
        prometheus.Dataquery().expr(t.expr).legend_format(t.legend).ref_id(refs[i])
        for i, t in enumerate(p.targets)
    ]


def _panel(i: int, p: PanelSpec) -> stat.Panel | timeseries.Panel:
    x, y, w, h = p.grid
    built: stat.Panel | timeseries.Panel
    if p.kind == "stat":
        built = (
            stat.Panel()
            .graph_mode(common.BigValueGraphMode.NONE)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
        )
    else:
        built = timeseries.Panel().fill_opacity(20 if p.stacked else 0)
        if p.stacked:
            built = built.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
    built = built.id(i + 1).title(p.title).description(p.description).unit(p.unit)
    built = built.datasource(DS).grid_pos(dm.GridPos(h=h, w=w, x=x, y=y))
    for q in _targets(p):
        built = built.with_target(q)
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
            print(f"{OUT} is out of date: run python hack/observability/dashboard.py")
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
