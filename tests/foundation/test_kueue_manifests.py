"""What the devstack applies for Kueue: Kueue's own manifests from the module, with
every webhook pointed at 127.0.0.1 (no kube-proxy here), and its Configuration."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest

from lazarus_devstack import kueue
from lazarus_devstack import kueue_manifests as km
from lazarus_devstack.errors import DevstackError

pytestmark = pytest.mark.unit
CA = b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
BASE = "https://127.0.0.1:12345"
ENDS = km.Endpoints(webhook=12345, health=12346, metrics=12347, cert_dir="/run/kueue/certs")

WEBHOOKS = textwrap.dedent(
    """\
    ---
    apiVersion: admissionregistration.k8s.io/v1
    kind: MutatingWebhookConfiguration
    metadata:
      name: mutating-webhook-configuration
    webhooks:
    - admissionReviewVersions: [v1]
      clientConfig:
        service: {name: webhook-service, namespace: system, path: /mutate-batch-v1-job}
      failurePolicy: Fail
      name: mjob.kb.io
      sideEffects: None
    - admissionReviewVersions: [v1]
      clientConfig:
        service: {name: webhook-service, namespace: system, path: /mutate--v1-pod}
      failurePolicy: Fail
      name: mpod.kb.io
      sideEffects: None
    ---
    apiVersion: admissionregistration.k8s.io/v1
    kind: ValidatingWebhookConfiguration
    metadata:
      name: validating-webhook-configuration
    webhooks:
    - admissionReviewVersions: [v1]
      clientConfig:
        service: {name: webhook-service, namespace: system, path: /validate-batch-v1-job}
      failurePolicy: Fail
      name: vjob.kb.io
      sideEffects: None
    """
)


def test_every_webhook_is_a_url_on_loopback_with_the_devstack_ca() -> None:
    docs = km.webhooks(WEBHOOKS, BASE, CA)
    assert [d["metadata"]["name"] for d in docs] == [
        "kueue-mutating-webhook-configuration",
        "kueue-validating-webhook-configuration",
    ]
    hooks = {h["name"]: h for d in docs for h in d["webhooks"]}
    assert {n: h["clientConfig"]["url"] for n, h in hooks.items()} == {
        "mjob.kb.io": f"{BASE}/mutate-batch-v1-job",
        "mpod.kb.io": f"{BASE}/mutate--v1-pod",
        "vjob.kb.io": f"{BASE}/validate-batch-v1-job",
    }
    assert all(base64.b64decode(h["clientConfig"]["caBundle"]) == CA for h in hooks.values())
    assert all("service" not in h["clientConfig"] for h in hooks.values())


@pytest.mark.parametrize(("hook", "excluded"), [("mpod.kb.io", True), ("mjob.kb.io", False)])
def test_pod_webhooks_leave_the_system_namespaces_alone(hook: str, excluded: bool) -> None:
    """As Kueue's kustomization does: a Kueue that is down cannot block kube-system."""
    hooks = {h["name"]: h for d in km.webhooks(WEBHOOKS, BASE, CA) for h in d["webhooks"]}
    selector = hooks[hook].get("namespaceSelector")
    if excluded:
        assert selector["matchExpressions"][0]["values"] == ["kube-system", km.NAMESPACE]
    else:
        assert selector is None


@pytest.mark.parametrize(("plural", "converted"), [("workloads", True), ("resourceflavors", False)])
def test_crds_kueue_converts_get_the_conversion_webhook_url(plural: str, converted: bool) -> None:
    text = f"kind: CustomResourceDefinition\nspec:\n  names: {{plural: {plural}}}\n"
    conversion = km.crd(text, BASE, CA)["spec"].get("conversion")
    if converted:
        assert conversion["webhook"]["clientConfig"]["url"] == f"{BASE}/convert"
    else:
        assert conversion is None


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        (km.KueueOptions(), None),
        (km.KueueOptions(wait_for_pods_ready=90), {"timeout": "90s", "blockAdmission": False}),
        (km.KueueOptions(wait_for_pods_ready=2.5), {"timeout": "2.5s", "blockAdmission": False}),
    ],
)
def test_configuration(opts: km.KueueOptions, expected: dict[str, object] | None) -> None:
    cfg = km.configuration(opts, ENDS)
    assert cfg.get("waitForPodsReady") == expected
    assert cfg["manageJobsWithoutQueueName"] is False
    assert cfg["internalCertManagement"] == {"enable": False}
    assert cfg["webhook"] == {"host": "127.0.0.1", "port": 12345, "certDir": "/run/kueue/certs"}
    assert cfg["integrations"] == {"frameworks": list(opts.integrations)}


def test_rbac_binds_only_kueues_own_roles_to_its_service_account() -> None:
    cluster_role = "kind: ClusterRole\nmetadata: {name: manager-role}\nrules: []\n"
    secrets = "kind: Role\nmetadata: {name: manager-secrets-role, namespace: system}\nrules: []\n"
    docs = km.rbac(cluster_role, secrets)
    assert [(d["kind"], d["metadata"].get("namespace")) for d in docs] == [
        ("Namespace", None),
        ("ServiceAccount", km.NAMESPACE),
        ("ClusterRole", None),
        ("ClusterRoleBinding", None),
        ("Role", km.NAMESPACE),
        ("RoleBinding", km.NAMESPACE),
    ]
    bindings = [d for d in docs if d["kind"].endswith("Binding")]
    assert [(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in bindings] == [
        ("ClusterRole", "kueue-manager-role"),
        ("Role", "kueue-manager-secrets-role"),
    ]
    subject = {"kind": "ServiceAccount", "name": km.SERVICE_ACCOUNT, "namespace": km.NAMESPACE}
    assert all(b["subjects"] == [subject] for b in bindings)


def test_queues_one_flavor_a_cluster_queue_and_a_local_queue() -> None:
    flavor, cq, lq = km.Queues(namespace="team", quota={"cpu": "2"}, node_labels={"a": "b"}).docs()
    assert flavor["spec"] == {"nodeLabels": {"a": "b"}}
    group = cq["spec"]["resourceGroups"][0]
    assert group["coveredResources"] == ["cpu"]
    assert group["flavors"] == [
        {"name": "default-flavor", "resources": [{"name": "cpu", "nominalQuota": "2"}]}
    ]
    assert lq["metadata"] == {"name": "lazarus", "namespace": "team"}
    assert lq["spec"] == {"clusterQueue": "cluster-queue"}


def test_metrics_cert_is_made_once_and_kept(tmp_path: Path) -> None:
    """Kueue exits without a metrics cert at its fixed path; stacks share one."""
    where = tmp_path / "etc" / "kueue" / "metrics" / "certs"
    kueue.ensure_metrics_cert(where)
    first = (where / "tls.crt").read_bytes()
    assert b"BEGIN CERTIFICATE" in first and (where / "tls.key").exists()
    kueue.ensure_metrics_cert(where)
    assert (where / "tls.crt").read_bytes() == first
    assert [p.name for p in where.parent.iterdir()] == ["certs"]  # no temporary left


def test_a_metrics_cert_path_it_cannot_make_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "etc"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(DevstackError, match=r"needs a metrics cert in .* cannot be made there"):
        kueue.ensure_metrics_cert(blocker / "kueue" / "certs")
    assert blocker.read_text() == "a file where a directory should be"


def test_a_kueue_dir_that_is_not_a_build_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "kueue").write_text("")
    monkeypatch.setenv("LAZARUS_KUEUE_DIR", str(tmp_path))
    with pytest.raises(
        DevstackError, match=r"is not a Kueue build \(no manifests/crds, .*webhooks"
    ):
        kueue.kueue_dir()


def test_cluster_up_kueue_checks_the_build_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lazarus_devstack.__main__ import main

    monkeypatch.setenv("LAZARUS_KUEUE_DIR", str(tmp_path / "nope"))
    run = tmp_path / "run"
    assert main(["--run-dir", str(run), "up", "--no-s3", "--kueue"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hack/cluster up: ") and "is not a Kueue build" in err
    assert len(err.splitlines()) == 1
    assert not run.exists()
