"""Metrics at N jobs: the series count, scrape size and render time of the operator's
job metrics, this checkout's code beside an earlier commit's (docs/performance.md,
"Metrics at 1,000 jobs").

Both versions' `lazarus_operator` packages are loaded in this one process (the earlier
one from `git archive <rev>` under another name), each fills its own registry with the
same N jobs, and the renders alternate round by round (lazarus_devstack.bench_harness).
Every job has run, checkpointed (trainer timings in the manifest) and every fourth has
restarted once, cause by cause: a job at rest. Only the metrics' own registry is
rendered (no process or GC collectors), as `generate_latest` serves it.

    hack/python -m bench.metrics_scale --jobs 1000 --before 12aa0d1^ --out metrics.json
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest

from lazarus_devstack.bench_harness import interleaved, rest, spread, timed
from lazarus_operator.builders import JobRef
from lazarus_operator.spec import CheckpointSpec

REPO = Path(__file__).resolve().parent.parent
CAUSES = ("Disrupted", "NodeLost", "OOMKilled", "Failed")
CAUSE_KEYS = {"Disrupted": "disrupted", "NodeLost": "nodeLost", "OOMKilled": "oomKilled"}
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TIMINGS = {"saveSeconds": 1.5, "stallSeconds": 0.25, "durableSeconds": 1.75, "bytes": 64}
SPEC = CheckpointSpec(uri="s3://bench/root", save_every_seconds=600)


def load_before(rev: str, into: Path) -> ModuleType:
    """`rev`'s operator package, imported as `lazarus_operator_before` (its imports
    are relative, so they resolve inside it)."""
    tar = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "operator/lazarus_operator"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(into, filter="data")
    pkg = into / "operator" / "lazarus_operator"
    spec = importlib.util.spec_from_file_location(
        "lazarus_operator_before", pkg / "__init__.py", submodule_search_locations=[str(pkg)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    # Its module-level METRICS registers in the default registry, where ours are.
    default, prometheus_client.REGISTRY = prometheus_client.REGISTRY, CollectorRegistry()
    try:
        return importlib.import_module("lazarus_operator_before.metrics")
    finally:
        prometheus_client.REGISTRY = default


def observer(
    m: Any, spec: bool
) -> Callable[[JobRef, dict[str, Any], dict[str, Any], datetime], None]:
    """`m.observe` as (job, old status, new status, now): the earlier code takes those
    (and no spec.checkpoint); this checkout's may take one Transition instead."""
    if next(iter(inspect.signature(m.observe).parameters)) == "t":
        between = importlib.import_module("lazarus_operator.transition").between
        return lambda job, old, new, now: m.observe(between(job, old, new, now), SPEC)
    if spec:
        return lambda job, old, new, now: m.observe(job, old, new, now, SPEC)
    observe: Callable[[JobRef, dict[str, Any], dict[str, Any], datetime], None] = m.observe
    return observe


def job_life(m: Any, job: JobRef, i: int, spec: bool) -> None:
    """One job to rest: running, a checkpoint, every fourth restarted once."""
    ck = {"latestCheckpoint": {"step": 100, "time": "2026-01-01T00:00:30Z"}, "stepRate": 2.0}
    observe = observer(m, spec)
    old: dict[str, Any] = {}
    t = 0.0

    def cycle(new: dict[str, Any]) -> None:
        nonlocal old, t
        t += 10
        observe(job, old, new, T0 + timedelta(seconds=t))
        old = new

    cycle({"phase": "Running", "attempt": 1, **ck})
    if i % 4 == 0:
        cause = CAUSES[(i // 4) % len(CAUSES)]
        restarts = {CAUSE_KEYS.get(cause, "failed"): 1}
        cycle(
            {**old, "phase": "Restarting", "restarts": restarts, "pendingRestart": {"cause": cause}}
        )
        relaunched = {k: v for k, v in old.items() if k != "pendingRestart"}
        cycle({**relaunched, "phase": "Pending", "attempt": 2, "lostSteps": 20})
        cycle({**old, "phase": "Running"})
    timings = {**TIMINGS, "attempt": old["attempt"], "resumeSeconds": 0.5}
    m.observe_checkpoint(job, "c100", {"lazarusTrainer": {"timings": timings}})


@dataclass
class Version:
    name: str
    registry: CollectorRegistry
    series: int = 0
    bytes: int = 0


def fill(metrics: ModuleType, name: str, jobs: int, namespaces: int, spec: bool) -> Version:
    reg = CollectorRegistry()
    m = metrics.Metrics(reg)
    for i in range(jobs):
        job_life(m, JobRef(f"job-{i:05d}", f"team-{i % namespaces:02d}", f"uid-{i}"), i, spec)
    text = generate_latest(reg)
    lines = text.decode().splitlines()
    n = sum(1 for x in lines if x and not x.startswith("#"))
    return Version(name, reg, n, len(text))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--namespaces", type=int, default=10)
    p.add_argument("--before", default="12aa0d1^", help="the earlier commit (git rev)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--idle", type=float, default=1.0, help="seconds of rest before each render")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    from lazarus_operator import metrics as after

    with tempfile.TemporaryDirectory() as tmp:
        before = load_before(args.before, Path(tmp))
    versions = {
        "before": fill(before, f"before ({args.before})", args.jobs, args.namespaces, False),
        "after": fill(after, "this checkout", args.jobs, args.namespaces, True),
    }
    secs: dict[str, list[float]] = {k: [] for k in versions}
    for slot in interleaved(list(versions), args.rounds, args.warmup):
        rest(args.idle)
        took = timed(partial(generate_latest, versions[slot.name].registry))
        print(f"{slot.tag} {slot.name}: {took:.3f} s", flush=True)
        if not slot.warmup:
            secs[slot.name].append(took)
    print(f"\n{args.jobs} jobs in {args.namespaces} namespaces, {args.rounds} rounds")
    print("| code | series | per job | scrape | render, median (min-max) |")
    print("|---|---|---|---|---|")
    for key, v in versions.items():
        per_job = v.series / args.jobs
        mb = v.bytes / 1e6
        print(f"| {v.name} | {v.series:,} | {per_job:.1f} | {mb:.2f} MB | {spread(secs[key])} s |")
    if args.out:
        out = {
            k: {"code": v.name, "series": v.series, "bytes": v.bytes, "render_s": secs[k]}
            for k, v in versions.items()
        }
        args.out.write_text(json.dumps({"jobs": args.jobs, **out}, indent=2) + "\n")


if __name__ == "__main__":
    main()
