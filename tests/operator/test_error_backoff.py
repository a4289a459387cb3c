"""A failed cycle's retry: doubling per failure, capped lower while the API server
itself is away, so jobs move again soon after it is back."""

from __future__ import annotations

import pytest
import urllib3
from kubernetes import client

from lazarus_operator.jobqueue import error_backoff
from lazarus_operator.kube import api_unavailable

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("failures", "unavailable", "expected"),
    [
        (1, False, 2.0),
        (2, False, 4.0),
        (5, False, 32.0),
        (9, False, 300.0),  # capped
        (50, False, 300.0),
        (1, True, 2.0),
        (4, True, 16.0),
        (5, True, 30.0),  # the API server away: never more than 30 s
        (50, True, 30.0),
    ],
)
def test_the_wait_doubles_up_to_its_cap(failures: int, unavailable: bool, expected: float) -> None:
    assert error_backoff(failures, unavailable) == expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (client.ApiException(status=503), True),  # a restarting server's CRD endpoints
        (client.ApiException(status=500), True),
        (client.ApiException(status=429), True),  # throttled
        (urllib3.exceptions.MaxRetryError(urllib3.HTTPConnectionPool("x"), "/"), True),  # refused
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (client.ApiException(status=422), False),  # answered: retrying soon cannot help
        (client.ApiException(status=403), False),
        (ValueError("a bug"), False),
    ],
)
def test_an_unavailable_api_server_is_told_from_an_answer(
    exc: BaseException, expected: bool
) -> None:
    assert api_unavailable(exc) is expected
