"""bench.goodput's tables and JSON: per mode, median (min-max) over repetitions of wall
time, steps executed and recomputed, goodput; per run, its events and attempts."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

from bench.goodput_run import Run
from bench.goodput_trace import Accounting, lost_at_each_end
from lazarus_devstack.bench_harness import Spread

MODES = ("lazarus", "periodic", "none")
# The modes each --trace runs: Kueue's preemption is Lazarus vs periodic-only (without
# saves, (c) only says what every restart from step 0 costs, as the mixed trace does).
MODES_OF = {"mixed": MODES, "queue-preemption": ("lazarus", "periodic")}


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


def report(runs: list[Run], baseline: list[Run]) -> tuple[list[str], dict[str, Any]]:
    rows = [
        "| mode | wall time s | steps executed | recomputed | recomputed s | other s "
        "| goodput | restarts (operator: lost steps) | final params bitwise = undisturbed |",
        "|---|---|---|---|---|---|---|---|---|",
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
        rows.append(f"| {mode} | {' | '.join(cells)} | {restarts} | {equal} |")
        out[mode] = mode_json(group, accs)
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
