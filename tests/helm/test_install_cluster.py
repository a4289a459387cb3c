"""`helm install` into a real control plane, then the operator runs with the
chart's RBAC only: a kubeconfig holding a token of the chart's ServiceAccount
(TokenRequest API) and the Deployment's own arguments. The test plays the
kubelet's part (FakeKubelet) through launch, a checkpoint-now request, a failure
and relaunch, success, deletion by TTL and the checkpoint-deleting finalizer:
every rule the chart grants is used, and a missing one fails the test (the
cycle stalls, an event is missing, or the operator logs a refusal).

The control plane is this module's own: the session's `cluster` fixture applies
crds/ itself, and here the chart must be what creates the CRDs."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from lazarus_devstack.procs import free_port
from lazarus_devstack.stack import Ports, Stack
from tests.conftest import ControlPlane, S3Server
from tests.operator.conftest import SECRET, Jobs
from tests.operator.harness import FakeKubelet, wait_for

from .tools import CHART, REPO, bin_dir, run

pytestmark = pytest.mark.cluster
T = 60  # generous: the machine is shared
RELEASE_NS = "lazarus-system"
AUDIT_LOG = "audit.log"  # in the control plane's run directory
# What the API server or kopf says when RBAC refuses a call.
REFUSED = re.compile(r"[Ff]orbidden|Not enough permissions|\(403\)")


# Every request on Secrets, with who made it and which Secret it named.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    resources: [{group: "", resources: [secrets]}]
  - level: None
"""


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver (owner references enforced, Secret requests audited) +
    controller-manager (controllers under their own ServiceAccounts), no CRD."""
    stack = Stack(tmp_path_factory.mktemp("helm-kube"), tied=True)
    state = stack.up(Ports(apiserver=0, etcd_client=0, etcd_peer=0, s3=0), s3=False)
    try:
        # Clusters that enforce owner references (OpenShift does) check that whoever
        # sets blockOwnerDeletion may update the owner's finalizers: enforce it here too,
        # so the chart's trainingjobs/finalizers rule is needed.
        # The controller-manager, still starting its controllers, would exit without
        # its API server: restart it as well.
        for name in ("kube-controller-manager", "kube-apiserver"):
            stack.stop_component(name)
        policy = Path(state.run_dir) / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        # Each controller under its own ServiceAccount, as kubeadm runs them: the
        # clusterrole-aggregation controller may then update the default roles (the
        # controller manager's own user may not), which the tenant roles' test needs.
        state.argv["kube-controller-manager"].append("--use-service-account-credentials")
        state.argv["kube-apiserver"] += [
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            f"--audit-policy-file={policy}",
            f"--audit-log-path={Path(state.run_dir) / AUDIT_LOG}",
        ]
        state.save()
        for name in ("kube-apiserver", "kube-controller-manager"):
            stack.start_component(name)
        cp = ControlPlane.of(state)
        ext = client.ApiextensionsV1Api(cp.api_client())
        assert not [
            c
            for c in ext.list_custom_resource_definition().items
            if c.spec.group in ("lazarus.dev", "kopf.dev")
        ]
        client.CoreV1Api(cp.api_client()).create_namespace({"metadata": {"name": RELEASE_NS}})
        yield cp
    finally:
        stack.down()


def _namespace(cp: ControlPlane) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(cp.api_client())
    core.create_namespace({"metadata": {"name": name}})
    # The controller-manager makes the default ServiceAccount pods need.
    wait_for(lambda: core.list_namespaced_service_account(name).items, T, "default SA")
    return name


def helm_install(
    cp: ControlPlane, release: str, values: dict[str, Any], tmp: Path
) -> list[dict[str, Any]]:
    """Install the chart; the objects of its manifest."""
    f = tmp / f"{release}-values.yaml"
    f.write_text(yaml.safe_dump(values))
    helm = str(bin_dir() / "helm")
    kc = f"--kubeconfig={cp.kubeconfig}"
    run([helm, "install", release, str(CHART), kc, "-n", RELEASE_NS, "-f", str(f)], timeout=180)
    manifest = run([helm, "get", "manifest", release, kc, "-n", RELEASE_NS])
    return [d for d in yaml.safe_load_all(manifest) if d]


def sa_kubeconfig(cp: ControlPlane, sa: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount, nothing more."""
    core = client.CoreV1Api(cp.api_client())
    req = core.create_namespaced_service_account_token(
        sa, RELEASE_NS, {"spec": {"expirationSeconds": 3600}}
    )
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": cp.server,
                            "certificate-authority": str(cp.run_dir / "pki/ca.crt"),
                        },
                    }
                ],
                "users": [{"name": sa, "user": {"token": req.status.token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": sa}}],
                "current-context": "c",
            }
        )
    )
    return path


class ChartOperator:
    """`lazarus-operator` with the Deployment's arguments (ports moved to free
    loopback ones), as the chart's ServiceAccount."""

    def __init__(self, deployment: dict[str, Any], kubeconfig: Path, log: Path) -> None:
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        self.metrics, self.health = free_port(), free_port()
        moved = {
            "--metrics-port": f"--metrics-port={self.metrics}",
            "--liveness": f"--liveness=http://127.0.0.1:{self.health}/healthz",
        }
        self.args = [moved.get(a.split("=", 1)[0], a) for a in container["args"]]
        args = self.args
        self.log_path = log
        self._log = log.open("ab")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lazarus_operator.main", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, port: int, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            assert resp.status == 200
            return str(resp.read().decode())

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def _of(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def _secret(cp: ControlPlane, ns: str, s3: S3Server) -> None:
    data = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    client.CoreV1Api(cp.api_client()).create_namespaced_secret(
        ns,
        {
            "metadata": {"name": SECRET},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        },
    )


def _running(jobs: Jobs, k: FakeKubelet, job: str, attempt: int) -> None:
    want = [f"{job}-a{attempt}-{i}" for i in range(2)]
    wait_for(
        lambda: all((p := k.pod(n)) and p["status"].get("phase") == "Running" for n in want),
        T,
        f"{want} running",
    )
    jobs.wait(
        job,
        lambda s: s.get("phase") == "Running" and s.get("attempt") == attempt,
        T,
        f"attempt {attempt} Running",
    )


def restart_cycle(cp: ControlPlane, ns: str, s3: S3Server, bucket: str) -> None:
    """Launch, checkpoint-now, failure and relaunch, success, TTL delete, finalizer."""
    _secret(cp, ns, s3)
    jobs = Jobs(cp.api_client(), ns, s3, bucket)
    kubelet = FakeKubelet(cp.api_client(), ns, [f"{ns}-n{i}" for i in range(2)]).start()
    try:
        job = "chart-rbac"
        jobs.create_with_checkpoints(
            job, [(10, 1)], ttlSecondsAfterFinished=0, checkpoint={"deleteOnJobDelete": True}
        )
        _running(jobs, kubelet, job, 1)
        assert jobs.core.read_namespaced_service(job, ns).spec.cluster_ip == "None"
        node = kubelet.pod(f"{job}-a1-0")["spec"]["nodeName"]  # type: ignore[index]
        kubelet.taint_node(node, "ToBeDeletedByClusterAutoscaler")  # pods: patch; nodes: get
        wait_for(
            lambda: "CheckpointRequested" in [e["reason"] for e in jobs.events(job)],
            T,
            "checkpoint-now requested",
        )
        jobs.seed(job, 20, 1)
        kubelet.terminate(f"{job}-a1-1", 1, message={"v": 1, "outcome": "error", "message": "x"})
        _running(jobs, kubelet, job, 2)  # pods: delete, create
        for i in range(2):
            kubelet.terminate(f"{job}-a2-{i}", 0, message={"v": 1, "outcome": "completed"})
        # Succeeded, then deleted at once by its TTL (trainingjobs: delete); the finalizer
        # deletes its checkpoints first (kopf: patch).
        wait_for(lambda: jobs.gone(job), T, "the job deleted by its TTL, finalizer done")
        assert jobs.store(job).list_checkpoints() == []
        reasons = [e["reason"] for e in jobs.events(job)]
        for want in ("Launched", "CheckpointRequested", "RestartFailed"):
            assert want in reasons, f"no {want} event (events: create): {reasons}"
    finally:
        kubelet.stop()


def plant_decoys(cp: ControlPlane, ns: str) -> list[tuple[str, str]]:
    """Secrets no job names, beside the job's and in another namespace."""
    core = client.CoreV1Api(cp.api_client())
    other = _namespace(cp)
    decoys = [(ns, "not-named"), (other, SECRET)]
    for where, name in decoys:
        data = {"AWS_ACCESS_KEY_ID": base64.b64encode(b"decoy").decode()}
        core.create_namespaced_secret(where, {"metadata": {"name": name}, "data": data})
    return decoys


def secret_requests(cp: ControlPlane, sa: str) -> list[tuple[str, str, str]]:
    """(verb, namespace, name) of each request on Secrets the chart's ServiceAccount
    made, from the API server's audit log (list and watch have no name)."""
    user = f"system:serviceaccount:{RELEASE_NS}:{sa}"
    out = []
    for line in (cp.run_dir / AUDIT_LOG).read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if event["user"]["username"] == user and ref.get("resource") == "secrets":
            out.append((event["verb"], ref.get("namespace", ""), ref.get("name", "")))
    return out


def check_secret_reads(cp: ControlPlane, sa: str, ns: str, decoys: list[tuple[str, str]]) -> None:
    """The operator read the Secret its job names, by name, and no other."""
    seen = secret_requests(cp, sa)
    assert ("get", ns, SECRET) in seen, f"the job's Secret was never read: {seen}"
    assert set(seen) == {("get", ns, SECRET)}, f"Secret requests beyond the job's: {seen}"
    assert not [s for s in seen if s[1:] in decoys]  # said twice: what the test is for


def check_refusals(op: ChartOperator) -> None:
    assert op.proc.poll() is None, f"the operator exited:\n{op.log()[-4000:]}"
    refused = [line for line in op.log().splitlines() if REFUSED.search(line)]
    assert not refused, "the chart's RBAC refused the operator:\n" + "\n".join(refused[:20])


def test_namespaced_install_runs_the_operator_with_only_the_charts_rbac(
    bare: ControlPlane, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    ns = _namespace(bare)
    objs = helm_install(
        bare, "lz", {"watchNamespaces": [ns], "operator": {"progressIntervalSeconds": 1}}, tmp_path
    )
    kinds = sorted({o["kind"] for o in objs})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    # What the chart made is in the cluster: the CRDs (Established), RBAC, Deployment, Service.
    ext = client.ApiextensionsV1Api(bare.api_client())
    crds = ("trainingjobs.lazarus.dev", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev")
    for crd in crds:
        got = ext.read_custom_resource_definition(crd)
        assert any(c.type == "Established" and c.status == "True" for c in got.status.conditions)
    rbac = client.RbacAuthorizationV1Api(bare.api_client())
    binding = rbac.read_namespaced_role_binding("lz-lazarus-jobs", ns)
    assert binding.role_ref.name == "lz-lazarus-jobs"
    assert rbac.read_cluster_role("lz-lazarus-cluster").rules
    apps = client.AppsV1Api(bare.api_client())
    dep = apps.read_namespaced_deployment("lz-lazarus", RELEASE_NS)
    assert dep.spec.template.spec.service_account_name == "lz-lazarus"
    core = client.CoreV1Api(bare.api_client())
    svc = core.read_namespaced_service("lz-lazarus-metrics", RELEASE_NS)
    assert svc.spec.ports[0].name == "metrics"

    # The ServiceAccount may not act outside its namespaces (a control: RBAC is really on).
    kc = sa_kubeconfig(bare, "lz-lazarus", tmp_path / "sa.kubeconfig")
    other = _namespace(bare)
    can = subprocess.run(
        [bare.kubectl_bin, f"--kubeconfig={kc}", "auth", "can-i", "create", "pods", "-n", other],
        capture_output=True,
        text=True,
        check=False,
    )
    assert can.stdout.strip() == "no", can.stdout + can.stderr

    [deployment] = _of(objs, "Deployment")
    decoys = plant_decoys(bare, ns)
    op = ChartOperator(deployment, kc, tmp_path / "operator.log")
    try:
        assert f"--namespace={ns}" in op.args
        wait_for(lambda: _ok(lambda: op.get(op.health, "/healthz")), T, "the liveness endpoint")
        restart_cycle(bare, ns, s3, bucket)
        assert "lazarus_operator_info" in op.get(op.metrics, "/metrics")  # the metrics port
        check_refusals(op)
        check_secret_reads(bare, "lz-lazarus", ns, decoys)
        rss = op.rss_mib()
        print(f"operator RSS after the cycle: {rss:.0f} MiB")
        limit = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert rss < _mib(limit["memory"]), f"RSS {rss:.0f} MiB over the chart's memory limit"
    finally:
        op.stop()
        print(f"--- operator log (tail) ---\n{op.log()[-4000:]}")


def test_cluster_wide_install_with_peering_runs_with_only_the_charts_rbac(
    bare: ControlPlane, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    objs = helm_install(
        bare,
        "cw",
        {
            "replicaCount": 2,
            "peering": {"enabled": True, "lifetimeSeconds": 10},
            "operator": {"progressIntervalSeconds": 1},
        },
        tmp_path,
    )
    assert not _of(objs, "RoleBinding") and len(_of(objs, "ClusterRoleBinding")) == 2
    ns = _namespace(bare)  # created after the install: cluster-wide means any namespace
    kc = sa_kubeconfig(bare, "cw-lazarus", tmp_path / "sa.kubeconfig")
    [deployment] = _of(objs, "Deployment")
    decoys = plant_decoys(bare, ns)
    op = ChartOperator(deployment, kc, tmp_path / "operator.log")
    try:
        assert "--peering" in op.args and not [a for a in op.args if a.startswith("--namespace")]
        custom = client.CustomObjectsApi(bare.api_client())
        wait_for(
            lambda: _ok(
                lambda: custom.get_cluster_custom_object(
                    "kopf.dev", "v1", "clusterkopfpeerings", "lazarus"
                ).get("status")
            ),
            T,
            "the operator registered in its ClusterKopfPeering",
        )
        restart_cycle(bare, ns, s3, bucket)
        check_refusals(op)
        check_secret_reads(bare, "cw-lazarus", ns, decoys)
    finally:
        op.stop()
        print(f"--- operator log (tail) ---\n{op.log()[-4000:]}")


def as_user(cp: ControlPlane, user: str) -> client.CustomObjectsApi:
    """The API as `user` (impersonated by the admin): what RBAC lets that user do."""
    api = cp.api_client()
    api.set_default_header("Impersonate-User", user)
    return client.CustomObjectsApi(api)


def _refused(call: Any) -> bool:
    try:
        call()
    except client.ApiException as err:
        return bool(err.status == 403)
    return False


def test_namespace_editors_run_jobs_and_viewers_only_read_them(
    bare: ControlPlane, tmp_path: Path
) -> None:
    """The chart's tenant roles join the cluster's own `edit` and `view` (bootstrap
    roles of the API server, aggregated by the controller-manager): a user bound to
    `edit` in a namespace creates a TrainingJob, one bound to `view` reads it only."""
    ns = _namespace(bare)
    helm_install(bare, "tenant", {"watchNamespaces": [ns]}, tmp_path)
    rbac = client.RbacAuthorizationV1Api(bare.api_client())

    def aggregated(role: str) -> bool:
        rules = rbac.read_cluster_role(role).rules or []
        return any("lazarus.dev" in (rule.api_groups or []) for rule in rules)

    for role in ("edit", "view", "admin"):
        wait_for(functools.partial(aggregated, role), T, f"TrainingJobs aggregated into {role}")
    for user, role in (("alice", "edit"), ("bob", "view")):
        rbac.create_namespaced_role_binding(
            ns,
            {
                "metadata": {"name": f"{user}-{role}"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
        )
    job = yaml.safe_load((REPO / "examples/trainingjob.yaml").read_text())
    job["metadata"] = {"name": "by-alice"}
    tj = ("lazarus.dev", "v1alpha1", ns, "trainingjobs")
    alice, bob, eve = (as_user(bare, u) for u in ("alice", "bob", "eve"))
    # The bindings reach the authorizer's cache within a moment.
    wait_for(
        lambda: _ok(lambda: alice.create_namespaced_custom_object(*tj, job)), T, "alice creates"
    )
    assert alice.get_namespaced_custom_object(*tj, "by-alice")["metadata"]["name"] == "by-alice"
    listed = bob.list_namespaced_custom_object(*tj)["items"]
    assert [j["metadata"]["name"] for j in listed] == ["by-alice"]
    assert bob.get_namespaced_custom_object_status(*tj, "by-alice")["metadata"]["name"]
    other = {**job, "metadata": {"name": "by-bob"}}
    assert _refused(lambda: bob.create_namespaced_custom_object(*tj, other)), "view created a job"
    assert _refused(lambda: bob.patch_namespaced_custom_object(*tj, "by-alice", {"spec": {}}))
    assert _refused(lambda: bob.delete_namespaced_custom_object(*tj, "by-alice"))
    # The status is the operator's: an editor may read it, not write it.
    patch = {"status": {"phase": "Succeeded"}}
    assert _refused(lambda: alice.patch_namespaced_custom_object_status(*tj, "by-alice", patch))
    # A control: RBAC is on, and a user bound to nothing reads nothing.
    assert _refused(lambda: eve.list_namespaced_custom_object(*tj))
    alice.delete_namespaced_custom_object(*tj, "by-alice")


def _ok(fn: Any) -> Any:
    with contextlib.suppress(Exception):
        return fn()
    return None


def _mib(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20
