"""Which S3 endpoints the operator may talk to on a tenant's behalf, and which
storage lane (lanes.py) a call to one queues in.

A TrainingJob names its own endpoint, and the operator sends requests there with
the job's (or its own) credentials. Link-local and cloud metadata addresses
answer with the node's or the operator's identity, so a tenant must not point the
operator at them: they are refused unless the operator's configuration allows
them (LAZARUS_ALLOW_ENDPOINT_NETWORKS, comma-separated CIDRs). The host is judged
by the addresses a connection would reach, in whatever spelling (addresses.py),
before and after DNS.

The lane key is the endpoint as resolved (address and port), so one server spelt
many ways (`localhost`, `127.1`, `[::1]`, `2130706433`, another path...) is one
key and gets one key's threads.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from urllib3.util import parse_url

from lazarus_store.errors import StoreUnavailable

from .addresses import Address, canonical, literal, reached
from .lanes import Lane, LaneKey

T = TypeVar("T")

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
        "::/128",  # "this host", IPv6
    )
)
LOOPBACK = "loopback"  # 127.0.0.0/8 and ::1: one host, whichever address is spelt
DEFAULT_KEY = "default"  # no endpoint: AWS S3
RESOLVED_TTL_S = 30.0
_CACHE_MAX = 4096
# How long a job's storage call (a selection: the fence log, a listing, manifests)
# may take, waiting for its turn included. Past it the job reads StorageUnavailable;
# the thread runs on to the client's own timeouts, still counted against its endpoint.
CALL_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Target:
    """An endpoint as the operator will call it: its lane key, or why it may not."""

    key: str
    problem: str | None = None


def allowed_from_env() -> tuple[IPNetwork, ...]:
    raw = os.environ.get(ENV_ALLOW, "")
    return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in raw.split(",") if n.strip())


def _host_port(endpoint: str) -> tuple[str, int]:
    """The host and port every URL parser on the way agrees on (urllib's for us,
    urllib3's for botocore's connections); ValueError if they do not agree."""
    ours = urlsplit(endpoint)
    theirs = parse_url(endpoint)  # LocationParseError is a ValueError
    default = 443 if (ours.scheme or "").lower() == "https" else 80
    port = ours.port or default  # ValueError on a bad port
    host = ours.hostname or ""  # a trailing dot stays: "name." and "name" resolve apart
    other = (theirs.host or "").strip("[]").lower()
    if literal(host) != literal(other) or (literal(host) is None and host != other):
        raise ValueError(f"its host reads as {host!r} to one URL parser, {other!r} to another")
    if not host:
        raise ValueError("it names no host")
    return host, port


def _addresses(host: str, port: int) -> list[Address]:
    """What a connection to `host` may reach: the address it spells, else what DNS
    answers (in the order the socket layer tries them)."""
    addr = literal(host)
    if addr is not None:
        return [canonical(addr)]
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []  # unresolvable: the store reports it as unreachable
    out: list[Address] = []
    for info in infos:
        a = literal(str(info[4][0]))
        if a is not None and canonical(a) not in out:
            out.append(canonical(a))
    return out


def _refused(addr: Address, allowed: Sequence[IPNetwork]) -> Address | None:
    """The blocked address `addr` reaches, if any, and the allow-list does not name."""
    for a in reached(addr):
        if any(a.version == n.version and a in n for n in allowed):
            continue
        if any(a.version == n.version and a in n for n in BLOCKED):
            return a
    return None


def key_of(addr: Address | None, host: str, port: int) -> str:
    if addr is None:
        return f"{host.rstrip('.')}:{port}"  # unresolved: its name
    if addr.is_loopback:
        return f"{LOOPBACK}:{port}"
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


def inspect(endpoint: str | None, allowed: Sequence[IPNetwork] = ()) -> Target:
    """The lane key of `endpoint` and why the operator must not call it, if so.
    Blocking (resolves the host name): call it off the event loop."""
    if not endpoint:
        return Target(DEFAULT_KEY)
    try:
        host, port = _host_port(endpoint)
    except ValueError as e:
        return Target(endpoint, f"spec.checkpoint.endpoint {endpoint} is not usable: {e}")
    addrs = _addresses(host, port)
    for addr in addrs:
        bad = _refused(addr, allowed)
        if bad is not None:
            via = f" (through {addr})" if bad != addr else ""
            return Target(
                key_of(addr, host, port),
                f"spec.checkpoint.endpoint {endpoint} reaches {bad}{via}, a link-local or "
                f"metadata address the operator does not call (allow it with {ENV_ALLOW})",
            )
    return Target(key_of(addrs[0] if addrs else None, host, port))


def endpoint_problem(endpoint: str | None, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why the operator must not send requests to `endpoint`, or None. Blocking."""
    return inspect(endpoint, allowed).problem


def spelt_key(endpoint: str | None) -> str:
    """The lane key before DNS: the address if the host spells one, else the name."""
    if not endpoint:
        return DEFAULT_KEY
    try:
        host, port = _host_port(endpoint)
    except ValueError:
        return endpoint
    addr = literal(host)
    return key_of(canonical(addr) if addr is not None else None, host, port)


_resolved: OrderedDict[tuple[str, tuple[IPNetwork, ...]], tuple[float, Target]] = OrderedDict()
_resolved_lock = threading.Lock()


def cached(endpoint: str | None, allowed: Sequence[IPNetwork] = ()) -> Target | None:
    """`endpoint`'s target if resolved in the last RESOLVED_TTL_S seconds."""
    with _resolved_lock:
        hit = _resolved.get((endpoint or "", tuple(allowed)))
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


def _inspect_and_cache(endpoint: str | None, allowed: tuple[IPNetwork, ...]) -> Target:
    t = inspect(endpoint, allowed)
    with _resolved_lock:
        _resolved[(endpoint or "", allowed)] = (time.monotonic() + RESOLVED_TTL_S, t)
        _resolved.move_to_end((endpoint or "", allowed))
        while len(_resolved) > _CACHE_MAX:
            _resolved.popitem(last=False)
    return t


def lane_key(endpoint: str | None, tenant: str) -> LaneKey:
    """The lane key of a call for `tenant`: the resolved endpoint if known, else as spelt."""
    t = cached(endpoint, allowed_from_env())
    return LaneKey(tenant, t.key if t is not None else spelt_key(endpoint))


async def call(lane: Lane, key: LaneKey, fn: Callable[..., T], *args: object, **kw: object) -> T:
    """`fn` on the storage lane under `key`; StoreUnavailable past CALL_TIMEOUT_S."""
    try:
        return await lane.run(key, fn, *args, timeout=CALL_TIMEOUT_S, **kw)
    except TimeoutError:
        raise StoreUnavailable(
            f"the S3 endpoint ({key.endpoint}) did not answer within {CALL_TIMEOUT_S:.0f} s"
        ) from None


async def target(endpoint: str | None, tenant: str, lane: Lane) -> Target:
    """`endpoint` resolved and checked; the resolution runs on the lane, in line
    behind the endpoint's other calls as spelt (a stalled resolver holds only those)."""
    allowed = allowed_from_env()
    hit = cached(endpoint, allowed)
    if hit is not None:
        return hit
    key = LaneKey(tenant, spelt_key(endpoint))
    return await call(lane, key, _inspect_and_cache, endpoint, allowed)
