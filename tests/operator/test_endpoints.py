"""A tenant may not point the operator at link-local or metadata addresses, in any
spelling the URL parsers and the socket layer accept; and one server however spelt
is one storage lane key."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from lazarus_operator.addresses import inet_aton, literal, reached
from lazarus_operator.endpoints import endpoint_problem, inspect, spelt_key

pytestmark = pytest.mark.unit

METADATA = ipaddress.IPv4Address("169.254.169.254")


@pytest.mark.parametrize(
    ("endpoint", "refused"),
    [
        ("http://169.254.169.254", True),
        ("http://169.254.169.254:80/latest/meta-data", True),
        ("http://[fe80::1]:9000", True),
        ("http://[fd00:ec2::254]", True),
        ("http://100.100.100.200", True),
        ("http://0.0.0.0:9000", True),
        ("http://127.0.0.1:9000", False),
        ("https://s3.eu-west-1.amazonaws.com", False),  # (unresolvable here: not refused)
        ("", False),
        (None, False),
    ],
)
def test_metadata_and_link_local_endpoints_are_refused(endpoint: str | None, refused: bool) -> None:
    why = endpoint_problem(endpoint)
    assert (why is not None) == refused, why
    if why:
        assert "LAZARUS_ALLOW_ENDPOINT_NETWORKS" in why


@pytest.mark.parametrize(
    "endpoint",
    [
        # IPv4-mapped IPv6, dotted and hex: the kernel connects over IPv4
        "http://[::ffff:169.254.169.254]",
        "http://[::ffff:a9fe:a9fe]:80",
        "http://[0:0:0:0:0:ffff:a9fe:a9fe]/latest",
        "http://[::FFFF:A9FE:A9FE]",
        # inet_aton forms (what getaddrinfo, so urllib3 and botocore, connect to)
        "http://2852039166",
        "http://0251.0376.0251.0376",
        "http://0xa9fea9fe",
        "http://0xA9.0xFE.0xA9.0xFE",
        "http://0x0a9fea9fe",
        "http://169.254.43518",
        "http://169.0376.43518",
        "http://0251.0xfe.169.0376",
        "http://00000000251.254.169.254",
        # a trailing dot, upper case, a port, a path, credentials in the URL
        "http://169.254.169.254.",
        "http://169.254.169.254.:80/",
        "HTTP://169.254.169.254:8080/Latest",
        "http://user:pw@169.254.169.254/",
        # IPv6 link-local with a zone id (escaped as RFC 6874 says, and not)
        "http://[fe80::1%25eth0]:9000",
        "http://[fe80::a9fe:a9fe%eth0]",
        "http://[FE80::1]",
        # IPv4 carried in IPv6: NAT64 (well-known and local-use), 6to4, Teredo,
        # IPv4-compatible
        "http://[64:ff9b::a9fe:a9fe]",
        "http://[64:ff9b::169.254.169.254]",
        "http://[64:ff9b:1:a9fe:a9:fe00::]",
        "http://[2002:a9fe:a9fe::1]",
        "http://[2001:0:4136:e378:8000:63bf:5601:5601]",
        "http://[::169.254.169.254]",
        # AWS IPv6 metadata, spelt out; Alibaba's in other forms; "this host"
        "http://[fd00:ec2:0:0:0:0:0:254]",
        "http://[::ffff:100.100.100.200]",
        "http://1684301000",
        "http://0",
        "http://[::]:9000",
        "http://[::ffff:0.0.0.0]",
        # parsers that disagree on the host: urllib3 (which botocore uses) would
        # connect to the metadata address
        "http://169.254.169.254\\@example.com/",
        "http://example.com\\@169.254.169.254/",
    ],
)
def test_every_spelling_of_a_metadata_address_is_refused(endpoint: str) -> None:
    why = endpoint_problem(endpoint)
    assert why is not None, endpoint
    assert why.startswith(f"spec.checkpoint.endpoint {endpoint} ") and "\n" not in why


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:9000",
        "http://[::1]:9000",
        "http://10.0.0.5:9000",
        "http://[2001:db8::5]:9000",
        "http://[::ffff:10.0.0.5]:9000",
        "http://[64:ff9b::a00:5]",  # NAT64 to 10.0.0.5
        "http://169.255.0.1",  # next door, not link-local
        "http://2852192256",  # 170.0.0.0
    ],
)
def test_ordinary_addresses_are_not_refused(endpoint: str) -> None:
    assert endpoint_problem(endpoint) is None


def test_the_operators_configuration_can_allow_them() -> None:
    allowed = (ipaddress.ip_network("169.254.10.0/24"),)
    assert endpoint_problem("http://169.254.10.5:9000", allowed) is None
    assert endpoint_problem("http://[::ffff:169.254.10.5]:9000", allowed) is None
    assert endpoint_problem("http://169.254.169.254", allowed) is not None
    assert endpoint_problem("http://[::ffff:a9fe:a9fe]", allowed) is not None


def test_a_host_name_is_judged_by_what_it_resolves_to() -> None:
    assert endpoint_problem("http://localhost:9000") is None


# inet_aton forms: ours must read each as the C library does (None where it refuses).
ATON = [
    "169.254.169.254",
    "2852039166",
    "0251.0376.0251.0376",
    "0xa9fea9fe",
    "0XA9FEA9FE",
    "169.254.43518",
    "169.16689662",
    "0x0a9fea9fe",
    "127.1",
    "0",
    "00",
    "0.0x0",
    "017777777777",
    "4294967295",
    "4294967296",
    "0x100000000",
    "256.1.1.1",
    "1.256.1.1",
    "1.2.65536",
    "1.16777216",
    "1.2.3.4.5",
    "08.1.1.1",
    "0x.1.1.1",
    "0x",
    "1..2",
    ".1.2.3",
    "1.2.3.",
    "",
    "1e2",
    "1_0.0.0.1",
    "+1.2.3.4",
    "١٢٧.0.0.1",  # Arabic-Indic digits: int() reads them, inet_aton does not
    "example.com",
]


@pytest.mark.parametrize("text", ATON)
def test_ipv4_forms_are_read_as_the_socket_layer_reads_them(text: str) -> None:
    try:
        libc: ipaddress.IPv4Address | None = ipaddress.IPv4Address(socket.inet_aton(text))
    except (OSError, UnicodeError):
        libc = None
    assert inet_aton(text) == libc


@pytest.mark.parametrize("text", ATON)
def test_a_literal_is_what_getaddrinfo_connects_to(text: str) -> None:
    """getaddrinfo with AI_NUMERICHOST: the address a connection to `text` would use
    without DNS. Where it finds one, we find the same."""
    try:
        info = socket.getaddrinfo(text, 80, proto=socket.IPPROTO_TCP, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return
    assert literal(text) == ipaddress.ip_address(info[0][4][0])


@pytest.mark.parametrize(
    "text", ["::ffff:a9fe:a9fe", "::ffff:169.254.169.254", "fe80::1%eth0", "64:ff9b::a9fe:a9fe"]
)
def test_ipv6_literals_match_getaddrinfo(text: str) -> None:
    info = socket.getaddrinfo(text, 80, proto=socket.IPPROTO_TCP, flags=socket.AI_NUMERICHOST)
    assert literal(f"[{text}]") == ipaddress.ip_address(str(info[0][4][0]).split("%")[0])


def test_what_an_ipv6_address_carries() -> None:
    got = set(reached(ipaddress.IPv6Address("2001:0:4136:e378:8000:63bf:5601:5601")))
    assert METADATA in got  # the Teredo client, its bits inverted
    assert METADATA in set(reached(ipaddress.IPv6Address("2002:a9fe:a9fe::")))
    assert set(reached(ipaddress.IPv4Address("10.0.0.1"))) == {ipaddress.IPv4Address("10.0.0.1")}


SAME_SERVER = [
    "http://127.0.0.1:9000",
    "http://127.0.0.1:9000/",
    "http://localhost:9000",
    "HTTP://LOCALHOST:9000/",
    "http://LocalHost:9000/some/path",
    "http://127.0.0.1.:9000/other/path",
    "http://127.1:9000",
    "http://127.0.0.2:9000",
    "http://[::1]:9000",
    "http://[0:0:0:0:0:0:0:1]:9000/x",
    "http://[::ffff:127.0.0.1]:9000",
    "http://2130706433:9000",
    "http://0x7f000001:9000",
    "http://0177.0.0.1:9000",
    "https://127.0.0.1:9000",
    "http://user@127.0.0.1:9000",
]


def test_one_server_however_spelt_is_one_lane_key() -> None:
    keys = {inspect(e).key for e in SAME_SERVER}
    assert len(keys) == 1, keys
    assert inspect("http://127.0.0.1:9001").key not in keys  # another port, another server
    assert inspect("http://10.0.0.5:80").key == inspect("http://10.0.0.5/").key
    assert inspect("https://10.0.0.5").key == inspect("http://10.0.0.5:443").key


def test_before_dns_the_key_is_the_spelt_address() -> None:
    literal_spellings = [e for e in SAME_SERVER if "localhost" not in e.lower()]
    assert len({spelt_key(e) for e in literal_spellings}) == 1
    assert spelt_key(None) == spelt_key("") == inspect(None).key
