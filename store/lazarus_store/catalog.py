"""The catalog of a root: which checkpoint prefixes exist (one LIST), their manifests,
and validation, cheap (manifest + listing) or full (every byte, via verified.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lazarus_contract import MANIFEST_NAME, parse_checkpoint_name

from . import quarantine, shared, verified
from .backends.base import ObjectInfo, ObjectMissing
from .errors import CheckpointNotFound, ChecksumMismatch, InvalidCheckpoint
from .manifest import MAX_MANIFEST_BYTES, Manifest, ObjectEntry, parse_manifest
from .root import Root


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint prefix as listed: committed or not, with its manifest if readable."""

    name: str
    step: int
    attempt: int
    committed: bool
    manifest: Manifest | None
    total_bytes: int  # bytes of every object under the prefix, as listed
    modified: float  # newest object's mtime (seconds since the epoch)
    quarantined: bool = False
    quarantine_reason: str | None = None
    manifest_error: str | None = None  # why a present manifest.json is unusable
    objects: tuple[ObjectInfo, ...] = field(default=(), repr=False)
    shared_objects: tuple[ObjectInfo, ...] = field(default=(), repr=False)  # its chunks, listed

    @property
    def created(self) -> datetime:
        if self.manifest is not None:  # a createdAt out of range (year 1 at +14:00) too
            with contextlib.suppress(ValueError, OverflowError):
                return self.manifest.created.astimezone(UTC)
        return datetime.fromtimestamp(self.modified, UTC)


@dataclass(frozen=True)
class Validation:
    ok: bool
    problems: list[str]
    warnings: list[str]


def check_listing(
    m: Manifest, objects: Iterable[ObjectInfo], prefix: str, chunks: Iterable[ObjectInfo] = ()
) -> Validation:
    """Cheap validation: every listed object, and every shared chunk, exists with its
    size (from one LIST)."""
    sizes = {o.key[len(prefix) :]: o.size for o in objects}
    blobs = {o.key: o.size for o in chunks}
    problems: list[str] = []
    for e in m.objects:
        if e.chunks:
            problems += _check_chunks(e, blobs)
            continue
        size = sizes.get(e.path)
        if size is None:
            problems.append(f"missing object {e.path}")
        elif size != e.size:
            problems.append(f"{e.path} is {size} bytes, manifest says {e.size}")
    listed = {e.path for e in m.objects if not e.chunks} | {MANIFEST_NAME, shared.INTENT_NAME}
    warnings = [f"unlisted object {p} (garbage, never read)" for p in sorted(set(sizes) - listed)]
    return Validation(not problems, problems, warnings)


def _check_chunks(e: ObjectEntry, blobs: dict[str, int]) -> list[str]:
    out = []
    for c in e.chunks:
        size = blobs.get(shared.blob_key(e.uid, c.sha256))
        if size is None:
            out.append(f"missing shared chunk {c.sha256} of {e.path}")
        elif size != c.size:
            out.append(
                f"shared chunk {c.sha256} of {e.path} is {size} bytes, manifest says {c.size}"
            )
    return out


def cheaply_valid(c: CheckpointInfo) -> bool:
    return (
        c.manifest is not None
        and check_listing(c.manifest, c.objects, f"{c.name}/", c.shared_objects).ok
    )


def _chunk_objects(m: Manifest | None, blobs: dict[str, ObjectInfo]) -> tuple[ObjectInfo, ...]:
    """The listed blobs a manifest references."""
    if m is None:
        return ()
    keys = {shared.blob_key(e.uid, c.sha256) for e in m.objects for c in e.chunks}
    return tuple(blobs[k] for k in sorted(keys) if k in blobs)


def list_checkpoints(root: Root) -> list[CheckpointInfo]:
    """Every checkpoint prefix under the root, newest first (one LIST, one GET per manifest)."""
    groups: dict[str, list[ObjectInfo]] = {}
    quarantined: set[str] = set()
    blobs: dict[str, ObjectInfo] = {}
    for o in root.backend.list_objects(""):
        head, _, rest = o.key.partition("/")
        marked = quarantine.name_of(o.key)
        if marked is not None:
            quarantined.add(marked)
        elif o.key.startswith(shared.SHARED_PREFIX + "/"):
            blobs[o.key] = o
        elif rest and parse_checkpoint_name(head):
            groups.setdefault(head, []).append(o)
    out = [_info(root, n, objs, n in quarantined, blobs) for n, objs in groups.items()]
    out.sort(key=lambda c: c.name, reverse=True)
    return out


def info(root: Root, name: str) -> CheckpointInfo:
    """One checkpoint (one LIST of its prefix); CheckpointNotFound if nothing is there."""
    if parse_checkpoint_name(name) is None:
        raise CheckpointNotFound(f"{root.where(name)}: not a checkpoint name")
    objects = root.backend.list_objects(f"{name}/")
    if not objects:
        raise CheckpointNotFound(f"{root.where(name)}: no such checkpoint")
    return _info(root, name, objects, quarantine.is_quarantined(root, name), None)


def _info(
    root: Root,
    name: str,
    objects: list[ObjectInfo],
    quarantined: bool,
    blobs: dict[str, ObjectInfo] | None,
) -> CheckpointInfo:
    parsed = parse_checkpoint_name(name)
    assert parsed is not None
    step, attempt = parsed
    manifest: Manifest | None = None
    error: str | None = None
    committed = any(o.key == f"{name}/{MANIFEST_NAME}" for o in objects)
    if committed:
        try:
            manifest = _load_manifest(root, name)
            if (manifest.step, manifest.attempt) != (step, attempt):
                raise InvalidCheckpoint(
                    f"{root.where(name)}: manifest is for {manifest.name}, not this prefix"
                )
        except InvalidCheckpoint as e:
            manifest, error = None, str(e)
        except CheckpointNotFound as e:  # deleted between LIST and GET
            committed, error = False, str(e)
    if blobs is None and manifest is not None and manifest.chunk_digests():
        blobs = {o.key: o for o in root.backend.list_objects(shared.prefix(manifest.job.uid))}
    return CheckpointInfo(
        name=name,
        step=step,
        attempt=attempt,
        committed=committed,
        manifest=manifest,
        total_bytes=sum(o.size for o in objects),
        modified=max((o.mtime for o in objects), default=0.0),
        quarantined=quarantined,
        quarantine_reason=quarantine.reason(root, name) if quarantined else None,
        manifest_error=error,
        objects=tuple(objects),
        shared_objects=_chunk_objects(manifest, blobs or {}),
    )


def _load_manifest(root: Root, name: str) -> Manifest:
    try:
        # At most one byte past the cap: a huge manifest costs us nothing to refuse.
        with root.backend.open_get(f"{name}/{MANIFEST_NAME}") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except ObjectMissing:
        raise CheckpointNotFound(f"{root.where(name)}: no manifest (not committed)") from None
    return parse_manifest(raw, where=root.where(name, MANIFEST_NAME))


def read_manifest(root: Root, name: str) -> Manifest:
    """The checked manifest; CheckpointNotFound / InvalidCheckpoint otherwise."""
    if parse_checkpoint_name(name) is None:
        raise CheckpointNotFound(f"{root.where(name)}: not a checkpoint name")
    m = _load_manifest(root, name)
    if m.name != name:
        raise InvalidCheckpoint(f"{root.where(name)}: manifest is for {m.name}")
    return m


def entry(root: Root, name: str, path: str, manifest: Manifest | None) -> ObjectEntry:
    """What the manifest (read unless given) records for one object."""
    m = manifest or read_manifest(root, name)
    try:
        return m.object(path)
    except KeyError:
        raise CheckpointNotFound(f"{root.where(name, path)}: not listed in the manifest") from None


def validate(root: Root, c: CheckpointInfo, full: bool = False) -> Validation:
    """Cheap (manifest + the listing) or full (also every byte's CRC32C) validation."""
    if not c.committed:
        return Validation(False, ["uncommitted: no manifest.json"], [])
    if c.manifest is None:
        return Validation(False, [c.manifest_error or "manifest unreadable"], [])
    v = check_listing(c.manifest, c.objects, f"{c.name}/", c.shared_objects)
    if not full or not v.ok:
        return v
    problems = list(v.problems)
    for e in c.manifest.objects:
        try:
            verified.verify_object(root, c.name, e)
        except ChecksumMismatch as err:
            problems.append(str(err))
        except ObjectMissing:
            problems.append(f"missing object {e.path}")
    return Validation(not problems, problems, v.warnings)
