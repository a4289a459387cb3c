"""An endpoint that answers HTTP but not as S3 is one error, whatever it answers: a
404 (a bare one, or a web page's) to a bucket listing, or a 200 with another
document (XML, HTML, JSON, nothing). Before, a 404 was a traceback in the CLI
(`ObjectMissing: listing /`) and a 200 with XML was "no checkpoints", exit 0."""

from __future__ import annotations

import pytest

from lazarus_store import CheckpointStore, EndpointNotS3, StoreError, open_store
from lazarus_store.backends.s3_errors import root_tag
from lazarus_store.cli import main

from .not_s3 import ANSWERS, not_s3_server

KINDS = sorted(ANSWERS)


def _store(endpoint: str) -> CheckpointStore:
    return open_store(
        "s3://bucket/job",
        endpoint_url=endpoint,
        addressing_style="path",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        region="us-east-1",
    )


@pytest.mark.cluster
@pytest.mark.parametrize("kind", KINDS)
def test_a_listing_from_a_server_that_is_not_s3_is_endpoint_not_s3(kind: str) -> None:
    with not_s3_server(kind) as endpoint:
        store = _store(endpoint)
        with pytest.raises(EndpointNotS3, match="does not answer as an S3 server") as err:
            store.list_checkpoints()
    assert endpoint in str(err.value) and "\n" not in str(err.value)


@pytest.mark.cluster
@pytest.mark.parametrize("kind", KINDS)
def test_selection_never_reads_a_server_that_is_not_s3_as_an_empty_root(kind: str) -> None:
    with not_s3_server(kind) as endpoint:
        store = _store(endpoint)
        # The fence log is read first: a page served with an ETag is a malformed log
        # (another clear StoreError); every other answer is told apart as not S3.
        expected = StoreError if kind == "200-xhtml-etag" else EndpointNotS3
        with pytest.raises(expected):
            store.valid_in_lineage()


@pytest.mark.cluster
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", [["list"], ["list", "--json"], ["latest"]])
def test_the_cli_exits_non_zero_with_one_line(
    kind: str,
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Credentials, so the request is really sent (without them it stops before).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with not_s3_server(kind) as endpoint:
        code = main(["-u", "s3://bucket/job", "--endpoint", endpoint, *command])
    out = capsys.readouterr()
    assert code == 1, out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.err, out.err
    assert lines[0].startswith("lazarus-ckpt: error: "), lines
    if command[0] == "list":  # a listing first: named as what it is
        assert "does not answer as an S3 server" in lines[0], lines
    assert "no checkpoints" not in out.out and "no valid checkpoint" not in out.out, out.out


@pytest.mark.unit
@pytest.mark.parametrize(
    ("body", "tag"),
    [
        (
            b'<?xml version="1.0"?><ListBucketResult><Name>b</Name></ListBucketResult>',
            "ListBucketResult",
        ),
        (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- c -->\n'
            b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></ListBucketResult>',
            "ListBucketResult",
        ),
        (b"<ListBucketResult>" + b"<Contents>x</Contents>" * 10_000, "ListBucketResult"),
        (b"<html><body>hi</body></html>", "html"),
        (b'<?xml version="1.0"?><feed/>', "feed"),
        (b'{"a": 1}', None),
        (b"", None),
        (b"<!DOCTYPE html>\n<html>", "html"),
        (b"not xml at all", None),
        (b" " * (70 << 10) + b"<ListBucketResult/>", None),  # nothing in the first 64 KiB
    ],
)
def test_the_root_element_of_an_answer(body: bytes, tag: str | None) -> None:
    assert root_tag(body) == tag
