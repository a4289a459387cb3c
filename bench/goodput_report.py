"""bench.goodput's tables and JSON: per mode, median (min-max) over repetitions of wall
time, steps executed and recomputed, goodput; per run, its events and attempts."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

from bench.goodput_groups import GROUPS, PARTS, targets
from bench.goodput_run import Run
from bench.goodput_trace import Accounting, lost_at_each_end
from lazarus_devstack.bench_harness import Spread

MODES = ("lazarus", "periodic", "none", GROUPS)
# The modes each --trace runs: Kueue's preemption is Lazarus vs periodic-only (without
# saves, (c) only says what every restart from step 0 costs, as the mixed trace does).
MODES_OF = {"mixed": MODES[:3], "queue-preemption": ("lazarus", "periodic")}


def final_equal(a: str, b: str) -> bool | None:
    if not a or not b:
        return None
    import torch

    x = torch.load(a, weights_only=True)
    y = torch.load(b, weights_only=True)
    return x.keys() == y.keys() and all(
        x[k].dtype == y[k].dtype and x[k].shape == y[k].shape and torch.equal(x[k], y[k]) for k in x
    )


def summary(xs: list[float]) -> dict[str, float]:
    s = Spread.of(xs)
    return {"min": round(s.min, 4), "median": round(s.median, 4), "max": round(s.max, 4)}


def cell(vals: list[float], fmt: str) -> str:
    """One value, or median (min-max) of the repetitions."""
    if len(vals) == 1:
        return format(vals[0], fmt)
    s = summary(vals)
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}-{s['max']:{fmt}})"


def held_goodput(r: Run) -> float:
    """Goodput over the time the job held its quota: the wall time less the time Kueue
    gave its quota to another job (that time was the preemptor's, not lost)."""
    assert r.accounting is not None
    held = r.elapsed - r.quota_away
    return r.accounting.survived_seconds / held if held > 0 else 0.0


def report(runs: list[Run], baseline: list[Run]) -> tuple[list[str], dict[str, Any]]:
    queued = any(r.quota_away for r in runs)
    rows = [
        "| mode | wall time s | steps executed | recomputed | recomputed s | other s "
        "| goodput |"
        + (" quota away s | goodput over quota held |" if queued else "")
        + " restarts (operator: lost steps) | final params bitwise = undisturbed |",
        "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if queued else ""),
    ]
    out: dict[str, Any] = {}
    for mode, group in [
        ("undisturbed", baseline),
        *((m, [r for r in runs if r.mode == m]) for m in MODES),
    ]:
        accs = [r.accounting for r in group if r.accounting is not None]
        if not accs:
            continue

        restarts = ", ".join(
            f"{(r.status.get('restarts') or {}).get('total', 0)} ({r.status.get('lostSteps', 0)})"
            for r in group
        )
        equal = ", ".join({True: "yes", False: "**no**", None: "—"}[r.bitwise_equal] for r in group)
        cells = [
            cell([a.elapsed for a in accs], ".1f"),
            cell([a.executed for a in accs], ".0f"),
            cell([a.recomputed for a in accs], ".0f"),
            cell([a.recomputed_seconds for a in accs], ".1f"),
            cell([a.other_seconds for a in accs], ".1f"),
            cell([a.goodput for a in accs], ".3f"),
        ]
        if queued:
            cells.append(cell([r.quota_away for r in group], ".1f"))
            cells.append(cell([held_goodput(r) for r in group], ".3f"))
        rows.append(f"| {mode} | {' | '.join(cells)} | {restarts} | {equal} |")
        out[mode] = mode_json(group, accs)
        if queued:
            out[mode]["quota_away_s"] = summary([r.quota_away for r in group])
            out[mode]["goodput_over_quota_held"] = summary([held_goodput(r) for r in group])
    return rows, out


def mode_json(group: list[Run], accs: list[Accounting]) -> dict[str, Any]:
    """One mode's figures over its repetitions, and each run's own."""
    return {
        "elapsed_s": summary([a.elapsed for a in accs]),
        "executed": summary([a.executed for a in accs]),
        "recomputed": summary([a.recomputed for a in accs]),
        "recomputed_s": summary([a.recomputed_seconds for a in accs]),
        "other_s": summary([a.other_seconds for a in accs]),
        "goodput": summary([a.goodput for a in accs]),
        "bitwise_equal": [r.bitwise_equal for r in group],
        "runs": [run_json(r) for r in group],
    }


def run_json(r: Run) -> dict[str, Any]:
    """One run: its accounting, events, attempts (steps seen, when), status and gaps."""
    return {
        "job": r.job,
        "phase": r.phase,
        "accounting": asdict(r.accounting) if r.accounting else None,
        "events": r.events,
        "attempts": [
            {
                "attempt": a.number,
                "first_step": a.first_step,
                "steps": len(a.times),
                # seconds since the job was created: the first and last step seen
                "first_t": round(a.times[0] - r.started, 2),
                "last_t": round(a.times[-1] - r.started, 2),
            }
            for a in r.attempts
            if a.times
        ],
        "status": r.status,
        "load_avg_1m": list(r.load),
        "quota_away_s": round(r.quota_away, 2),
        "step_s_p50": step_p50(r),
        "lost_steps_per_event": lost_at_each_end(r.attempts),
        "restart_gaps_s": restart_gaps(r),
    }


def restart_gaps(r: Run) -> list[float]:
    """Per event: from the disruption to the next attempt's first step, seconds."""
    firsts = [a.times[0] - r.started for a in r.attempts if a.times]
    return [round(f - e["t"], 2) for e, f in zip(r.events, firsts[1:], strict=False)]


def step_p50(r: Run) -> float | None:
    diffs = [d for a in r.attempts for d in a.durations(0.0)[1:]]
    return round(statistics.median(diffs), 4) if diffs else None


def span_rows(runs: list[Run]) -> list[str]:
    """Per run, each queue-preemption span over its events (kueue_timeline.SPANS and the
    restart's), seconds; empty for traces without them."""
    names: list[str] = []
    for r in runs:
        for e in r.events:
            names += [n for n in e.get("spans", {}) if n not in names]
    if not names:
        return []
    rows = ["| run | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for r in runs:
        cols = [", ".join(str(e.get("spans", {}).get(n, "—")) for e in r.events) for n in names]
        rows.append(f"| {r.job} | " + " | ".join(cols) + " |")
    return rows


def group_events(runs: list[Run]) -> list[dict[str, Any]]:
    """Mode (d)'s events over its runs that landed (bench/goodput_groups_run.py)."""
    return [e for r in runs if r.mode == GROUPS for e in r.events if e.get("landed", True)]


def group_rows(runs: list[Run]) -> list[str]:
    """Per event of mode (d): the group hit, the survivors' stall, the replacement's
    parts and total, seconds (or the whole-job restart the operator chose instead)."""
    events = group_events(runs)
    if not events:
        return []
    rows = [
        "| event | group hit | survivors' stall s | " + " | ".join(PARTS) + " | replacement s |",
        "|---|---|---|" + "---|" * len(PARTS) + "---|",
    ]
    for e in events:
        if e.get("whole_restart"):
            rows.append(
                f"| {e['kind']} | {e['group']} | whole-job restart, gap "
                f"{e['restart_gap_s']} s |" + " |" * (len(PARTS) + 1)
            )
            continue
        parts = e["replacement_s"]
        cols = [str(parts.get(p, "—")) for p in (*PARTS, "total")]
        stall = ", ".join("—" if s is None else str(s) for s in e["stall_s"])
        rows.append(f"| {e['kind']} | {e['group']} | {stall} | " + " | ".join(cols) + " |")
    missed = [e for r in runs if r.mode == GROUPS for e in r.events if not e.get("landed", True)]
    if missed:
        rows.append(f"(d): {len(missed)} event(s) not landed: the job had finished")
    return rows


def group_targets(runs: list[Run], paced: float | None) -> dict[str, bool]:
    """issue 26's targets over mode (d)'s runs: goodput at the undisturbed step time
    (`paced`; the stalls are not work), else the median goodput; empty without (d)."""
    group = [r.accounting.goodput for r in runs if r.mode == GROUPS and r.accounting]
    if not group:
        return {}
    events = group_events(runs)
    stalls = [s for e in events for s in e.get("stall_s", [None])]
    totals = [e.get("replacement_s", {}).get("total") for e in events]
    goodput = paced if paced is not None else statistics.median(group)
    return targets(goodput, stalls, totals)


def paced_goodput(results: dict[str, Any]) -> dict[str, float]:
    """Per mode, the median of: steps survived x the undisturbed run's median step time /
    wall time. The goodput column counts a survivor's stall in (d) as the step's time (its
    step log has no gap but the stall), and (d)'s steps carry an allreduce; paced at one
    step time, every mode is scored by the same work."""
    base = results.get("undisturbed", {}).get("runs", [{}])[0].get("step_s_p50")
    if not base:
        return {}
    out: dict[str, float] = {}
    for mode, got in results.items():
        paced = [
            r["accounting"]["survived"] * base / r["accounting"]["elapsed"]
            for r in got["runs"]
            if r["accounting"] and r["accounting"]["elapsed"] > 0
        ]
        if paced:
            out[mode] = round(statistics.median(paced), 4)
    return out
