"""Errors of the checkpoint store: one class per thing a caller can act on.

Every message is one line naming the bucket/endpoint/path involved, so the CLI
and the operator can print it as is.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class InvalidURI(StoreError):
    """The checkpoint root is neither `s3://bucket[/prefix]` nor a usable path."""


class StoreUnavailable(StoreError):
    """The storage endpoint cannot be reached (connection refused, DNS, timeout)."""


class EndpointNotS3(StoreError):
    """The endpoint answers HTTP, but not as S3 does (a web page, another API)."""


class AccessDenied(StoreError):
    """Credentials are missing, wrong, or lack permission."""


class BucketMissing(StoreError):
    """The bucket (or the filesystem root's parent) does not exist."""


class CheckpointNotFound(StoreError):
    """No checkpoint (or no object) of that name."""


class InvalidCheckpoint(StoreError):
    """The checkpoint exists but is not a usable one (bad manifest, missing data)."""


class ChecksumMismatch(InvalidCheckpoint):
    """An object's bytes do not match the size or CRC32C its manifest records."""


class CommitConflict(StoreError):
    """Another writer committed this checkpoint first."""


class FencedOut(StoreError):
    """A newer attempt is in the fence log: this attempt may no longer commit."""


class AttemptTaken(StoreError):
    """Another job recorded this attempt number on the root (two jobs share one root)."""
