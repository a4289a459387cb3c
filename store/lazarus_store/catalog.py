"""The catalog of a root: which checkpoint prefixes exist (one LIST), their manifests,
and validation, cheap (manifest + listing) or full (every byte, via verified.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lazarus_contract import MANIFEST_NAME, parse_checkpoint_name

from . import quarantine, verified
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


def check_listing(m: Manifest, objects: Iterable[ObjectInfo], prefix: str) -> Validation:
    """Cheap validation: every listed object exists with its size (from one LIST)."""
    sizes = {o.key[len(prefix) :]: o.size for o in objects}
    problems: list[str] = []
    for e in m.objects:
        size = sizes.get(e.path)
        if size is None:
            problems.append(f"missing object {e.path}")
        elif size != e.size:
            problems.append(f"{e.path} is {size} bytes, manifest says {e.size}")
    listed = {e.path for e in m.objects} | {MANIFEST_NAME}
    warnings = [f"unlisted object {p} (garbage, never read)" for p in sorted(set(sizes) - listed)]
    return Validation(not problems, problems, warnings)


def cheaply_valid(c: CheckpointInfo) -> bool:
    return c.manifest is not None and check_listing(c.manifest, c.objects, f"{c.name}/").ok


def list_checkpoints(root: Root) -> list[CheckpointInfo]:
    """Every checkpoint prefix under the root, newest first (one LIST, one GET per manifest)."""
    groups: dict[str, list[ObjectInfo]] = {}
    quarantined: set[str] = set()
    for o in root.backend.list_objects(""):
        head, _, rest = o.key.partition("/")
        marked = quarantine.name_of(o.key)
        if marked is not None:
            quarantined.add(marked)
        elif rest and parse_checkpoint_name(head):
            groups.setdefault(head, []).append(o)
    out = [_info(root, n, objs, n in quarantined) for n, objs in groups.items()]
    out.sort(key=lambda c: c.name, reverse=True)
    return out


def info(root: Root, name: str) -> CheckpointInfo:
    """One checkpoint (one LIST of its prefix); CheckpointNotFound if nothing is there."""
    if parse_checkpoint_name(name) is None:
        raise CheckpointNotFound(f"{root.where(name)}: not a checkpoint name")
    objects = root.backend.list_objects(f"{name}/")
    if not objects:
        raise CheckpointNotFound(f"{root.where(name)}: no such checkpoint")
    return _info(root, name, objects, quarantine.is_quarantined(root, name))


def _info(root: Root, name: str, objects: list[ObjectInfo], quarantined: bool) -> CheckpointInfo:
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
    v = check_listing(c.manifest, c.objects, f"{c.name}/")
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
