"""No credential material in any log at any verbosity (botocore DEBUG prints request
headers, canonical requests and signatures)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from lazarus_store import open_store, redact

pytestmark = pytest.mark.cluster

KEY_ID, SECRET = "AKIALAZARUSTEST0001", "lazarus-secret/key+Value0123456789abcdef"


@pytest.fixture
def debug_log() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield out, handler
    root.removeHandler(handler)
    root.setLevel(old)


def exercise(s3: Any, bucket: str) -> None:
    store = open_store(
        f"s3://{bucket}/job",
        endpoint_url=s3.endpoint_url,
        addressing_style="path",
        aws_access_key_id=KEY_ID,  # moto accepts any credentials
        aws_secret_access_key=SECRET,
        region=s3.region,
    )
    w = store.begin(step=1, attempt=1)
    w.put_bytes("x", b"x")
    w.commit(reason="periodic")
    assert store.latest_valid().chosen is not None


def test_debug_logs_of_storage_calls_hold_no_credentials(
    s3: Any, bucket: str, debug_log: tuple[io.StringIO, logging.Handler]
) -> None:
    out, handler = debug_log
    handler.addFilter(redact.Redactor())  # what redact.install() adds to each handler
    exercise(s3, bucket)
    text = out.getvalue()
    assert "Authorization" in text, "botocore's DEBUG request log was not captured"
    assert KEY_ID not in text and SECRET not in text
    assert "Signature=<redacted>" in text or "Signature" not in text


def test_without_the_filter_the_same_log_would_leak(
    s3: Any, bucket: str, debug_log: tuple[io.StringIO, logging.Handler]
) -> None:
    """The check above can fail: unfiltered, botocore prints the access key id."""
    out, _handler = debug_log
    exercise(s3, bucket)
    text = out.getvalue()
    assert "Authorization" in text and KEY_ID in text, [
        x[:400] for x in text.splitlines() if "Sending" in x
    ][:2]


@pytest.mark.unit
def test_install_filters_every_handler_of_the_logger_once() -> None:
    logger = logging.getLogger("lazarus-test-redact")
    a, b = logging.StreamHandler(io.StringIO()), logging.StreamHandler(io.StringIO())
    logger.addHandler(a)
    logger.addHandler(b)
    redact.install(logger)
    redact.install(logger)
    assert [len(h.filters) for h in (a, b)] == [1, 1]
    logger.removeHandler(a)
    logger.removeHandler(b)


@pytest.mark.unit
@pytest.mark.parametrize(
    "line",
    [
        "headers={'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAX/1/r/s3/aws4_request, "
        "SignedHeaders=host, Signature=0123abcd'}",
        "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIAX%2F1&X-Amz-Signature=abc&X-Amz-Security-Token=SESSIONTOK123",
        "aws_secret_access_key = wJalrXUtnFEMI",
        "{'x-amz-security-token': b'IQoJb3JpZ2luX2VjE'}",
    ],
)
def test_credential_forms_are_redacted(line: str) -> None:
    clean = redact.redact(line)
    for secret in ("AKIAX", "0123abcd", "wJalrXUtnFEMI", "IQoJb3JpZ2luX2VjE", "SESSIONTOK123"):
        assert secret not in clean, clean
