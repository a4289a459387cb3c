"""The Helm tool chain for the chart tests: helm, helm-unittest and kubeconform
built from their Go modules by hack/helm/build.sh, and kubeconform's schemas from
the kubernetes-validate wheel (plus the TrainingJob CRD's own)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/lazarus"
KUBE_VERSION = (REPO / "hack/k8s/KUBE_VERSION").read_text().strip()  # the test cluster's


def bin_dir() -> Path:
    """Where hack/helm/build.sh keeps the binaries (it builds them if they are missing)."""
    done = subprocess.run(
        ["bash", str(REPO / "hack/helm/build.sh")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"hack/helm/build.sh failed:\n{done.stderr[-4000:]}"
    return Path(done.stdout.strip().splitlines()[-1])


def run(argv: list[str], *, stdin: str | None = None, timeout: float = 120) -> str:
    """Run a tool; fail the test with its output if it exits non-zero."""
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, check=False, timeout=timeout
    )
    what = f"{' '.join(argv)} exited {done.returncode}"
    assert done.returncode == 0, f"{what}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def write_kube_schemas(out: Path) -> Path:
    """kubernetes-validate's strict schemas for the test cluster's minor, made
    standalone for kubeconform: the wheel's refer to a shared `/api/_definitions.json`
    that only its own resolver finds, so each kind gets the definitions it uses."""
    spec = importlib.util.find_spec("kubernetes_validate")
    assert spec and spec.origin, "kubernetes-validate is not installed: run .ci/setup"
    major, minor = KUBE_VERSION.lstrip("v").split(".")[:2]
    root = Path(spec.origin).parent / "kubernetes-json-schema"
    src = root / f"v{major}.{minor}.0-local-strict"
    assert src.is_dir(), f"kubernetes-validate has no schemas for {KUBE_VERSION} in {root}"
    defs: dict[str, Any] = json.loads((src / "_definitions.json").read_text())["$defs"]
    prefixes = ("/api/_definitions.json#/$defs/", "#/$defs/")

    def local(node: Any, used: set[str]) -> Any:
        if isinstance(node, list):
            return [local(n, used) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: local(v, used) for k, v in node.items()}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(prefixes):
            name = ref.split("/$defs/", 1)[1]
            used.add(name)
            out["$ref"] = f"#/$defs/{name}"
        return out

    out.mkdir(parents=True, exist_ok=True)
    for path in src.glob("*.json"):
        if path.name.startswith("_"):
            continue
        used: set[str] = set()
        schema = local(json.loads(path.read_text()), used)
        todo, done = list(used), {}
        while todo:
            name = todo.pop()
            if name in done:
                continue
            more: set[str] = set()
            done[name] = local(defs[name], more)
            todo.extend(more - done.keys())
        schema["$defs"] = done
        (out / path.name).write_text(json.dumps(schema))
    return out


def _strict(node: Any) -> Any:
    """An OpenAPI v3 (structural) CRD schema as JSON Schema that, like the API
    server's pruning, refuses fields it does not declare."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def write_crd_schemas(crd_dir: Path, out: Path) -> Path:
    """kubeconform schemas ({group}/{kind}_{version}.json) for every CRD in `crd_dir`."""
    for path in sorted(crd_dir.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            spec = doc["spec"]
            for version in spec["versions"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                kind = spec["names"]["kind"].lower()
                target = out / spec["group"] / f"{kind}_{version['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(schema, indent=1))
    return out
