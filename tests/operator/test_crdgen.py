"""hack/crd-gen: the committed CRD is the generator's output from its one source and
Kubernetes' own OpenAPI for the pinned version; every Lazarus field is described;
the OpenAPI -> structural rewrite, rule by rule."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from lazarus_devstack import crdgen
from lazarus_devstack.structural import (
    INT_OR_STRING,
    QUANTITY,
    QUANTITY_PATTERN,
    SchemaError,
    reachable,
    structural,
)

pytestmark = pytest.mark.unit

REF = "#/components/schemas/"
ETCD_REQUEST_LIMIT = 1_572_864  # etcd's default --max-request-bytes (1.5 MiB)


def test_committed_crd_is_the_generators_output() -> None:
    assert crdgen.OUTPUT.read_text() == crdgen.generate(), "crds/ is stale: run hack/crd-gen"


def test_openapi_input_is_the_pinned_kubernetes() -> None:
    version, schemas = crdgen.load_openapi()
    pinned = crdgen.KUBE_VERSION.read_text().strip()
    assert version == pinned, "bumped Kubernetes: run hack/crd-gen --refresh-openapi, hack/crd-gen"
    assert set(schemas) == set(reachable(schemas, crdgen.ROOT_TYPE))  # nothing extra committed


def test_every_lazarus_field_has_a_description() -> None:
    source = yaml.safe_load(crdgen.SOURCE.read_text())
    fields = dict(crdgen.lazarus_fields(source))
    assert "v1alpha1.spec.template" in fields and "v1alpha1.status.saveInterval.source" in fields
    assert "v1alpha1.spec.template.spec" not in fields  # Kubernetes' own
    missing = [
        path for path, node in fields.items() if not str(node.get("description", "")).strip()
    ]
    assert not missing, f"describe these in crds/src/trainingjob.yaml: {missing}"


def test_every_generated_field_has_a_description_and_a_type() -> None:
    """What `kubectl explain` shows: the template's fields are Kubernetes' own, described."""
    crd = yaml.safe_load(crdgen.OUTPUT.read_text())
    nodes = dict(crdgen.walk_schemas(crd))
    template = [p for p in nodes if p.startswith("v1alpha1.spec.template.spec.")]
    assert "v1alpha1.spec.template.spec.containers[].resources.limits" in template
    assert len(template) > 500
    props = [p for p in nodes if not p.endswith("[]") and p.count(".") > 1]
    assert not [p for p in props if not nodes[p].get("description")]
    assert not json.dumps(crd).count("x-kubernetes-preserve-unknown-fields")
    assert not json.dumps(crd).count(crdgen.MARKER)


def test_crd_fits_the_api_servers_limits() -> None:
    sizes = crdgen.weigh(crdgen.OUTPUT.read_text())
    assert sizes["json"] < ETCD_REQUEST_LIMIT / 2, sizes


def schemas(**types: dict[str, Any]) -> dict[str, dict[str, Any]]:
    base: dict[str, dict[str, Any]] = {
        QUANTITY: {"type": "string", "description": "q"},
        INT_OR_STRING: {"format": "int-or-string", "oneOf": [{"type": "integer"}]},
    }
    return {**base, **types}


def ref(name: str, **extra: Any) -> dict[str, Any]:
    return {"allOf": [{"$ref": REF + name}], **extra}


def test_field_refs_resolve_and_the_fields_description_wins() -> None:
    got = structural(
        schemas(
            T={"type": "object", "properties": {"u": ref("U", description="field", default={})}},
            U={"type": "object", "description": "type", "properties": {"n": {"type": "string"}}},
        ),
        "T",
    )
    assert got == {
        "type": "object",
        "properties": {
            "u": {
                "type": "object",
                "description": "field",
                "properties": {"n": {"type": "string"}},
            }
        },
    }


def test_quantity_and_int_or_string_take_both_forms() -> None:
    got = structural(
        schemas(
            T={
                "type": "object",
                "properties": {
                    "q": {"type": "object", "additionalProperties": {"$ref": REF + QUANTITY}},
                    "p": ref(INT_OR_STRING),
                },
            }
        ),
        "T",
    )["properties"]
    both = [{"type": "integer"}, {"type": "string"}]
    assert got["q"]["additionalProperties"] == {
        "anyOf": both,
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": True,
    }
    assert got["p"] == {"anyOf": both, "x-kubernetes-int-or-string": True}


def test_defaults_and_merge_hints_are_dropped_but_a_list_map_key_keeps_its_default() -> None:
    port = {
        "type": "object",
        "required": ["containerPort"],
        "properties": {
            "containerPort": {"type": "integer", "default": 0},
            "protocol": {"type": "string", "default": "TCP"},
        },
    }
    ports = {
        "type": "array",
        "items": ref("P", default={}),
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
        "x-kubernetes-patch-strategy": "merge",
        "x-kubernetes-patch-merge-key": "containerPort",
    }
    got = structural(
        schemas(T={"type": "object", "properties": {"ports": ports}}, P=port),
        "T",
    )["properties"]["ports"]
    assert "x-kubernetes-patch-strategy" not in got and "x-kubernetes-patch-merge-key" not in got
    assert got["items"]["properties"] == {
        "containerPort": {"type": "integer"},
        "protocol": {"type": "string", "default": "TCP"},
    }


@pytest.mark.parametrize(
    ("types", "message"),
    [
        ({"T": {"type": "object", "properties": {"x": ref("T")}}}, "refers to itself"),
        ({"T": {"type": "object", "properties": {"x": ref("Nope")}}}, "no schema Nope"),
        ({"T": {"type": "object", "not": {}}}, "unexpected schema key 'not'"),
        (
            {
                "T": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["k"],
                }
            },
            "neither required nor defaulted",
        ),
    ],
)
def test_what_a_crd_cannot_carry_is_refused(types: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        structural(schemas(**types), "T")


def test_overlay_narrows_kubernetes_fields_and_refuses_unknown_ones() -> None:
    base = {
        "type": "object",
        "required": ["a"],
        "properties": {"a": {"type": "string", "description": "k8s"}, "b": {"type": "integer"}},
    }
    got = crdgen.overlay(base, {"required": ["b"], "properties": {"a": {"maxLength": 3}}}, "t")
    assert got["required"] == ["a", "b"]
    assert got["properties"]["a"] == {"type": "string", "description": "k8s", "maxLength": 3}
    with pytest.raises(SchemaError, match=r"t\.c: not a field"):
        crdgen.overlay(base, {"properties": {"c": {}}}, "t")


def test_a_typo_in_the_source_template_part_fails_generation() -> None:
    source = yaml.safe_load(crdgen.SOURCE.read_text())
    version, types = crdgen.load_openapi()
    spec = source["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["template"]["properties"]["spec"]["properties"]["nodeSelecter"] = {}
    with pytest.raises(SchemaError, match="nodeSelecter: not a field"):
        crdgen.render(source, version, types)
