"""Test harness for the operator against the real API server: the tests play
kubelet (bind pods to fake Nodes, set their status, confirm graceful
deletions) and run the operator as a subprocess, as it runs in production.

The parts benchmarks share live in the devstack package (`lazarus_devstack.harness`,
`lazarus_devstack.fake_kubelet`); what is here only tests use."""

from __future__ import annotations

import re
import urllib.request

from kubernetes import client

from lazarus_devstack.fake_kubelet import FakeKubelet
from lazarus_devstack.harness import GROUP, PLURAL, VERSION, OperatorProcess, now_iso, wait_for

__all__ = [
    "GROUP",
    "PLURAL",
    "VERSION",
    "FakeKubelet",
    "OperatorProcess",
    "api_requests",
    "metric_value",
    "now_iso",
    "requests_between",
    "wait_for",
]


def api_requests(api: client.ApiClient) -> dict[tuple[str, str], int]:
    """The API server's own count of requests it served (`apiserver_request_total`),
    summed by (verb, resource[/subresource]); WATCH is a verb of its own."""
    resp = api.call_api("GET", f"{api.configuration.host}/metrics")
    out: dict[tuple[str, str], int] = {}
    for line in resp.read().decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
        labels = dict(re.findall(r'(\w+)="([^"]*)"', labels_text))
        res = labels.get("resource", "") + (
            "/" + labels["subresource"] if labels.get("subresource") else ""
        )
        key = (labels.get("verb", ""), res)
        out[key] = out.get(key, 0) + int(float(value))
    return out


def requests_between(
    before: dict[tuple[str, str], int], after: dict[tuple[str, str], int]
) -> dict[tuple[str, str], int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)}


def metric_value(port: int, name: str) -> float:
    """One unlabelled sample from the operator's Prometheus endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not among the operator's metrics")
