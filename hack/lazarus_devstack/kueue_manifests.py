"""What the local stack applies for Kueue, as plain documents (no I/O, table-tested).

Kueue's own manifests (from its Go module, copied by hack/kueue/build.sh) assume a
Service in front of the controller; the local stack has no kube-proxy, so every
webhook (admission and CRD conversion) is pointed at a `url` on 127.0.0.1 instead,
signed by a CA the devstack makes (kueue.py).
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from typing import Any

import yaml

API = "kueue.x-k8s.io/v1beta2"
NAMESPACE = "kueue-system"
SERVICE_ACCOUNT = "kueue-controller-manager"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# The CRDs Kueue's kustomization gives a conversion webhook (v1beta1 <-> v1beta2).
CONVERTED = {"localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters"}
# Webhooks on core kinds every workload uses: Kueue's kustomization keeps them out of
# the system namespaces, so a Kueue that is down cannot block the control plane.
SYSTEM_EXCLUDED = {"mpod", "vpod", "mdeployment", "vdeployment", "mstatefulset", "vstatefulset"}
Doc = dict[str, Any]


@dataclass(frozen=True)
class KueueOptions:
    """What a stack's Kueue manages and how.

    `integrations`: Kueue framework names ("batch/job", "pod", ...); the others get
    Kueue's no-op webhooks. `wait_for_pods_ready`: seconds an admitted workload has to
    get all its pods Ready before Kueue evicts and requeues it; None leaves it off.
    """

    integrations: tuple[str, ...] = ("batch/job",)
    wait_for_pods_ready: float | None = None
    feature_gates: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoints:
    """Loopback ports of one Kueue process and the directory of its serving cert."""

    webhook: int
    health: int
    metrics: int
    cert_dir: str


def configuration(opts: KueueOptions, ends: Endpoints) -> Doc:
    """Kueue's Configuration file (config.kueue.x-k8s.io/v1beta2)."""
    cfg: Doc = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "manageJobsWithoutQueueName": False,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ends.health}"},
        "metrics": {"bindAddress": f"127.0.0.1:{ends.metrics}"},
        "webhook": {"host": "127.0.0.1", "port": ends.webhook, "certDir": ends.cert_dir},
        "leaderElection": {"leaderElect": False},
        # The devstack makes the serving cert; Kueue's rotator would sign one for a
        # Service DNS name the API server cannot reach here.
        "internalCertManagement": {"enable": False},
        "clientConnection": {"qps": 50, "burst": 100},
        "integrations": {"frameworks": list(opts.integrations)},
        # The visibility API is an aggregated API server: off, as nothing here uses it.
        "featureGates": {"VisibilityOnDemand": False, **opts.feature_gates},
    }
    if opts.wait_for_pods_ready is not None:
        seconds = opts.wait_for_pods_ready
        cfg["waitForPodsReady"] = {"timeout": f"{seconds:g}s", "blockAdmission": False}
    return cfg


def _client_config(base_url: str, path: str, ca_pem: bytes) -> Doc:
    return {"url": f"{base_url}{path}", "caBundle": base64.b64encode(ca_pem).decode()}


def webhooks(manifests: str, base_url: str, ca_pem: bytes) -> list[Doc]:
    """Kueue's Mutating/ValidatingWebhookConfigurations with each service reference
    replaced by a url under `base_url`, named kueue-* as Kueue's kustomization does."""
    out = []
    for src in yaml.safe_load_all(manifests):
        if not src:
            continue
        doc = copy.deepcopy(src)
        doc["metadata"] = {"name": f"kueue-{src['metadata']['name']}"}
        for hook in doc.get("webhooks") or []:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = _client_config(base_url, path, ca_pem)
            if hook["name"].split(".")[0] in SYSTEM_EXCLUDED:
                hook["namespaceSelector"] = {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": ["kube-system", NAMESPACE],
                        }
                    ]
                }
        out.append(doc)
    return out


def crd(text: str, base_url: str, ca_pem: bytes) -> Doc:
    """One of Kueue's CRDs; those Kueue converts get their conversion webhook's url."""
    doc: Doc = yaml.safe_load(text)
    if doc["spec"]["names"]["plural"] in CONVERTED:
        doc["spec"]["conversion"] = {
            "strategy": "Webhook",
            "webhook": {
                "clientConfig": _client_config(base_url, "/convert", ca_pem),
                "conversionReviewVersions": ["v1"],
            },
        }
    return doc


def rbac(manager_role: str, secrets_role: str) -> list[Doc]:
    """Kueue's own ServiceAccount with its manager ClusterRole and the Role on Secrets
    in its namespace (it watches them), and nothing more."""
    subject = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    docs: list[Doc] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE},
        },
    ]
    for text, name in (
        (manager_role, "kueue-manager-role"),
        (secrets_role, "kueue-manager-secrets-role"),
    ):
        role: Doc = yaml.safe_load(text)
        namespaced = role["kind"] == "Role"
        meta = {"name": name, **({"namespace": NAMESPACE} if namespaced else {})}
        role["metadata"] = meta
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding" if namespaced else "ClusterRoleBinding",
            "metadata": {**meta, "name": name.replace("-role", "-rolebinding")},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": role["kind"],
                "name": name,
            },
            "subjects": [subject],
        }
        docs += [role, binding]
    return docs


@dataclass(frozen=True)
class Queues:
    """One ResourceFlavor, a ClusterQueue holding `quota` of it for every namespace,
    and a LocalQueue in `namespace` pointing at it."""

    namespace: str
    quota: dict[str, str] = field(default_factory=lambda: {"cpu": "4", "memory": "8Gi"})
    flavor: str = "default-flavor"
    cluster_queue: str = "cluster-queue"
    local_queue: str = "lazarus"
    node_labels: dict[str, str] = field(default_factory=dict)
    preemption: Doc = field(default_factory=lambda: {"withinClusterQueue": "LowerPriority"})

    def docs(self) -> list[Doc]:
        flavor_spec: Doc = {"nodeLabels": self.node_labels} if self.node_labels else {}
        resources = [{"name": r, "nominalQuota": q} for r, q in self.quota.items()]
        return [
            {
                "apiVersion": API,
                "kind": "ResourceFlavor",
                "metadata": {"name": self.flavor},
                "spec": flavor_spec,
            },
            {
                "apiVersion": API,
                "kind": "ClusterQueue",
                "metadata": {"name": self.cluster_queue},
                "spec": {
                    "namespaceSelector": {},
                    "preemption": self.preemption,
                    "resourceGroups": [
                        {
                            "coveredResources": list(self.quota),
                            "flavors": [{"name": self.flavor, "resources": resources}],
                        }
                    ],
                },
            },
            {
                "apiVersion": API,
                "kind": "LocalQueue",
                "metadata": {"name": self.local_queue, "namespace": self.namespace},
                "spec": {"clusterQueue": self.cluster_queue},
            },
        ]
