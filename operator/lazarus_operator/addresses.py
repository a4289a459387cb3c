"""What address a URL's host denotes to the socket layer, in every spelling it
accepts, and which addresses hide inside other ones.

A host is judged by what a connection to it would reach, not by its text:
`2852039166`, `0251.0376.0251.0376`, `0xa9fea9fe` and `169.254.43518` are all
169.254.169.254 to glibc's inet_aton (which getaddrinfo, so urllib3 and botocore,
use); `[::ffff:a9fe:a9fe]` reaches it over IPv4, and NAT64, 6to4 and Teredo
addresses carry an IPv4 address a gateway forwards to. Pure: no resolution here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 6052 well-known NAT64 prefix (/96) and RFC 8215 local-use prefix (/48).
NAT64_WKP = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


def _number(part: str) -> int | None:
    """One inet_aton part: decimal, octal (leading 0) or hex (0x); None if invalid."""
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    if not digits or not digits.isascii() or not digits.isalnum():
        return None
    try:
        return int(digits, base)
    except ValueError:
        return None


def inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """`text` as glibc's inet_aton reads it (1 to 4 parts, the last filling the
    remaining bytes), or None if it is not an IPv4 address in any such form."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or any(not p for p in parts):
        return None
    nums = [_number(p) for p in parts]
    if any(n is None for n in nums):
        return None
    *head, last = [n for n in nums if n is not None]
    if any(n > 0xFF for n in head) or last >= 1 << (8 * (5 - len(nums))):
        return None
    value = last
    for i, n in enumerate(head):
        value |= n << (24 - 8 * i)
    return ipaddress.IPv4Address(value)


def literal(host: str) -> Address | None:
    """The address `host` (a URL's host, brackets and zone id allowed) spells, or
    None for a name. A trailing dot is dropped: `169.254.169.254.` is no name."""
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    h = h.split("%", 1)[0]  # zone id: fe80::1%eth0, or %25eth0 as URLs escape it
    if ":" in h:
        try:
            return ipaddress.IPv6Address(h)
        except ValueError:
            return None
    return inet_aton(h[:-1] if h.endswith(".") else h)


def canonical(addr: Address) -> Address:
    """The IPv4 address an IPv4-mapped IPv6 address reaches; others as they are."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _nat64_local(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    """The IPv4 address in a /48 NAT64 prefix (RFC 6052 2.2: bits 64-71 are zero)."""
    b = addr.packed
    return ipaddress.IPv4Address(b[6:8] + b[9:11])


def reached(addr: Address) -> Iterator[Address]:
    """`addr` and every IPv4 address it carries (mapped, IPv4-compatible, NAT64,
    6to4, Teredo server and client): a connection may end at any of them."""
    yield addr
    if isinstance(addr, ipaddress.IPv4Address):
        return
    if addr.ipv4_mapped is not None:
        yield addr.ipv4_mapped
    if addr in NAT64_WKP or (addr in IPV4_COMPATIBLE and int(addr) > 1):
        yield ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr in NAT64_LOCAL:
        yield _nat64_local(addr)
    if addr.sixtofour is not None:
        yield addr.sixtofour
    if addr.teredo is not None:
        yield from addr.teredo
