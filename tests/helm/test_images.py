"""The two Dockerfiles, checked without a Docker engine: a pinned base, one stage,
a numeric non-root USER for what runs, every COPY source present and not
dockerignored, every package pip needs copied, and no torch in the operator image."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from .tools import REPO

pytestmark = pytest.mark.unit

OPERATOR, TRAINER = REPO / "Dockerfile", REPO / "trainer_image/Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# python:<major.minor.patch>-slim-<debian codename>, optionally @sha256:<digest>
PINNED = re.compile(r"^python:(?P<py>3\.\d+\.\d+)-slim-[a-z]+(@sha256:[0-9a-f]{64})?$")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerignored(rel: str) -> bool:
    patterns = [
        p.strip()
        for p in (REPO / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    return any(fnmatch.fnmatch(rel, p.removeprefix("**/")) or rel == p for p in patterns)


def froms(path: Path) -> list[str]:
    """Each FROM's image, with the build arguments declared before it at their defaults
    (`ARG BASE=python:...`: what `docker build` uses unless told otherwise)."""
    args: dict[str, str] = {}
    out = []
    for i, a in instructions(path):
        if i == "ARG":
            name, _, default = a.partition("=")
            args[name] = default
        elif i == "FROM":
            out.append(re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], a))
    return out


@pytest.mark.parametrize("path", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_base_is_pinned_and_single_stage(path: Path) -> None:
    stages = froms(path)
    assert len(stages) == 1, f"{path}: one stage keeps it simple; found {stages}"
    m = PINNED.match(stages[0])
    assert m, f"{path}: base {stages[0]!r} is not pinned to a full python:X.Y.Z-slim-<debian> tag"
    major, minor = (int(x) for x in m.group("py").split(".")[:2])
    floor = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert (major, minor) >= tuple(int(x) for x in floor.split(".")), "base below requires-python"


def test_both_images_share_one_base() -> None:
    bases = {p: froms(p) for p in (OPERATOR, TRAINER)}
    assert bases[OPERATOR] == bases[TRAINER]


@pytest.mark.parametrize("path", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_runs_as_a_numeric_non_root_user(path: Path) -> None:
    steps = instructions(path)
    users = [n for n, (i, _) in enumerate(steps) if i == "USER"]
    assert users, f"{path}: no USER: the image would run as root"
    last = users[-1]
    uid, _, gid = steps[last][1].partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can check it without /etc/passwd.
    assert uid.isdigit() and int(uid) > 0, f"{path}: USER {steps[last][1]!r}"
    assert not gid or (gid.isdigit() and int(gid) > 0), f"{path}: USER {steps[last][1]!r}"
    assert not [i for i, _ in steps[last:] if i == "RUN"], f"{path}: RUN after the last USER"
    entry = [a for i, a in steps if i == "ENTRYPOINT"]
    assert entry and entry[-1].startswith("["), f"{path}: ENTRYPOINT in exec form"
    script = re.findall(r'"([^"]+)"', entry[-1])[0]
    assert script in PYPROJECT["project"]["scripts"], f"{path}: {script} is no console script"


@pytest.mark.parametrize("path", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_copies_what_pip_needs_and_only_what_exists(path: Path) -> None:
    copied: list[str] = []
    for i, args in instructions(path):
        if i in ("COPY", "ADD"):
            assert i == "COPY", f"{path}: ADD fetches and unpacks; COPY says what it does"
            *srcs, _dest = args.split()
            assert not any(s.startswith("--from") for s in srcs)
            for src in srcs:
                matches = list(REPO.glob(src))
                assert matches, f"{path}: COPY source {src} does not exist"
                assert not any(dockerignored(str(m.relative_to(REPO))) for m in matches), src
                copied.append(src.rstrip("/"))
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"]}
    needed |= set(PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"])
    assert needed <= set(copied), f"{path}: pip install . needs {sorted(needed - set(copied))}"


def _pip_installs(path: Path) -> list[list[str]]:
    """The arguments of each `pip install` in the Dockerfile's RUNs, in order."""
    return [
        cmd.split("pip install", 1)[1].split()
        for i, a in instructions(path)
        if i == "RUN"
        for cmd in a.split("&&")
        if "pip install" in cmd
    ]


def _pip_targets(path: Path) -> list[str]:
    return [t for args in _pip_installs(path) for t in args if not t.startswith("-")]


def test_operator_image_installs_no_extra() -> None:
    assert _pip_targets(TRAINER) == ['".[trainer,ft]"']  # ft: replica groups, lighthouse
    *_, project = _pip_installs(OPERATOR)
    assert [t for t in project if not t.startswith("-")] == ["."], "the project, no extras"


def test_operator_image_installs_only_the_hashed_lock() -> None:
    """Two builds of one commit install the same packages: every package comes from
    operator/requirements.lock, by hash and as a wheel, and the project itself is
    installed with no index and no dependency resolution (tests/helm/test_lock.py
    keeps the lock in step with pyproject.toml)."""
    steps = instructions(OPERATOR)
    copied = {a.split()[0]: a.split()[-1] for i, a in steps if i == "COPY"}
    assert copied.get("operator/requirements.lock") == "./", "the lock is copied on its own"
    lock, project = _pip_installs(OPERATOR)
    assert lock == ["--require-hashes", "--only-binary=:all:", "-r", "requirements.lock"]
    assert set(project) == {"--no-index", "--no-deps", "--no-build-isolation", "."}
    runs = " ".join(a for i, a in steps if i == "RUN")
    for fetcher in ("pip download", "uv ", "easy_install", "curl", "wget", "--upgrade"):
        assert fetcher not in runs, f"the operator image fetches outside the lock: {fetcher!r}"
    assert "pip check" in runs, "a package missing from the lock fails the build"


def _closure(names: list[Requirement]) -> set[str]:
    """Distribution names `pip install .` pulls in, from the venv's installed metadata."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        req = todo.pop()
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            pytest.fail(f"{req.name} is not installed in the venv: run .ci/setup")
        for spec in requires:
            sub = Requirement(spec)
            if sub.marker is None or any(
                sub.marker.evaluate({"extra": e}) for e in (req.extras or {""})
            ):
                todo.append(sub)
    return seen


def test_operator_dependencies_pull_in_no_torch() -> None:
    base = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    deps = _closure(base)
    assert "kopf" in deps and "boto3" in deps
    heavy = sorted(
        d for d in deps if d in {"torch", "accelerate", "transformers"} or d.startswith("nvidia-")
    )
    assert not heavy, f"the operator image would install {heavy}"
    extra = PYPROJECT["project"]["optional-dependencies"]["trainer"]
    trainer = _closure([Requirement(r) for r in extra])
    assert "torch" in trainer  # the check above can see torch when it is there
