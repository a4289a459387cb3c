"""Which S3 endpoints the operator may talk to on a tenant's behalf.

A TrainingJob names its own endpoint, and the operator sends requests there with
the job's (or its own) credentials. Link-local and cloud metadata addresses
answer with the node's or the operator's identity, so a tenant must not point the
operator at them: they are refused unless the operator's configuration allows
them (LAZARUS_ALLOW_ENDPOINT_NETWORKS, comma-separated CIDRs).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Sequence
from urllib.parse import urlparse

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ENV_ALLOW = "LAZARUS_ALLOW_ENDPOINT_NETWORKS"
BLOCKED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # IPv4 link-local: AWS/GCP/Azure instance metadata
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS instance metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "0.0.0.0/8",  # "this host"
    )
)


def allowed_from_env() -> tuple[IPNetwork, ...]:
    raw = os.environ.get(ENV_ALLOW, "")
    return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in raw.split(",") if n.strip())


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []  # unresolvable: the store reports it as unreachable
    return [ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos]


def endpoint_problem(endpoint: str | None, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why the operator must not send requests to `endpoint`, or None. Blocking
    (resolves the host name): call it off the event loop."""
    if not endpoint:
        return None
    host = urlparse(endpoint).hostname or ""
    for addr in _addresses(host):
        if any(addr in n for n in allowed):
            continue
        if any(addr.version == n.version and addr in n for n in BLOCKED):
            return (
                f"spec.checkpoint.endpoint {endpoint} resolves to {addr}, a link-local or "
                f"metadata address the operator does not call (allow it with {ENV_ALLOW})"
            )
    return None
