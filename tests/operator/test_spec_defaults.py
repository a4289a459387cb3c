"""The CRD (crds/trainingjob.yaml, the one source of the defaults the API server
applies) and the spec parser (spec.py's dataclasses, for objects that never went
through admission) agree on every default."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lazarus_operator.spec import parse_spec

pytestmark = pytest.mark.unit

CRD = Path(__file__).resolve().parents[2] / "crds" / "trainingjob.yaml"
# What admission requires; a secretRef so that its own defaults apply too.
MINIMAL: dict[str, Any] = {
    "template": {"spec": {"containers": [{"name": "trainer", "image": "t:1"}]}},
    "checkpoint": {"uri": "s3://bucket/prefix", "secretRef": {"name": "creds"}},
}


# An optional object's defaults apply once it is there, with what it requires.
OPTIONAL: dict[str, dict[str, Any]] = {
    "faultTolerance": {**MINIMAL, "replicas": 2, "faultTolerance": {"replicaGroups": 2}},
}


def spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def apply_defaults(obj: dict[str, Any], schema: dict[str, Any]) -> None:
    """Structural defaulting as the API server does it: a missing property with a
    default gets it, then the properties of every object present are defaulted."""
    for key, prop in (schema.get("properties") or {}).items():
        if key not in obj and "default" in prop:
            obj[key] = copy.deepcopy(prop["default"])
        if isinstance(obj.get(key), dict) and prop.get("type") == "object":
            apply_defaults(obj[key], prop)


def defaulted(schema: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """(path, default, property schema) of every scalar default in the schema."""
    for key, prop in (schema.get("properties") or {}).items():
        here = (*path, key)
        if "default" in prop and prop.get("type") != "object":
            yield here, prop["default"], prop
        if prop.get("type") == "object":
            yield from defaulted(prop, here)


def other_value(default: Any, prop: dict[str, Any]) -> Any:
    """A valid value other than the default."""
    if "enum" in prop:
        return next(v for v in prop["enum"] if v != default)
    if prop.get("type") == "boolean":
        return not default
    if prop.get("type") in ("integer", "number"):
        top = prop.get("maximum", default + 1)
        return default + 1 if default + 1 <= top else default - 1
    if default == "auto":  # spec.checkpoint.resume
        return "none"
    return f"{default}-other"


def put(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    at = out
    for key in path[:-1]:
        at = at.setdefault(key, {})
    at[path[-1]] = value
    return out


DEFAULTS = list(defaulted(spec_schema()))


def test_the_crd_sets_defaults() -> None:
    assert len(DEFAULTS) >= 20, [".".join(p) for p, _, _ in DEFAULTS]


def test_admission_defaults_change_nothing_the_parser_reads() -> None:
    """The spec as the API server stores it parses to what the bare spec parses to."""
    admitted = copy.deepcopy(MINIMAL)
    apply_defaults(admitted, spec_schema())
    assert admitted != MINIMAL
    assert parse_spec(admitted) == parse_spec(MINIMAL)


@pytest.mark.parametrize(
    ("path", "default", "prop"), DEFAULTS, ids=[".".join(p) for p, _, _ in DEFAULTS]
)
def test_each_crd_default_is_the_parsers(
    path: tuple[str, ...], default: Any, prop: dict[str, Any]
) -> None:
    """Each default, one at a time: written out it parses as left out; another value
    parses differently (so the parser reads the field at all)."""
    base = OPTIONAL.get(path[0], MINIMAL)
    bare = parse_spec(base)
    assert parse_spec(put(base, path, default)) == bare
    assert parse_spec(put(base, path, other_value(default, prop))) != bare
