"""One operator, many jobs: N TrainingJobs of R pods on kwok nodes, then a churn
of pod failures and evictions at a fixed rate.

Real kube-apiserver + etcd + controller-manager + scheduler and a real S3 server
(the devstack), kwok (built from its Go module) managing fake nodes and running
their pods through its default stages, and the operator as a subprocess watching
the benchmark's namespace. The benchmark removes the nodes' `not-ready` taint
once kwok reports them Ready (the devstack runs no node-lifecycle controller).

It prints, and writes as JSON (--out):
  - time from the last TrainingJob created to every job Running;
  - the operator's peak and final RSS, and its CPU seconds;
  - API requests/s at rest and per restart, from the apiserver's own
    `apiserver_request_total` (kwok's node heartbeats and leases excluded);
  - failure -> every replacement pod created, p50/p99/max;
  - restarts missed or done twice (each failure hits a different job).

    hack/python -m bench.operator_scale --jobs 100 --failures 30

(hack/python: this checkout's code first on PYTHONPATH, as hack/test runs it; the shared
venv's editable install may point at another checkout.) kwok, its nodes and the request
counts are in bench/scale_kube.py, the churn in bench/scale_churn.py, the process watch
and profile in bench/proc_watch.py.

--heap DIR has the operator trace its allocations (LAZARUS_HEAP_SNAPSHOTS) from
before the first job to the rest window, and write a snapshot there then
(SIGUSR1). --operator-env KEY=VALUE sets the operator's environment (e.g.
LAZARUS_MALLOC_ARENAS=0 for glibc's default).

--profile FILE samples the operator with py-spy (collapsed stacks, `--format raw`)
from its start to the end of the churn, and prints the functions most on-CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.kube_bench import KubeBench, start
from bench.pod_clock import PodClock
from bench.proc_watch import ProcWatch, start_profile, stop_profile
from bench.scale_churn import churn, created_after, job_events, restarts, running_jobs
from bench.scale_kube import (
    NS,
    api_requests,
    events_since,
    make_nodes,
    operator_traffic,
    start_kwok,
)
from lazarus_devstack.bench_harness import percentile
from lazarus_devstack.harness import GROUP, PLURAL, VERSION, OperatorProcess, wait_for


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--failures", type=int, default=30)
    ap.add_argument("--rate", type=float, default=1.0, help="failures per second")
    ap.add_argument("--rest", type=float, default=30, help="seconds of quiet to measure")
    ap.add_argument(
        "--running-timeout", type=float, default=1200, help="s to wait for every job Running"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    ap.add_argument("--profile", type=Path, help="py-spy the operator into this file")
    ap.add_argument("--heap", type=Path, help="tracemalloc snapshot of the operator at rest")
    ap.add_argument(
        "--operator-env", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="lazarus-scale-"))
    kb = start(run_dir, NS, "scale", scheduler=True, pool=16)
    procs: list[subprocess.Popen[bytes]] = []
    op: OperatorProcess | None = None
    try:
        procs.append(start_kwok(kb.state, run_dir))
        make_nodes(kb.core, args.nodes)
        clock = PodClock(kb.api, NS)
        op = start_operator(args, kb, run_dir)
        result = measure(args, kb, op, clock)
        write(args, result)
    finally:
        if op:
            op.stop()
        for p in procs:
            p.terminate()
            p.wait(10)
        kb.stack.down()


def start_operator(args: argparse.Namespace, kb: KubeBench, run_dir: Path) -> OperatorProcess:
    op_env = {"KUBECONFIG": kb.state.kubeconfig, "LAZARUS_PROGRESS_SECONDS": "30"}
    op_env.update(kv.split("=", 1) for kv in args.operator_env)
    if args.heap:
        op_env["LAZARUS_HEAP_SNAPSHOTS"] = str(args.heap.resolve())
    return OperatorProcess(op_env, NS, run_dir / "operator.log")


def measure(
    args: argparse.Namespace, kb: KubeBench, op: OperatorProcess, clock: PodClock
) -> dict[str, Any]:
    """Launch every job, rest, then churn; the result (see the module's list)."""
    watch = ProcWatch(op.proc.pid)
    load = {"start": os.getloadavg()[0]}
    spy = start_profile(args.profile, op.proc.pid) if args.profile else None
    wait_for(lambda: "authentication" in op.log(), 60, "operator up")
    if args.heap:  # trace from here: the launch, not the imports
        op.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "tracing from now on" in op.log(), 60, "tracing")
    names = [f"job-{i:04d}" for i in range(args.jobs)]
    all_running_s = launch(args, kb, names, watch, load)
    load["all_running"] = os.getloadavg()[0]
    time.sleep(10)  # let the launch settle before measuring rest
    at_rest = measure_rest(args, kb, watch)
    if args.heap:
        op.proc.send_signal(signal.SIGUSR1)
    churned = measure_churn(args, kb, clock, names)
    result = {
        "jobs": args.jobs,
        "pods": args.jobs * args.replicas,
        "nodes": args.nodes,
        "all_running_s": round(all_running_s, 1),
        "operator_peak_rss_mb": round(watch.peak_kb / 1024, 1),
        "operator_rss_at_rest_mb": at_rest.pop("operator_rss_at_rest_mb"),
        "operator_cpu_s": round(watch.cpu_s(), 1),
        **at_rest,
        **churned,
        "operator_env": dict(kv.split("=", 1) for kv in args.operator_env),
        "load_average_1m": {**load, "end": os.getloadavg()[0]},
    }
    watch.stop()
    clock.stop()
    if spy is not None and args.profile:
        result["profile_top"] = stop_profile(spy, args.profile)
    return result


def write(args: argparse.Namespace, result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def launch(
    args: argparse.Namespace,
    kb: KubeBench,
    names: list[str],
    watch: ProcWatch,
    load: dict[str, float],
) -> float:
    """Create every job; seconds until all are Running. A launch that does not finish
    writes how far it got (sampled) and exits."""
    for name in names:
        body = kb.job(name, args.replicas, failurePolicy={"backoff": {"initialSeconds": 0}})
        kb.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
    created = time.monotonic()
    print(f"{args.jobs} jobs created", flush=True)
    every = max(2.0, args.jobs / 500)  # a LIST of every job is not free at 5,000
    progress: list[tuple[float, int]] = []
    while True:
        running = running_jobs(kb.custom)
        progress.append((round(time.monotonic() - created, 1), running))
        if running == args.jobs or progress[-1][0] > args.running_timeout:
            break
        time.sleep(every)
    if running < args.jobs:
        write(args, {
            "jobs": args.jobs,
            "pods": args.jobs * args.replicas,
            "nodes": args.nodes,
            "all_running_s": None,
            "gave_up_after_s": args.running_timeout,
            "running_at_the_end": running,
            "running_over_time": progress[:: max(1, len(progress) // 40)] + progress[-1:],
            "operator_peak_rss_mb": round(watch.peak_kb / 1024, 1),
            "operator_cpu_s": round(watch.cpu_s(), 1),
            "load_average_1m": {**load, "end": os.getloadavg()[0]},
        })  # fmt: skip
        raise SystemExit(f"{running} of {args.jobs} jobs Running after {progress[-1][0]} s")
    all_running_s = time.monotonic() - created
    print(f"all Running in {all_running_s:.1f} s", flush=True)
    return all_running_s


def measure_rest(args: argparse.Namespace, kb: KubeBench, watch: ProcWatch) -> dict[str, Any]:
    """The operator's API requests, Events and RSS over `--rest` quiet seconds."""
    before, t0, rest_from = api_requests(kb.api), time.monotonic(), time.time()
    time.sleep(args.rest)
    rest = operator_traffic(before, api_requests(kb.api))
    at_rest = rest.total() / (time.monotonic() - t0)
    rest_events = events_since(kb.core, rest_from)
    return {
        "operator_rss_at_rest_mb": round(watch.rss_kb() / 1024, 1),
        "api_requests_per_s_at_rest": round(at_rest, 2),
        "api_requests_at_rest_by_kind": dict(rest.most_common(8)),
        "events_created_at_rest_by_source": dict(rest_events.most_common(8)),
    }


def measure_churn(
    args: argparse.Namespace, kb: KubeBench, clock: PodClock, names: list[str]
) -> dict[str, Any]:
    """`--failures` failures at `--rate`: replacement latency, requests per restart, and
    restarts missed, booked or done twice."""
    before_churn = api_requests(kb.api)
    base_restarts = restarts(kb.custom)
    by_job = churn(args, kb.core, clock, names)
    lat = [d for _, d in by_job.values()]
    slowest = sorted(by_job.items(), key=lambda kv: -kv[1][1])[:3]
    slow = {
        name: {
            "seconds": round(d, 3),
            # the API server's own stamp (1 s resolution): created late, or seen late
            "pods_created_after_s": created_after(kb.core, name, args.replicas, wall),
            "events": job_events(kb.core, name, wall),
        }
        for name, (wall, d) in slowest
    }
    time.sleep(5)
    churn_requests = operator_traffic(before_churn, api_requests(kb.api)).total()
    after = restarts(kb.custom)
    deltas = [after.get(n, 0) - base_restarts.get(n, 0) for n in names]
    hit = min(args.failures, len(names))
    return {
        "failures": hit,
        "api_requests_per_restart": round(churn_requests / max(1, hit), 1),
        "replacement_p50_s": round(statistics.median(lat), 3) if lat else None,
        "replacement_p99_s": round(percentile(lat, 99), 3) if lat else None,
        "replacement_max_s": round(max(lat), 3) if lat else None,
        "restarts_missed": hit - len(lat),  # no replacement pods within 120 s
        # the victims whose restart count went up by the end (late ones included)
        "restarts_booked": sum(d > 0 for d in deltas),
        "restarts_duplicated": sum(max(0, d - 1) for d in deltas),
        "slowest_replacements": slow,
    }


if __name__ == "__main__":
    main()
