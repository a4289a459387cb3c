"""Retention against a root: the pure policy's view of one listing (`candidates`),
and carrying out its plan (`apply`). The policy itself is retention.py."""

from __future__ import annotations

from collections.abc import Iterable

from lazarus_contract import MANIFEST_NAME, parse_checkpoint_name

from .catalog import CheckpointInfo, cheaply_valid
from .retention import Candidate, RetentionPlan
from .root import Root
from .selection import Scope


def candidates(scope: Scope, checkpoints: Iterable[CheckpointInfo]) -> list[Candidate]:
    """Every prefix the owner owns, with cheap validity and lineage (no extra I/O).
    Other jobs' prefixes are left out: never counted, never deleted."""
    return [
        Candidate(
            name=c.name,
            step=c.step,
            attempt=c.attempt,
            committed=c.committed,
            valid=cheaply_valid(c),
            quarantined=c.quarantined,
            in_lineage=scope.why_not_in_lineage(c) is None,
            metrics=dict(c.manifest.metrics) if c.manifest else {},
            modified=c.modified,
        )
        for c in checkpoints
        if scope.owns(c)
    ]


def delete_prefix(root: Root, name: str, keys: list[str]) -> None:
    """Delete one checkpoint's objects, the manifest first so that a half-done delete
    leaves an uncommitted prefix, never a checkpoint with missing objects; then any
    parts of a killed upload that the listing cannot show."""
    manifest = f"{name}/{MANIFEST_NAME}"
    if manifest in keys:
        root.backend.delete_many([manifest])
    root.backend.delete_many([k for k in keys if k != manifest])
    root.backend.abort_uploads(f"{name}/")


def apply(root: Root, plan: RetentionPlan) -> list[str]:
    """Delete what the plan says; returns the names deleted."""
    done = []
    for name in plan.removals:
        if parse_checkpoint_name(name) is None:
            continue
        delete_prefix(root, name, [o.key for o in root.backend.list_objects(f"{name}/")])
        done.append(name)
    return done
