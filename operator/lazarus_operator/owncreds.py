"""Which checkpoint roots a job without a secretRef may reach with the operator's own
credentials (its environment, instance role or IRSA: boto3's default chain).

Those credentials are the platform's, not the tenant's: a job naming another team's
root must not borrow them (a confused deputy). So by default no job may; the platform
opts in per namespace with LAZARUS_OPERATOR_CREDENTIALS (the chart's
`operatorCredentials`), a JSON object from a namespace, or "*" for every namespace,
to the roots its jobs may use them for:

    {"team-a": ["s3://ckpt/team-a"],
     "*": [{"root": "s3://scratch/shared", "endpoint": "http://minio.storage:9000"}]}

A job's root is allowed when it is one of them or lies beneath one, segment by
segment (s3://b/team covers s3://b/team/run-1, not s3://b/team-b), on the entry's
endpoint: an object names it; a plain root means the operator's default endpoint
(the job names none, or the one AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL gives the
operator). Filesystem roots never reach here: the trainer selects (storage.delegated).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

ENV: str = "LAZARUS_OPERATOR_CREDENTIALS"
ANY_NAMESPACE = "*"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DEFAULT_PORTS = {"http": 80, "https": 443}

# (scheme, host, port, path) of an endpoint; None: the operator's default endpoint
Endpoint = tuple[str, str, int, str]
# (bucket, key segments) of an s3:// root
S3Root = tuple[str, tuple[str, ...]]


def s3_root(uri: str) -> S3Root | None:
    """The bucket and prefix segments of `s3://bucket/a/b`; None when `uri` is no S3
    root the store would open (another scheme, a bad bucket, `.`/`..`/empty segments)."""
    u = urlparse(uri)
    if u.scheme != "s3" or u.query or u.fragment or not _BUCKET_RE.match(u.netloc):
        return None
    inner = u.path.strip("/")
    segments = tuple(inner.split("/")) if inner else ()
    if any(seg in ("", ".", "..") for seg in segments):
        return None
    return u.netloc, segments


def endpoint_key(endpoint: str | None) -> Endpoint | None:
    """`endpoint` in one spelling (lowercase scheme and host, explicit port, no
    trailing slash), so that equal endpoints compare equal; ValueError if malformed."""
    if not endpoint:
        return None
    u = urlparse(endpoint.strip())
    if u.scheme not in _DEFAULT_PORTS or not u.hostname or u.query or u.fragment:
        raise ValueError(f"{endpoint!r} is not an http(s)://host[:port] endpoint")
    if u.username or u.password:
        raise ValueError(f"{endpoint!r}: an endpoint carries no user information")
    return u.scheme, u.hostname, u.port or _DEFAULT_PORTS[u.scheme], u.path.rstrip("/")


@dataclass(frozen=True)
class Grant:
    """One allowed root: it and everything beneath it, on one endpoint."""

    root: S3Root
    endpoint: Endpoint | None  # None: the operator's default endpoint

    def covers(self, root: S3Root, endpoint: Endpoint | None) -> bool:
        (bucket, prefix), (want_bucket, want_prefix) = root, self.root
        return (
            bucket == want_bucket
            and prefix[: len(want_prefix)] == want_prefix
            and endpoint == self.endpoint
        )


@dataclass(frozen=True)
class AllowList:
    grants: Mapping[str, tuple[Grant, ...]] = field(default_factory=dict)  # namespace or "*"
    default_endpoint: Endpoint | None = None  # what the operator's own client talks to

    def allows(self, namespace: str, uri: str, endpoint: str | None) -> bool:
        """Whether a job of `namespace` may use the operator's credentials for `uri`
        at `endpoint` (the job's spec.checkpoint.endpoint)."""
        root = s3_root(uri)
        try:
            key = endpoint_key(endpoint)
        except ValueError:
            return False
        if root is None:
            return False
        if key is not None and key == self.default_endpoint:
            key = None  # the operator's own endpoint, spelled out by the job
        grants = (*self.grants.get(namespace, ()), *self.grants.get(ANY_NAMESPACE, ()))
        return any(g.covers(root, key) for g in grants)


def _grant(entry: Any, where: str, default: Endpoint | None) -> Grant:
    if isinstance(entry, str):
        entry = {"root": entry}
    if not isinstance(entry, dict) or set(entry) - {"root", "endpoint"}:
        raise ValueError(f"{where}: expected an s3:// root or {{root, endpoint}}, got {entry!r}")
    raw = entry.get("root")
    root = s3_root(raw) if isinstance(raw, str) else None
    if root is None:
        raise ValueError(f"{where}: {raw!r} is not an s3://bucket[/prefix] root")
    endpoint = entry.get("endpoint")
    if endpoint is not None and not isinstance(endpoint, str):
        raise ValueError(f"{where}: endpoint must be a string, got {endpoint!r}")
    try:
        key = endpoint_key(endpoint)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    return Grant(root, None if key == default else key)


def parse(raw: str, default_endpoint: str | None = None) -> AllowList:
    """The allow-list from its JSON text (empty: none); ValueError naming the entry."""
    try:
        default = endpoint_key(default_endpoint)
    except ValueError as err:
        raise ValueError(f"the operator's own endpoint (AWS_ENDPOINT_URL): {err}") from None
    if not raw.strip():
        return AllowList(default_endpoint=default)
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{ENV} is not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{ENV} must be an object of namespace -> list of roots")
    grants: dict[str, tuple[Grant, ...]] = {}
    for ns, entries in doc.items():
        if ns != ANY_NAMESPACE and not _NAMESPACE_RE.match(ns):
            raise ValueError(f"{ENV}: {ns!r} is neither a namespace name nor {ANY_NAMESPACE!r}")
        if not isinstance(entries, list):
            raise ValueError(f"{ENV}[{ns!r}] must be a list of roots")
        where = f"{ENV}[{ns!r}]"
        grants[ns] = tuple(_grant(e, f"{where}[{i}]", default) for i, e in enumerate(entries))
    return AllowList(grants, default)


def _default_endpoint() -> str | None:
    """The endpoint the operator's own S3 client uses when a job names none (botocore)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


@functools.lru_cache(maxsize=4)
def _parsed(raw: str, default_endpoint: str | None) -> AllowList:
    return parse(raw, default_endpoint)


def from_env() -> AllowList:
    """The operator's allow-list (main checks it at start-up: a bad one stops it there)."""
    return _parsed(os.environ.get(ENV, ""), _default_endpoint())
