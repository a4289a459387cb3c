"""The Secrets jobs name (`spec.checkpoint.secretRef`), read by name and kept briefly.

The operator reads no other Secret: it neither watches nor lists them, so a Secret no
job names never reaches its memory, and its RBAC needs only `get` (issue 28). A job's
credentials are one GET of the Secret it names, in its own namespace; of the answer
only the keys the job names are kept, for `TTL_S`, so that a job at rest reads no
Secret per cycle (the scale target of issue 10). Concurrent cycles that need the same
Secret share one GET. An entry is dropped when what it gave was refused (a key is
missing, the store denies access), so a fixed or rotated Secret is read again at the
job's next retry; otherwise a changed Secret is seen within `TTL_S`. A missing Secret
is not remembered: the job's retry asks again, and sees one created meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

TTL_S: Final = 300.0
MAX_ENTRIES: Final = 1024  # (namespace, Secret, keys) triples: a few hundred bytes each

# GET one Secret: its JSON body, or None when it does not exist (Kube.get_secret)
Fetch = Callable[[str, str], Awaitable[Mapping[str, Any] | None]]
_Key = tuple[str, str, tuple[str, ...]]


@dataclass(frozen=True)
class _Entry:
    at: float  # monotonic time of the GET
    data: dict[str, str]  # the named keys' values, base64 as `.data` holds them


class SecretCache:
    """An LRU of the named keys of named Secrets, each entry good for `ttl_s`."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        ttl_s: float = TTL_S,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._pending: dict[tuple[str, str], asyncio.Future[Mapping[str, Any] | None]] = {}

    async def data(self, ns: str, name: str, keys: Iterable[str]) -> dict[str, str] | None:
        """The `keys` of Secret `ns/name` that it has (base64); None: no such Secret."""
        key: _Key = (ns, name, tuple(sorted(set(keys))))
        hit = self._entries.get(key)
        if hit is not None and self._clock() - hit.at < self._ttl_s:
            self._entries.move_to_end(key)
            return hit.data
        secret = await self._get(ns, name)
        if secret is None:
            self._entries.pop(key, None)
            return None
        raw = secret.get("data") or {}
        data = {k: str(raw[k]) for k in key[2] if raw.get(k) is not None}
        self._entries[key] = _Entry(self._clock(), data)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return data

    def forget(self, ns: str, name: str) -> None:
        """Read Secret `ns/name` again next time: what it gave was refused."""
        for key in [k for k in self._entries if k[:2] == (ns, name)]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    async def _get(self, ns: str, name: str) -> Mapping[str, Any] | None:
        """One GET per Secret however many cycles ask for it at once."""
        pending = self._pending.get((ns, name))
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(ns, name))
            self._pending[(ns, name)] = pending
            pending.add_done_callback(lambda _: self._pending.pop((ns, name), None))
        # Shielded: one waiter cancelled (its cycle's timeout) does not fail the others.
        return await asyncio.shield(pending)
