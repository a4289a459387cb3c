"""Recovery end to end: from a pod's end (the disruption) to the next attempt's first step.

    hack/python -m bench.recovery --recoveries 10 --out recovery.json

On the local loop bench.goodput runs (bench/local_loop.py: the devstack's control plane
with its scheduler, moto S3, the operator as a subprocess, process kubelets whose pods are
the reference trainer in real subprocesses), one TrainingJob trains a TinyGPT d768 x3
(+ AdamW: a 256 MB checkpoint, as bench/save_datapath.py) without a save schedule. Each
recovery disrupts the running attempt, alternating the causes (`--causes`): an eviction
(Eviction API: SIGTERM, a preemption save in the grace period) and a crash (SIGKILL of the
trainer's process group: the next attempt resumes the last eviction's checkpoint). The next
disruption waits until the new attempt has trained `--idle` seconds. Results: a table of
p50 / p99 per part (all, and per cause) and, with `--out`, JSON with every recovery's parts.

Every timestamp comes from where the stack records it (bench/recovery_parts.py splits them):
the disruption (this script's call); the operator's status naming the ended attempt
(`lastFailure`) and the new pod's ADDED event, each first seen on a watch (API times such as
creationTimestamp and an Event's firstTimestamp keep only seconds); the old process's exit
and the new one's start from the process kubelet's log records (it runs in this process); the
trainer's `lazarus-train ready` line (imports done) and its `resume timing` record
(trainer_image/lazarus_trainer/resume_timing.py); the first loss line of the attempt, seen
by 20 ms polls of its file. The watches are bench/recovery_watch.py's.
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
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench.goodput_trace import CRASH, EVICTION
from bench.local_loop import LocalLoop, StepClock
from bench.recovery_parts import (
    PARTS,
    READY_MARK,
    TERMINATION_MARK,
    Stamps,
    marked_time,
    resume_record,
    split,
    summarize,
)
from bench.recovery_watch import KubeletLog, Watcher
from lazarus_devstack.harness import GROUP, PLURAL, VERSION, wait_for

NS = "recovery"
JOB = "rec"


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.kubelet_log = KubeletLog()
        self.loop = LocalLoop(work, NS, ("recovery-a",), {"LAZARUS_PROGRESS_SECONDS": "1"})
        self.added: dict[str, float] = {}  # pod -> first seen
        self.bound: dict[str, float] = {}  # pod -> first seen with a node
        self.created: dict[str, str] = {}  # pod -> creationTimestamp (seconds only)
        self.ended: dict[int, float] = {}  # attempt -> the job's status first names its end
        self.watches = [
            Watcher(self.loop.core.list_namespaced_pod, NS, seen=self.pod_seen),
            Watcher(
                self.loop.custom.list_namespaced_custom_object,
                *(GROUP, VERSION, NS, PLURAL),
                seen=self.job_seen,
            ),
        ]
        # Monotonic step-line times to epoch seconds (both clocks read once, here).
        self.mono_to_epoch = time.time() - time.monotonic()

    def close(self) -> None:
        for w in self.watches:
            w.stop()
        self.loop.close()

    def pod_seen(self, pod: Any, now: float) -> None:
        name = pod.metadata.name
        self.added.setdefault(name, now)
        self.created.setdefault(name, pod.metadata.creation_timestamp.isoformat())
        if pod.spec.node_name:
            self.bound.setdefault(name, now)

    def job_seen(self, job: dict[str, Any], now: float) -> None:
        failure = (job.get("status") or {}).get("lastFailure") or {}
        if isinstance(failure.get("attempt"), int):
            self.ended.setdefault(failure["attempt"], now)

    def body(self) -> dict[str, Any]:
        a = self.args
        venv_bin = str(Path(sys.executable).parent)
        container = {
            "name": "trainer",
            "image": "lazarus-trainer:dev",
            "command": [f"{venv_bin}/lazarus-train"],
            "args": [
                *("--steps", "1000000", "--step-sleep", str(a.step_sleep)),
                *("--d-model", str(a.d_model), "--layers", str(a.layers), "--heads", "8"),
                *("--seed", "0", "--loss-log", "loss.jsonl", "--keep-latest", "2"),
            ],
        }
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrainingJob",
            "metadata": {"name": JOB},
            "spec": {
                "replicas": 1,
                "gracePeriodSeconds": a.grace,
                "checkpoint": self.loop.checkpoint(JOB),
                "failurePolicy": {
                    "backoff": {"initialSeconds": a.backoff, "maxSeconds": a.backoff},
                    "maxFailuresWithoutProgress": 1000,
                    "maxFailures": 1000,
                },
                "template": {"spec": {"containers": [container]}},
            },
        }

    def log(self, pod: str) -> list[str]:
        return (self.loop.pods / f"{NS}_{pod}" / "log").read_text(errors="replace").splitlines()

    def stamps(self, clock: StepClock, attempt: int, disrupted: float) -> Stamps:
        """The timestamps of the recovery from `attempt` to `attempt + 1`."""
        old, new = f"{JOB}-a{attempt}-0", f"{JOB}-a{attempt + 1}-0"
        log = self.log(new)
        first = clock.first_seen(attempt + 1)
        exited = self.kubelet_log.first(f"{NS}/{old}: exited")
        process = self.kubelet_log.first(f"{NS}/{new}: started pid")
        observed = self.ended.get(attempt)
        ready, record = marked_time(log, READY_MARK), resume_record(log)
        missing = [
            k
            for k, v in {
                "kubelet exited": exited,
                "status lastFailure": observed,
                "pod ADDED": self.added.get(new),
                "kubelet started": process,
                "trainer ready": ready,
                "resume timing": record,
                "first step": first,
            }.items()
            if v is None
        ]
        if missing:
            raise SystemExit(f"recovery from attempt {attempt}: no {', '.join(missing)}")
        assert exited and observed and process and ready and record and first
        return Stamps(
            disrupted=disrupted,
            observed=observed,
            exited=exited,
            created=self.added[new],
            process=process,
            ready=ready,
            resume=record,
            first_step=first + self.mono_to_epoch,
        )

    def run(self) -> tuple[list[dict[str, Any]], float | None]:
        """The recoveries, and the median step interval of the attempts (seconds)."""
        a = self.args
        clock = StepClock(self.loop.pods, NS, JOB)
        self.loop.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, self.body())
        out: list[dict[str, Any]] = []
        causes = a.causes.split(",")
        attempt = 0
        for i in range(a.recoveries):
            last = attempt
            attempt = wait_for(
                partial(newer, clock, last),
                a.timeout,
                f"an attempt after {last} training",
                every=0.02,
            )
            first = clock.first_seen(attempt)
            assert first is not None
            time.sleep(max(0.0, first + a.idle - time.monotonic()))  # the idle gap
            out.append(self.recover(clock, i, attempt, causes[i % len(causes)]))
        # Steady steps (each attempt's first step excluded), to set first_step against.
        diffs = [d for att in clock.stop() for d in att.durations(0.0)[1:]]
        return out, (round(statistics.median(diffs), 4) if diffs else None)

    def recover(self, clock: StepClock, i: int, attempt: int, cause: str) -> dict[str, Any]:
        """End `attempt` by `cause`; the recovery's row once the next one has stepped."""
        pod = f"{JOB}-a{attempt}-0"
        at = time.time()
        if cause == EVICTION:
            self.loop.evict(pod)
        elif cause == CRASH:
            self.loop.crash(pod)
        else:
            raise SystemExit(f"unknown cause {cause!r}")
        wait_for(
            partial(clock.steps_of, attempt + 1),
            self.args.timeout,
            f"attempt {attempt + 1}'s first step",
            every=0.02,
        )
        s = self.stamps(clock, attempt, at)
        parts = split(s)
        new = f"{JOB}-a{attempt + 1}-0"
        saved = marked_time(self.log(pod), TERMINATION_MARK)
        row = {
            "recovery": i + 1,
            "cause": cause,
            "attempt": attempt,
            "checkpoint": s.resume.checkpoint,
            "bytes": s.resume.bytes,
            # Inside old_pod_exit: to the trainer's termination record (its save done),
            # then to the kubelet seeing the process gone.
            "disrupted_to_termination_s": round(saved - at, 4) if saved else None,
            "termination_to_exited_s": round(s.exited - saved, 4) if saved else None,
            "created_to_bound_s": round(self.bound[new] - s.created, 4),
            "creation_timestamp": self.created[new],
            "trainer_seconds": s.resume.seconds,
            "parts_s": {k: round(v, 4) for k, v in parts.items()},
        }
        print(
            f"  {i + 1:2d} {cause:8s} a{attempt}->a{attempt + 1}: total "
            f"{parts['total']:.2f}s  "
            + " ".join(f"{k}={v:.2f}" for k, v in parts.items() if k != "total"),
            flush=True,
        )
        return row


def newer(clock: StepClock, last: int) -> int | None:
    """The newest attempt, once one after `last` has logged a step."""
    return clock.newest() if clock.reached(last, 1) else None


def table(rows: list[dict[str, Any]], causes: list[str]) -> tuple[list[str], dict[str, Any]]:
    groups = {"all": rows, **{c: [r for r in rows if r["cause"] == c] for c in causes}}
    groups = {k: v for k, v in groups.items() if v}
    out = {
        g: {p: summarize([r["parts_s"][p] for r in rs]) for p in (*PARTS, "total")}
        for g, rs in groups.items()
    }
    head = " | ".join(f"{g} (n={len(rs)}) p50 / p99" for g, rs in groups.items())
    lines = [f"| part | {head} | all min-max |", "|---" * (len(groups) + 2) + "|"]
    for p in (*PARTS, "total"):
        cells = " | ".join(f"{out[g][p]['p50']:.3f} / {out[g][p]['p99']:.3f}" for g in groups)
        lo, hi = out["all"][p]["min"], out["all"][p]["max"]
        name = f"**{p}**" if p == "total" else p
        lines.append(f"| {name} | {cells} | {lo:.3f}-{hi:.3f} |")
    return lines, out


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recoveries", type=int, default=10)
    ap.add_argument(
        "--causes",
        default=f"{EVICTION},{CRASH}",
        help="in turn; start with one "
        "that saves (an eviction): a crash resumes the newest checkpoint",
    )
    ap.add_argument("--idle", type=float, default=3.0, help="s an attempt trains before its end")
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--step-sleep", type=float, default=0.2)
    ap.add_argument("--grace", type=int, default=60, help="gracePeriodSeconds")
    ap.add_argument("--backoff", type=float, default=0.0, help="failurePolicy backoff, s")
    ap.add_argument("--timeout", type=float, default=180, help="s, each wait")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    if args.causes.split(",")[0] != EVICTION:
        raise SystemExit("--causes must start with eviction: the first resume needs its save")
    return args


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="lazarus-recovery-"))
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_at_start = os.getloadavg()
    bench = Bench(args, work)
    try:
        rows, step_p50 = bench.run()
    finally:
        bench.close()
    lines, results = table(rows, args.causes.split(","))
    print("\n".join(lines))
    print(f"median step interval (steady steps, incl. --step-sleep): {step_p50}s")
    doc = {
        "started": started,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg_at_start": load_at_start,
            "load_avg_at_end": os.getloadavg(),
        },
        "command": " ".join(sys.argv),
        "inputs": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
        "step_interval_p50_s": step_p50,
        "recoveries": rows,
        "work_dir": str(work),
    }
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
