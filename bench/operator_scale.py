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

    PYTHONPATH=contract:store:operator:hack \\
        ~/.cache/lazarus/venv/bin/python bench/operator_scale.py --jobs 100 --failures 30

(PYTHONPATH: this checkout's code, as hack/test runs it; the shared venv's editable
install may point at another checkout.)

--heap DIR has the operator trace its allocations (LAZARUS_HEAP_SNAPSHOTS) from
before the first job to the rest window, and write a snapshot there then
(SIGUSR1). --operator-env KEY=VALUE sets the operator's environment (e.g.
LAZARUS_MALLOC_ARENAS=0 for glibc's default).

--profile FILE samples the operator with py-spy (collapsed stacks, `--format raw`)
from its start to the end of the churn, and prints the functions most on-CPU.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "hack")]

from kubernetes import client, config  # noqa: E402

from bench.operator_restart_latency import PodClock, percentile  # noqa: E402
from lazarus_contract import parse_time  # noqa: E402
from lazarus_devstack.stack import Ports, Stack  # noqa: E402
from tests.operator.harness import GROUP, PLURAL, VERSION, OperatorProcess, wait_for  # noqa: E402

NS = "bench"
# Traffic that is not the operator's: kwok's heartbeats (node status, leases), the
# control plane's own leader election, and event series updates (PATCH events: the
# controllers' event recorders; the operator only ever POSTs its events).
# apiserver_request_total has no client label, so this is by elimination: what
# remains may still hold a little of the controllers' own traffic.
# The operator posts core v1 Events only; the scheduler records each binding through
# events.k8s.io (1,200 of them for a 300-job launch, drained at its own pace).
NOT_OPERATOR = {"leases", "nodes/status", "events.k8s.io/events"}
NOT_OPERATOR_VERBS = {("PATCH", "events"), ("PATCH", "nodes"), ("PUT", "nodes")}
# kwok's stages: a managed node turns Ready once; a bound pod turns Running once;
# a deleted pod goes away at once (a kubelet confirming a graceful deletion).
KWOK_STAGES = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: node-ready}
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
      - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
        operator: NotIn
        values: ["True"]
  next:
    statusTemplate: |
      conditions:
        - type: Ready
          status: "True"
          reason: KubeletReady
          message: kwok
          lastHeartbeatTime: {{ Now | Quote }}
          lastTransitionTime: {{ Now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: pod-running}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
      - {key: .metadata.deletionTimestamp, operator: DoesNotExist}
      - {key: .spec.nodeName, operator: Exists}
      - {key: .status.phase, operator: In, values: [Pending]}
  next:
    statusTemplate: |
      {{ $now := Now }}
      phase: Running
      startTime: {{ $now | Quote }}
      hostIP: 10.244.0.1
      conditions:
        - {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
      containerStatuses:
      {{ range .spec.containers }}
        - name: {{ .name | Quote }}
          image: {{ .image | Quote }}
          imageID: ""
          ready: true
          restartCount: 0
          started: true
          state: {running: {startedAt: {{ $now | Quote }}}}
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: pod-gone}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
      - {key: .metadata.deletionTimestamp, operator: Exists}
  next:
    finalizers: {empty: true}
    delete: true
"""
METRIC_RE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def api_requests(api: client.ApiClient) -> Counter[tuple[str, str]]:
    """apiserver_request_total summed by (verb, resource[/subresource])."""
    resp = api.call_api("GET", f"{api.configuration.host}/metrics")
    text = resp.read().decode()
    out: Counter[tuple[str, str]] = Counter()
    for line in text.splitlines():
        m = METRIC_RE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group("labels")))
        res = labels.get("resource", "")
        if labels.get("subresource"):
            res += "/" + labels["subresource"]
        if res == "events" and labels.get("group"):
            res = f"{labels['group']}/events"  # events.k8s.io: the scheduler's, not ours
        out[(labels.get("verb", ""), res)] += int(float(m.group("value")))
    return out


def operator_traffic(
    before: Counter[tuple[str, str]], after: Counter[tuple[str, str]]
) -> Counter[str]:
    """Requests between two scrapes by "VERB resource", without kwok's and the control
    plane's own (node status writes, leases)."""
    return Counter(
        {
            f"{verb} {res}": n
            for (verb, res), n in (after - before).items()
            if res not in NOT_OPERATOR and (verb, res) not in NOT_OPERATOR_VERBS
        }
    )


def events_since(core: client.CoreV1Api, since: float) -> Counter[str]:
    """Core Events created in the namespace since `since` (epoch seconds), by the
    component that reported them: whose the POSTs at rest are (the request metric
    cannot say)."""
    got = json.loads(core.list_namespaced_event(NS, _preload_content=False).data)
    out: Counter[str] = Counter()
    for e in got.get("items") or []:
        when = parse_time(e["metadata"]["creationTimestamp"]).timestamp()
        if when >= since - 1:
            source = e.get("reportingComponent") or (e.get("source") or {}).get("component")
            out[f"{source or '?'} {e.get('reason')}"] += 1
    return out


class ProcWatch:
    """Peak RSS and CPU seconds of one process, sampled from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, clock ticks

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.peak_kb = max(self.peak_kb, self.rss_kb())
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()


def make_nodes(core: client.CoreV1Api, count: int) -> list[str]:
    names = [f"kwok-{i:03d}" for i in range(count)]
    cap = {"cpu": "1000", "memory": "4Ti", "pods": "1000"}
    for name in names:
        core.create_node(
            {
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {"type": "kwok"},
                },
                "status": {"capacity": cap, "allocatable": cap},
            }
        )

    def ready_untainted() -> bool:
        ok = True
        for n in core.list_node(label_selector="type=kwok").items:
            conds = {c.type: c.status for c in (n.status.conditions or [])}
            if conds.get("Ready") != "True":
                ok = False
            elif n.spec.taints:  # the node-lifecycle controller's part
                core.patch_node(n.metadata.name, {"spec": {"taints": None}})
                ok = False
        return ok

    wait_for(ready_untainted, 120, "kwok nodes Ready and untainted", every=1)
    return names


def job_body(name: str, bucket: str, s3: Any, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "t", "image": "t"}]}},
            "checkpoint": {
                "uri": f"s3://{bucket}/{name}",
                "endpoint": s3.endpoint,
                "addressingStyle": "path",
                "region": s3.region,
                "secretRef": {"name": "s3"},
            },
            "gracePeriodSeconds": 5,
            # Crashes relaunch at once: the figure is the operator's path, not a backoff.
            "failurePolicy": {"backoff": {"initialSeconds": 0}},
        },
    }


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


def start_profile(path: Path, pid: int) -> subprocess.Popen[bytes]:
    spy = Path(sys.executable).parent / "py-spy"
    cmd = [str(spy), "record", "--pid", str(pid), "--rate", "20", "--format", "raw"]
    return subprocess.Popen(
        [*cmd, "--nonblocking", "--threads", "-o", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profile(spy: subprocess.Popen[bytes], path: Path, top: int = 15) -> dict[str, float]:
    """Stop py-spy; the share of samples in which each function was on the stack."""
    spy.send_signal(signal.SIGINT)
    spy.wait(60)
    total, inclusive = 0, Counter[str]()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        frames = {re.sub(r" \(.*?:\d+\)$", "", f) for f in stack.split(";")[1:]}
        for f in frames:
            inclusive[f] += int(n)
    return {f: round(100 * c / max(1, total), 1) for f, c in inclusive.most_common(top)}


def main() -> None:
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
    args = ap.parse_args()

    kwok_bin = subprocess.run(
        ["bash", str(REPO / "hack/kwok/build.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    run_dir = Path(tempfile.mkdtemp(prefix="lazarus-scale-"))
    stack = Stack(run_dir)
    state = stack.up(
        Ports(apiserver=0, etcd_client=0, etcd_peer=0, s3=0), controllers=True, scheduler=True
    )
    procs: list[subprocess.Popen[bytes]] = []
    op: OperatorProcess | None = None
    try:
        assert state.s3 is not None
        s3 = state.s3
        subprocess.run(
            [
                state.kubectl(),
                f"--kubeconfig={state.kubeconfig}",
                "apply",
                "-f",
                str(REPO / "crds"),
            ],
            check=True,
            capture_output=True,
        )
        api = config.new_client_from_config(config_file=state.kubeconfig)
        api.configuration.connection_pool_maxsize = 16
        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        (run_dir / "kwok.yaml").write_text(KWOK_STAGES)
        with (run_dir / "kwok.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        kwok_bin,
                        f"--kubeconfig={state.kubeconfig}",
                        f"--config={run_dir / 'kwok.yaml'}",
                        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                        "--cidr=10.244.0.1/16",
                        "--node-ip=10.244.0.1",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        make_nodes(core, args.nodes)
        core.create_namespace({"metadata": {"name": NS}})
        key = base64.b64encode(s3.access_key.encode()).decode()
        secret = base64.b64encode(s3.secret_key.encode()).decode()
        wait_for(lambda: core.list_namespaced_service_account(NS).items, 30, "default SA")
        core.create_namespaced_secret(
            NS,
            {
                "metadata": {"name": "s3"},
                "data": {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret},
            },
        )
        bucket = f"scale-{uuid.uuid4().hex[:8]}"
        import boto3

        boto3.client(
            "s3",
            endpoint_url=s3.endpoint,
            aws_access_key_id=s3.access_key,
            aws_secret_access_key=s3.secret_key,
            region_name=s3.region,
        ).create_bucket(Bucket=bucket)

        clock = PodClock(api, NS)
        op_env = {"KUBECONFIG": state.kubeconfig, "LAZARUS_PROGRESS_SECONDS": "30"}
        op_env.update(kv.split("=", 1) for kv in args.operator_env)
        if args.heap:
            op_env["LAZARUS_HEAP_SNAPSHOTS"] = str(args.heap.resolve())
        op = OperatorProcess(
            op_env,
            NS,
            run_dir / "operator.log",
        )
        watch = ProcWatch(op.proc.pid)
        load = {"start": os.getloadavg()[0]}
        spy = start_profile(args.profile, op.proc.pid) if args.profile else None
        wait_for(lambda: "authentication" in op.log() if op else None, 60, "operator up")
        if args.heap:  # trace from here: the launch, not the imports
            op.proc.send_signal(signal.SIGUSR1)
            wait_for(lambda: "tracing from now on" in op.log() if op else None, 60, "tracing")
        names = [f"job-{i:04d}" for i in range(args.jobs)]
        for name in names:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, NS, PLURAL, job_body(name, bucket, s3, args.replicas)
            )
        created = time.monotonic()
        print(f"{args.jobs} jobs created", flush=True)
        # Sampled, so that a launch that does not finish still says how far it got.
        every = max(2.0, args.jobs / 500)  # a LIST of every job is not free at 5,000
        progress: list[tuple[float, int]] = []
        while True:
            running = running_jobs(custom)
            progress.append((round(time.monotonic() - created, 1), running))
            if running == args.jobs or progress[-1][0] > args.running_timeout:
                break
            time.sleep(every)
        if running < args.jobs:
            result = {
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
            }
            print(json.dumps(result, indent=2))
            if args.out:
                args.out.write_text(json.dumps(result, indent=2) + "\n")
            raise SystemExit(f"{running} of {args.jobs} jobs Running after {progress[-1][0]} s")
        all_running_s = time.monotonic() - created
        print(f"all Running in {all_running_s:.1f} s", flush=True)
        load["all_running"] = os.getloadavg()[0]

        time.sleep(10)  # let the launch settle before measuring rest
        before, t0, rest_from = api_requests(api), time.monotonic(), time.time()
        time.sleep(args.rest)
        rest = operator_traffic(before, api_requests(api))
        at_rest = rest.total() / (time.monotonic() - t0)
        rest_events = events_since(core, rest_from)
        rest_rss_kb = watch.rss_kb()
        if args.heap:
            op.proc.send_signal(signal.SIGUSR1)

        before_churn = api_requests(api)
        base_restarts = restarts(custom)
        by_job = churn(args, core, clock, names)
        lat = [d for _, d in by_job.values()]
        slowest = sorted(by_job.items(), key=lambda kv: -kv[1][1])[:3]
        slow = {
            name: {
                "seconds": round(d, 3),
                # the API server's own stamp (1 s resolution): created late, or seen late
                "pods_created_after_s": created_after(core, name, args.replicas, wall),
                "events": job_events(core, name, wall),
            }
            for name, (wall, d) in slowest
        }
        time.sleep(5)
        churn_requests = operator_traffic(before_churn, api_requests(api)).total()
        after = restarts(custom)
        deltas = [after.get(n, 0) - base_restarts.get(n, 0) for n in names]
        hit = min(args.failures, len(names))
        result = {
            "jobs": args.jobs,
            "pods": args.jobs * args.replicas,
            "nodes": args.nodes,
            "all_running_s": round(all_running_s, 1),
            "operator_peak_rss_mb": round(watch.peak_kb / 1024, 1),
            "operator_rss_at_rest_mb": round(rest_rss_kb / 1024, 1),
            "operator_cpu_s": round(watch.cpu_s(), 1),
            "api_requests_per_s_at_rest": round(at_rest, 2),
            "api_requests_at_rest_by_kind": dict(rest.most_common(8)),
            "events_created_at_rest_by_source": dict(rest_events.most_common(8)),
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
            "operator_env": dict(kv.split("=", 1) for kv in args.operator_env),
            "load_average_1m": {**load, "end": os.getloadavg()[0]},
        }
        watch.stop()
        clock.stop()
        if spy is not None and args.profile:
            result["profile_top"] = stop_profile(spy, args.profile)
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if op:
            op.stop()
        for p in procs:
            p.terminate()
            p.wait(10)
        stack.down()


if __name__ == "__main__":
    main()
