"""Goodput under one seeded preemption trace: Lazarus vs periodic checkpoints only vs none.

    hack/python -m bench.goodput --seed 7 --out goodput.json

The local loop `hack/demo` runs: a real kube-apiserver + etcd + controller-manager +
scheduler and the S3 server (moto) from the devstack, the operator as a subprocess, two
process kubelets (`lazarus_devstack.kubelet`, run here as the e2e tests run them) whose
pods are the reference trainer (`lazarus-train`) in real subprocesses. The same
TrainingJob runs four times: once undisturbed (the reference wall time and final
parameters), then under one trace of disruptions, three ways:

- (a) `lazarus`: as designed: periodic saves, a `preemption` save on SIGTERM, a
  `requested` save on a disruption-notice taint, resume from the newest valid checkpoint;
- (b) `periodic`: the same periodic schedule and resume, but SIGTERM ends the trainer at
  once (`LAZARUS_HANDLE_SIGNALS=0`, Python's default, as HF Trainer under a PyTorchJob) and
  the operator ignores notice taints (`spec.disruptionTaints: []`);
- (c) `none`: as (b) with no save schedule: every restart starts at step 0.

The trace (`--seed`) is a list of disruptions, each landing once the attempt it hits has
run a seeded number of steps: an eviction (Eviction API: DisruptionTarget, SIGTERM, the
grace period), a crash (SIGKILL of the trainer's process group, as the OOM killer), a node
loss (the kubelet and its pods die; Ready=Unknown and the unreachable taints written as
the node-lifecycle controller would, which this stack does not run), and a disruption
notice (a `aws-node-termination-handler/spot-itn` taint) followed `--notice` seconds later
by the loss of that node (a spot reclaim without a drain). A lost node is replaced (its
taints removed, a new kubelet) once the next attempt runs on the other node.

Each step's loss-log line is timestamped here as it appears (polled every 20 ms). Per
mode: wall time from creating the job to `Succeeded`; steps executed; steps recomputed
(executed minus those the final parameters descend from, bench/goodput_trace.py);
goodput = time of the surviving steps / elapsed; and whether the final parameters equal
the undisturbed run's bitwise. Not done honestly here: a graceful node shutdown (the
process kubelet has none) and a scheduler preemption by a higher-priority pod (the
Eviction API's path is the same DisruptionTarget + SIGTERM).

`--trace queue-preemption`: Kueue runs in the loop (`lazarus_devstack.kueue`), every job
is in one LocalQueue whose quota fits one job, at a low WorkloadPriorityClass, and each
event is Kueue preempting it for a high-priority TrainingJob of `--preemptor-steps`
steps (`lazarus_devstack.kueue_preempt`, as the e2e test does): the job yields, waits
Queued while the preemptor runs, and resumes when re-admitted. Modes (a) and (b) only.
The job and its disruptions are bench/goodput_run.py's, the tables bench/goodput_report.py's.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.goodput_groups import GROUPS
from bench.goodput_report import (
    MODES,
    MODES_OF,
    final_equal,
    group_rows,
    group_targets,
    paced_goodput,
    report,
    restart_gaps,
    span_rows,
)
from bench.goodput_run import Bench, Run
from bench.goodput_trace import TRACES, Event, lost_at_each_end, make_trace
from lazarus_devstack.bench_harness import rotated

GROUP_TARGETS = {
    "goodput": "goodput >= 0.85",
    "stall_p99": "survivors' stall p99 <= 2 s",
    "replacement": "group replacement <= 10 s",
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--trace", choices=sorted(TRACES), default="mixed", help="the events' kinds")
    ap.add_argument("--preemptor-steps", type=int, default=10, help="queue-preemption trace")
    ap.add_argument("--events", type=int, default=4, help="disruptions in the trace")
    ap.add_argument("--min-gap", type=int, default=25, help="steps an attempt runs, at least")
    ap.add_argument("--max-gap", type=int, default=55, help="... at most, before it is hit")
    ap.add_argument("--steps", type=int, default=240)
    ap.add_argument("--step-sleep", type=float, default=0.25)
    ap.add_argument("--save-every", type=int, default=50, help="steps, modes (a) and (b)")
    ap.add_argument("--d-model", type=int, default=32)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--grace", type=int, default=8, help="gracePeriodSeconds")
    ap.add_argument("--node-loss-timeout", type=int, default=3, help="nodeLossTimeoutSeconds")
    ap.add_argument("--notice", type=float, default=3.0, help="s from the notice taint to the loss")
    ap.add_argument("--reps", type=int, default=1, help="each mode; the order rotates")
    ap.add_argument("--timeout", type=float, default=400, help="s, each job")
    ap.add_argument(
        "--modes",
        help=f"comma-separated, of {', '.join(MODES)} ({GROUPS}: (d) replica groups); "
        "default: the trace's",
    )
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    args.modes = tuple((args.modes or ",".join(MODES_OF[args.trace])).split(","))
    if not set(args.modes) <= set(MODES) or (GROUPS in args.modes and args.trace != "mixed"):
        raise SystemExit(f"--modes: {args.modes} not of {MODES} ({GROUPS}: --trace mixed only)")
    if args.events * args.max_gap >= args.steps:
        raise SystemExit("--events x --max-gap must stay below --steps: every mode meets the trace")
    return args


def main() -> None:
    args = parse_args()
    trace = make_trace(args.seed, args.events, args.min_gap, args.max_gap, TRACES[args.trace])
    print(f"seed {args.seed}: trace {[(e.kind, e.after_steps) for e in trace]}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="lazarus-goodput-"))
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_at_start = os.getloadavg()
    bench = Bench(args, work)
    try:
        baseline, runs = run_all(args, bench, trace)
    finally:
        bench.close()
    rows, results = report(runs, baseline)
    targets = print_tables(rows, results, runs, args.modes)
    doc = {
        "started": started,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg_at_start": load_at_start,
            "load_avg_at_end": os.getloadavg(),
        },
        "command": " ".join(sys.argv),
        "inputs": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "trace": [asdict(e) for e in trace],
        },
        "results": results,
        "paced_goodput": paced_goodput(results),
        "targets": targets,
        "work_dir": str(work),
    }
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.out}")


def run_all(
    args: argparse.Namespace, bench: Bench, trace: list[Event]
) -> tuple[list[Run], list[Run]]:
    """The undisturbed run, then each mode under the trace, `--reps` times, the order
    rotating each repetition."""
    baseline = [bench.run("lazarus", [], "undisturbed")]
    print(f"  undisturbed: {baseline[0].elapsed:.1f}s", flush=True)
    runs: list[Run] = []
    for rep in range(args.reps):
        for mode in rotated(args.modes, rep):
            r = bench.run(mode, trace, f"{mode}-{rep}")
            # (d) averages fewer groups' gradients while one is missing: not bitwise.
            if mode != GROUPS:
                r.bitwise_equal = final_equal(r.final_params, baseline[0].final_params)
            print(f"  {r.job}: {r.phase} in {r.elapsed:.1f}s", flush=True)
            runs.append(r)
    return baseline, runs


def print_tables(
    rows: list[str], results: dict[str, Any], runs: list[Run], modes: tuple[str, ...]
) -> dict[str, bool]:
    """The tables and whether the targets were met."""
    print("\n".join(rows))
    print("| mode | lost steps per event | restart gaps s |\n|---|---|---|")
    for r in runs:
        lost = ", ".join(map(str, lost_at_each_end(r.attempts)))
        print(f"| {r.job} | {lost} | {', '.join(map(str, restart_gaps(r)))} |")
    print("\n".join(span_rows(runs)))
    print("\n".join(group_rows(runs)))
    paced = paced_goodput(results)
    print(
        "goodput at the undisturbed step time:", ", ".join(f"{m} {v:.3f}" for m, v in paced.items())
    )
    whole = [m for m in modes if m != GROUPS]
    goodput = [results[m]["goodput"]["median"] if m in results else 0.0 for m in whole]
    ordered = all(a > b for a, b in itertools.pairwise(goodput))
    bitwise = all(r.bitwise_equal for r in runs if r.mode == "lazarus")
    if len(whole) > 1:
        print(f"target goodput {' > '.join(whole)}:", "met" if ordered else "MISSED")
    print("target (a) final parameters bitwise equal:", "met" if bitwise else "MISSED")
    groups = {f"groups_{k}": v for k, v in group_targets(runs, paced.get(GROUPS)).items()}
    for k, v in groups.items():
        print(f"target (d) {GROUP_TARGETS[k[7:]]}:", "met" if v else "MISSED")
    return {"goodput_ordered": ordered, "lazarus_bitwise": bitwise, **groups}


if __name__ == "__main__":
    main()
