"""kopf's diff base: built for TrainingJobs (their delete handler reads it), empty
for the kinds watched only for indexes and events (its deep copy cost the loop)."""

from __future__ import annotations

import kopf
import pytest
from kopf._cogs.structs.bodies import RawMeta  # not re-exported by kopf

from lazarus_operator.main import PREFIX, JobsOnlyDiffBase

pytestmark = pytest.mark.unit
STORE = JobsOnlyDiffBase(prefix=PREFIX, key="last-handled-configuration")


def _body(kind: str) -> kopf.Body:
    meta: RawMeta = {"name": "x", "labels": {"a": "b"}}
    raw: kopf.RawBody = {"apiVersion": "v1", "kind": kind, "metadata": meta, "spec": {"n": 1}}
    return kopf.Body(raw)


def test_a_trainingjob_keeps_its_essence() -> None:
    essence = STORE.build(body=_body("TrainingJob"))
    assert essence["spec"] == {"n": 1} and essence["metadata"]["labels"] == {"a": "b"}


@pytest.mark.parametrize("kind", ["Pod", "Node", "Secret", "Service"])
def test_the_indexed_kinds_get_an_empty_one(kind: str) -> None:
    assert STORE.build(body=_body(kind)) == {}
