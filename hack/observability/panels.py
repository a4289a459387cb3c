"""The dashboard's panels as data: queries, units, colours, layout. dashboard.py turns
them into Grafana's JSON; tests/observability/test_dashboard.py holds the rules they
keep (one unit per timeseries, meaningful colours, per-job data only as top-N tables).
Metric meanings and which are per job or per namespace: docs/observability.md."""

from __future__ import annotations

from dataclasses import dataclass, field

# Per-job metrics filter by both variables; per-namespace ones (no trainingjob label)
# by the namespace only, or choosing a job would hide them.
SEL = 'namespace=~"$namespace", trainingjob=~"$job"'
NS = 'namespace=~"$namespace"'
R = "$__range"
RATE = "$__rate_interval"
WINDOW = "1h"  # the rolling windows of the goodput and job-time panels
TOP = 10  # rows of a per-job table

# Grafana's named colours; the same meaning on every panel.
PHASE_COLORS = {
    "Queued": "light-yellow",
    "Pending": "yellow",
    "Running": "blue",
    "Restarting": "orange",
    "Suspended": "purple",
    "Succeeded": "green",
    "Failed": "red",
}
STATE_COLORS = {
    "productive": "green",
    "lost_progress": "red",
    "pending": "yellow",
    "restarting": "orange",
    "suspended": "purple",
}
CAUSE_COLORS = {"disrupted": "yellow", "nodeLost": "purple", "oomKilled": "orange", "failed": "red"}


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class PanelSpec:
    title: str
    kind: str  # "stat" | "timeseries" | "table"
    grid: tuple[int, int, int, int]  # x, y, w, h on Grafana's 24-column grid
    unit: str
    targets: tuple[Target, ...]
    description: str
    stacked: bool = False
    colors: dict[str, str] = field(default_factory=dict)  # field name -> colour
    units: dict[str, str] = field(default_factory=dict)  # stat/table field -> own unit
    red_below: float | None = None  # thresholds: red under, green from
    red_above: float | None = None  # thresholds: green under, red from
    columns: dict[str, str] = field(default_factory=dict)  # table: field -> header
    threshold_on: str = ""  # table: the column the thresholds colour


def goodput(window: str, by: str = "") -> str:
    b = f" by ({by}) " if by else ""
    return (
        f'sum{b}(increase(lazarus_job_seconds_total{{{SEL}, state="productive"}}[{window}]))'
        f" / sum{b}(increase(lazarus_job_seconds_total{{{SEL}}}[{window}]))"
    )


def mean(hist: str, window: str, sel: str = NS, by: str = "") -> str:
    b = f" by ({by}) " if by else ""
    return (
        f"sum{b}(increase({hist}_sum{{{sel}}}[{window}]))"
        f" / sum{b}(increase({hist}_count{{{sel}}}[{window}]))"
    )


def p95(hist: str, sel: str = NS) -> str:
    return f"histogram_quantile(0.95, sum by (le) (rate({hist}_bucket{{{sel}}}[{RATE}])))"


JOB = "namespace, trainingjob"
AGE = f"time() - max by ({JOB}) (lazarus_checkpoint_timestamp_seconds{{{SEL}}})"
OLDEST = f"topk({TOP}, {AGE})"
JOB_RESTARTS = f"sum by ({JOB}) (increase(lazarus_restarts_total{{{SEL}}}[{R}]))"
MOST_RESTARTS = f"topk({TOP}, {JOB_RESTARTS} > 0)"

PANELS: tuple[PanelSpec, ...] = (
    PanelSpec(
        "Goodput",
        "stat",
        (0, 0, 4, 4),
        "percentunit",
        (Target(goodput(R), "goodput"),),
        "Productive time whose progress survived / all job time, over the dashboard's range."
        " Red under 80 % (LazarusGoodputLow's bound).",
        red_below=0.8,
    ),
    PanelSpec(
        "Restarts",
        "stat",
        (4, 0, 5, 4),
        "none",
        (Target(f"sum by (cause) (increase(lazarus_restarts_total{{{SEL}}}[{R}]))", "{{cause}}"),),
        "Restarts in the dashboard's range, by cause.",
        colors=CAUSE_COLORS,
    ),
    PanelSpec(
        "Lost work",
        "stat",
        (9, 0, 4, 4),
        "none",
        (
            Target(f"sum(increase(lazarus_job_lost_steps_total{{{SEL}}}[{R}]))", "steps"),
            Target(
                f'sum(increase(lazarus_job_seconds_total{{{SEL}, state="lost_progress"}}[{R}]))',
                "running time",
            ),
        ),
        "Steps and running time lost by restarts (after the checkpoint resumed from).",
        colors={"steps": "red", "running time": "red"},
        units={"running time": "s"},
    ),
    PanelSpec(
        "Jobs by phase",
        "stat",
        (13, 0, 6, 4),
        "none",
        (
            Target(
                f"sum by (phase) (max by ({JOB}, phase) (lazarus_job_phase{{{NS}}}))",
                "{{phase}}",
            ),
        ),
        "TrainingJobs per phase now. max first: a job two replicas export (after a"
        " failover) counts once.",
        colors=PHASE_COLORS,
    ),
    PanelSpec(
        "Jobs launched and finished",
        "stat",
        (19, 0, 5, 4),
        "none",
        tuple(
            Target(f"sum(increase(lazarus_jobs_{what}_total{{{NS}}}[{R}]))", what)
            for what in ("created", "succeeded", "failed")
        ),
        "Jobs launched, succeeded and failed in the dashboard's range (per-namespace"
        " counters: they outlive the jobs).",
        colors={"created": "blue", "succeeded": "green", "failed": "red"},
    ),
    PanelSpec(
        "Restarts by cause",
        "timeseries",
        (0, 4, 12, 8),
        "none",
        (
            Target(
                f"sum by (cause) (increase(lazarus_restarts_total{{{SEL}}}[{RATE}]))", "{{cause}}"
            ),
        ),
        "Restarts per interval: preemption (disrupted), node lost, OOM killed, failed.",
        stacked=True,
        colors=CAUSE_COLORS,
    ),
    PanelSpec(
        "Time to recover",
        "timeseries",
        (12, 4, 12, 8),
        "s",
        (
            Target(mean("lazarus_recovery_seconds", R, by="cause"), "{{cause}}"),
            Target(p95("lazarus_recovery_seconds"), "p95, all causes"),
        ),
        "From an attempt's end until every pod of the next attempt runs: mean by cause"
        " over the range, and p95 per interval.",
        colors={**CAUSE_COLORS, "p95, all causes": "text"},
    ),
    PanelSpec(
        f"Oldest checkpoints (top {TOP})",
        "table",
        (0, 12, 12, 8),
        "s",
        (
            Target(OLDEST),
            Target(
                f"({AGE}) / max by ({JOB}) (lazarus_checkpoint_interval_seconds{{{SEL}}})"
                f" and on ({JOB}) {OLDEST}"
            ),
        ),
        "The jobs whose newest checkpoint is oldest: the work a failure now would lose;"
        " in save intervals, red from 3 (LazarusCheckpointTooOld's bound).",
        units={"intervals": "none"},
        red_above=3,
        threshold_on="intervals",
        columns={"Value #A": "age", "Value #B": "intervals"},
    ),
    PanelSpec(
        f"Most restarts (top {TOP})",
        "table",
        (12, 12, 12, 8),
        "none",
        (
            Target(MOST_RESTARTS),
            Target(f"({goodput(R, JOB)}) and on ({JOB}) {MOST_RESTARTS}"),
        ),
        "The jobs restarted most in the dashboard's range, with their goodput (red under 80 %).",
        units={"goodput": "percentunit"},
        red_below=0.8,
        threshold_on="goodput",
        columns={"Value #A": "restarts", "Value #B": "goodput"},
    ),
    PanelSpec(
        "Lost steps by cause",
        "timeseries",
        (0, 20, 12, 8),
        "short",
        (
            Target(
                f"sum by (cause) (increase(lazarus_lost_steps_total{{{NS}}}[{RATE}]))", "{{cause}}"
            ),
        ),
        "Steps lost per interval (last step reached - step resumed from), by the cause of"
        " the restart.",
        stacked=True,
        colors=CAUSE_COLORS,
    ),
    PanelSpec(
        "Lost running time by cause",
        "timeseries",
        (12, 20, 12, 8),
        "s",
        (
            Target(
                f"sum by (cause) (increase(lazarus_lost_seconds_total{{{NS}}}[{RATE}]))",
                "{{cause}}",
            ),
        ),
        "Running seconds after the checkpoint each relaunch resumed from, per interval.",
        stacked=True,
        colors=CAUSE_COLORS,
    ),
    PanelSpec(
        f"Goodput ({WINDOW} window)",
        "timeseries",
        (0, 28, 12, 8),
        "percentunit",
        (Target(goodput(WINDOW), "goodput"),),
        f"increase(productive) / increase(all states) over the {WINDOW} before each point.",
        colors={"goodput": "green"},
    ),
    PanelSpec(
        f"Job time by state ({WINDOW} window)",
        "timeseries",
        (12, 28, 12, 8),
        "s",
        (
            Target(
                f"sum by (state) (increase(lazarus_job_seconds_total{{{SEL}}}[{WINDOW}]))",
                "{{state}}",
            ),
        ),
        f"Job seconds in each state over the {WINDOW} before each point; running time counts"
        " once a checkpoint or a relaunch settles it.",
        stacked=True,
        colors=STATE_COLORS,
    ),
    PanelSpec(
        "Trainer: save and resume",
        "timeseries",
        (0, 36, 12, 8),
        "s",
        (
            Target(mean("lazarus_checkpoint_save_seconds", R), "save (mean)"),
            Target(mean("lazarus_checkpoint_stall_seconds", R), "training stall per save (mean)"),
            Target(mean("lazarus_checkpoint_durable_seconds", R), "step to durable (mean)"),
            Target(mean("lazarus_resume_seconds", R), "resume load (mean)"),
        ),
        "From the trainer's timings in the checkpoint manifests the operator reads.",
    ),
    PanelSpec(
        "Operator cycle time",
        "timeseries",
        (12, 36, 5, 8),
        "s",
        (Target(p95("lazarus_operator_cycle_duration_seconds", ""), "p95"),),
        "One reconcile cycle of one job, p95 per interval.",
    ),
    PanelSpec(
        "Operator errors and retries",
        "timeseries",
        (17, 36, 5, 8),
        "cps",
        (
            Target(f"sum(rate(lazarus_operator_cycle_errors_total[{RATE}]))", "failed cycles"),
            Target(f"sum(rate(lazarus_operator_api_retries_total[{RATE}]))", "status retries"),
        ),
        "Cycles that raised and status writes retried after a conflict, per second.",
        colors={"failed cycles": "red", "status retries": "yellow"},
    ),
    PanelSpec(
        "Operators up",
        "stat",
        (22, 36, 2, 8),
        "none",
        (Target("sum(lazarus_operator_info)", "up"),),
        "Operator replicas scraped now (LazarusOperatorDown fires at none).",
        red_below=1,
    ),
    PanelSpec(
        "Replica groups replaced",
        "timeseries",
        (0, 44, 12, 8),
        "none",
        (
            Target(
                f"sum by (cause) (increase(lazarus_group_replacements_total{{{NS}}}[{RATE}]))",
                "{{cause}}",
            ),
            Target(
                f"sum(increase(lazarus_lighthouse_restarts_total{{{NS}}}[{RATE}]))",
                "lighthouse",
            ),
        ),
        "spec.faultTolerance: groups replaced alone while the others trained on (no restart),"
        " by cause, and lighthouses recreated, per interval.",
        stacked=True,
        colors={**CAUSE_COLORS, "lighthouse": "purple"},
    ),
    PanelSpec(
        "Replica groups: survivors' stall and rejoin",
        "timeseries",
        (12, 44, 12, 8),
        "s",
        (
            Target(mean("lazarus_ft_stall_seconds", R), "survivors' stall (mean)"),
            Target(p95("lazarus_ft_stall_seconds"), "survivors' stall (p95)"),
            Target(mean("lazarus_ft_rejoin_seconds", R), "failure to whole quorum (mean)"),
        ),
        "From the writer group's timings: the longest pause of the survivors at a failure,"
        " and the time until the replacement joined.",
    ),
)
