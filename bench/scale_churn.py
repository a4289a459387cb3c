"""Jobs and their failures for bench.operator_scale: how many are Running, restarts booked,
a pod failed or evicted, the churn timed on the pod clock, and what a slow restart did."""

from __future__ import annotations

import argparse
import json
import random
import time

from kubernetes import client

from bench.pod_clock import PodClock
from bench.scale_kube import NS
from lazarus_contract import parse_time
from lazarus_devstack.harness import GROUP, PLURAL, VERSION


def running_jobs(custom: client.CustomObjectsApi) -> int:
    try:
        items = custom.list_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, _request_timeout=120
        )["items"]
    except client.ApiException as err:  # an overloaded API server times out: ask again
        if err.status is not None and err.status < 500:
            raise
        return -1
    return sum((j.get("status") or {}).get("phase") == "Running" for j in items)


def restarts(custom: client.CustomObjectsApi) -> dict[str, int]:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["items"]
    return {
        j["metadata"]["name"]: int(((j.get("status") or {}).get("restarts") or {}).get("total", 0))
        for j in items
    }


def fail_pod(core: client.CoreV1Api, pod: str, evict: bool) -> None:
    """An eviction through the Eviction API, or a container that exits 1."""
    if evict:
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod}}
        core.create_namespaced_pod_eviction(pod, NS, body)
        return
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    term = {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now}
    status = {
        "phase": "Failed",
        "containerStatuses": [
            {
                "name": "t",
                "image": "t",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": term},
            }
        ],
    }
    core.patch_namespaced_pod_status(pod, NS, {"status": status})


def churn(
    args: argparse.Namespace,
    core: client.CoreV1Api,
    clock: PodClock,
    names: list[str],
) -> dict[str, tuple[float, float]]:
    """One failure every 1/rate seconds, each on a different job; returns, by job, the
    failure's wall-clock time and the time from it to every pod of that job's next
    attempt created (jobs whose pods did not all come within 120 s are left out)."""
    rng = random.Random(args.seed)
    victims = rng.sample(names, min(args.failures, len(names)))
    pending: dict[str, tuple[float, float, list[str]]] = {}
    for k, name in enumerate(victims):
        new = [f"{name}-a2-{i}" for i in range(args.replicas)]
        t0, wall = time.monotonic(), time.time()
        fail_pod(core, f"{name}-a1-{rng.randrange(args.replicas)}", evict=k % 2 == 0)
        pending[name] = (t0, wall, new)
        time.sleep(max(0.0, t0 + 1 / args.rate - time.monotonic()))
    lat: dict[str, tuple[float, float]] = {}
    with clock.cv:
        clock.cv.wait_for(
            lambda: all(all(p in clock.added for p in new) for *_, new in pending.values()),
            timeout=120,
        )
        for name, (t0, wall, new) in pending.items():
            if all(p in clock.added for p in new):
                lat[name] = (wall, max(clock.added[p] for p in new) - t0)
    return lat


def created_after(core: client.CoreV1Api, job: str, replicas: int, since: float) -> float:
    """Seconds from `since` to the creationTimestamp of the last pod of `job`'s attempt 2."""
    pods = [
        json.loads(core.read_namespaced_pod(f"{job}-a2-{i}", NS, _preload_content=False).data)
        for i in range(replicas)
    ]
    last = max(parse_time(p["metadata"]["creationTimestamp"]).timestamp() for p in pods)
    return round(last - since, 1)


def job_events(core: client.CoreV1Api, job: str, since: float) -> list[str]:
    """The Events about `job` since `since` (epoch seconds), oldest first, as
    "+seconds reason: message": what the operator did and when, for a slow restart."""
    sel = f"involvedObject.name={job}"
    got = json.loads(
        core.list_namespaced_event(NS, field_selector=sel, _preload_content=False).data
    )
    out: list[tuple[float, str]] = []
    for e in got.get("items") or []:
        stamp = e.get("eventTime") or e.get("lastTimestamp") or e["metadata"]["creationTimestamp"]
        when = parse_time(stamp).timestamp()
        if when >= since - 1:
            out.append(
                (when, f"+{when - since:.0f}s {e.get('reason')}: {e.get('message', '')[:100]}")
            )
    return [line for _, line in sorted(out)]
