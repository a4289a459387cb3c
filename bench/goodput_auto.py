"""Goodput of the automatic checkpoint interval against fixed ones, on two crash traces
whose failure rates differ by `--ratio` (issue 29), side by side in one run.

    hack/python -m bench.goodput_auto --out goodput_auto.json

The local loop of bench/goodput.py (a real API server, the operator, process kubelets,
the reference trainer; its `Bench` (bench/goodput_run.py) and accounting are reused). Each trace is
a seeded list of crashes (SIGKILL of the trainer, as the OOM killer: a failure a save
could have helped) with exponential gaps of `--mtbf-steps` and `--ratio` x that many
steps. On each trace the same TrainingJob runs with `spec.checkpoint.save.auto` (told
neither rate: the same `--prior` for both traces, the operator estimates the rest from
the crashes it sees) and with `everySteps` for each of `--sweep` (the best of these is
the best fixed interval) and `--default` (goodput.py's default). The runs are
interleaved per repetition (bench_harness: a discarded warm-up run, then `--reps`
repetitions in rotated order, an idle gap before each run), and each repetition also
runs the job without crashes: its median step time is that repetition's reference.

The score is what the user pays: the run's steps at the reference step time over its
wall time, the same reference for every mode of a repetition (so auto's ratio to a
fixed mode is the inverse ratio of their wall times). A score by each run's own median
step time credits a mode for slowing its own steps (its saves); it is kept in the
output for comparison (`own_paced`), with goodput.py's goodput and the raw figures.
Target: auto's score within 3% of the best fixed one's on both traces, the ratio taken
within each repetition, then median (min-max) over repetitions.

The operator pools a namespace's jobs into each job's estimate, but only into the shared
part of its rate (lost nodes, disruptions): these crashes are each job's own, estimated
from its own exposure alone, so the two traces' runs, and the other runs' crash-free
seconds, do not move each other's crash rate (failure_rate.estimate).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.goodput_report import step_p50
from bench.goodput_run import LOW, Bench, Run
from bench.goodput_trace import CRASH, Event
from lazarus_devstack.bench_harness import (
    Slot,
    Spread,
    interleaved,
    ratios,
    rest,
    rotated,
    spread,
)

UNDISTURBED = "undisturbed"  # per repetition: no crashes, its median step the reference


def crash_trace(seed: int, mtbf_steps: float, steps: int, min_gap: int) -> list[Event]:
    """Crashes with seeded exponential gaps (steps of the attempt they hit), as many as
    fit in `steps` of progress; each gap at least `min_gap` so every attempt trains."""
    rng = random.Random(seed)
    out: list[Event] = []
    total = 0
    while True:
        gap = max(min_gap, round(rng.expovariate(1 / mtbf_steps)))
        total += gap
        if total >= steps * 0.9:
            return out
        out.append(Event(CRASH, gap))


class AutoBench(Bench):
    """bench/goodput.py's runs, the save schedule set per mode: `auto` or `every-N`."""

    warmup_steps: int | None = None  # the next run's --steps, when not the bench's

    def body(
        self, mode: str, name: str, steps: int | None = None, priority: str = LOW
    ) -> dict[str, Any]:
        doc = super().body("lazarus", name, steps or self.warmup_steps, priority)
        a = self.args
        save: dict[str, Any]
        if mode == "auto":
            save = {
                "auto": {
                    "enabled": True,
                    "minSeconds": a.min_seconds,
                    "maxSeconds": 3600,
                    "priorMTBFSeconds": a.prior,
                }
            }
        elif mode == UNDISTURBED:
            save = {"everySteps": a.default}
        else:
            save = {"everySteps": int(mode.removeprefix("every-"))}
        doc["spec"]["checkpoint"]["save"] = save
        doc["spec"]["failurePolicy"]["maxFailures"] = 1000
        return doc

    def run(self, mode: str, trace: list[Event], label: str, steps: int | None = None) -> Run:
        self.warmup_steps = steps
        try:
            r = super().run(mode, trace, label)
        finally:
            self.warmup_steps = None
        # What auto chose and why (the operator's status.saveInterval), for the report.
        r.status["saveInterval"] = self.status(r.job).get("saveInterval")
        return r


def schedule(traces: list[str], modes: list[str], reps: int) -> list[Slot]:
    """The runs, interleaved round by round (bench_harness): each repetition runs the
    undisturbed job and every mode on every trace, the modes (the undisturbed one among
    them) in an order rotated each repetition and each mode's traces back to back, their
    order rotated too, so no mode always gets the same place or the same neighbours."""
    out: list[Slot] = []
    for slot in interleaved([*modes, UNDISTURBED], reps):
        if slot.name == UNDISTURBED:
            out.append(slot)
            continue
        out += [Slot(slot.r, f"{t}/{slot.name}", False) for t in rotated(traces, slot.r)]
    return out


def score(r: Run, ref: float) -> float:
    """What the user gets per wall second: the run's steps at the reference median step
    time (the same for every mode of a repetition) over its wall time. A mode that slows
    its own steps (saves) pays for it here, where a score by its own median step would
    credit it."""
    acc = r.accounting
    return acc.final_step * ref / r.elapsed if acc and r.elapsed else 0.0


def row(r: Run, ref: float) -> dict[str, Any]:
    acc = r.accounting
    p50 = step_p50(r) or 0.0
    return {
        "job": r.job,
        "mode": r.mode,
        "phase": r.phase,
        "score": round(score(r, ref), 4),
        "goodput": round(acc.goodput, 4) if acc else None,
        "steps_per_s": round(acc.final_step / r.elapsed, 4) if acc and r.elapsed else None,
        "own_paced": round(score(r, p50), 4),  # the old score, by the run's own median step
        "step_s_p50": p50,
        "ref_step_s_p50": ref,
        "elapsed_s": round(r.elapsed, 2),
        "recomputed": acc.recomputed if acc else None,
        "load": r.load,
        "status": r.status,
        "events": r.events,
    }


def _target(by_rep: dict[str, list[float]]) -> dict[str, Any]:
    """Auto against the fixed mode with the best median, the ratio taken per repetition
    (same machine state), then median (min-max) over repetitions."""
    fixed = {m: v for m, v in by_rep.items() if m.startswith("every-")}
    best = max(fixed, key=lambda m: Spread.of(fixed[m]).median)
    rs = ratios(by_rep["auto"], fixed[best])
    s = Spread.of(rs) if rs else Spread(0.0, 0.0, 0.0)
    return {
        "best_fixed": best,
        "auto_over_best": [round(x, 4) for x in rs],
        "median": round(s.median, 4),
        "min": round(s.min, 4),
        "max": round(s.max, 4),
        "met": s.median >= 0.97,
    }


def summarise(runs: dict[int, dict[str, Run]]) -> tuple[list[str], dict[str, Any]]:
    """Per trace and mode over repetitions, median (min-max): the score (steps at the
    repetition's undisturbed median step per wall second), goodput as bench/goodput.py
    counts it, the run's own median step over the reference, wall time and recomputed
    steps; and per trace auto's ratio to the best fixed by the score and, for comparison,
    by the old own-median score."""
    lines = [
        "| trace | mode | score | goodput | own step p50 / ref | wall s | recomputed |",
        "|---|---|---|---|---|---|---|",
    ]
    cols: dict[str, dict[str, dict[str, list[float]]]] = {}
    for group in runs.values():
        ref = step_p50(group[UNDISTURBED]) or 0.0
        for name, r in group.items():
            if name == UNDISTURBED:
                continue
            trace, mode = name.split("/")
            acc = r.accounting
            c = cols.setdefault(trace, {}).setdefault(mode, {})
            for k, v in (
                ("score", score(r, ref)),
                ("own", score(r, step_p50(r) or 0.0)),
                ("goodput", acc.goodput if acc else 0.0),
                ("inflation", (step_p50(r) or 0.0) / ref if ref else 0.0),
                ("wall", r.elapsed),
                ("recomputed", float(acc.recomputed if acc else 0)),
            ):
                c.setdefault(k, []).append(v)
    targets: dict[str, Any] = {}
    for trace, modes in cols.items():
        for mode, c in modes.items():
            cells = " | ".join(spread(c[k]).strip() for k in ("score", "goodput", "inflation"))
            lines.append(
                f"| {trace} | {mode} | {cells} | {spread(c['wall']).strip()} "
                f"| {spread(c['recomputed']).strip()} |"
            )
        targets[trace] = {
            "score": _target({m: c["score"] for m, c in modes.items()}),
            "own_paced": _target({m: c["own"] for m, c in modes.items()}),
        }
    return lines, targets


def run_all(
    bench: AutoBench, args: argparse.Namespace, traces: dict[str, list[Event]], modes: list[str]
) -> dict[int, dict[str, Run]]:
    """A discarded warm-up run, then the schedule, an idle gap before each run."""
    rest(args.idle)
    w = bench.run(UNDISTURBED, [], "warm-up", steps=args.warmup_steps)
    print(f"  warm-up: {w.phase} in {w.elapsed:.1f}s", flush=True)
    runs: dict[int, dict[str, Run]] = {}
    for slot in schedule(list(traces), modes, args.reps):
        trace, _, mode = slot.name.partition("/")
        rest(args.idle)
        events = traces[trace] if mode else []
        label = f"{trace[:4]}-{mode}-{slot.r}" if mode else f"{trace}-{slot.r}"
        r = bench.run(mode or UNDISTURBED, events, label)
        print(f"  {slot.tag}: {r.job}: {r.phase} in {r.elapsed:.1f}s, load {r.load}", flush=True)
        runs.setdefault(slot.r, {})[slot.name] = r
    return runs


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--mtbf-steps", type=float, default=40, help="the frequent trace's")
    ap.add_argument("--ratio", type=float, default=4.0, help="the rare trace's MTBF / this")
    ap.add_argument("--min-gap", type=int, default=5)
    ap.add_argument("--steps", type=int, default=240)
    ap.add_argument("--step-sleep", type=float, default=0.1)
    ap.add_argument("--sweep", default="5,15,45", help="everySteps values swept")
    ap.add_argument("--default", type=int, default=50, help="goodput.py's default everySteps")
    ap.add_argument("--prior", type=int, default=30, help="priorMTBFSeconds, both traces")
    ap.add_argument("--min-seconds", type=int, default=1, help="auto's minSeconds")
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--grace", type=int, default=8)
    ap.add_argument("--node-loss-timeout", type=int, default=3)
    ap.add_argument("--notice", type=float, default=3.0)
    ap.add_argument("--timeout", type=float, default=600, help="s, each job")
    ap.add_argument("--reps", type=int, default=2, help="repetitions; the order rotates")
    ap.add_argument("--idle", type=float, default=5.0, help="s of idle gap before each run")
    ap.add_argument("--warmup-steps", type=int, default=20, help="the discarded warm-up's")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.reps < 2:
        raise SystemExit("--reps must be at least 2: a ratio needs repetitions to show spread")
    return args


def main() -> None:
    args = parse_args()
    args.save_every = args.default  # Bench.body's; each mode sets its own schedule
    args.trace = "crash"  # Bench's: no Kueue queue (its queue-preemption trace's)
    traces = {
        "frequent": crash_trace(args.seed, args.mtbf_steps, args.steps, args.min_gap),
        "rare": crash_trace(args.seed + 1, args.mtbf_steps * args.ratio, args.steps, args.min_gap),
    }
    for k, t in traces.items():
        print(f"{k}: crashes after {[e.after_steps for e in t]} steps", flush=True)
    modes = ["auto", *(f"every-{n}" for n in args.sweep.split(",")), f"every-{args.default}"]
    modes = list(dict.fromkeys(modes))
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_at_start = os.getloadavg()
    bench = AutoBench(args, Path(tempfile.mkdtemp(prefix="lazarus-goodput-auto-")))
    try:
        runs = run_all(bench, args, traces, modes)
    finally:
        bench.close()
    lines, targets = summarise(runs)
    print("\n".join(lines))
    for trace, t in targets.items():
        for name, v in t.items():
            print(
                f"target auto within 3% of the best fixed on {trace} by {name}:",
                "met" if v["met"] else "MISSED",
                f"(auto / {v['best_fixed']} = {v['median']} ({v['min']}-{v['max']}))",
            )
    if args.out:
        doc = {
            "started": started,
            "machine": {
                "cpus": os.cpu_count(),
                "load_avg_at_start": load_at_start,
                "load_avg_at_end": os.getloadavg(),
            },
            "command": " ".join(sys.argv),
            "inputs": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "traces": {k: [asdict(e) for e in t] for k, t in traces.items()},
            "runs": {
                rep: {n: row(r, step_p50(g[UNDISTURBED]) or 0.0) for n, r in g.items()}
                for rep, g in runs.items()
            },
            "targets": targets,
        }
        args.out.write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
