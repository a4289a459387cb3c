"""The chart, without a cluster: its CRDs are crds/'s, `helm lint --strict`, the
helm-unittest suites (charts/lazarus/tests), and `helm template` over a matrix of
values validated by kubeconform against the Kubernetes schemas and the CRD's own."""

from __future__ import annotations

import filecmp
import hashlib
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from lazarus_operator import owncreds

from .tools import CHART, KUBE_VERSION, REPO, bin_dir, run, write_crd_schemas, write_kube_schemas

pytestmark = pytest.mark.unit

MONITORING = ["monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule"]
# kubeconform has no schema for prometheus-operator's kinds here (no registry access);
# helm-unittest checks their shape, and each case below says whether they must render.
NO_SCHEMA = ("ServiceMonitor", "PrometheusRule")
# kubeconform's file name templates (write_kube_schemas and write_crd_schemas write these)
KUBE_SCHEMA = "{{ .ResourceKind }}{{ .KindSuffix }}.json"
CRD_SCHEMA = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"

MATRIX: dict[str, tuple[dict[str, Any], list[str]]] = {
    "defaults": ({}, []),
    "namespaced": ({"watchNamespaces": ["team-a", "team-b"]}, []),
    "peering-cluster-wide": (
        {"replicaCount": 2, "peering": {"enabled": True}, "podDisruptionBudget": {"enabled": True}},
        [],
    ),
    "peering-namespaced": (
        {"replicaCount": 3, "peering": {"enabled": True}, "watchNamespaces": ["team-a"]},
        [],
    ),
    "own-credentials": (
        {
            "operatorCredentials": {
                "team-a": ["s3://ckpt/team-a"],
                "*": [{"root": "s3://scratch/tmp", "endpoint": "http://minio.storage:9000"}],
            },
            "operator": {"extraEnv": [{"name": "AWS_REGION", "value": "eu-west-1"}]},
        },
        [],
    ),
    "monitoring-on": (
        {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
            "prometheusRule": {"enabled": True},
            "dashboard": {"enabled": True, "namespace": "grafana"},
        },
        MONITORING,
    ),
    "monitoring-on-without-crds": (
        {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        [],
    ),
    "bring-your-own": (
        {
            "rbac": {"create": False},
            "serviceAccount": {"create": False, "name": "ops"},
            "metrics": {"enabled": False},
        },
        [],
    ),
    "scheduling-and-image": (
        {
            "image": {
                "repository": "registry.example/lazarus-operator",
                "digest": "sha256:" + "a" * 64,
            },
            "imagePullSecrets": [{"name": "regcred"}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "ops", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 1,
                            "preference": {
                                "matchExpressions": [
                                    {"key": "pool", "operator": "In", "values": ["ops"]}
                                ]
                            },
                        }
                    ]
                }
            },
            "priorityClassName": "system-cluster-critical",
            "podAnnotations": {"a": "b"},
            "podLabels": {"team": "ml"},
            "operator": {
                "verbose": True,
                "extraEnv": [{"name": "LAZARUS_ALLOW_ENDPOINT_NETWORKS", "value": "10.0.0.0/8"}],
                "extraArgs": ["--verbose"],
            },
            "serviceAccount": {
                "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}
            },
            "metrics": {"service": {"annotations": {"example.com/note": "scraped"}}},
        },
        [],
    ),
}


@pytest.fixture(scope="module")
def tools() -> Path:
    return bin_dir()


def helm(tools: Path, *args: str) -> str:
    return run([str(tools / "helm"), *args])


def test_chart_crds_are_the_ones_in_crds() -> None:
    src, dst = REPO / "crds", CHART / "crds"
    names = sorted(p.name for p in src.glob("*.yaml"))
    assert sorted(p.name for p in dst.glob("*.yaml")) == names, "run hack/sync-chart-crds"
    _, mismatch, errors = filecmp.cmpfiles(src, dst, names, shallow=False)
    assert not mismatch and not errors, f"{mismatch or errors} differ: run hack/sync-chart-crds"


@pytest.mark.parametrize(
    "case", ["defaults", "namespaced", "peering-namespaced", "monitoring-on", "own-credentials"]
)
def test_helm_lint_strict(tools: Path, tmp_path: Path, case: str) -> None:
    values, _ = MATRIX[case]
    f = tmp_path / "values.yaml"
    f.write_text(yaml.safe_dump(values))
    out = helm(tools, "lint", "--strict", str(CHART), "-f", str(f))
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_helm_lint_refuses_bad_values(tools: Path, tmp_path: Path) -> None:
    """The schema is what install uses too: a bad value fails before anything is applied."""
    f = tmp_path / "values.yaml"
    f.write_text(yaml.safe_dump({"replicaCount": 2}))
    with pytest.raises(AssertionError, match="peering"):
        helm(tools, "lint", "--strict", str(CHART), "-f", str(f))


def test_template_refuses_replicas_without_peering_even_without_the_schema(tools: Path) -> None:
    """`--skip-schema-validation` skips values.schema.json, not the template's own check."""
    with pytest.raises(AssertionError, match="standalone replicas would all act"):
        helm(
            tools,
            "template",
            "lz",
            str(CHART),
            "--skip-schema-validation",
            "--set",
            "replicaCount=2",
        )


def test_helm_unittest_suites(tools: Path) -> None:
    suites = sorted((CHART / "tests").glob("*_test.yaml"))
    assert len(suites) >= 5
    out = run([str(tools / "helm-unittest"), "--color=false", str(CHART)], timeout=300)
    m = re.search(r"Test Suites:\s+(\d+) passed, (\d+) total", out)
    assert m and m.group(1) == m.group(2) == str(len(suites)), out
    assert re.search(r"Tests:\s+(\d+) passed, \1 total", out), out


def kubeconform(tools: Path, schemas: tuple[Path, Path], manifests: str) -> list[dict[str, Any]]:
    """Validate `manifests` (strict: unknown fields fail); the per-resource results."""
    out = run(
        [
            str(tools / "kubeconform"),
            "-strict",
            "-kubernetes-version",
            KUBE_VERSION.lstrip("v"),
            "-schema-location",
            f"{schemas[0]}/{KUBE_SCHEMA}",
            "-schema-location",
            f"{schemas[1]}/{CRD_SCHEMA}",
            "-skip",
            ",".join(NO_SCHEMA),
            "-output",
            "json",
            "-verbose",
            "-",
        ],
        stdin=manifests,
    )
    resources: list[dict[str, Any]] = json.loads(out)["resources"]
    return resources


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """kubeconform's schema folders: the Kubernetes kinds', the CRDs'."""
    return (
        write_kube_schemas(tmp_path_factory.mktemp("kube-schemas")),
        write_crd_schemas(CHART / "crds", tmp_path_factory.mktemp("crd-schemas")),
    )


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_template_passes_kubeconform(
    tools: Path, schemas: tuple[Path, Path], tmp_path: Path, case: str
) -> None:
    values, api_versions = MATRIX[case]
    f = tmp_path / "values.yaml"
    f.write_text(yaml.safe_dump(values))
    extra = [a for v in api_versions for a in ("--api-versions", v)]
    rendered = helm(
        tools,
        "template",
        "lz",
        str(CHART),
        "--namespace",
        "lazarus-system",
        "--include-crds",
        "--kube-version",
        KUBE_VERSION,
        "-f",
        str(f),
        *extra,
    )
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = sorted({d["kind"] for d in docs})
    results = kubeconform(tools, schemas, rendered)
    assert all(r["status"] in ("statusValid", "statusSkipped") for r in results), results
    valid = {r["kind"] for r in results if r["status"] == "statusValid"}
    skipped = {r["kind"] for r in results if r["status"] == "statusSkipped"}
    assert valid == set(kinds) - set(NO_SCHEMA) and skipped <= set(NO_SCHEMA)
    assert "CustomResourceDefinition" in valid and "Deployment" in valid
    for kind in NO_SCHEMA:  # rendered exactly when the cluster serves their CRD
        assert (kind in kinds) == (f"monitoring.coreos.com/v1/{kind}" in api_versions)


def test_example_trainingjob_passes_the_crd_schema(tools: Path, schemas: tuple[Path, Path]) -> None:
    example = (REPO / "examples/trainingjob.yaml").read_text()
    [result] = kubeconform(tools, schemas, example)
    assert result["kind"] == "TrainingJob" and result["status"] == "statusValid", result


def test_crd_schema_refuses_an_unknown_field(tools: Path, schemas: tuple[Path, Path]) -> None:
    """The CRD's schema is really applied: a misspelt field fails."""
    job = yaml.safe_load((REPO / "examples/trainingjob.yaml").read_text())
    job["spec"]["checkpoint"]["uri_"] = job["spec"]["checkpoint"].pop("uri")
    with pytest.raises(AssertionError, match="uri_"):
        kubeconform(tools, schemas, yaml.safe_dump(job))


def test_operator_credentials_reach_the_operator_as_it_reads_them(tools: Path) -> None:
    """The chart's operatorCredentials, rendered, are the allow-list the operator parses."""
    rendered = helm(
        tools,
        "template",
        "lz",
        str(CHART),
        "--show-only",
        "templates/deployment.yaml",
        "--set-json",
        'operatorCredentials={"team-a":["s3://ckpt/team-a"],'
        '"*":[{"root":"s3://scratch/tmp","endpoint":"http://minio:9000"}]}',
    )
    env = yaml.safe_load(rendered)["spec"]["template"]["spec"]["containers"][0]["env"]
    [raw] = [e["value"] for e in env if e["name"] == owncreds.ENV]
    allowed = owncreds.parse(raw)
    assert allowed.allows("team-a", "s3://ckpt/team-a/run", None)
    assert not allowed.allows("team-b", "s3://ckpt/team-a/run", None)
    assert allowed.allows("team-b", "s3://scratch/tmp/x", "http://minio:9000")


# Structured values (Kubernetes objects, label maps) are documented as a whole.
WHOLE = {
    "resources",
    "podSecurityContext",
    "securityContext",
    "probes.liveness",
    "probes.readiness",
    "dashboard.labels",
}


def test_kubeconform_refuses_an_unknown_field_in_a_chart_object(
    tools: Path, schemas: tuple[Path, Path]
) -> None:
    """Strict: a field Kubernetes would drop is an error, not a pass."""
    rendered = helm(tools, "template", "lz", str(CHART), "--show-only", "templates/deployment.yaml")
    dep = yaml.safe_load(rendered)
    dep["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(AssertionError, match="securityContxt"):
        kubeconform(tools, schemas, yaml.safe_dump(dep))


def _leaves(node: Any, prefix: str = "") -> list[str]:
    path = prefix.rstrip(".")
    if isinstance(node, dict) and node and path not in WHOLE:
        return [p for k, v in node.items() for p in _leaves(v, f"{prefix}{k}.")]
    return [path]


def test_every_value_is_documented_in_the_chart_readme() -> None:
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [p for p in _leaves(values) if f"`{p}`" not in readme]
    assert not missing, f"values not documented in charts/lazarus/README.md: {missing}"


def test_chart_package_is_versioned_and_the_same_twice(tools: Path, tmp_path: Path) -> None:
    """hack/chart-package: lazarus-<Chart.yaml version>.tgz with its sha256, holding
    the chart (no tests), installable as is; a second packaging gives the same bytes."""
    script = str(REPO / "hack/chart-package")
    first = Path(run([script, str(tmp_path / "a")], timeout=300).strip().splitlines()[-1])
    second = Path(run([script, str(tmp_path / "b")], timeout=300).strip().splitlines()[-1])
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    assert first.name == second.name == f"lazarus-{version}.tgz"
    assert first.read_bytes() == second.read_bytes(), "two packagings of one chart differ"
    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    assert Path(f"{first}.sha256").read_text() == f"{digest}  {first.name}\n"
    with tarfile.open(first) as tgz:
        names = set(tgz.getnames())
    assert {"lazarus/Chart.yaml", "lazarus/crds/trainingjob.yaml"} <= names
    assert "lazarus/templates/tenant-rbac.yaml" in names
    assert not [n for n in names if n.startswith("lazarus/tests/")], "helm-unittest suites shipped"
    rendered = helm(tools, "template", "lz", str(first))
    assert "kind: Deployment" in rendered
