"""Kubernetes' own OpenAPI v3 schemas as CRD structural schemas (what crdgen embeds).

The API server's OpenAPI is not a valid CRD schema: fields are `allOf: [{$ref}]`,
Quantity and IntOrString are `oneOf`/formats, every Go zero value is a `default`,
and strategic-merge hints ride along. `structural(schemas, name)` resolves and
rewrites one type the way controller-gen renders core types in JobSet's or
Kubeflow's CRDs, and refuses any key it does not know, so a Kubernetes bump that
brings a new kind of schema fails loudly instead of slipping through.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

Schema = dict[str, Any]

PREFIX = "#/components/schemas/"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# controller-gen's pattern for resource.Quantity (k8s.io/apimachinery's regexp).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# Of an embedded ObjectMeta (a pod or claim template's), only these reach the
# object the controller creates; the rest are the server's (pruned, as today).
EMBEDDED_META = ("labels", "annotations")

KEPT = (
    "type",
    "format",
    "description",
    "required",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
)
# Hints for strategic merge patch and clients, not validation: CRDs have no place for them.
DROPPED = (
    "default",
    "readOnly",
    "x-kubernetes-patch-strategy",
    "x-kubernetes-patch-merge-key",
    "x-kubernetes-unions",
)


class SchemaError(Exception):
    """The OpenAPI holds something the CRD cannot carry; str(err) names where."""


def structural(schemas: Mapping[str, Schema], name: str, *, descriptions: bool = True) -> Schema:
    """The named type, every $ref resolved, as a structural CRD schema."""
    return _Converter(schemas, descriptions).ref(name, f"{name}")


def reachable(schemas: Mapping[str, Schema], name: str) -> dict[str, Schema]:
    """The named type and every type it refers to, by name (the input crdgen commits)."""
    found: dict[str, Schema] = {}
    todo = [name]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        if current not in schemas:
            raise SchemaError(f"{current}: no such schema in the OpenAPI")
        found[current] = schemas[current]
        todo.extend(_refs(schemas[current]))
    return dict(sorted(found.items()))


def _refs(node: Any) -> list[str]:
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    if not isinstance(node, dict):
        return []
    own = [node["$ref"].removeprefix(PREFIX)] if "$ref" in node else []
    return own + [r for k, v in node.items() if k != "$ref" for r in _refs(v)]


class _Converter:
    def __init__(self, schemas: Mapping[str, Schema], descriptions: bool) -> None:
        self.schemas = schemas
        self.descriptions = descriptions
        self.stack: list[str] = []

    def ref(self, name: str, where: str) -> Schema:
        if name == QUANTITY:
            return {
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "pattern": QUANTITY_PATTERN,
                "x-kubernetes-int-or-string": True,
            }
        if name == INT_OR_STRING:
            return {
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "x-kubernetes-int-or-string": True,
            }
        if name in self.stack:
            raise SchemaError(f"{where}: {name} refers to itself (a CRD schema cannot recurse)")
        if name not in self.schemas:
            raise SchemaError(f"{where}: no schema {name} in the OpenAPI")
        node = self.schemas[name]
        if name == OBJECT_META:
            props = {k: node["properties"][k] for k in EMBEDDED_META}
            node = {
                "type": "object",
                "description": node.get("description", ""),
                "properties": props,
            }
        self.stack.append(name)
        try:
            return self.node(node, where)
        finally:
            self.stack.pop()

    def node(self, node: Schema, where: str) -> Schema:
        """One schema node; a field's own description wins over its type's."""
        target = _single_ref(node, where)
        out: Schema = self.ref(target, where) if target else {}
        for key, value in node.items():
            if key in ("$ref", "allOf") or key in DROPPED:
                continue
            if key == "description":
                if self.descriptions:
                    out["description"] = value
            elif key in KEPT:
                out[key] = copy.deepcopy(value)
            elif key == "properties":
                out["properties"] = {k: self.node(v, f"{where}.{k}") for k, v in value.items()}
            elif key == "items":
                out["items"] = self.node(value, f"{where}[]")
            elif key == "additionalProperties":
                out["additionalProperties"] = self.node(value, f"{where}{{}}")
            else:
                raise SchemaError(f"{where}: unexpected schema key {key!r}; teach structural.py")
        if out.get("format") == "int-or-string":
            raise SchemaError(f"{where}: int-or-string outside IntOrString")
        if out.get("x-kubernetes-list-type") == "map":
            self.default_map_keys(out, node, where)
        if not self.descriptions:
            out.pop("description", None)
        return out

    def default_map_keys(self, out: Schema, raw: Schema, where: str) -> None:
        """A list-map key must be required or defaulted (the API server's rule): keep
        Kubernetes' own default for a key that is not required (ports' protocol: TCP)."""
        items = out["items"]
        required = set(items.get("required", []))
        target = _single_ref(raw["items"], where)
        raw_items = self.schemas.get(target, {}) if target else raw["items"]
        for key in out["x-kubernetes-list-map-keys"]:
            if key in required:
                continue
            default = raw_items.get("properties", {}).get(key, {}).get("default")
            if default is None:
                raise SchemaError(f"{where}: list-map key {key} is neither required nor defaulted")
            items["properties"][key]["default"] = default


def _single_ref(node: Schema, where: str) -> str | None:
    if "$ref" in node:
        return str(node["$ref"]).removeprefix(PREFIX)
    parts = node.get("allOf")
    if parts is None:
        return None
    if len(parts) != 1 or set(parts[0]) != {"$ref"}:
        raise SchemaError(f"{where}: allOf other than one $ref")
    return str(parts[0]["$ref"]).removeprefix(PREFIX)
