"""Restart latency of the operator: from the last pod of an attempt ending to
every pod of the next attempt created, over N restarts with J jobs live.

Real kube-apiserver + etcd + controller-manager and a real S3 server (the
devstack), the operator as a subprocess, and the tests' fake kubelet (binds
pods, reports them Running, confirms graceful deletions). Each restart is a
preemption (DisruptionTarget, no backoff), so what is measured is the
operator's own path: pod watch -> classify -> storage listing + fence record
-> pod creation. Times are taken from one pod watch in this process: the
DELETED event of the last old pod and the ADDED event of the last new one.

    hack/python -m bench.operator_restart_latency --restarts 100 --jobs 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.kube_bench import KubeBench, start
from bench.pod_clock import PodClock
from lazarus_devstack.bench_harness import latency_summary, percentile
from lazarus_devstack.fake_kubelet import FakeKubelet
from lazarus_devstack.harness import GROUP, PLURAL, VERSION, OperatorProcess, wait_for

NS = "bench"
Running = Callable[[str, int], bool]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--restarts", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--checkpoints", type=int, default=5, help="seeded per job (listing cost)")
    ap.add_argument("--pause", type=float, default=0.3, help="seconds between restarts")
    ap.add_argument(
        "--node-losses", type=int, default=10, help="then: nodes made NotReady, one at a time"
    )
    ap.add_argument("--node-loss-timeout", type=int, default=5, help="nodeLossTimeoutSeconds")
    ap.add_argument("--out", type=Path, help="also write the result as JSON here")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="lazarus-bench-"))
    kb = start(run_dir, NS, "bench")
    op: OperatorProcess | None = None
    kubelet: FakeKubelet | None = None
    try:
        clock = PodClock(kb.api, NS)
        kubelet = FakeKubelet(kb.api, NS, [f"node-{i}" for i in range(8)]).start()
        op = OperatorProcess(
            {"KUBECONFIG": kb.state.kubeconfig, "LAZARUS_PROGRESS_SECONDS": "30"},
            NS,
            run_dir / "operator.log",
        )
        names = [f"job-{i:02d}" for i in range(args.jobs)]
        create_jobs(args, kb, names)
        running = partial(all_running, kubelet, args.replicas)
        for name in names:
            wait_for(partial(running, name, 1), 120, f"{name} running")
        print(f"{args.jobs} jobs running; measuring {args.restarts} restarts", flush=True)
        attempts = dict.fromkeys(names, 1)
        lat = restarts(args, kubelet, clock, names, attempts, running)
        node_loss = node_losses(args, kubelet, clock, names, attempts, running)
        clock.stop()
        report(args, lat, node_loss)
    finally:
        if kubelet:
            kubelet.stop()
        if op:
            op.stop()
        kb.stack.down()


def create_jobs(args: argparse.Namespace, kb: KubeBench, names: list[str]) -> None:
    """Each job with `--checkpoints` committed checkpoints already (the listing's cost)."""
    for name in names:
        store = kb.store(name)
        for step in range(1, args.checkpoints + 1):
            w = store.begin(step=step * 100, attempt=1)
            w.put_bytes("model.bin", b"x" * 1024)
            w.commit(reason="periodic")
        body = kb.job(name, args.replicas, nodeLossTimeoutSeconds=args.node_loss_timeout)
        kb.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)


def all_running(kubelet: FakeKubelet, replicas: int, name: str, attempt: int) -> bool:
    want = {f"{name}-a{attempt}-{i}" for i in range(replicas)}
    pods = {p["metadata"]["name"]: p for p in kubelet.pods(name)}
    return all(n in pods and (pods[n].get("status") or {}).get("phase") == "Running" for n in want)


def restarts(
    args: argparse.Namespace,
    kubelet: FakeKubelet,
    clock: PodClock,
    names: list[str],
    attempts: dict[str, int],
    running: Running,
) -> list[float]:
    """Preempt one pod of each job in turn; time from the last old pod gone to the last
    new one created."""
    lat: list[float] = []
    for r in range(args.restarts):
        name = names[r % len(names)]
        a = attempts[name]
        old = [f"{name}-a{a}-{i}" for i in range(args.replicas)]
        new = [f"{name}-a{a + 1}-{i}" for i in range(args.replicas)]
        kubelet.terminate(old[0], 137, disruption="PreemptionByScheduler")
        with clock.cv:
            ok = clock.cv.wait_for(partial(_done, clock, old, new), timeout=60)
            if not ok:
                raise SystemExit(f"restart {r} of {name} did not complete")
            ended = max(clock.deleted[x] for x in old)
            created = max(clock.added[x] for x in new)
        # Pods of N+1 are created only after all of N are gone: never negative.
        lat.append(created - ended)
        attempts[name] = a + 1
        wait_for(partial(running, name, a + 1), 60, f"{name} a{a + 1} running")
        time.sleep(args.pause)
    return lat


def report(args: argparse.Namespace, lat: list[float], node_loss: dict[str, Any]) -> None:
    result: dict[str, Any] = {
        "restarts": len(lat),
        "jobs": args.jobs,
        "replicas": args.replicas,
        "checkpoints_per_job": args.checkpoints,
        **latency_summary(lat),
    }
    result["node_loss"] = node_loss
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("target p99 < 2 s:", "met" if result["p99_s"] < 2 else "MISSED")
    if node_loss.get("relaunches"):
        bound = args.node_loss_timeout + 10
        verdict = "met" if node_loss["p99_s"] <= bound else "MISSED"
        print(f"node loss -> relaunch p99 <= nodeLossTimeoutSeconds + 10 s ({bound} s):", verdict)


def node_losses(
    args: argparse.Namespace,
    kubelet: FakeKubelet,
    clock: PodClock,
    names: list[str],
    attempts: dict[str, int],
    running: Running,
) -> dict[str, Any]:
    """Make nodes NotReady one at a time (their kubelet gone: nothing confirms); time
    from NotReady to every pod of each affected job's next attempt created. One
    timeout (nodeLossTimeoutSeconds) is the floor; anything above it is ours."""
    lat: list[float] = []
    for r in range(args.node_losses):
        node = kubelet.nodes[r % len(kubelet.nodes)]
        victims = _on_node(kubelet, node, names, attempts)
        if not victims:
            continue
        kubelet.unresponsive.add(node)
        t0 = time.monotonic()
        kubelet.set_node_ready(node, "Unknown")
        for name, a in victims.items():
            new = [f"{name}-a{a + 1}-{i}" for i in range(args.replicas)]
            with clock.cv:
                if not clock.cv.wait_for(
                    lambda new=new: all(x in clock.added for x in new),  # type: ignore[misc]
                    timeout=args.node_loss_timeout + 60,
                ):
                    raise SystemExit(f"node loss of {node}: {name} was not relaunched")
                lat.append(max(clock.added[x] for x in new) - t0)
            attempts[name] = a + 1
        kubelet.set_node_ready(node, "True")
        kubelet.unresponsive.discard(node)
        for name in victims:
            wait_for(partial(running, name, attempts[name]), 60, f"{name} running again")
        time.sleep(args.pause)
    if not lat:
        return {"relaunches": 0}
    return {
        "relaunches": len(lat),
        "node_loss_timeout_s": args.node_loss_timeout,
        "p50_s": round(statistics.median(lat), 3),
        "p99_s": round(percentile(lat, 99), 3),
        "max_s": round(max(lat), 3),
        "above_timeout_p50_s": round(statistics.median(lat) - args.node_loss_timeout, 3),
    }


def _on_node(
    kubelet: FakeKubelet, node: str, names: list[str], attempts: dict[str, int]
) -> dict[str, int]:
    """The jobs with a pod of their current attempt on `node`, and that attempt."""
    return {
        name: attempts[name]
        for name in names
        if any(
            (p.get("spec") or {}).get("nodeName") == node
            and p["metadata"]["labels"].get("lazarus.dev/attempt") == str(attempts[name])
            for p in kubelet.pods(name)
        )
    }


def _done(clock: PodClock, old: list[str], new: list[str]) -> bool:
    return all(x in clock.deleted for x in old) and all(x in clock.added for x in new)


if __name__ == "__main__":
    main()
