"""Quarantine markers (`_lazarus/quarantine/<name>.json`): a checkpoint never to be
chosen again, its bytes kept for inspection."""

from __future__ import annotations

import json

from lazarus_contract import QUARANTINE_PREFIX

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
        return str(json.loads(raw)["reason"])
    except (ValueError, KeyError, TypeError):
        return "unreadable quarantine marker"


def is_quarantined(root: Root, name: str) -> bool:
    key = marker_key(name)
    return any(o.key == key for o in root.backend.list_objects(f"{QUARANTINE_PREFIX}/{name}"))
