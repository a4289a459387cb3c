"""The pod template is Kubernetes' own PodTemplateSpec schema (crds/, hack/crd-gen): the
real API server refuses a misspelt field anywhere in it at `kubectl apply`, naming the
field, and `kubectl explain` describes the template and every Lazarus field."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lazarus_devstack import crdgen
from tests.conftest import ControlPlane

pytestmark = pytest.mark.cluster

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "trainingjob.yaml"


def example() -> dict[str, Any]:
    job: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return job


def apply(cluster: ControlPlane, ns: str, body: dict[str, Any], *extra: str) -> tuple[int, str]:
    r = kubectl_apply(cluster, ns, body, *extra)
    return r.returncode, r.stdout + r.stderr


def kubectl_apply(
    cluster: ControlPlane, ns: str, body: dict[str, Any], *extra: str
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "-n", ns, "apply", "--dry-run=server", *extra, "-o", "json", "-f", "-",
        stdin=json.dumps(body), check=False,
    )  # fmt: skip


def with_typo(where: str) -> dict[str, Any]:
    job = example()
    pod = job["spec"]["template"]["spec"]
    if where == "pod":
        pod["nodeSelecter"] = {"gpu": "h100"}
    else:
        pod["containers"][0]["resorces"] = {"limits": {"cpu": "1"}}
    return job


@pytest.mark.parametrize(
    ("where", "mode", "message"),
    [
        ("pod", "client-side", 'unknown field "spec.template.spec.nodeSelecter"'),
        ("container", "client-side", 'unknown field "spec.template.spec.containers[0].resorces"'),
        ("pod", "server-side", ".spec.template.spec.nodeSelecter: field not declared in schema"),
        (
            "container",
            "server-side",
            '.spec.template.spec.containers[name="trainer"].resorces: field not declared in schema',
        ),
    ],
)
def test_apply_refuses_a_misspelt_template_field_naming_it(
    cluster: ControlPlane, namespace: str, where: str, mode: str, message: str
) -> None:
    extra = ("--server-side",) if mode == "server-side" else ()
    rc, out = apply(cluster, namespace, with_typo(where), *extra)
    assert rc != 0, out
    assert message in out, out


def test_without_strict_validation_the_field_is_dropped_with_a_warning(
    cluster: ControlPlane, namespace: str
) -> None:
    """What a client that asks for no validation gets (the API's own default is Warn)."""
    r = kubectl_apply(cluster, namespace, with_typo("pod"), "--validate=warn")
    assert r.returncode == 0, r.stderr
    assert 'unknown field "spec.template.spec.nodeSelecter"' in r.stderr
    created = json.loads(r.stdout)
    assert "nodeSelecter" not in created["spec"]["template"]["spec"]
    from kubernetes import client  # a client library that names no fieldValidation

    api = client.CustomObjectsApi(cluster.api_client())
    got = api.create_namespaced_custom_object(
        "lazarus.dev", "v1alpha1", namespace, "trainingjobs", with_typo("container"), dry_run="All"
    )
    assert "resorces" not in got["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"resources": {"limits": {"cpu": "lots"}}}, "spec.template.spec.containers[0].resources"),
        ({"ports": [{"containerPort": "http"}]}, "spec.template.spec.containers[0].ports[0]"),
        ({"env": [{"value": "no name"}]}, "spec.template.spec.containers[0].env[0].name"),
        # A CRD's quantity is an int or a string (int-or-string, as in every CRD): 1.5 is "1.5".
        ({"resources": {"limits": {"cpu": 1.5}}}, "spec.template.spec.containers[0].resources"),
    ],
)
def test_a_wrong_value_inside_the_template_is_refused(
    cluster: ControlPlane, namespace: str, change: dict[str, Any], field: str
) -> None:
    job = example()
    job["spec"]["template"]["spec"]["containers"][0].update(change)
    rc, out = apply(cluster, namespace, job)
    assert rc != 0, out
    assert field in out, out


def test_the_example_and_a_full_pod_template_pass_as_written(
    cluster: ControlPlane, namespace: str
) -> None:
    job = example()
    pod = job["spec"]["template"]["spec"]
    pod.update(
        nodeSelector={"gpu": "h100"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        affinity={"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}},
        volumes=[{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}],
    )  # fmt: skip
    pod["containers"][0].update(
        resources={"limits": {"nvidia.com/gpu": 8, "memory": "64Gi", "cpu": "1.5"}},
        ports=[{"containerPort": 29500, "name": "rdzv"}],
        volumeMounts=[{"name": "shm", "mountPath": "/dev/shm"}],
        livenessProbe={"httpGet": {"path": "/", "port": "rdzv"}},
    )
    job["spec"]["template"]["metadata"] = {"labels": {"team": "a"}, "annotations": {"x": "y"}}
    want = copy.deepcopy(job["spec"]["template"])
    rc, out = apply(cluster, namespace, job)
    assert rc == 0, out
    got = json.loads(out)["spec"]["template"]
    want["spec"]["containers"][0]["ports"][0]["protocol"] = "TCP"  # a list-map key's default
    assert got == want


def test_explain_lists_the_pod_template_fields(cluster: ControlPlane) -> None:
    out = cluster.kubectl("explain", "trainingjob.spec.template.spec").stdout
    for field in ("containers", "nodeSelector", "tolerations", "volumes", "affinity"):
        assert f"  {field}\t" in out, out
    out = cluster.kubectl("explain", "trainingjob.spec.template.spec.containers.resources").stdout
    assert "limits" in out and "Compute Resources required by this container" in out


def test_explain_describes_every_lazarus_field(cluster: ControlPlane) -> None:
    """kubectl explain reads the API server's OpenAPI v3: each Lazarus field's
    description there is the source's."""
    doc = json.loads(
        cluster.kubectl("get", "--raw", "/openapi/v3/apis/lazarus.dev/v1alpha1").stdout
    )
    schemas = doc["components"]["schemas"]
    served = schemas["dev.lazarus.v1alpha1.TrainingJob"]
    source = yaml.safe_load(crdgen.SOURCE.read_text())
    fields = dict(crdgen.lazarus_fields(source))
    assert len(fields) > 100
    for path, node in fields.items():
        if path in ("v1alpha1.apiVersion", "v1alpha1.kind"):  # the server's own words
            assert served_description(served, schemas, path), path
            continue
        assert served_description(served, schemas, path) == node["description"].strip(), path
    out = cluster.kubectl("explain", "trainingjob.status.saveInterval.source").stdout
    assert fields["v1alpha1.status.saveInterval.source"]["description"] in out


def served_description(node: dict[str, Any], schemas: dict[str, Any], path: str) -> str:
    for part in path.split(".")[1:]:
        name, _, list_item = part.partition("[]")
        node = resolve(node, schemas)["properties"][name]
        if part.endswith("[]"):
            node = resolve(node, schemas)["items"]
        del list_item
    return str(resolve(node, schemas).get("description", "")).strip()


def resolve(node: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI v3 the server publishes wraps metadata in allOf/$ref."""
    if "allOf" in node:
        ref = node["allOf"][0]["$ref"].rsplit("/", 1)[1]
        return {**schemas[ref], **{k: v for k, v in node.items() if k != "allOf"}}
    return node


@pytest.mark.parametrize(
    ("how", "accepted"),
    [
        (("create",), True),
        (("apply", "--server-side"), True),
        (("apply",), False),  # client-side: the last-applied annotation would pass 256 KiB
    ],
)
def test_the_crd_installs_with_create_or_server_side_apply(
    cluster: ControlPlane, how: tuple[str, ...], accepted: bool
) -> None:
    crd = yaml.safe_load(crdgen.OUTPUT.read_text())
    crd["spec"]["group"] = "copy.lazarus.dev"  # a fresh name: nothing to conflict with
    crd["metadata"]["name"] = "trainingjobs.copy.lazarus.dev"
    r = cluster.kubectl(*how, "--dry-run=server", "-f", "-", stdin=json.dumps(crd), check=False)
    assert (r.returncode == 0) == accepted, r.stderr
    if not accepted:
        assert "metadata.annotations: Too long" in r.stderr, r.stderr


def test_two_containers_of_one_name_and_template_metadata_beyond_labels_are_refused(
    cluster: ControlPlane, namespace: str
) -> None:
    job = example()
    pod = job["spec"]["template"]["spec"]
    pod["containers"].append(dict(pod["containers"][0]))
    rc, out = apply(cluster, namespace, job)
    assert rc != 0 and "spec.template.spec.containers[1]: Duplicate value" in out, out
    job = example()
    job["spec"]["template"]["metadata"] = {"name": "x", "labels": {"a": "b"}}
    rc, out = apply(cluster, namespace, job)
    assert rc != 0 and 'unknown field "spec.template.metadata.name"' in out, out
