"""What the handlers share, handed to each by kopf as its `memo`: the reconciler,
the options it runs with, and the background tasks it keeps alive."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from .cycle import Reconciler


@dataclass(frozen=True)
class Options:
    namespaces: tuple[str, ...]  # empty: cluster-wide
    peering: bool
    priority: int  # this replica's peering priority
    peering_name: str
    resync_seconds: float
    relist_seconds: float  # a LIST of the pods' metadata to compare with the index
    api_threads: int = 32  # threads for blocking API calls: the client's connection pool


@dataclass
class Runtime:
    reconciler: Reconciler
    options: Options
    background: set[asyncio.Task[None]] = field(default_factory=set)
    # node -> the part of it decisions read, as last seen (handlers.node_event)
    node_essences: dict[str, Any] = field(default_factory=dict)
