"""A trainer told to resume from an endpoint that answers HTTP but not as S3 stops
with a permanent error that says so: never a silent fresh start over a web page
that read as an empty root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.store.not_s3 import not_s3_server

from .harness import run, termination, trainer_env

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("kind", "resume_from"),
    # "" is a fresh start: its check that the root holds none of this attempt's
    # checkpoints must not read a web page as an empty root either.
    [("404-html", "auto"), ("200-xml", "auto"), ("404-html", ""), ("200-xml", "")],
)
def test_resume_from_a_server_that_is_not_s3_is_a_permanent_error(
    s3: Any, kind: str, resume_from: str, tmp_path: Path
) -> None:
    with not_s3_server(kind) as endpoint:
        env = trainer_env(
            s3,
            "s3://bucket/job",
            tmp_path,
            LAZARUS_ATTEMPT="2",
            LAZARUS_RESUME_FROM=resume_from,
            LAZARUS_S3_ENDPOINT=endpoint,
            AWS_ENDPOINT_URL=endpoint,
        )
        p = run(["--steps", "5"], env, timeout=120)
    assert p.returncode == 78, p.stderr[-3000:]
    term = termination(tmp_path)
    assert term["outcome"] == "permanent-error", term
    assert "does not answer as an S3 server" in term["message"], term
    assert "starting fresh" not in p.stderr and "Traceback" not in p.stderr, p.stderr[-3000:]
