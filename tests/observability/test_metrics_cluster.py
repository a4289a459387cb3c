"""A real Prometheus scrapes the operator while the test causes restarts of three
causes (it plays kubelet); every dashboard panel's query returns data, and the
values are the restarts, lost steps and goodput the test caused.

`LAZARUS_DASHBOARD_PNG=path` also renders the dashboard's queries to that picture
(hack/observability/picture does this for docs/dashboard.png)."""

from __future__ import annotations

import math
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from observability import render
from observability.prom import Prometheus

from lazarus_devstack.procs import free_port
from lazarus_operator.classify import parse_time
from tests.operator.conftest import Jobs
from tests.operator.harness import FakeKubelet, OperatorProcess

pytestmark = pytest.mark.cluster
TIMINGS = {"saveSeconds": 1.5, "stallSeconds": 0.25, "durableSeconds": 1.75, "bytes": 64}


@pytest.fixture
def scraped(start_operator: Callable[..., OperatorProcess]) -> Iterator[tuple[Prometheus, int]]:
    port = free_port()
    start_operator("--metrics-port", str(port))
    prom = Prometheus({"lazarus-operator": f"127.0.0.1:{port}"})
    yield prom, port
    prom.stop()


def seed(jobs: Jobs, name: str, step: int, attempt: int) -> float:
    """Commit a checkpoint with trainer timings at the start of a second (status keeps
    whole seconds); returns its commit time as the operator reads it."""
    time.sleep(1.02 - time.time() % 1)
    w = jobs.store(name).begin(step=step, attempt=attempt)
    w.put_bytes("model.bin", b"x" * 64)
    job = {"name": name, "namespace": jobs.ns, "uid": jobs.uid(name)}
    extra = {"lazarusTrainer": {"timings": {**TIMINGS, "attempt": attempt, "resumeSeconds": 0.5}}}
    w.commit(reason="periodic", job=job, extra=extra)
    st = jobs.wait(
        name, lambda s: (s.get("latestCheckpoint") or {}).get("step") == step, 30, f"step {step}"
    )
    t = parse_time(st["latestCheckpoint"]["time"])
    assert t is not None
    return t.timestamp()


def running(jobs: Jobs, name: str, attempt: int) -> float:
    jobs.wait(
        name,
        lambda s: s.get("attempt") == attempt and s.get("phase") == "Running",
        60,
        f"attempt {attempt} running",
    )
    return time.time()


def msg(outcome: str, code: int, step: int) -> dict[str, Any]:
    return {"v": 1, "outcome": outcome, "exitCode": code, "step": step, "lastCheckpoint": None}


def drive(jobs: Jobs, kubelet: FakeKubelet, name: str) -> dict[str, float]:
    """Preemption, OOM kill and a crash, then success; the wall times that matter."""
    t: dict[str, float] = {"create": time.time()}
    jobs.create(name, checkpoint={"save": {"everySeconds": 600}})
    t["run1"] = running(jobs, name, 1)
    t["c1"] = seed(jobs, name, 100, 1)
    time.sleep(3)
    t["end1"] = time.time()
    kubelet.terminate(
        f"{name}-a1-0", 75, message=msg("preempted", 75, 120), disruption="PreemptionByScheduler"
    )
    t["run2"] = running(jobs, name, 2)
    t["c2"] = seed(jobs, name, 200, 2)
    time.sleep(3)
    t["end2"] = time.time()
    kubelet.terminate(f"{name}-a2-1", 137, reason="OOMKilled", message=msg("error", 137, 230))
    t["run3"] = running(jobs, name, 3)
    time.sleep(3)
    t["end3"] = time.time()
    kubelet.terminate(f"{name}-a3-0", 1, message=msg("error", 1, 260))
    t["run4"] = running(jobs, name, 4)
    seed(jobs, name, 300, 4)
    time.sleep(2)
    for i in range(2):
        kubelet.terminate(f"{name}-a4-{i}", 0, message=msg("completed", 0, 300))
    jobs.wait(name, lambda s: s.get("phase") == "Succeeded", 30, "succeeded")
    t["done"] = time.time()
    return t


def values(result: list[dict[str, Any]], label: str = "") -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


def test_dashboard_queries_show_the_restarts_the_test_caused(
    jobs: Jobs, kubelet: FakeKubelet, scraped: tuple[Prometheus, int]
) -> None:
    prom, port = scraped
    name = "observed"
    t = drive(jobs, kubelet, name)
    time.sleep(4)  # a few scrapes of the final state
    end = time.time()
    window = end - t["create"] + 30

    # A real scrape passes promtool's lint.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        scrape = r.read()
    assert b"lazarus_restarts_total" in scrape
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=scrape, capture_output=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr

    # Every target of every panel returns data.
    panels = render.load()
    results: dict[str, list[list[dict[str, Any]]]] = {}
    for p in panels:
        results[p["title"]] = []
        for target in p["targets"]:
            got = prom.query(render.expand(target["expr"], window, window), at=end)
            assert got, f"panel {p['title']!r}: no data for {target['expr']}"
            results[p["title"]].append(got)

    # The values are what the test caused. increase() extrapolates a little past
    # the first and last scrape: counts within 5%.
    restarts = values(results["Restarts"][0], "cause")
    assert restarts == pytest.approx(
        {"disrupted": 1, "oomKilled": 1, "failed": 1, "nodeLost": 0}, rel=0.05
    )
    assert values(results["Lost work"][0])[""] == pytest.approx(20 + 30 + 60, rel=0.05)
    assert values(results["Jobs by phase"][0], "phase")["Succeeded"] == 1
    sel = f'{{namespace="{jobs.ns}", trainingjob="{name}"}}'
    ns = f'{{namespace="{jobs.ns}"}}'  # by cause per namespace: this job's alone
    exact = values(prom.query(f"lazarus_lost_steps_total{ns}", at=end), "cause")
    assert exact == {"disrupted": 20, "oomKilled": 30, "failed": 60, "nodeLost": 0}
    assert values(prom.query(f"lazarus_job_lost_steps_total{sel}", at=end))[""] == 110
    assert values(prom.query(f"lazarus_checkpoint_interval_seconds{sel}", at=end))[""] == 600
    for event in ("created", "succeeded"):
        assert values(prom.query(f"lazarus_jobs_{event}_total{ns}", at=end))[""] == 1
    assert values(prom.query(f"lazarus_jobs_failed_total{ns}", at=end))[""] == 0
    # one series a job for its phase, at most 15 in all
    assert values(prom.query(f"lazarus_job_phase{sel}", at=end), "phase") == {"Succeeded": 1}
    every = prom.query(f"count({{__name__=~'lazarus_.+', trainingjob='{name}'}})", at=end)
    assert values(every)[""] <= 15
    assert values(prom.query(f"lazarus_restarts_total{sel}", at=end), "cause") == {
        "disrupted": 1,
        "oomKilled": 1,
        "failed": 1,
        "nodeLost": 0,
    }

    # Goodput: running time up to each surviving checkpoint, and the last attempt;
    # the rest (pending, restarting, running after the last checkpoint) is not.
    productive = (t["c1"] - t["run1"]) + (t["c2"] - t["run2"]) + (t["done"] - t["run4"])
    expected = productive / (t["done"] - t["create"])
    goodput = values(results["Goodput"][0])[""]
    assert goodput == pytest.approx(expected, abs=0.08)
    lost = values(prom.query(f"lazarus_lost_seconds_total{ns}", at=end), "cause")
    assert lost["disrupted"] == pytest.approx(t["end1"] - t["c1"], abs=1.5)
    assert lost["oomKilled"] == pytest.approx(t["end2"] - t["c2"], abs=1.5)
    assert lost["failed"] == pytest.approx(t["end3"] - t["run3"], abs=1.5)
    # mean per cause; NaN (0/0) for a cause that never happened
    recovered = {k: v for k, v in values(results["Time to recover"][0], "cause").items() if v == v}
    assert set(recovered) == {"disrupted", "oomKilled", "failed"}
    assert all(0 < v < 30 for v in recovered.values()), recovered
    trainer = [values(r)[""] for r in results["Trainer: save and resume"]]
    assert trainer == pytest.approx([1.5, 0.25, 1.75, 0.5])
    assert all(not math.isnan(v) for v in trainer)

    out = os.environ.get("LAZARUS_DASHBOARD_PNG")
    if out:
        render.render(prom, panels, t["create"] - 5, end, Path(out), namespace=jobs.ns)
