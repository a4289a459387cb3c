"""kwok and the API server's own counts for bench.operator_scale: kwok's stages (nodes turn
Ready, bound pods Running, deleted pods go), its fake nodes, and the operator's share of
`apiserver_request_total` and of the namespace's Events."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

from kubernetes import client

from lazarus_contract import parse_time
from lazarus_devstack.harness import wait_for
from lazarus_devstack.stack import State

REPO = Path(__file__).resolve().parents[1]
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


def start_kwok(state: State, run_dir: Path) -> subprocess.Popen[bytes]:
    """kwok (built from its Go module, cached) managing the nodes annotated as fake."""
    kwok_bin = subprocess.run(
        ["bash", str(REPO / "hack/kwok/build.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    (run_dir / "kwok.yaml").write_text(KWOK_STAGES)
    with (run_dir / "kwok.log").open("wb") as log:
        return subprocess.Popen(
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
