"""The retention defaults are the contract's (lazarus_contract.rules): the CRD the API
server defaults from (crds/ and the chart's copy), the operator's spec parser, the
store's RetentionPolicy and `lazarus-ckpt prune` all take the same numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lazarus_contract.rules import DEFAULT_KEEP_BEST, DEFAULT_KEEP_LATEST
from lazarus_operator.spec import parse_spec
from lazarus_store import RetentionPolicy
from lazarus_store.cli import _parser

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CRDS = [REPO / "crds/trainingjob.yaml", REPO / "charts/lazarus/crds/trainingjob.yaml"]
WANT = {"keepLatest": DEFAULT_KEEP_LATEST, "keepBest": DEFAULT_KEEP_BEST}


def retention_schema(crd: Path) -> dict[str, Any]:
    doc = yaml.safe_load(crd.read_text())
    version = next(v for v in doc["spec"]["versions"] if v.get("storage"))
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    retention = spec["properties"]["checkpoint"]["properties"]["retention"]
    props: dict[str, Any] = retention["properties"]
    return props


@pytest.mark.parametrize("crd", CRDS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_crd_defaults_are_the_contracts(crd: Path) -> None:
    schema = retention_schema(crd)
    assert {k: schema[k].get("default") for k in WANT} == WANT


def test_the_operator_store_and_cli_default_to_the_contract() -> None:
    spec = parse_spec(
        {
            "template": {"spec": {"containers": [{"name": "trainer", "image": "t:1"}]}},
            "checkpoint": {"uri": "s3://bucket/prefix"},
        }
    )
    assert (spec.checkpoint.keep_latest, spec.checkpoint.keep_best) == tuple(WANT.values())
    policy = RetentionPolicy()
    assert (policy.keep_latest, policy.keep_best) == tuple(WANT.values())
    args = _parser().parse_args(["--uri", "/tmp/x", "prune"])
    assert (args.keep_latest, args.keep_best) == tuple(WANT.values())
