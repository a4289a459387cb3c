"""Plain-dict builders of the API objects the pure core reads (pods, nodes, jobs)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def job_spec(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": 2,
        "template": {"spec": {"containers": [{"name": "trainer", "image": "train:1"}]}},
        "checkpoint": {"uri": "s3://bucket/job"},
        "failurePolicy": {"maxFailures": 3, "backoff": {"initialSeconds": 10, "maxSeconds": 60}},
        "gracePeriodSeconds": 30,
        "nodeLossTimeoutSeconds": 20,
        "stuckTerminatingTimeoutSeconds": 15,
    }
    spec.update(over)
    return spec


def node(
    name: str = "n1",
    ready: str = "True",
    since: datetime = NOW,
    taints: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"taints": taints or []},
        "status": {
            "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": iso(since)}]
        },
    }


def pod(
    name: str = "job-a1-0",
    attempt: int = 1,
    phase: str = "Running",
    node_name: str | None = "n1",
    exit_code: int | None = None,
    reason: str | None = None,
    message: dict[str, Any] | str | None = None,
    conditions: list[dict[str, Any]] | None = None,
    deleting: datetime | None = None,
    grace: int = 30,
    status_reason: str | None = None,
) -> dict[str, Any]:
    index = name.rsplit("-", 1)[-1]
    p: dict[str, Any] = {
        "metadata": {
            "name": name,
            "labels": {
                "lazarus.dev/job": "job",
                "lazarus.dev/attempt": str(attempt),
                "lazarus.dev/index": index,
            },
            "annotations": {},
        },
        "spec": {"containers": [{"name": "trainer", "image": "train:1"}]},
        "status": {"phase": phase, "conditions": conditions or []},
    }
    if node_name:
        p["spec"]["nodeName"] = node_name
    if deleting is not None:
        p["metadata"]["deletionTimestamp"] = iso(deleting)
        p["metadata"]["deletionGracePeriodSeconds"] = grace
    if status_reason:
        p["status"]["reason"] = status_reason
    if exit_code is not None:
        term: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "finishedAt": iso(NOW),
        }
        if message is not None:
            term["message"] = message if isinstance(message, str) else json.dumps(message)
        p["status"]["containerStatuses"] = [{"name": "trainer", "state": {"terminated": term}}]
    else:
        p["status"]["containerStatuses"] = [
            {
                "name": "trainer",
                "state": {"running": {"startedAt": iso(NOW - timedelta(minutes=5))}},
            }
        ]
    return p


def disruption(reason: str) -> list[dict[str, Any]]:
    return [
        {"type": "DisruptionTarget", "status": "True", "reason": reason, "message": f"by {reason}"}
    ]
