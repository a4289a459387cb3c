"""CRC32C as S3 spells it, computed while bytes stream past (awscrt, several GB/s).

Parts computed independently are joined with `combine`, so a parallel upload or
download never makes a second pass over the bytes to get the full-object value.
"""

from __future__ import annotations

import base64

from awscrt import checksums


def crc32c(data: bytes | bytearray | memoryview, previous: int = 0) -> int:
    """CRC32C of `data`, continuing from `previous` (the CRC of the bytes before it)."""
    return int(checksums.crc32c(data, previous))


def combine(crc_a: int, crc_b: int, len_b: int) -> int:
    """CRC32C of A||B from CRC(A), CRC(B) and len(B), without touching the bytes."""
    if len_b == 0:
        return crc_a
    return int(checksums.combine_crc32c(crc_a, crc_b, len_b))


def to_b64(crc: int) -> str:
    """The base64 of the big-endian 4 bytes: the value of `x-amz-checksum-crc32c`."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode("ascii")


def from_b64(text: str) -> int:
    """Inverse of `to_b64`; raises ValueError on anything that is not 4 bytes of base64."""
    raw = base64.b64decode(text, validate=True)
    if len(raw) != 4:
        raise ValueError(f"not a CRC32C: {text!r}")
    return int.from_bytes(raw, "big")


class Crc32c:
    """Running CRC32C and byte count over a stream."""

    __slots__ = ("size", "value")

    def __init__(self) -> None:
        self.value = 0
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.value = crc32c(data, self.value)
        self.size += len(data)

    @property
    def b64(self) -> str:
        return to_b64(self.value)
