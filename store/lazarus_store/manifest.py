"""The manifest: what a committed checkpoint holds, and how it is (de)serialized.

The JSON Schema shipped next to this module is the normative description of the
format; this module checks a manifest against it, plus the rules JSON Schema
cannot say (paths stay inside the prefix, the name matches step and attempt).
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jsonschema

from lazarus_contract import MANIFEST_NAME, checkpoint_name, format_time, parse_time
from lazarus_contract.bounded_json import MalformedJSON, loads_bounded, one_line
from lazarus_contract.identity import JobIdentity
from lazarus_contract.identity import decode as decode_identity

from . import checksum, shared
from .errors import InvalidCheckpoint

SCHEMA_VERSION = 1
# Version 2: objects may be stored as content-addressed chunks shared by the job's
# checkpoints (shared.py). Written only when a manifest has chunks, so older readers
# refuse such a manifest by its version instead of missing its data.
CHUNKED_SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = frozenset({SCHEMA_VERSION, CHUNKED_SCHEMA_VERSION})


@functools.cache
def schema() -> dict[str, Any]:
    """The manifest's JSON Schema (lazarus_store/manifest.schema.json)."""
    text = resources.files(__package__).joinpath("manifest.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def check_object_path(path: str) -> str | None:
    """Why `path` may not name an object in a checkpoint, or None if it may.

    Paths are '/'-separated and relative; anything that could leave the prefix
    (on S3 or, more dangerously, on a filesystem) is refused.
    """
    if not path:
        return "empty path"
    if path.startswith("/") or "\\" in path or "\x00" in path:
        return f"path {path!r} is absolute or has a backslash/NUL"
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return f"path {path!r} has an empty, '.' or '..' segment (it must stay inside its prefix)"
    if path == MANIFEST_NAME:
        return f"path {path!r} is reserved for the commit marker"
    if any(p.startswith(".lazarus-tmp") for p in parts):
        return f"path {path!r} uses the reserved .lazarus-tmp prefix"
    return None


@dataclass(frozen=True)
class Chunk:
    """A piece of an object stored once per job under the shared prefix, by its SHA-256."""

    sha256: str
    size: int
    crc32c: str

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "crc32c": self.crc32c}


@dataclass(frozen=True)
class ObjectEntry:
    """One data object: its path under the prefix, byte size and CRC32C (base64); with
    `chunks`, its bytes are those chunks' concatenated, stored under the job's shared
    prefix (shared.py) instead of under the checkpoint's own."""

    path: str
    size: int
    crc32c: str
    chunks: tuple[Chunk, ...] = ()
    uid: str = field(default="", compare=False)  # the manifest's job UID: where chunks live

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "size": self.size, "crc32c": self.crc32c}
        if self.chunks:
            out["chunks"] = [c.to_json() for c in self.chunks]
        return out


@dataclass(frozen=True)
class Manifest:
    """A parsed, checked manifest.json."""

    name: str
    step: int
    attempt: int
    reason: str
    objects: tuple[ObjectEntry, ...]
    created_at: str
    job: JobIdentity = field(default_factory=JobIdentity)
    epoch: int | None = None
    samples_seen: int | None = None
    tokens_seen: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    world_size: int | None = None
    parent: str | None = None
    lazarus_version: str = ""
    torch_version: str | None = None
    python_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def total_bytes(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def own_bytes(self) -> int:
        """Bytes stored under the checkpoint's own prefix."""
        return sum(o.size for o in self.objects if not o.chunks)

    @property
    def shared_bytes(self) -> int:
        """Bytes it references under the job's shared prefix (each chunk counted once)."""
        return sum({c.sha256: c.size for o in self.objects for c in o.chunks}.values())

    def chunk_digests(self) -> set[str]:
        return {c.sha256 for o in self.objects for c in o.chunks}

    @property
    def created(self) -> datetime:
        return parse_time(self.created_at)

    def object(self, path: str) -> ObjectEntry:
        for o in self.objects:
            if o.path == path:
                return o
        raise KeyError(path)

    def to_json(self) -> dict[str, Any]:
        return {
            "schemaVersion": self.schema_version,
            "name": self.name,
            "job": self.job.encode(),
            "attempt": self.attempt,
            "step": self.step,
            "epoch": self.epoch,
            "samplesSeen": self.samples_seen,
            "tokensSeen": self.tokens_seen,
            "reason": self.reason,
            "metrics": dict(self.metrics),
            "worldSize": self.world_size,
            "parent": self.parent,
            "createdAt": self.created_at,
            "library": {
                "lazarus": self.lazarus_version,
                "torch": self.torch_version,
                "python": self.python_version,
            },
            "objects": [o.to_json() for o in self.objects],
            "extra": dict(self.extra),
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=1, sort_keys=False) + "\n").encode("utf-8")


def now_rfc3339() -> str:
    """Now, as every time the store writes (lazarus_contract.format_time)."""
    return format_time(datetime.now(UTC))


def python_version() -> str:
    return ".".join(str(v) for v in sys.version_info[:3])


# Bounds on what a manifest may cost a reader (the operator lists every job's), checked
# before parsing: a hostile or broken manifest is invalid, not an out-of-memory.
MAX_MANIFEST_BYTES = 16 << 20
MAX_MANIFEST_OBJECTS = 100_000
MAX_MANIFEST_DEPTH = 32  # the schema nests 4 deep; `extra` is the writer's, shallow too


def _check_document(doc: dict[str, Any], where: str) -> None:
    """The rules a manifest document must meet before it is read (InvalidCheckpoint)."""
    objects = doc.get("objects")
    if isinstance(objects, list):
        count = len(objects) + sum(
            len(o["chunks"])
            for o in objects
            if isinstance(o, dict) and type(o.get("chunks")) is list
        )
        if count > MAX_MANIFEST_OBJECTS:
            raise InvalidCheckpoint(
                f"{where}: manifest lists {count} objects and chunks, over {MAX_MANIFEST_OBJECTS}"
            )
    version = doc.get("schemaVersion")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise InvalidCheckpoint(
            f"{where}: unknown manifest schema version {one_line(repr(version), 40)}"
            f" (this library reads {sorted(SUPPORTED_SCHEMA_VERSIONS)})"
        )
    errors = sorted(jsonschema.Draft202012Validator(schema()).iter_errors(doc), key=str)
    if errors:
        first = errors[0]
        loc = one_line("/".join(str(p) for p in first.absolute_path), 100) or "(root)"
        raise InvalidCheckpoint(
            f"{where}: manifest does not match its schema at {loc}: {one_line(first.message)}"
        )
    if doc["name"] != checkpoint_name(doc["step"], doc["attempt"]):
        raise InvalidCheckpoint(
            f"{where}: manifest name {doc['name']!r} does not match its step/attempt"
        )
    seen: set[str] = set()
    for o in doc["objects"]:
        why = check_object_path(o["path"])
        if why:
            raise InvalidCheckpoint(f"{where}: manifest lists a bad object: {one_line(why)}")
        if o["path"] in seen:
            raise InvalidCheckpoint(f"{where}: manifest lists {one_line(repr(o['path']))} twice")
        seen.add(o["path"])
    _check_chunks(doc, where)


def _check_chunks(doc: dict[str, Any], where: str) -> None:
    """Chunks only in version 2, by a job whose UID can name its shared prefix, and
    adding up to their object: sizes sum, CRC32Cs combine (no I/O needed)."""
    chunked = [o for o in doc["objects"] if o.get("chunks")]
    if chunked and doc["schemaVersion"] < CHUNKED_SCHEMA_VERSION:
        raise InvalidCheckpoint(f"{where}: chunks need manifest schema version 2")
    if chunked and not shared.uid_ok(doc["job"]["uid"]):
        raise InvalidCheckpoint(f"{where}: job uid cannot name a shared prefix")
    for o in chunked:
        size, crc = 0, 0
        for c in o["chunks"]:
            size += c["size"]
            crc = checksum.combine(crc, checksum.from_b64(c["crc32c"]), c["size"])
        if size != o["size"] or checksum.to_b64(crc) != o["crc32c"]:
            raise InvalidCheckpoint(
                f"{where}: chunks of {one_line(repr(o['path']))}"
                " do not add up to its size and CRC32C"
            )


def parse_manifest(raw: bytes, *, where: str) -> Manifest:
    """Parse and check manifest bytes; InvalidCheckpoint (naming `where`, one line) if
    unusable, whatever the bytes: bounded size and depth, checked types and numbers."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidCheckpoint(
            f"{where}: manifest is over {MAX_MANIFEST_BYTES >> 20} MiB: not read"
        )
    try:  # NaN is allowed: a diverged run's metrics are NaN, and its manifests are valid
        doc = loads_bounded(
            raw, max_bytes=MAX_MANIFEST_BYTES, max_depth=MAX_MANIFEST_DEPTH, allow_nan=True
        )
    except MalformedJSON as e:
        raise InvalidCheckpoint(f"{where}: manifest is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise InvalidCheckpoint(f"{where}: manifest is not a JSON object")
    _check_document(doc, where)
    try:
        metrics = {k: float(v) for k, v in doc.get("metrics", {}).items()}
    except OverflowError:
        raise InvalidCheckpoint(f"{where}: manifest has a metric too large for a float") from None
    lib = doc["library"]
    job = doc["job"]
    return Manifest(
        schema_version=doc["schemaVersion"],
        name=doc["name"],
        job=decode_identity(job) or JobIdentity(),  # the schema checked it
        attempt=doc["attempt"],
        step=doc["step"],
        epoch=doc.get("epoch"),
        samples_seen=doc.get("samplesSeen"),
        tokens_seen=doc.get("tokensSeen"),
        reason=doc["reason"],
        metrics=metrics,
        world_size=doc.get("worldSize"),
        parent=doc.get("parent"),
        created_at=doc["createdAt"],
        lazarus_version=lib["lazarus"],
        torch_version=lib.get("torch"),
        python_version=lib.get("python", ""),
        objects=tuple(
            ObjectEntry(
                o["path"],
                o["size"],
                o["crc32c"],
                tuple(Chunk(c["sha256"], c["size"], c["crc32c"]) for c in o.get("chunks", ())),
                job["uid"],
            )
            for o in doc["objects"]
        ),
        extra=dict(doc.get("extra", {})),
    )
