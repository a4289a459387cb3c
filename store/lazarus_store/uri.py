"""Opening a store from a URI (`s3://bucket/prefix`, `file:///path`, or a path) or the env."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from lazarus_contract import (
    ENV_CHECKPOINT_URI,
    ENV_S3_ADDRESSING_STYLE,
    ENV_S3_ENDPOINT,
)

from .backends.base import Backend
from .backends.fs import FsBackend
from .backends.s3 import S3Backend
from .errors import InvalidURI
from .root import DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE
from .store import CheckpointStore


@dataclass(frozen=True)
class S3Timeouts:
    """How long an S3 call may take: per connection attempt, per read of the socket
    (a stalled server), and how many attempts (botocore's standard retries)."""

    connect_s: float = 10
    read_s: float = 120
    max_attempts: int = 5


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z0-9-]{0,64}$")


def check_root_path(path: str, uri: str) -> None:
    """A root names one place: no `.`/`..` segments (which move it), no empty
    segments (`a//b`, which some servers fold and others keep)."""
    inner = path.strip("/")
    if not inner:
        return
    for seg in inner.split("/"):
        if seg in ("", ".", ".."):
            what = "an empty segment (//)" if not seg else f"a {seg!r} segment"
            raise InvalidURI(f"{uri}: the checkpoint root may not contain {what}")


def open_store(
    uri: str,
    *,
    endpoint_url: str | None = None,
    addressing_style: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    region: str | None = None,
    part_size: int = DEFAULT_PART_SIZE,
    multipart_threshold: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    s3_timeouts: S3Timeouts | None = None,
) -> CheckpointStore:
    """A store for the checkpoint root `uri`. Nothing is contacted until first use.
    `s3_timeouts`: the S3 client's connect/read timeouts and attempts (default
    S3Timeouts(): long enough for a trainer's big reads on a busy server)."""
    if not uri or not uri.strip():
        raise InvalidURI("empty checkpoint URI: expected s3://bucket/prefix or a directory path")
    parsed = urlparse(uri)
    backend: Backend
    if parsed.scheme == "s3":
        backend = _s3_backend(
            uri,
            endpoint_url=endpoint_url,
            addressing_style=addressing_style,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            region=region,
            max_connections=max(10, concurrency * 2),
            timeouts=s3_timeouts or S3Timeouts(),
        )
    elif parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise InvalidURI(f"{uri}: file URIs must be local (file:///path)")
        check_root_path(parsed.path, uri)
        backend = FsBackend(parsed.path)
    elif parsed.scheme:
        raise InvalidURI(f"{uri}: unsupported scheme {parsed.scheme!r} (use s3:// or a path)")
    else:
        check_root_path(uri, uri)
        backend = FsBackend(Path(uri).expanduser())
    return CheckpointStore(
        backend,
        part_size=part_size,
        multipart_threshold=multipart_threshold,
        concurrency=concurrency,
    )


def _s3_backend(
    uri: str,
    *,
    endpoint_url: str | None,
    addressing_style: str | None,
    aws_access_key_id: str | None,
    aws_secret_access_key: str | None,
    region: str | None,
    max_connections: int,
    timeouts: S3Timeouts,
) -> S3Backend:
    parsed = urlparse(uri)
    bucket = parsed.netloc
    if not _BUCKET_RE.match(bucket):
        raise InvalidURI(f"{uri}: {bucket!r} is not a valid S3 bucket name")
    if addressing_style not in (None, "", "auto", "path", "virtual"):
        raise InvalidURI(
            f"addressing style must be auto, path or virtual, not {addressing_style!r}"
        )
    if parsed.query or parsed.fragment:
        raise InvalidURI(f"{uri}: S3 URIs take no query or fragment")
    check_root_path(parsed.path, uri)
    if region and not _REGION_RE.fullmatch(region):
        raise InvalidURI(f"region {region!r} is not a region name (lowercase letters, digits, -)")
    return S3Backend(
        bucket,
        parsed.path.strip("/"),
        endpoint_url=endpoint_url,
        addressing_style=addressing_style,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        region=region,
        max_connections=max_connections,
        max_attempts=timeouts.max_attempts,
        connect_timeout=timeouts.connect_s,
        read_timeout=timeouts.read_s,
    )


def open_store_from_env(uri: str | None = None) -> CheckpointStore:
    """The store the contract's env names: LAZARUS_CHECKPOINT_URI, LAZARUS_S3_ENDPOINT,
    LAZARUS_S3_ADDRESSING_STYLE; credentials from the standard AWS chain."""
    uri = uri or os.environ.get(ENV_CHECKPOINT_URI, "")
    if not uri:
        raise InvalidURI(f"{ENV_CHECKPOINT_URI} is not set")
    return open_store(
        uri,
        endpoint_url=os.environ.get(ENV_S3_ENDPOINT) or None,
        addressing_style=os.environ.get(ENV_S3_ADDRESSING_STYLE) or None,
    )
