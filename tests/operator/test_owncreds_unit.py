"""The platform's allow-list for the operator's own credentials (owncreds.py): which
namespace may use them for which root, on which endpoint. Table tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from lazarus_operator import status as s
from lazarus_operator.owncreds import ENV, AllowList, from_env, parse
from lazarus_operator.spec import parse_spec
from lazarus_operator.storage import (
    MAX_SKIPPED,
    Credentials,
    CredentialsError,
    credentials,
    problem_of,
    skipped_for_events,
)
from lazarus_store import JobIdentity
from lazarus_store.selection import Skipped

from .factories import job_spec

pytestmark = pytest.mark.unit

MINIO = "http://minio.storage:9000"
ALLOW = parse(
    json.dumps(
        {
            "team-a": ["s3://ckpt/team-a", {"root": "s3://shared/a", "endpoint": MINIO}],
            "team-c": ["s3://whole-bucket"],
            "*": ["s3://scratch/tmp/"],
        }
    ),
    default_endpoint="http://s3.platform:8333",
)


@pytest.mark.parametrize(
    ("namespace", "uri", "endpoint", "allowed"),
    [
        # the root itself, and beneath it, segment by segment
        ("team-a", "s3://ckpt/team-a", None, True),
        ("team-a", "s3://ckpt/team-a/", None, True),
        ("team-a", "s3://ckpt/team-a/run-1/x", None, True),
        # a string prefix is not a path prefix
        ("team-a", "s3://ckpt/team-ab", None, False),
        ("team-a", "s3://ckpt/team-a-b/run", None, False),
        ("team-a", "s3://ckpt/team", None, False),
        ("team-a", "s3://ckpt", None, False),
        ("team-a", "s3://ckpt2/team-a", None, False),
        # a root that moves or folds is no root of the allow-list
        ("team-a", "s3://ckpt/team-a/../team-b", None, False),
        ("team-a", "s3://ckpt/team-a//x", None, False),
        ("team-a", "s3://ckpt/team-a/./x", None, False),
        ("team-a", "s3://CKPT/team-a", None, False),
        ("team-a", "s3://ckpt/team-a?x=1", None, False),
        ("team-a", "/mnt/ckpt/team-a", None, False),
        # another namespace gets nothing of team-a's; "*" is everyone's
        ("team-b", "s3://ckpt/team-a", None, False),
        ("team-b", "s3://scratch/tmp/job", None, True),
        ("team-a", "s3://scratch/tmp", None, True),
        ("team-b", "s3://scratch/tmpfoo", None, False),
        ("team-c", "s3://whole-bucket/any/prefix", None, True),
        ("team-c", "s3://whole-bucket", None, True),
        # the endpoint is part of the root: a plain entry is the operator's default one
        ("team-a", "s3://ckpt/team-a", "http://s3.platform:8333", True),
        ("team-a", "s3://ckpt/team-a", "HTTP://S3.Platform:8333/", True),
        ("team-a", "s3://ckpt/team-a", "http://s3.platform", False),
        ("team-a", "s3://ckpt/team-a", "http://evil.example:8333", False),
        ("team-a", "s3://ckpt/team-a", MINIO, False),
        ("team-a", "s3://shared/a/job", MINIO, True),
        ("team-a", "s3://shared/a/job", "http://minio.storage:9000/", True),
        ("team-a", "s3://shared/a/job", "http://minio.storage:80", False),
        ("team-a", "s3://shared/a/job", None, False),
        ("team-a", "s3://shared/a/job", "not a url", False),
        ("team-a", "s3://shared/a/job", "http://u:p@minio.storage:9000", False),
    ],
)
def test_allow_list_rule(namespace: str, uri: str, endpoint: str | None, allowed: bool) -> None:
    assert ALLOW.allows(namespace, uri, endpoint) is allowed


def test_nothing_is_allowed_by_default() -> None:
    assert not parse("").allows("team-a", "s3://ckpt/team-a", None)
    assert not AllowList().allows("default", "s3://bkt", None)


def test_an_explicit_endpoint_equal_to_the_default_is_the_default() -> None:
    allow = parse(
        json.dumps({"a": [{"root": "s3://bkt/a", "endpoint": "http://d:1/"}]}), "http://d:1"
    )
    assert allow.allows("a", "s3://bkt/a", None)
    assert allow.allows("a", "s3://bkt/a", "http://d:1")


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ("{", "not JSON"),
        ("[]", "must be an object"),
        ('{"a": "s3://b/a"}', "['a'] must be a list"),
        ('{"Team_A": ["s3://b/a"]}', "'Team_A' is neither a namespace"),
        ('{"a": ["b/a"]}', "['a'][0]: 'b/a' is not an s3://"),
        ('{"a": ["s3://bkt/a/../c"]}', "['a'][0]"),
        ('{"a": ["/mnt/ckpt"]}', "['a'][0]"),
        ('{"a": [{"root": "s3://bkt/a", "endpoint": "ftp://x"}]}', "['a'][0]: 'ftp://x'"),
        ('{"a": [{"root": "s3://b/a", "region": "x"}]}', "['a'][0]: expected"),
        ('{"a": [{"endpoint": "http://x"}]}', "['a'][0]: None is not"),
        ('{"a": [7]}', "['a'][0]: expected"),
    ],
)
def test_a_bad_allow_list_is_named_in_one_line(raw: str, names: str) -> None:
    with pytest.raises(ValueError, match=r"^[^\n]*$") as err:
        parse(raw)
    assert names in str(err.value)


def test_the_operator_reads_it_from_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, json.dumps({"team-a": ["s3://ckpt/team-a"]}))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://own:9000")
    got = from_env()
    assert got.allows("team-a", "s3://ckpt/team-a/j", "http://own:9000")
    assert not got.allows("team-a", "s3://ckpt/team-a/j", "http://other:9000")


def ck(**checkpoint: Any) -> Any:
    return parse_spec(job_spec(checkpoint={"uri": "s3://ckpt/team-a/j", **checkpoint})).checkpoint


def test_no_secret_ref_outside_the_allow_list_is_credentials_required() -> None:
    spec = ck(uri="s3://ckpt/team-b/j")
    with pytest.raises(CredentialsError) as err:
        credentials(spec, None, "team-a", ALLOW)
    assert err.value.reason == s.R_CREDENTIALS_REQUIRED
    msg = str(err.value)
    assert "s3://ckpt/team-b/j" in msg and "secretRef" in msg and "operatorCredentials" in msg
    assert "scratch" not in msg and "team-c" not in msg, "the allow-list itself stays private"
    problem = problem_of(err.value, spec.uri)
    assert problem.reason == s.R_CREDENTIALS_REQUIRED and not problem.retry


def test_no_secret_ref_inside_the_allow_list_uses_the_operators_own() -> None:
    assert credentials(ck(region="r1"), None, "team-a", ALLOW) == Credentials(None, None, "r1")


def test_a_filesystem_root_needs_no_allow_list() -> None:
    """The trainer selects on its own volume: the operator never opens it."""
    spec = ck(uri="/mnt/ckpt/j")
    assert credentials(spec, None, "team-a", AllowList()) == Credentials(None, None, None)


def test_a_secret_ref_needs_no_allow_list() -> None:
    spec = ck(uri="s3://ckpt/team-b/j", secretRef={"name": "creds"})
    secret = {"data": {"AWS_ACCESS_KEY_ID": "QUs=", "AWS_SECRET_ACCESS_KEY": "U0s="}}
    assert credentials(spec, secret, "team-a", AllowList()) == Credentials("AK", "SK", None)


def skip(name: str, ns: str | None) -> Skipped:
    job = None if ns is None else JobIdentity("train", ns, f"uid-{ns}")
    return Skipped(name, f"owned by job {ns}/train (job uid 'uid-{ns}'), not ...", job)


@pytest.mark.parametrize(
    ("skipped", "reported"),
    [
        ([], ()),
        # the job's own namespace: named, with the reason (it may name a sibling job)
        (
            [skip("c1", "team-a")],
            (("c1", "owned by job team-a/train (job uid 'uid-team-a'), not ..."),),
        ),
        # nobody known (uncommitted, no fence record): named
        ([skip("c2", None)], (("c2", "owned by job None/train (job uid 'uid-None'), not ..."),)),
        # another namespace's: only counted
        (
            [skip("c3", "team-b"), skip("c4", "team-c")],
            (("2 checkpoint(s)", "owned by jobs in other namespaces"),),
        ),
        (
            [skip("c5", "team-b"), skip("c6", "team-a")],
            (
                ("c6", "owned by job team-a/train (job uid 'uid-team-a'), not ..."),
                ("1 checkpoint(s)", "owned by jobs in other namespaces"),
            ),
        ),
    ],
)
def test_skipped_checkpoints_of_other_namespaces_are_only_counted(
    skipped: list[Skipped], reported: tuple[tuple[str, str], ...]
) -> None:
    assert skipped_for_events(skipped, "team-a") == reported


def test_many_skipped_are_capped_and_the_foreign_still_counted() -> None:
    got = skipped_for_events(
        [skip(f"o{i}", "team-a") for i in range(MAX_SKIPPED + 3)] + [skip("f", "team-b")], "team-a"
    )
    assert [n for n, _ in got][-2:] == ["...", "1 checkpoint(s)"]
    assert got[-2][1] == "and 3 more"
    assert not any("team-b" in n or "team-b" in r for n, r in got)


def test_a_bad_allow_list_stops_the_operator_at_start_up_in_one_line() -> None:
    env = {**os.environ, ENV: '{"team-a": "s3://ckpt/team-a"}'}
    done = subprocess.run(
        [sys.executable, "-m", "lazarus_operator.main"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith(f"{ENV}['team-a'] must be a list of roots")
