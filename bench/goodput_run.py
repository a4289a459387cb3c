"""One TrainingJob of bench.goodput on the local loop, under a trace of disruptions: its
spec per mode, the disruptions (eviction, crash, node loss, notice then loss; or Kueue
preempting it for a higher-priority job) and what the run leaves (steps seen, the
operator's status, the final parameters)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench.goodput_groups import GROUPS
from bench.goodput_groups_run import GroupEvents, as_groups
from bench.goodput_trace import (
    CRASH,
    EVICTION,
    NODE_LOSS,
    NOTICE_TAINT,
    NOTICE_THEN_LOSS,
    QUEUE_PREEMPTION,
    Accounting,
    AttemptSteps,
    Event,
    account,
)
from bench.local_loop import LocalLoop, StepClock, attempt_of
from bench.recovery_watch import KubeletLog
from lazarus_devstack import kueue
from lazarus_devstack.harness import GROUP, PLURAL, VERSION, LosableNode, node_ready, wait_for
from lazarus_devstack.kueue_manifests import Queues
from lazarus_devstack.kueue_preempt import Preempter, in_queue, priority_classes
from lazarus_devstack.kueue_timeline import spans

NS = "goodput"
LOW, HIGH = "goodput-low", "goodput-high"  # the queue trace's WorkloadPriorityClasses


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
    quota_away: float = 0.0  # s the queue held none of the job's quota (Kueue's trace)
    load: tuple[float, float] = (0.0, 0.0)  # the 1-minute load average at start and end


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.queued = args.trace == "queue-preemption"
        with_groups = GROUPS in getattr(args, "modes", ())
        self.loop = LocalLoop(
            work,
            NS,
            # (d)'s two groups each hold a node; a third takes a replacement.
            ("goodput-a", "goodput-b", *(("goodput-c",) if with_groups else ())),
            {"LAZARUS_PROGRESS_SECONDS": "1"},
            with_kueue=self.queued,
        )
        self.core, self.custom = self.loop.core, self.loop.custom
        self.pods, self.nodes = self.loop.pods, self.loop.nodes
        self.preempter = Preempter(self.custom, NS, args.timeout, core=self.core)
        self.preemptions = 0
        self.groups = GroupEvents(
            self.loop,
            KubeletLog(),
            self.lose,
            self.taint,
            args.timeout,
            args.notice,
            args.steps,
            lambda name: self.status(name).get("phase"),
        )
        if self.queued:
            # A quota of one job (1 cpu): the preemptor fits only once the job yields.
            queues = Queues(NS, {"cpu": "1"})
            kueue.apply(self.loop.state, [*queues.docs(), *priority_classes(LOW, HIGH)])

    def close(self) -> None:
        self.loop.close()

    # --- one job ------------------------------------------------------------------------
    def body(
        self, mode: str, name: str, steps: int | None = None, priority: str = LOW
    ) -> dict[str, Any]:
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
                *("--steps", str(steps or a.steps), "--step-sleep", str(a.step_sleep)),
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
        if mode == GROUPS:  # (d): (a) with spec.faultTolerance
            as_groups(spec, container, name)
        if mode in ("periodic", "none"):
            container["env"] = [{"name": "LAZARUS_HANDLE_SIGNALS", "value": "0"}]
            spec["disruptionTaints"] = []
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": spec,
        }
        if not self.queued:
            return body
        container["resources"] = {"requests": {"cpu": "1"}}
        return in_queue(body, Queues(NS).local_queue, priority)

    def status(self, name: str) -> dict[str, Any]:
        got = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        return dict(got.get("status") or {})

    def run(self, mode: str, trace: list[Event], label: str) -> Run:
        name = f"gp-{label}"
        run = Run(mode, name)
        clock = StepClock(self.pods, NS, name)
        t0 = run.started = time.monotonic()
        load0 = os.getloadavg()[0]
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, self.body(mode, name)
        )
        if mode == GROUPS:
            run.events = self.groups.run(name, trace, clock, t0)
        else:
            run.events = self.whole_job_trace(name, trace, clock, t0)
        deadline = t0 + self.args.timeout
        while (st := self.status(name)).get("phase") not in ("Succeeded", "Failed"):
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not finish in {self.args.timeout}s: {st}")
            time.sleep(0.1)
        run.elapsed = time.monotonic() - t0
        run.load = (load0, os.getloadavg()[0])
        run.quota_away = sum(e.get("spans", {}).get("quota_away", 0.0) for e in run.events)
        run.phase = st["phase"]
        run.attempts = clock.stop()
        run.accounting = account(run.attempts, run.elapsed)
        kept = ("attempt", "restarts", "lostSteps", "lostSeconds", "faultTolerance")
        run.status = {k: st.get(k) for k in kept}
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
    def whole_job_trace(
        self, name: str, trace: list[Event], clock: StepClock, t0: float
    ) -> list[dict[str, Any]]:
        """Each event hits the newest attempt once it has run the event's steps."""
        events: list[dict[str, Any]] = []
        handled = 0  # the newest attempt an event has hit
        for ev in trace:
            wait_for(
                partial(clock.reached, handled, ev.after_steps),
                self.args.timeout,
                f"{name}: an attempt past {handled} at {ev.after_steps} steps",
                every=0.02,
            )
            handled = clock.newest()
            events.append(self.disrupt(ev, name, handled, clock, t0))
            print(f"  {name}: {events[-1]}", flush=True)
        return events

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
        elif ev.kind == QUEUE_PREEMPTION:
            at.update(self.preempt(job, attempt, clock, t0))
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
            wait_for(lambda: node_ready(self.core, node.name), 60, f"{node.name} Ready again")
        return at

    def preempt(self, job: str, attempt: int, clock: StepClock, t0: float) -> dict[str, Any]:
        """Kueue preempts `job` for a higher-priority TrainingJob of `--preemptor-steps`
        steps; back once the job's next attempt has taken a step. Its moments (seconds
        since the job was created) and the spans between them (kueue_timeline)."""
        self.preemptions += 1
        high = self.body("lazarus", f"hp{self.preemptions}-{job}", self.args.preemptor_steps, HIGH)
        p = self.preempter.preempt(job, high)
        first = wait_for(
            lambda: clock.first_seen(attempt + 1),
            self.args.timeout,
            f"{job}: attempt {attempt + 1}'s first step",
            every=0.05,
        )
        moments = {**p.moments, "first_step": first}
        if (saved := self.signal_saved(job, attempt)) is not None:
            moments["saved"] = saved
        span = spans(moments)
        for name, a, b in (
            ("save", "terminating", "saved"),
            ("restart", "pod_created", "first_step"),
            ("event_to_step", "created", "first_step"),
        ):
            if a in moments and b in moments:
                span[name] = round(moments[b] - moments[a], 2)
        return {
            "reason": p.reason,
            "evicted_t": round(p.evicted - t0, 2),
            "queued_t": round(p.queued - t0, 2),
            "readmitted_t": round(p.readmitted - t0, 2),
            "moments_t": {
                k: round(v - t0, 2) for k, v in sorted(moments.items(), key=lambda kv: kv[1])
            },
            "spans": span,
        }

    def signal_saved(self, job: str, attempt: int) -> float | None:
        """When (monotonic) the attempt's trainer wrote its last termination message, if
        that says it saved on SIGTERM (mode (a)): its save durable, just before its exit.
        Mode (b)'s trainer dies on the signal; its message is its last progress report."""
        path = self.pods / f"{NS}_{job}-a{attempt}-0" / "termination-log"
        try:
            msg = json.loads(path.read_text() or "{}")
            at = path.stat().st_mtime
        except (OSError, ValueError):
            return None
        return at - time.time() + time.monotonic() if msg.get("savedOnSignal") else None

    def taint(self, node: str, taints: list[dict[str, str]] | None) -> None:
        self.core.patch_node(node, {"spec": {"taints": taints}})

    def lose(self, node: LosableNode) -> None:
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
