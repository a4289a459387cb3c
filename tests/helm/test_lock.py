"""operator/requirements.lock, the operator image's pinned and hashed packages
(hack/lock): in step with pyproject.toml, every package pinned to one version with
the hashes of its files, each direct requirement satisfied by its pin."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .tools import REPO

pytestmark = pytest.mark.unit

LOCK = REPO / "operator/requirements.lock"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# name==version, then its hashes, each on a continuation line
ENTRY = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._-]*)==(?P<version>\S+)(?P<marker> ;[^\\]+)? \\$")
HASH = re.compile(r"^ {4}--hash=sha256:[0-9a-f]{64}( \\)?$")
RERUN = "pyproject.toml changed: run hack/lock"


def header(kind: str) -> list[str]:
    prefix = f"# {kind}: "
    return [ln[len(prefix) :] for ln in LOCK.read_text().splitlines() if ln.startswith(prefix)]


def entries() -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, its hashes), with every line of the lock accounted for."""
    out: dict[str, tuple[Version, list[str]]] = {}
    current: list[str] | None = None
    for n, line in enumerate(LOCK.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            current = None
            continue
        if m := ENTRY.match(line):
            name = canonicalize_name(m["name"])
            assert name not in out, f"line {n}: {name} pinned twice"
            current = []
            out[name] = (Version(m["version"]), current)
        else:
            assert current is not None and HASH.match(line), f"line {n} is no pin or hash: {line!r}"
            current.append(line.split("sha256:")[1][:64])
    return out


def test_the_header_repeats_pyprojects_requirements() -> None:
    """What the lock was made from is what pyproject.toml says now, in its order."""
    assert header("dependencies") == PYPROJECT["project"]["dependencies"], RERUN
    assert header("build-system") == PYPROJECT["build-system"]["requires"], RERUN


def test_every_package_is_pinned_with_hashes() -> None:
    pins = entries()
    assert len(pins) > 10
    for name, (_, hashes) in pins.items():
        assert hashes, f"{name} has no --hash: pip's --require-hashes would refuse the lock"
    text = LOCK.read_text()
    for forbidden in ("-e ", "--index-url", "--extra-index-url", "--find-links", "git+", "file:"):
        assert forbidden not in text, f"the lock may hold only PyPI pins; found {forbidden!r}"


@pytest.mark.parametrize("kind", ["dependencies", "build-system"])
def test_each_requirement_of_pyproject_is_pinned_within_its_range(kind: str) -> None:
    pins = entries()
    listed = (
        PYPROJECT["project"]["dependencies"]
        if kind == "dependencies"
        else PYPROJECT["build-system"]["requires"]
    )
    for spec in listed:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} ({kind}) is not in the lock: {RERUN}"
        version = pins[name][0]
        assert req.specifier.contains(version, prereleases=True), f"{name}=={version} vs {spec}"
        if "crt" in req.extras:  # boto3[crt]: its extra's package is locked too
            assert "awscrt" in pins


def test_every_package_is_wanted_by_something() -> None:
    """uv's annotations: each pin is there for an input or another pin (no leftovers
    from requirements since dropped; hack/lock re-resolves from scratch)."""
    text = LOCK.read_text()
    pins = entries()
    blocks = re.split(r"(?m)^(?=[a-z0-9])", text)[1:]
    for block in blocks:
        name = canonicalize_name(block.split("==", 1)[0])
        via = re.findall(r"(?m)^ {4}#\s+(?:via )?(\S+)", block)
        assert via, f"{name}: no '# via' annotation"
        for who in via:
            if who == "-r":
                continue
            assert canonicalize_name(who) in pins or who.endswith(".in") or who == "via", (
                f"{name} is wanted by {who}, which is not in the lock"
            )
