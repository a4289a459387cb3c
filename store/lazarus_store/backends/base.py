"""What a backend provides: the `Backend` protocol, complete (the store calls nothing
else on a backend). Keys are '/'-separated and relative to the store's root."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float  # seconds since the epoch


class ObjectMissing(Exception):
    """The key does not exist (the store turns this into a StoreError with context)."""


# What a write takes: bytes, or a view of a host buffer (written without a copy).
Data = bytes | bytearray | memoryview


class PartUpload(Protocol):
    """One object written in parts, possibly in parallel, then completed atomically."""

    def upload_part(self, number: int, offset: int, data: Data, crc: int) -> None: ...

    def complete(self, size: int, crc: int) -> None: ...

    def abort(self) -> None: ...


class Backend(Protocol):
    description: str  # e.g. "s3://bucket/prefix (endpoint http://127.0.0.1:9000)"
    supports_parallel_parts: bool

    def check(self) -> None:
        """Raise StoreUnavailable / AccessDenied / BucketMissing if the root is unusable."""

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with `prefix` ('' for all), any order."""

    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, start: int, length: int) -> bytes: ...

    def get_range_into(self, key: str, start: int, out: memoryview) -> int:
        """Read `len(out)` bytes from `start` straight into `out` (no intermediate bytes);
        returns how many arrived (fewer: the object is shorter)."""

    def open_get(self, key: str) -> BinaryIO:
        """A streaming reader of the whole object."""

    def put(self, key: str, data: Data, crc: int) -> None:
        """Write (or replace) a whole object; the server verifies `crc` where it can."""

    def put_if_absent(self, key: str, data: bytes, crc: int) -> bool:
        """Create `key` only if it does not exist; False if someone else did first."""

    def get_versioned(self, key: str, max_bytes: int | None = None) -> tuple[bytes, str] | None:
        """(content, token) for compare-and-swap with `put_if_token`, or None if absent.
        With `max_bytes`, at most that many bytes are read (the caller refuses more)."""

    def put_if_token(self, key: str, data: bytes, token: str | None) -> bool:
        """Replace `key` only if it still has `token` (None: only if absent)."""

    def start_parts(self, key: str) -> PartUpload: ...

    def delete_many(self, keys: list[str]) -> None:
        """Delete keys (missing ones are fine), in as few calls as the backend allows."""

    def abort_uploads(self, prefix: str) -> int:
        """Abort unfinished part uploads under `prefix` that LIST does not show (a killed
        writer's); returns how many. Backends whose leftovers are listed return 0."""
