"""The manifest format and checksum helpers, without storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lazarus_store import InvalidCheckpoint, JobIdentity, Manifest, ObjectEntry
from lazarus_store import checksum as ck
from lazarus_store.manifest import check_object_path, parse_manifest, schema

pytestmark = pytest.mark.unit


def manifest(**kw: object) -> Manifest:
    base: dict[str, object] = {
        "name": "step-000000000007-a0002",
        "step": 7,
        "attempt": 2,
        "reason": "eval-best",
        "objects": (ObjectEntry("model.pt", 3, ck.to_b64(ck.crc32c(b"abc"))),),
        "created_at": "2025-01-02T03:04:05.000000Z",
        "job": JobIdentity("j", "ns", "uid"),
        "metrics": {"loss": 0.25},
        "lazarus_version": "0.1.0",
    }
    return Manifest(**{**base, **kw})  # type: ignore[arg-type]


def test_manifest_round_trips_through_json_and_schema() -> None:
    m = manifest()
    assert parse_manifest(m.to_bytes(), where="x") == m
    assert schema()["properties"]["schemaVersion"]["enum"] == [1, 2]


def test_crc32c_is_s3s_spelling_and_combines() -> None:
    # RFC 3720 test vector: CRC32C("123456789") = 0xE3069283.
    assert ck.crc32c(b"123456789") == 0xE3069283
    assert ck.to_b64(0xE3069283) == "4waSgw=="
    assert ck.from_b64("4waSgw==") == 0xE3069283
    a, b = os.urandom(1000), os.urandom(777)
    assert ck.combine(ck.crc32c(a), ck.crc32c(b), len(b)) == ck.crc32c(a + b)
    assert ck.crc32c(b, ck.crc32c(a)) == ck.crc32c(a + b)
    with pytest.raises(ValueError):
        ck.from_b64("AAAAAAAA")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schemaVersion=3), "unknown manifest schema version 3"),
        (lambda d: d.pop("schemaVersion"), "unknown manifest schema version None"),
        (lambda d: d.update(reason="whim"), "at reason"),
        (lambda d: d.update(step=8), "does not match its step/attempt"),
        (lambda d: d["objects"][0].update(size=-1), "at objects/0/size"),
        (lambda d: d["objects"][0].update(crc32c="nope"), "at objects/0/crc32c"),
        (lambda d: d["objects"][0].update(path="a/../../b"), "'..' segment"),
        (lambda d: d["objects"][0].update(path="/etc/passwd"), "absolute"),
        (lambda d: d["objects"].append(dict(d["objects"][0])), "twice"),
        (lambda d: d.update(surprise=1), "Additional properties"),
    ],
)
def test_bad_manifests_are_rejected(mutate: object, message: str) -> None:
    doc = manifest().to_json()
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(InvalidCheckpoint, match=message):
        parse_manifest(json.dumps(doc).encode(), where="s3://b/p/step-000000000007-a0002")


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe", b"[1, 2]", b"null", b'{"schemaVersion": 1'])
def test_non_json_or_non_object_manifest(raw: bytes) -> None:
    with pytest.raises(InvalidCheckpoint, match="where: manifest"):
        parse_manifest(raw, where="where")


def test_object_paths() -> None:
    assert check_object_path("model/rank0.pt") is None
    for bad in ("", "/a", "a/", "a//b", "..", "a/../b", "./a", "a\\b", "manifest.json"):
        assert check_object_path(bad) is not None, bad


def test_import_graph_has_no_torch() -> None:
    code = (
        "import sys, lazarus_store, lazarus_store.cli;"
        "bad = [m for m in ('torch', 'numpy') if m in sys.modules];"
        "assert not bad, bad"
    )
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert "lazarus_store" in imported and not {"torch", "numpy"} & imported
