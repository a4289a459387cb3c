"""The run behind docs/dashboard.png (hack/observability/picture runs it through pytest
for the control plane, S3 server and operator fixtures; its name keeps it out of the
suite). Twelve TrainingJobs run for LAZARUS_PICTURE_MINUTES (default 75: the panels'
1 h windows fill and slide) while a real Prometheus scrapes the operator; this plays
kubelet and trainer: checkpoints at each job's own save interval, preemptions, OOM
kills and crashes at seeded random times, a node outage, a suspend, a job whose saves
stop, two that succeed and one that fails. Then every panel's own query is rendered to
LAZARUS_DASHBOARD_PNG."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from observability import render
from observability.prom import Prometheus

from lazarus_devstack.procs import free_port
from tests.operator.conftest import Jobs, jobs, kubelet, s3_secret, start_operator
from tests.operator.harness import FakeKubelet, OperatorProcess

__all__ = ["jobs", "kubelet", "s3_secret", "start_operator"]
pytestmark = pytest.mark.cluster
MINUTES = float(os.environ.get("LAZARUS_PICTURE_MINUTES", "75"))
TIMINGS = {"saveSeconds": 1.5, "stallSeconds": 0.25, "durableSeconds": 1.75, "bytes": 64}


@dataclass
class Sim:
    """One job as its trainer and kubelet would play it."""

    name: str
    every: int  # save interval (spec.checkpoint.save.everySeconds)
    rate: float  # steps per second
    events: list[tuple[float, str]] = field(default_factory=list)  # (minute, what)
    saves: bool = True
    attempt: int = 0
    started: float = 0.0  # when the running attempt's pods ran
    resumed: int = 0  # the step it resumed from
    saved_at: float = 0.0
    running: bool = False  # its attempt `attempt` runs (not yet ended by us)
    done: bool = False

    def step(self, now: float) -> int:
        return self.resumed + int((now - self.started) * self.rate)


def sims(minutes: float, seed: int = 28) -> list[Sim]:
    rng = random.Random(seed)
    out = []
    for i in range(12):
        s = Sim(f"train-{i:02d}", rng.choice([60, 120, 180, 300]), rng.choice([2.0, 5.0, 10.0]))
        n = 1 + int(rng.random() * minutes / 20) + (4 if i == 3 else 0)  # train-03: flaky
        for _ in range(n):
            kind = rng.choices(["preempt", "oom", "crash"], weights=[5, 2, 2])[0]
            s.events.append((rng.uniform(3, minutes - 3), kind))
        out.append(s)
    out[5].events.append((minutes * 0.3, "stop-saving"))  # its storage breaks
    out[7].events += [(minutes * 0.35, "suspend"), (minutes * 0.5, "resume")]
    out[8].events.append((minutes * 0.55, "succeed"))
    out[9].events.append((minutes * 0.8, "succeed"))
    out[10].events.append((minutes * 0.65, "fail"))
    for s in out:
        s.events.sort()
    return out


def msg(outcome: str, code: int, step: int) -> dict[str, Any]:
    return {"v": 1, "outcome": outcome, "exitCode": code, "step": step, "lastCheckpoint": None}


def save(jobs: Jobs, s: Sim, now: float) -> None:
    w = jobs.store(s.name).begin(step=s.step(now), attempt=s.attempt)
    w.put_bytes("model.bin", b"x" * 64)
    job = {"name": s.name, "namespace": jobs.ns, "uid": jobs.uid(s.name)}
    timings = {**TIMINGS, "attempt": s.attempt, "resumeSeconds": 0.5, "stepsPerSecond": s.rate}
    w.commit(reason="periodic", job=job, extra={"lazarusTrainer": {"timings": timings}})
    s.saved_at = now


def end(kubelet: FakeKubelet, s: Sim, what: str, now: float) -> None:
    """The attempt's end as kubelet reports it; pod 0 is enough to end a gang."""
    pod, step = f"{s.name}-a{s.attempt}-0", s.step(now)
    if what == "preempt":
        kubelet.terminate(
            pod, 75, message=msg("preempted", 75, step), disruption="PreemptionByScheduler"
        )
    elif what == "oom":
        kubelet.terminate(pod, 137, reason="OOMKilled", message=msg("error", 137, step))
    elif what == "crash":
        kubelet.terminate(pod, 1, message=msg("error", 1, step))
    elif what == "fail":
        kubelet.terminate(pod, 78, message=msg("error", 78, step))
    elif what == "succeed":
        for i in range(2):
            kubelet.terminate(f"{s.name}-a{s.attempt}-{i}", 0, message=msg("completed", 0, step))


def tick(jobs: Jobs, kubelet: FakeKubelet, s: Sim, minute: float, now: float) -> None:
    st = jobs.status(s.name)
    if st.get("phase") in ("Succeeded", "Failed"):
        s.done = True
        return
    if st.get("phase") == "Running" and int(st.get("attempt") or 0) > s.attempt:
        s.attempt, s.started, s.running = int(st["attempt"]), now, True
        s.resumed = int((st.get("resumedFrom") or {}).get("step") or 0)
        s.saved_at = now
    while s.events and s.events[0][0] <= minute:
        what = s.events[0][1]
        if what in ("suspend", "resume"):
            jobs.patch_spec(s.name, {"suspend": what == "suspend"})
            s.running = False
        elif what == "stop-saving":
            s.saves = False
        elif not s.running or st.get("phase") != "Running":
            return  # an end waits for a running attempt
        else:
            end(kubelet, s, what, now)
            s.running = False  # until a newer attempt runs
        s.events.pop(0)
        return
    if s.running and st.get("phase") == "Running" and s.saves and now - s.saved_at >= s.every:
        save(jobs, s, now)


def outage(kubelet: FakeKubelet, node: str, minute: float, at: float) -> None:
    """One node NotReady for two minutes: its pods' jobs restart as nodeLost (the
    kubelet binds no new pod there meanwhile)."""
    down = at <= minute < at + 2
    if down != (node in kubelet.unresponsive):
        if down:
            kubelet.unresponsive.add(node)
        else:
            kubelet.unresponsive.discard(node)
        kubelet.set_node_ready(node, "False" if down else "True")


@pytest.fixture
def scraped(start_operator: Callable[..., OperatorProcess]) -> Iterator[Prometheus]:
    port = free_port()
    start_operator("--metrics-port", str(port))
    prom = Prometheus({"lazarus-operator": f"127.0.0.1:{port}"})
    yield prom
    prom.stop()


def test_picture_run(jobs: Jobs, kubelet: FakeKubelet, scraped: Prometheus) -> None:
    out = os.environ.get("LAZARUS_DASHBOARD_PNG")
    assert out, "set LAZARUS_DASHBOARD_PNG (hack/observability/picture does)"
    t0 = time.time()
    plays = sims(MINUTES)
    created = 0
    while (now := time.time()) < t0 + MINUTES * 60:
        minute = (now - t0) / 60
        if created < len(plays) and minute >= created / 3:  # one every 20 s
            s = plays[created]
            jobs.create(s.name, checkpoint={"save": {"everySeconds": s.every}})
            created += 1
        outage(kubelet, kubelet.nodes[0], minute, MINUTES * 0.42)
        for s in plays[:created]:
            if not s.done:
                try:
                    tick(jobs, kubelet, s, minute, now)
                except (client.ApiException, AssertionError) as err:  # a pod already gone
                    print(f"{minute:.1f} min {s.name}: {err}")
        time.sleep(2)
    caption = (
        f"after a {MINUTES:.0f}-minute test run of 12 TrainingJobs (preemptions, OOM kills,"
        " crashes, a node outage, a suspend, a job whose saves stop, two successes, a failure)"
    )
    render.render(scraped, render.load(), t0, time.time(), Path(out), caption=caption)
