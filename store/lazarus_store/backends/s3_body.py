"""Request bodies sent from the caller's buffer: a read-only, seekable view that botocore
streams (and rewinds on a retry) without copying the bytes into a bytes object."""

from __future__ import annotations

import io
from typing import Any

from .base import Data


class ViewBody(io.RawIOBase):
    """A request body over a memoryview: reads hand out slices of it (the HTTP layer sends
    each with `sendall`), seekable so botocore can size it and rewind it for a retry."""

    def __init__(self, data: Data) -> None:
        self._view = memoryview(data).cast("B")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self._view) - self._pos

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, min(len(self._view), base + offset))
        return self._pos

    def read(self, size: int | None = -1) -> memoryview:
        end = len(self._view)
        if size is not None and size >= 0:
            end = min(end, self._pos + size)
        out = self._view[self._pos : end]
        self._pos = end
        return out

    def readinto(self, b: Any) -> int:
        out = self.read(len(memoryview(b)))
        memoryview(b).cast("B")[: len(out)] = out
        return len(out)


def body_of(data: Data) -> bytes | ViewBody:
    return data if isinstance(data, bytes) else ViewBody(data)
