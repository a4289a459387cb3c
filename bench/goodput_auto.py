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
the best fixed interval) and `--default` (goodput.py's default). Target: auto's goodput
within 3% of the best fixed one on both traces.

The operator pools a namespace's jobs into each job's estimate, but only the failures
that come from where jobs run (lost nodes, disruptions): these crashes are each job's
own, so the two traces' runs do not inform each other.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.goodput_report import step_p50
from bench.goodput_run import Bench, Run
from bench.goodput_trace import CRASH, Event


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

    def body(self, mode: str, name: str) -> dict[str, Any]:
        doc = super().body("lazarus", name)
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
        else:
            save = {"everySteps": int(mode.removeprefix("every-"))}
        doc["spec"]["checkpoint"]["save"] = save
        doc["spec"]["failurePolicy"]["maxFailures"] = 1000
        return doc

    def run(self, mode: str, trace: list[Event], label: str) -> Run:
        r = super().run(mode, trace, label)
        # What auto chose and why (the operator's status.saveInterval), for the report.
        r.status["saveInterval"] = self.status(r.job).get("saveInterval")
        return r


def row(r: Run) -> dict[str, Any]:
    acc = r.accounting
    return {
        "job": r.job,
        "mode": r.mode,
        "phase": r.phase,
        "goodput": round(acc.goodput, 4) if acc else None,
        "elapsed_s": round(r.elapsed, 2),
        "recomputed": acc.recomputed if acc else None,
        "step_s_p50": step_p50(r),
        "status": r.status,
        "events": r.events,
    }


def _best(scores: dict[str, float]) -> dict[str, Any]:
    """Auto against the best fixed mode by one score (higher is better)."""
    fixed = {m: v for m, v in scores.items() if m.startswith("every-")}
    best = max(fixed, key=lambda m: fixed[m])
    ratio = scores["auto"] / fixed[best] if fixed[best] else 0.0
    return {"best_fixed": best, "auto_over_best": round(ratio, 4), "met": ratio >= 0.97}


def summarise(runs: dict[str, list[Run]]) -> tuple[list[str], dict[str, Any]]:
    """Per trace, three scores: goodput as bench/goodput.py counts it (the surviving steps'
    time over the wall time: a step a save slowed counts whole, so save costs hardly
    show); the pace to the end (steps over wall time: every run does the same steps under
    the same trace, so lost work and save costs show, and so does the machine's load);
    and the paced goodput (the steps at the run's own median step time over its wall
    time: as the pace, with the load's effect on the step time taken out)."""
    lines = [
        "| trace | mode | goodput | steps/s to the end | paced goodput | step s p50 | wall s "
        "| recomputed steps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    targets: dict[str, Any] = {}
    for trace, group in runs.items():
        good: dict[str, float] = {}
        pace: dict[str, float] = {}
        paced: dict[str, float] = {}
        for r in group:
            acc = r.accounting
            good[r.mode] = acc.goodput if acc else 0.0
            pace[r.mode] = acc.final_step / r.elapsed if acc and r.elapsed else 0.0
            p50 = step_p50(r) or 0.0
            paced[r.mode] = pace[r.mode] * p50
            rec = acc.recomputed if acc else "-"
            lines.append(
                f"| {trace} | {r.mode} | {good[r.mode]:.4f} | {pace[r.mode]:.3f} "
                f"| {paced[r.mode]:.4f} | {p50:.3f} | {r.elapsed:.1f} | {rec} |"
            )
        targets[trace] = {"goodput": _best(good), "pace": _best(pace), "paced": _best(paced)}
    return lines, targets


def main() -> None:
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
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    args.save_every = args.default  # Bench.body's; each mode sets its own schedule
    traces = {
        "frequent": crash_trace(args.seed, args.mtbf_steps, args.steps, args.min_gap),
        "rare": crash_trace(args.seed + 1, args.mtbf_steps * args.ratio, args.steps, args.min_gap),
    }
    for k, t in traces.items():
        print(f"{k}: crashes after {[e.after_steps for e in t]} steps", flush=True)
    modes = ["auto", *(f"every-{n}" for n in args.sweep.split(",")), f"every-{args.default}"]
    modes = list(dict.fromkeys(modes))
    bench = AutoBench(args, Path(tempfile.mkdtemp(prefix="lazarus-goodput-auto-")))
    runs: dict[str, list[Run]] = {}
    try:
        for trace, events in traces.items():
            for mode in modes:
                r = bench.run(mode, events, f"{trace[:4]}-{mode}")
                print(f"  {r.job}: {r.phase} in {r.elapsed:.1f}s", flush=True)
                runs.setdefault(trace, []).append(r)
    finally:
        bench.close()
    lines, targets = summarise(runs)
    print("\n".join(lines))
    for trace, t in targets.items():
        for score, v in t.items():
            print(
                f"target auto within 3% of the best fixed on {trace} by {score}:",
                "met" if v["met"] else "MISSED",
                f"(auto / {v['best_fixed']} = {v['auto_over_best']})",
            )
    if args.out:
        doc = {
            "command": " ".join(sys.argv),
            "inputs": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "traces": {k: [asdict(e) for e in t] for k, t in traces.items()},
            "runs": {k: [row(r) for r in g] for k, g in runs.items()},
            "targets": targets,
        }
        args.out.write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
