"""Every reader of bytes someone else wrote, under hostile input (issue 22): a manifest, the
fence log, a quarantine marker, the pod's termination message, and the bounded JSON loader
they share. Each input is valid, or invalid with a one-line reason (the one exception type
its callers handle); never another exception, a hang (pytest-timeout), or memory beyond
the bound stated below."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lazarus_contract.bounded_json import MalformedJSON, loads_bounded
from lazarus_contract.termination import TerminationMessage
from lazarus_contract.termination import decode as decode_message
from lazarus_store import InvalidCheckpoint, JobIdentity, Manifest, ObjectEntry, open_store
from lazarus_store.lineage import AttemptRecord, dump_attempts, parse_attempts
from lazarus_store.manifest import MAX_MANIFEST_BYTES, parse_manifest
from lazarus_store.quarantine import marker_key, reason

from ..hostile import deep, mutated

pytestmark = [pytest.mark.unit, pytest.mark.timeout(300)]
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True)

MANIFEST = Manifest(
    name="step-000000000010-a0002",
    step=10,
    attempt=2,
    reason="periodic",
    objects=(ObjectEntry("trainer/common.safetensors", 12, "AAAAAA=="),),
    created_at="2026-01-01T00:00:00.000Z",
    job=JobIdentity("train", "team-a", "uid-1"),
    epoch=1,
    samples_seen=640,
    metrics={"loss": 0.5},
    world_size=2,
    extra={"lazarusTrainer": {"format": 3, "worldSize": 2, "modelOptimizer": "replicated"}},
).to_bytes()
FENCE_LOG = dump_attempts(
    [
        AttemptRecord(1, None, -1, "2026-01-01T00:00:00Z", JobIdentity("train", "team-a", "u")),
        AttemptRecord(2, "step-000000000010-a0001", 10, "2026-01-01T00:01:00Z"),
    ]
)
MARKER = json.dumps({"name": "step-000000000010-a0002", "reason": "bad", "at": "x"}).encode()
MESSAGE = json.dumps({"version": 1, "outcome": "preempted", "step": 12}).encode()


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and len(text) < 1_000, text[:300]
    return text


@SETTINGS
@given(mutated(MANIFEST))
def test_a_manifest_is_valid_or_invalid_with_a_reason(raw: bytes) -> None:
    try:
        m = parse_manifest(raw, where="root/m")
    except InvalidCheckpoint as exc:
        assert one_line(exc).startswith("root/m: ")
        return
    assert m.to_bytes() and m.created  # what its readers use works too


@SETTINGS
@given(mutated(FENCE_LOG))
def test_a_fence_log_is_valid_or_invalid_with_a_reason(raw: bytes) -> None:
    try:
        records = parse_attempts(raw, where="root/_lazarus/attempts.json")
    except InvalidCheckpoint as exc:
        one_line(exc)
        return
    for r in records:  # what lineage and ownership compute with
        assert type(r.attempt) is int and type(r.resume_step) is int and r.resume_step >= -1
        assert r.resume_from is None or isinstance(r.resume_from, str)


@settings(SETTINGS, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=mutated(MARKER))
def test_a_quarantine_marker_gives_a_one_line_reason(tmp_path: Path, raw: bytes) -> None:
    store = open_store(str(tmp_path))
    marker = tmp_path / marker_key("step-000000000010-a0002")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_bytes(raw)
    why = reason(store.root, "step-000000000010-a0002")
    assert isinstance(why, str) and "\n" not in why and len(why) <= 300


@SETTINGS
@given(mutated(MESSAGE))
def test_the_pods_termination_message_is_read_or_ignored(raw: bytes) -> None:
    msg = decode_message(raw.decode("utf-8", "replace"))
    assert isinstance(msg, TerminationMessage)


soup = st.text(alphabet='[]{}",:\\ 1a', max_size=400)


@SETTINGS
@given(st.one_of(st.binary(max_size=400), soup.map(str.encode)), st.integers(0, 8))
def test_the_bounded_loader_never_nests_past_its_bound(raw: bytes, bound: int) -> None:
    try:
        doc = loads_bounded(raw, max_bytes=1 << 20, max_depth=bound)
    except MalformedJSON as exc:
        one_line(exc)
        return

    def depth(x: Any) -> int:
        inner = list(x.values()) if isinstance(x, dict) else x if isinstance(x, list) else None
        return 0 if inner is None else 1 + max(map(depth, inner), default=0)

    assert depth(doc) <= bound


@pytest.mark.parametrize("depth", [33, 1_000, 100_000, (8 << 20) - 32])
def test_deep_nesting_is_refused_before_parsing_in_bounded_memory(depth: int) -> None:
    """Stated bound: refusing a document costs at most 8x its size in memory."""
    body = b'{"schemaVersion": 1, "extra": ' + deep(depth).encode() + b"}"
    assert len(body) <= MAX_MANIFEST_BYTES + 64
    tracemalloc.start()
    try:
        with pytest.raises(InvalidCheckpoint, match="nested deeper than 32 levels"):
            parse_manifest(body, where="m")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 8 * len(body) + (1 << 20), peak


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"[" * 5_000 + b"]" * 5_000, "nested deeper than"),
        (b'{"a": NaN}', "NaN is not a JSON value"),
        (b"9" * 5_000, "Exceeds the limit"),
        (b"\xff", "not UTF-8"),
        (b'"' + b'\\"' * 100_000, "Unterminated string"),
        (b"1" * 100, None),
        (b'["\\\\", "[[[[[[[["]', None),  # brackets inside strings do not nest
    ],
)
def test_bounded_loader_table(raw: bytes, why: str | None) -> None:
    if why is None:
        loads_bounded(raw, max_bytes=1 << 20, max_depth=1)
    else:
        with pytest.raises(MalformedJSON, match=why):
            loads_bounded(raw, max_bytes=1 << 20, max_depth=64)
