"""spec.checkpoint.save.auto: parsed with its bounds and prior, refused when the bounds
are empty, and handed to the trainer as the contract's environment only when enabled."""

from __future__ import annotations

from typing import Any

import pytest

from lazarus_contract.interval import (
    ENV_SAVE_AUTO,
    ENV_SAVE_AUTO_MAX_SECONDS,
    ENV_SAVE_AUTO_MIN_SECONDS,
)
from lazarus_operator.builders import JobRef, ResumePoint, build_pod
from lazarus_operator.spec import AutoSave, SpecError, parse_spec

from .factories import job_spec

pytestmark = pytest.mark.unit
JOB = JobRef("job", "ns", "uid-1")


def with_auto(auto: dict[str, Any]) -> dict[str, Any]:
    return job_spec(checkpoint={"uri": "s3://bucket/job", "save": {"auto": auto}})


def env_of(auto: dict[str, Any]) -> dict[str, str]:
    pod = build_pod(JOB, parse_spec(with_auto(auto)), 1, 0, ResumePoint(""))
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def test_auto_is_off_by_default() -> None:
    assert parse_spec(job_spec()).checkpoint.save_auto == AutoSave(enabled=False)
    assert ENV_SAVE_AUTO not in env_of({})


def test_auto_parses_its_bounds_and_prior() -> None:
    got = parse_spec(
        with_auto({"enabled": True, "minSeconds": 5, "maxSeconds": 50, "priorMTBFSeconds": 7})
    ).checkpoint.save_auto
    assert got == AutoSave(True, 5, 50, 7)


def test_auto_env_only_when_enabled() -> None:
    env = env_of({"enabled": True, "minSeconds": 5, "maxSeconds": 50})
    assert env[ENV_SAVE_AUTO] == "1"
    assert env[ENV_SAVE_AUTO_MIN_SECONDS] == "5" and env[ENV_SAVE_AUTO_MAX_SECONDS] == "50"
    assert ENV_SAVE_AUTO_MIN_SECONDS not in env_of({"enabled": False, "minSeconds": 5})


@pytest.mark.parametrize(
    ("auto", "message"),
    [
        ({"enabled": True, "minSeconds": 100, "maxSeconds": 10}, "minSeconds must not exceed"),
        ({"minSeconds": 0}, r"auto\.minSeconds must be >= 1"),
        ({"priorMTBFSeconds": "1d"}, r"auto\.priorMTBFSeconds must be an integer"),
    ],
)
def test_auto_bad_values_name_the_field(auto: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(with_auto(auto))
