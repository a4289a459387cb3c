"""Operator fixtures: fake nodes with a test-driven kubelet, the operator as a
subprocess watching the test's namespace, and TrainingJob helpers."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from lazarus_devstack import kueue
from lazarus_devstack.kueue_manifests import API, QUEUE_LABEL, KueueOptions, Queues
from lazarus_devstack.stack import State, apply_crds
from lazarus_store import CheckpointStore
from tests.conftest import CRD_DIR, ControlPlane, S3Server

from .harness import GROUP, PLURAL, VERSION, FakeKubelet, OperatorProcess, wait_for

SECRET = "s3-creds"


class Jobs:
    """Create and inspect TrainingJobs of one namespace; seed their checkpoints."""

    def __init__(self, api: client.ApiClient, ns: str, s3: S3Server, bucket: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.ns, self.s3, self.bucket = ns, s3, bucket

    def uri(self, name: str) -> str:
        return f"s3://{self.bucket}/{name}"

    def body(self, name: str, **spec: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "trainer", "image": "trainer:test", "command": ["train"]}
                    ]
                }
            },
            "checkpoint": {
                "uri": self.uri(name),
                "endpoint": self.s3.endpoint_url,
                "addressingStyle": "path",
                "region": self.s3.region,
                "secretRef": {"name": SECRET},
            },
            "failurePolicy": {"maxFailures": 5, "backoff": {"initialSeconds": 1, "maxSeconds": 4}},
            "gracePeriodSeconds": 5,
            "nodeLossTimeoutSeconds": 2,
            "stuckTerminatingTimeoutSeconds": 2,
        }
        for k, v in spec.items():
            if isinstance(v, dict) and isinstance(base.get(k), dict):
                base[k] = {**base[k], **v}
            else:
                base[k] = v
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": base,
        }

    def create_with_checkpoints(
        self, name: str, seeds: list[tuple[int, int]], **spec: Any
    ) -> list[str]:
        """Create the job suspended, commit its checkpoints (steps, attempts) as its own,
        then let it run: how a job whose trainer saved before it was looked at appears."""
        self.create(name, **{**spec, "suspend": True})
        out = [self.seed(name, step, attempt) for step, attempt in seeds]
        self.patch_spec(name, {"suspend": False})
        return out

    def create(self, name: str | None = None, **spec: Any) -> str:
        name = name or f"j-{uuid.uuid4().hex[:6]}"
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, self.body(name, **spec)
        )
        return name

    def get(self, name: str) -> dict[str, Any]:
        resp = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name, _preload_content=False
        )
        got: dict[str, Any] = json.loads(resp.data)
        return got

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def wait(
        self, name: str, pred: Callable[[dict[str, Any]], Any], timeout: float, what: str
    ) -> dict[str, Any]:
        return wait_for(
            lambda: (st := self.status(name)) and pred(st) and st, timeout, f"{name}: {what}"
        )

    def condition(self, name: str, ctype: str) -> dict[str, Any] | None:
        for c in self.status(name).get("conditions") or []:
            if c["type"] == ctype:
                return dict(c)
        return None

    def events(self, name: str) -> list[dict[str, Any]]:
        resp = self.core.list_namespaced_event(
            self.ns, field_selector=f"involvedObject.name={name}", _preload_content=False
        )
        items: list[dict[str, Any]] = json.loads(resp.data)["items"]
        return items

    def store(self, name: str) -> CheckpointStore:
        store: CheckpointStore = self.s3.open_store(self.uri(name))
        return store

    def gone(self, name: str) -> bool:
        """True once the job no longer exists (deleted and its finalizers done)."""
        try:
            self.get(name)
        except client.ApiException as err:
            return bool(err.status == 404)
        return False

    def uid(self, name: str) -> str:
        return str(self.get(name)["metadata"]["uid"])

    def seed(
        self, name: str, step: int, attempt: int, *, corrupt: bool = False, uid: str | None = None
    ) -> str:
        """Commit a small checkpoint as job `name` (uid: the job's own, which must exist),
        as a trainer of that job would; `corrupt` then truncates its data (cheap
        validation fails)."""
        w = self.store(name).begin(step=step, attempt=attempt)
        w.put_bytes("model.bin", b"x" * 64)
        job = {"name": name, "namespace": self.ns, "uid": uid or self.uid(name)}
        w.commit(reason="periodic", job=job)
        if corrupt:
            key = f"{name}/{w.name}/model.bin"
            self.s3.client().put_object(Bucket=self.bucket, Key=key, Body=b"short")
        return w.name


@pytest.fixture
def s3_secret(cluster: ControlPlane, namespace: str, s3: S3Server) -> str:
    api = client.CoreV1Api(cluster.api_client())
    data = {
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
    }
    api.create_namespaced_secret(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        },
    )
    return SECRET


@pytest.fixture
def jobs(cluster: ControlPlane, namespace: str, s3: S3Server, bucket: str, s3_secret: str) -> Jobs:
    return Jobs(cluster.api_client(), namespace, s3, bucket)


@pytest.fixture
def kubelet(cluster: ControlPlane, namespace: str) -> Iterator[FakeKubelet]:
    k = FakeKubelet(cluster.api_client(), namespace, [f"{namespace}-n{i}" for i in range(3)])
    k.start()
    yield k
    k.stop()


@pytest.fixture
def start_operator(
    cluster: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    procs: list[OperatorProcess] = []

    def start(*extra: str, env: dict[str, str] | None = None) -> OperatorProcess:
        log = tmp_path / f"operator-{len(procs)}.log"
        env = {**cluster.env(), "LAZARUS_PROGRESS_SECONDS": "1", **(env or {})}
        p = OperatorProcess(env, namespace, log, *extra)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()
        print(f"--- {p.log_path.name} (tail) ---\n{p.log()[-4000:]}")


@pytest.fixture
def operator(start_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    return start_operator()


# --- Kueue: a stack of its own (its webhooks see every Job and Pod, so it never joins
# the shared test cluster); a module overrides `cluster` with kueue_stack.cluster.
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"


@dataclass
class KueueStack:
    state: State
    cluster: ControlPlane

    def queues(self, ns: str, **kw: Any) -> None:
        """A LocalQueue `lazarus` in `ns` over a ClusterQueue and flavor of its own
        (cpu 2 unless `quota` says), and any WorkloadPriorityClasses in `extra`."""
        extra = kw.pop("extra", [])
        q = Queues(
            namespace=ns,
            quota=kw.pop("quota", {"cpu": "2"}),
            flavor=f"f-{ns}",
            cluster_queue=f"cq-{ns}",
            **kw,
        )
        kueue.apply(self.state, [*q.docs(), *extra])

    def workloads(self, ns: str) -> list[dict[str, Any]]:
        group, version = API.split("/")
        custom = client.CustomObjectsApi(self.cluster.api_client())
        return list(custom.list_namespaced_custom_object(group, version, ns, "workloads")["items"])


def priority_classes(ns: str, **values: int) -> list[dict[str, Any]]:
    """WorkloadPriorityClasses `<name>-<ns>` of the given values (cluster-scoped:
    the namespace keeps tests apart)."""
    return [
        {
            "apiVersion": API,
            "kind": "WorkloadPriorityClass",
            "metadata": {"name": f"{p}-{ns}"},
            "value": v,
        }
        for p, v in values.items()
    ]


@pytest.fixture(scope="module")
def kueue_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KueueStack]:
    """A control plane with Kueue managing queues, and the TrainingJob CRD; Kueue's
    options from the module's KUEUE_OPTIONS (e.g. waitForPodsReady)."""
    opts: KueueOptions = getattr(request.module, "KUEUE_OPTIONS", KueueOptions())
    with kueue.kueue_stack(tmp_path_factory.mktemp("kueue"), opts) as state:
        apply_crds(state, CRD_DIR)
        cp = ControlPlane.of(state)
        yield KueueStack(state, cp)


def queued_job(jobs: Jobs, name: str, cpu: str, priority: str | None = None, **spec: Any) -> str:
    """A TrainingJob in the LocalQueue `lazarus`, each replica requesting `cpu`."""
    container = {
        "name": "trainer",
        "image": "trainer:test",
        "command": ["train"],
        "resources": {"requests": {"cpu": cpu}},
    }
    body = jobs.body(name, template={"spec": {"containers": [container]}}, **spec)
    body["metadata"]["labels"] = {QUEUE_LABEL: "lazarus"}
    if priority:
        body["metadata"]["labels"][PRIORITY_LABEL] = priority
    jobs.custom.create_namespaced_custom_object(GROUP, VERSION, jobs.ns, PLURAL, body)
    return name
