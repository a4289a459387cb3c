"""Goodput under one seeded preemption trace: Lazarus vs periodic checkpoints only vs none.

    ~/.cache/lazarus/venv/bin/python bench/goodput.py --seed 7 --out goodput.json

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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CODE = [str(REPO / d) for d in ("contract", "store", "operator", "trainer_image", "hack")]
sys.path[:0] = [str(REPO), *CODE]
# The operator and the trainers run this checkout's code too (as hack/checkout-env.sh does).
os.environ["PYTHONPATH"] = os.pathsep.join([*CODE, os.environ.get("PYTHONPATH", "")]).rstrip(
    os.pathsep
)


from bench.goodput_trace import (  # noqa: E402
    CRASH,
    EVICTION,
    NODE_LOSS,
    NOTICE_THEN_LOSS,
    Accounting,
    AttemptSteps,
    Event,
    account,
    lost_at_each_end,
    make_trace,
)
from bench.local_loop import LocalLoop, StepClock, attempt_of  # noqa: E402
from lazarus_devstack.harness import LosableNode as Node  # noqa: E402
from lazarus_devstack.harness import node_ready as _node_ready  # noqa: E402
from tests.operator.harness import GROUP, PLURAL, VERSION, wait_for  # noqa: E402

MODES = ("lazarus", "periodic", "none")
NOTICE_TAINT = "aws-node-termination-handler/spot-itn"
NS = "goodput"


@dataclass
class Run:
    mode: str
    job: str
    started: float = 0.0  # monotonic, when the job was created
    elapsed: float = 0.0
    phase: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[AttemptSteps] = field(default_factory=list)
    accounting: Accounting | None = None
    status: dict[str, Any] = field(default_factory=dict)
    final_params: str = ""
    bitwise_equal: bool | None = None


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.loop = LocalLoop(
            work, NS, ("goodput-a", "goodput-b"), {"LAZARUS_PROGRESS_SECONDS": "1"}
        )
        self.core, self.custom = self.loop.core, self.loop.custom
        self.pods, self.nodes = self.loop.pods, self.loop.nodes

    def close(self) -> None:
        self.loop.close()

    # --- one job ------------------------------------------------------------------------
    def body(self, mode: str, name: str) -> dict[str, Any]:
        a = self.args
        venv_bin = str(Path(sys.executable).parent)
        checkpoint: dict[str, Any] = self.loop.checkpoint(name)
        if mode != "none":
            checkpoint["save"] = {"everySteps": a.save_every}
        container: dict[str, Any] = {
            "name": "trainer",
            "image": "lazarus-trainer:dev",
            "command": [f"{venv_bin}/lazarus-train"],
            "args": [
                *("--steps", str(a.steps), "--step-sleep", str(a.step_sleep)),
                *("--d-model", str(a.d_model), "--layers", str(a.layers)),
                *("--seed", "0", "--loss-log", "loss.jsonl", "--final-params", "final.pt"),
            ],
        }
        spec: dict[str, Any] = {
            "replicas": 1,
            "gracePeriodSeconds": a.grace,
            "nodeLossTimeoutSeconds": a.node_loss_timeout,
            "checkpoint": checkpoint,
            # The same for every mode; no-progress is off in effect: (c) never checkpoints.
            "failurePolicy": {
                "backoff": {"initialSeconds": 1, "maxSeconds": 1},
                "maxFailuresWithoutProgress": 100,
            },
            "template": {"spec": {"containers": [container]}},
        }
        if mode != "lazarus":
            container["env"] = [{"name": "LAZARUS_HANDLE_SIGNALS", "value": "0"}]
            spec["disruptionTaints"] = []
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": spec,
        }

    def status(self, name: str) -> dict[str, Any]:
        got = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        return dict(got.get("status") or {})

    def run(self, mode: str, trace: list[Event], label: str) -> Run:
        name = f"gp-{label}"
        run = Run(mode, name)
        clock = StepClock(self.pods, NS, name)
        t0 = run.started = time.monotonic()
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, self.body(mode, name)
        )
        handled = 0  # the newest attempt an event has hit
        for ev in trace:
            wait_for(
                partial(clock.reached, handled, ev.after_steps),
                self.args.timeout,
                f"{name}: an attempt past {handled} at {ev.after_steps} steps",
                every=0.02,
            )
            handled = clock.newest()
            run.events.append(self.disrupt(ev, name, handled, clock, t0))
            print(f"  {name}: {run.events[-1]}", flush=True)
        deadline = t0 + self.args.timeout
        while (st := self.status(name)).get("phase") not in ("Succeeded", "Failed"):
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not finish in {self.args.timeout}s: {st}")
            time.sleep(0.1)
        run.elapsed = time.monotonic() - t0
        run.phase = st["phase"]
        run.attempts = clock.stop()
        run.accounting = account(run.attempts, run.elapsed)
        run.status = {k: st.get(k) for k in ("attempt", "restarts", "lostSteps", "lostSeconds")}
        run.status["history"] = [
            {
                k: h.get(k)
                for k in ("attempt", "cause", "reason", "resumedFrom", "lostSteps", "lostEstimated")
            }
            for h in st.get("history", [])
        ]
        finals = self.pods.glob(f"{NS}_{name}-a*-0/final.pt")
        newest = max(finals, key=lambda p: attempt_of(p.parent.name), default=None)
        run.final_params = str(newest) if newest else ""
        return run

    # --- disruptions --------------------------------------------------------------------
    def disrupt(
        self, ev: Event, job: str, attempt: int, clock: StepClock, t0: float
    ) -> dict[str, Any]:
        pod = f"{job}-a{attempt}-0"
        node = self.nodes[self.core.read_namespaced_pod(pod, NS).spec.node_name]
        at = {"kind": ev.kind, "attempt": attempt, "t": round(time.monotonic() - t0, 2)}
        at["steps_at_event"] = clock.steps_of(attempt)
        if ev.kind == EVICTION:
            self.loop.evict(pod)
        elif ev.kind == CRASH:
            self.loop.crash(pod)
        elif ev.kind == NODE_LOSS:
            self.lose(node)
        elif ev.kind == NOTICE_THEN_LOSS:
            self.taint(node.name, [{"key": NOTICE_TAINT, "effect": "NoSchedule"}])
            time.sleep(self.args.notice)
            at["steps_at_loss"] = clock.steps_of(attempt)
            self.lose(node)
        else:
            raise ValueError(ev.kind)
        if ev.kind in (NODE_LOSS, NOTICE_THEN_LOSS):
            # Replaced once the next attempt runs elsewhere (the scheduler avoids the taints).
            wait_for(
                lambda: clock.steps_of(attempt + 1) > 0 or clock.newest() > attempt + 1,
                self.args.timeout,
                f"{job}: the attempt after {attempt} training",
                every=0.05,
            )
            self.taint(node.name, None)
            node.start()
            wait_for(lambda: _node_ready(self.core, node.name), 60, f"{node.name} Ready again")
        return at

    def taint(self, node: str, taints: list[dict[str, str]] | None) -> None:
        self.core.patch_node(node, {"spec": {"taints": taints}})

    def lose(self, node: Node) -> None:
        node.lose()  # SIGKILLs its pods; no heartbeat from now on
        node.report_unknown(self.core)
        now = datetime.now(UTC).isoformat()
        got = self.core.read_node(node.name).spec.taints or []
        kept = [{"key": t.key, "effect": t.effect} for t in got]
        unreachable = [
            {"key": "node.kubernetes.io/unreachable", "effect": e, "timeAdded": now}
            for e in ("NoSchedule", "NoExecute")
        ]
        self.taint(node.name, kept + unreachable)


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
    return {
        "min": round(min(xs), 4),
        "median": round(statistics.median(xs), 4),
        "max": round(max(xs), 4),
    }


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
        out[mode] = {
            "elapsed_s": summary([a.elapsed for a in accs]),
            "executed": summary([a.executed for a in accs]),
            "recomputed": summary([a.recomputed for a in accs]),
            "recomputed_s": summary([a.recomputed_seconds for a in accs]),
            "other_s": summary([a.other_seconds for a in accs]),
            "goodput": summary([a.goodput for a in accs]),
            "bitwise_equal": [r.bitwise_equal for r in group],
            "runs": [
                {
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
                for r in group
            ],
        }
    return rows, out


def restart_gaps(r: Run) -> list[float]:
    """Per event: from the disruption to the next attempt's first step, seconds."""
    firsts = [a.times[0] - r.started for a in r.attempts if a.times]
    return [round(f - e["t"], 2) for e, f in zip(r.events, firsts[1:], strict=False)]


def step_p50(r: Run) -> float | None:
    diffs = [d for a in r.attempts for d in a.durations(0.0)[1:]]
    return round(statistics.median(diffs), 4) if diffs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=7)
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
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    if args.events * args.max_gap >= args.steps:
        raise SystemExit("--events x --max-gap must stay below --steps: every mode meets the trace")
    trace = make_trace(args.seed, args.events, args.min_gap, args.max_gap)
    print(f"seed {args.seed}: trace {[(e.kind, e.after_steps) for e in trace]}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="lazarus-goodput-"))
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_at_start = os.getloadavg()
    bench = Bench(args, work)
    try:
        baseline = [bench.run("lazarus", [], "undisturbed")]
        print(f"  undisturbed: {baseline[0].elapsed:.1f}s", flush=True)
        runs: list[Run] = []
        for rep in range(args.reps):
            order = MODES[rep % 3 :] + MODES[: rep % 3]
            for mode in order:
                r = bench.run(mode, trace, f"{mode}-{rep}")
                r.bitwise_equal = final_equal(r.final_params, baseline[0].final_params)
                print(f"  {r.job}: {r.phase} in {r.elapsed:.1f}s", flush=True)
                runs.append(r)
    finally:
        bench.close()
    rows, results = report(runs, baseline)
    print("\n".join(rows))
    print("| mode | lost steps per event | restart gaps s |\n|---|---|---|")
    for r in runs:
        lost = ", ".join(map(str, lost_at_each_end(r.attempts)))
        print(f"| {r.job} | {lost} | {', '.join(map(str, restart_gaps(r)))} |")
    goodput = {m: results[m]["goodput"]["median"] for m in MODES if m in results}
    ordered = goodput.get("lazarus", 0) > goodput.get("periodic", 0) > goodput.get("none", 0)
    bitwise = all(r.bitwise_equal for r in runs if r.mode == "lazarus")
    print("target goodput (a) > (b) > (c):", "met" if ordered else "MISSED")
    print("target (a) final parameters bitwise equal:", "met" if bitwise else "MISSED")
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
        "targets": {"goodput_ordered": ordered, "lazarus_bitwise": bitwise},
        "work_dir": str(work),
    }
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
