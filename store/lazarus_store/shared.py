"""Content-addressed data shared by one job's checkpoints (docs/contract.md section 1a).

A chunk is stored once per job at `_lazarus/shared/<job uid>/<sha256>`; manifests
(schema version 2) reference it from their object entries. The key is derived from
the manifest's own job UID, never written freely, so a manifest cannot reference
another job's data.

Safety (section 7): a save writes its *intent* (every digest it may reference) into
its own prefix before it looks for reusable chunks or uploads any, and commits its
manifest after; a collection pass marks every committed manifest's chunks and every
uncommitted prefix's intent, and deletes only the owner's blobs that neither names.
A crashed save's intent protects its chunks until retention removes its prefix
(after the safety age); the next pass frees them. A deleting pass also leaves a
marker under the job's prefix while it runs, which a save's LIST sees (sweep.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lazarus_contract import MANIFEST_NAME, parse_checkpoint_name
from lazarus_contract.bounded_json import MalformedJSON, loads_bounded

from . import checksum
from .backends.base import ObjectInfo, ObjectMissing
from .root import Root

SHARED_PREFIX = "_lazarus/shared"
INTENT_NAME = ".lazarus-tmp-refs.json"  # under a checkpoint's prefix, never in a manifest
ANONYMOUS = "-"  # the key of a job without a UID (a trainer run by hand)
MAX_INTENT_BYTES = 16 << 20
SWEEP_MARK = ".sweep-"  # `<job prefix>.sweep-<token>`: a pass is marking or deleting there
# A save that finds a pass's marker after writing its intent waits up to WINDOW_S for
# that pass, then re-uploads what it deleted; a pass issues no delete later than
# WINDOW_S / 2 after writing its marker (the other half: margin for a delete in flight).
WINDOW_S = 60.0
_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


def uid_ok(uid: str) -> bool:
    """Whether `uid` can name a shared prefix (empty: the anonymous one)."""
    return not uid or _UID.fullmatch(uid) is not None


def job_key(uid: str) -> str:
    if not uid_ok(uid):
        raise ValueError(f"job uid {uid[:80]!r} cannot name a shared prefix")
    return uid or ANONYMOUS


def prefix(uid: str) -> str:
    return f"{SHARED_PREFIX}/{job_key(uid)}/"


def blob_key(uid: str, digest: str) -> str:
    return prefix(uid) + digest


def digest(data: bytes | bytearray | memoryview) -> str:
    """SHA-256 (hashlib releases the GIL: parallel on the save pool; ~1.5 GB/s a core
    with SHA-NI, measured against BLAKE2b's 0.85, docs/performance.md)."""
    return hashlib.sha256(data).hexdigest()


def sweep_key(key: str, token: str) -> str:
    """The marker of a pass (`token`) under job key `key` (already a job key)."""
    return f"{SHARED_PREFIX}/{key}/{SWEEP_MARK}{token}"


def live_passes(listed: Iterable[ObjectInfo], now: float) -> set[str]:
    """Names of the pass markers in `listed` whose pass may still delete, `now` being
    the server's time (an object's mtime): a marker WINDOW_S older is a dead pass's."""
    return {
        o.key.rsplit("/", 1)[-1]
        for o in listed
        if o.key.rsplit("/", 1)[-1].startswith(SWEEP_MARK) and o.mtime + WINDOW_S >= now
    }


def intent_key(name: str) -> str:
    return f"{name}/{INTENT_NAME}"


def put_intent(root: Root, name: str, uid: str, digests: Iterable[str]) -> None:
    """Record, under the save's own prefix, every chunk it may reference."""
    body = json.dumps({"job": job_key(uid), "sha256": sorted(set(digests))}).encode()
    root.backend.put(intent_key(name), body, checksum.crc32c(body))


def read_intent(root: Root, name: str) -> tuple[str, set[str]] | None:
    """(job key, digests) of an uncommitted save's intent; None if it has none;
    ValueError if it is unreadable (the caller then deletes nothing)."""
    try:
        with root.backend.open_get(intent_key(name)) as f:
            raw = f.read(MAX_INTENT_BYTES + 1)
    except ObjectMissing:
        return None
    try:
        doc = loads_bounded(raw, max_bytes=MAX_INTENT_BYTES, max_depth=3)
    except MalformedJSON as e:
        raise ValueError(f"{root.where(name, INTENT_NAME)}: unreadable ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sha256"), list):
        raise ValueError(f"{root.where(name, INTENT_NAME)}: not an intent")
    return str(doc.get("job")), {d for d in doc["sha256"] if isinstance(d, str)}


@dataclass
class Listing:
    """What one LIST of the root says about shared data: blobs by job key, and which
    checkpoint prefixes are committed or carry an intent."""

    blobs: dict[str, dict[str, ObjectInfo]] = field(default_factory=dict)
    markers: dict[str, list[ObjectInfo]] = field(default_factory=dict)  # passes', by key
    committed: set[str] = field(default_factory=set)
    intents: set[str] = field(default_factory=set)

    def add(self, o: ObjectInfo) -> None:
        if o.key.startswith(SHARED_PREFIX + "/"):
            key, _, name = o.key[len(SHARED_PREFIX) + 1 :].partition("/")
            if _DIGEST.fullmatch(name):
                self.blobs.setdefault(key, {})[name] = o
            elif name.startswith(SWEEP_MARK):
                self.markers.setdefault(key, []).append(o)
            return
        head, _, rest = o.key.partition("/")
        if parse_checkpoint_name(head) is None:
            return
        if rest == MANIFEST_NAME:
            self.committed.add(head)
        elif rest == INTENT_NAME:
            self.intents.add(head)


def listing(root: Root, objects: Sequence[ObjectInfo] | None = None) -> Listing:
    out = Listing()
    for o in root.backend.list_objects("") if objects is None else objects:
        out.add(o)
    return out


def in_flight(root: Root, lst: Listing) -> dict[str, set[str]]:
    """Digests that uncommitted saves may reference, by job key (ValueError: unreadable)."""
    out: dict[str, set[str]] = {}
    for name in sorted(lst.intents - lst.committed):
        got = read_intent(root, name)
        if got is not None:
            out.setdefault(got[0], set()).update(got[1])
    return out
