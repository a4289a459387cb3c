"""A tenant may not point the operator at link-local or metadata addresses."""

from __future__ import annotations

import ipaddress

import pytest

from lazarus_operator.endpoints import endpoint_problem

pytestmark = pytest.mark.unit


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


def test_the_operators_configuration_can_allow_them() -> None:
    allowed = (ipaddress.ip_network("169.254.10.0/24"),)
    assert endpoint_problem("http://169.254.10.5:9000", allowed) is None
    assert endpoint_problem("http://169.254.169.254", allowed) is not None


def test_a_host_name_is_judged_by_what_it_resolves_to() -> None:
    assert endpoint_problem("http://localhost:9000") is None
