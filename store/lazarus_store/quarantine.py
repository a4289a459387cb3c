"""Quarantine markers (`_lazarus/quarantine/<name>.json`): a checkpoint never to be
chosen again, its bytes kept for inspection."""

from __future__ import annotations

import json

from lazarus_contract import QUARANTINE_PREFIX
from lazarus_contract.bounded_json import MalformedJSON, loads_bounded, one_line

from . import checksum
from .backends.base import ObjectMissing
from .manifest import now_rfc3339
from .root import Root

MAX_MARKER_BYTES = 64 << 10  # a marker is a line of JSON; more is not read


def marker_key(name: str) -> str:
    return f"{QUARANTINE_PREFIX}/{name}.json"


def name_of(key: str) -> str | None:
    """The checkpoint a listed key marks as quarantined, or None if it is no marker."""
    if not key.startswith(QUARANTINE_PREFIX + "/"):
        return None
    return key[len(QUARANTINE_PREFIX) + 1 :].removesuffix(".json")


def put(root: Root, name: str, reason: str) -> None:
    body = {"name": name, "reason": reason, "at": now_rfc3339()}
    data = (json.dumps(body) + "\n").encode()
    root.backend.put(marker_key(name), data, checksum.crc32c(data))


def reason(root: Root, name: str) -> str | None:
    """Why `name` was quarantined (None: no marker)."""
    try:
        with root.backend.open_get(marker_key(name)) as f:
            raw = f.read(MAX_MARKER_BYTES)
    except ObjectMissing:
        return None
    try:
        doc = loads_bounded(raw, max_bytes=MAX_MARKER_BYTES, max_depth=4)
    except MalformedJSON:
        return "unreadable quarantine marker"
    why = doc.get("reason") if isinstance(doc, dict) else None
    # Anyone who can write the root can write a marker: its reason is shown as one line.
    return one_line(why, 300) if isinstance(why, str) else "unreadable quarantine marker"


def is_quarantined(root: Root, name: str) -> bool:
    key = marker_key(name)
    return any(o.key == key for o in root.backend.list_objects(f"{QUARANTINE_PREFIX}/{name}"))
