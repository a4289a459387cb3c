"""`hack/demo`: the whole loop on one machine, no Docker.

Starts (or reuses) the local stack with a scheduler, the operator, and the
process kubelet (with --real-node: a real node, and the operator in a pod from
its image, installed by the Helm chart); applies the CRD and
examples/trainingjob.yaml; then preempts the trainer through the Eviction API
once its first checkpoint is committed, and follows the job until it succeeds:
the operator classifies the eviction, relaunches from the newest valid
checkpoint, and the run completes.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import operator_pod
from .errors import DevstackError
from .node import with_local_code
from .stack import REPO, Ports, Stack, apply_crds

NAMESPACE = "lazarus-demo"
RUN_DIR = REPO / ".run" / "demo"


def _kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    state = Stack(RUN_DIR).state()
    kubectl = state.kubectl() if state else "kubectl"
    result = subprocess.run(
        [kubectl, f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise DevstackError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def up(follow: bool, drill: bool, timeout: float, real_node: bool = False) -> int:
    stack = Stack(RUN_DIR)
    state = stack.state()
    wanted = {"kube-apiserver", "s3"} | ({"kubelet", "containerd"} if real_node else set())
    if state and wanted <= set(state.running()) and bool(state.node) == real_node:
        print(f"# reusing the demo stack in {RUN_DIR}", file=sys.stderr)
    else:
        if state:
            stack.down()
        t0 = time.monotonic()
        state = stack.up(Ports(), controllers=True, scheduler=True, real_node=real_node)
        what = "control plane + S3 + real node" if real_node else "control plane + S3"
        print(f"# {what} up in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    assert state.s3 is not None
    kc = state.kubeconfig
    apply_crds(state)

    venv_bin = str(Path(sys.executable).parent)
    path = f"{venv_bin}:{os.environ.get('PATH', '')}"
    running = state.running()
    ns = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    _kubectl(kc, "apply", "-f", "-", stdin=ns)
    if real_node:
        # As users run it: the chart, the image built from the root Dockerfile.
        t0 = time.monotonic()
        pod = operator_pod.install(state, NAMESPACE, progress_seconds=3)
        print(
            f"# operator {pod.image} running in a pod (chart {operator_pod.CHART.name}, "
            f"release {pod.release}) in {time.monotonic() - t0:.1f}s",
            file=sys.stderr,
        )
    elif "lazarus-operator" not in running:
        log = RUN_DIR / "logs" / "lazarus-operator.log"
        log.unlink(missing_ok=True)
        stack.launch(
            "lazarus-operator",
            [str(Path(venv_bin) / "lazarus-operator"), "--namespace", NAMESPACE],
            lambda: "authentication has finished" in log.read_text(errors="replace"),
            env={"KUBECONFIG": kc, "LAZARUS_PROGRESS_SECONDS": "3", "PATH": path},
        )
    if not real_node and "local-kubelet" not in running:
        stack.launch(
            "local-kubelet",
            [
                sys.executable,
                "-m",
                "lazarus_devstack.kubelet",
                "--kubeconfig",
                kc,
                "--work-dir",
                str(RUN_DIR / "pods"),
            ],
            lambda: "local-0" in _kubectl(kc, "get", "nodes", "-o", "name"),
            env={"PATH": path, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO / "hack"))},
        )

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "lazarus-s3", "namespace": NAMESPACE},
        "data": {
            "AWS_ACCESS_KEY_ID": base64.b64encode(state.s3.access_key.encode()).decode(),
            "AWS_SECRET_ACCESS_KEY": base64.b64encode(state.s3.secret_key.encode()).decode(),
        },
    }
    _kubectl(kc, "apply", "-f", "-", stdin=json.dumps(secret))
    job = (REPO / "examples" / "trainingjob.yaml").read_text()
    job = job.replace("http://127.0.0.1:9566", state.s3.endpoint)
    if real_node:
        import yaml

        body = yaml.safe_load(job)
        body["spec"]["template"]["spec"] = with_local_code(body["spec"]["template"]["spec"])
        job = json.dumps(body)
    _kubectl(kc, "-n", NAMESPACE, "delete", "tj", "tiny-lm", "--ignore-not-found", "--wait")
    _kubectl(kc, "-n", NAMESPACE, "apply", "-f", "-", stdin=job)
    print(f"# applied examples/trainingjob.yaml in namespace {NAMESPACE}", file=sys.stderr)
    print(_kubectl(kc, "-n", NAMESPACE, "get", "tj"))
    if not follow:
        return 0
    return _follow(kc, drill, timeout, state.s3.env())


def _job(kc: str) -> dict[str, Any]:
    return dict(json.loads(_kubectl(kc, "-n", NAMESPACE, "get", "tj", "tiny-lm", "-o", "json")))


def _follow(kc: str, drill: bool, timeout: float, s3_env: dict[str, str]) -> int:
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(config_file=kc))
    deadline = time.monotonic() + timeout
    last = ""
    preempted = not drill
    while time.monotonic() < deadline:
        status = _job(kc).get("status", {})
        line = (
            f"phase={status.get('phase')} attempt={status.get('attempt')} "
            f"restarts={status.get('restarts', {}).get('total', 0)} "
            f"checkpoint={status.get('latestCheckpoint', {}).get('step')}"
        )
        if line != last:
            print(f"[{time.strftime('%T')}] {line}", flush=True)
            last = line
        if status.get("phase") in ("Succeeded", "Failed"):
            break
        if not preempted and status.get("latestCheckpoint", {}).get("step"):
            pods = core.list_namespaced_pod(NAMESPACE, label_selector="lazarus.dev/job=tiny-lm")
            running = [p for p in pods.items if p.status.phase == "Running"]
            if running:
                pod = running[0].metadata.name
                print(
                    f"[{time.strftime('%T')}] preempting {pod} through the Eviction API", flush=True
                )
                core.create_namespaced_pod_eviction(
                    pod,
                    NAMESPACE,
                    client.V1Eviction(metadata=client.V1ObjectMeta(name=pod, namespace=NAMESPACE)),
                )
                preempted = True
        time.sleep(1)
    print(_kubectl(kc, "-n", NAMESPACE, "get", "tj"))
    events = _kubectl(
        kc,
        "-n",
        NAMESPACE,
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=TrainingJob",
        "--sort-by=.lastTimestamp",
    )
    print(events)
    ckpt = shutil.which("lazarus-ckpt") or str(Path(sys.executable).parent / "lazarus-ckpt")
    subprocess.run(
        [ckpt, "-u", "s3://lazarus/jobs/tiny-lm", "list"],
        env={**os.environ, **s3_env},
        check=False,
    )
    phase = _job(kc).get("status", {}).get("phase")
    if phase != "Succeeded":
        print(
            f"# the job ended {phase}; logs are in {RUN_DIR}/logs and {RUN_DIR}/pods "
            f"(real node: `kubectl -n {NAMESPACE} logs deploy/lazarus` for the operator)",
            file=sys.stderr,
        )
        return 1
    print(f"# done; `hack/demo down` stops everything (logs: {RUN_DIR}/logs)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/demo", description=__doc__)
    parser.add_argument("cmd", nargs="?", default="up", choices=["up", "down"])
    parser.add_argument("--no-follow", action="store_true", help="apply the job and return")
    parser.add_argument("--no-drill", action="store_true", help="do not preempt the trainer")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--real-node",
        action="store_true",
        help="run the trainer in real containers: containerd + kubelet instead of the "
        "process kubelet (needs root; see hack/node/README.md)",
    )
    args = parser.parse_args(argv)
    try:
        if args.cmd == "down":
            print(f"stopped: {', '.join(Stack(RUN_DIR).down()) or 'nothing'}", file=sys.stderr)
            return 0
        return up(not args.no_follow, not args.no_drill, args.timeout, args.real_node)
    except DevstackError as err:
        print(f"hack/demo: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
