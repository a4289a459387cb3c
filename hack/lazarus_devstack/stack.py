"""Bring the local stack up and down.

`up` starts etcd, then kube-apiserver (RBAC on), then optionally the
controller-manager and scheduler, then the S3 server; it waits for each to be
ready and, if anything fails, stops what it started before raising. The run
directory's `state.json` records what runs, so `down` can stop it and a second
`up` can tell a live stack from a stale one.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import certs, procs
from . import node as realnode
from .errors import DevstackError

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "k8s" / "build.sh"
DEFAULT_RUN_DIR = REPO / ".run" / "devstack"
S3_BUCKET = "lazarus"
S3_ACCESS_KEY = "lazarus"
S3_SECRET_KEY = "lazarus-secret"
S3_REGION = "us-east-1"

# Controllers we leave off: without kubelets, node-lifecycle would taint and
# evict every pod on the tests' fake nodes; the rest need a cloud or CIDRs.
DISABLED_CONTROLLERS = [
    "node-lifecycle-controller",
    "node-ipam-controller",
    "cloud-node-lifecycle-controller",
    "service-lb-controller",
    "node-route-controller",
    "persistentvolume-attach-detach-controller",
]


@dataclass
class Ports:
    """Loopback ports; 0 means "pick a free one"."""

    apiserver: int = 6443
    etcd_client: int = 23790
    etcd_peer: int = 23800
    s3: int = 9566
    controller_manager: int = 0
    scheduler: int = 0


@dataclass
class S3Info:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    region: str

    def env(self) -> dict[str, str]:
        """What a client (boto3, the operator, the trainer) needs in its environment."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            "LAZARUS_S3_ENDPOINT": self.endpoint,
            "LAZARUS_S3_ADDRESSING_STYLE": "path",
        }


@dataclass
class State:
    run_dir: str
    version: str = ""
    bin_dir: str = ""
    server: str = ""
    kubeconfig: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    s3: S3Info | None = None
    argv: dict[str, list[str]] = field(default_factory=dict)  # to start a component again
    node: realnode.NodeInfo | None = None  # the real node, when `up(real_node=True)` started one

    def env(self) -> dict[str, str]:
        env = {"KUBECONFIG": self.kubeconfig} if self.kubeconfig else {}
        if self.s3:
            env.update(self.s3.env())
        return env

    def save(self) -> None:
        path = Path(self.run_dir) / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, run_dir: Path) -> State | None:
        path = run_dir / "state.json"
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            s3 = raw.pop("s3", None)
            real = raw.pop("node", None)
            return cls(
                **raw,
                s3=S3Info(**s3) if s3 else None,
                node=realnode.NodeInfo(**real) if real else None,
            )
        except (ValueError, TypeError) as err:
            raise DevstackError(
                f"{path} is unreadable ({err}); remove {run_dir} by hand and retry"
            ) from None

    def kubectl(self) -> str:
        """The kubectl built with the server (same version), else the one on PATH."""
        built = Path(self.bin_dir) / "kubectl"
        return str(built) if self.bin_dir and built.exists() else "kubectl"

    def running(self) -> dict[str, int]:
        return {name: pid for name, pid in self.pids.items() if procs.alive(pid)}


def k8s_bin_dir() -> Path:
    """The cached Kubernetes binaries, built from source on first use."""
    override = os.environ.get("LAZARUS_K8S_BIN")
    if override:
        return Path(override)
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=None, text=True, check=False
    )
    if result.returncode != 0:
        raise DevstackError(
            "building the Kubernetes binaries failed (hack/k8s/build.sh, output above); "
            "fix the error it names and run it again"
        )
    return Path(result.stdout.strip().splitlines()[-1])


def _https_ok(url: str, pki: certs.Pki | None, client: str = "admin") -> bool:
    ctx = (
        ssl.create_default_context(cafile=str(pki.ca_cert))
        if pki
        else ssl._create_unverified_context()
    )
    if pki:
        ctx.load_cert_chain(str(pki.client_cert(client)), str(pki.client_key(client)))
    with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
        return bool(resp.status == 200)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status < 500)


def _node_ready(state: State, name: str) -> bool:
    """The Node exists, reports Ready, and carries no not-ready/unreachable taint."""
    got = subprocess.run(
        [state.kubectl(), f"--kubeconfig={state.kubeconfig}", "get", "node", name, "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if got.returncode != 0:
        return False
    obj = json.loads(got.stdout)
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in obj.get("status", {}).get("conditions", [])
    )
    taints = [t.get("key", "") for t in obj.get("spec", {}).get("taints") or []]
    return ready and not any(t.startswith("node.kubernetes.io/") for t in taints)


def _version(bin_dir: Path) -> str:
    out = subprocess.run(
        [str(bin_dir / "kube-apiserver"), "--version"], capture_output=True, text=True, check=False
    ).stdout
    return out.split()[-1] if out.strip() else "unknown"


def apply_crds(state: State, crd_dir: Path = REPO / "crds", timeout: float = 60) -> None:
    """Apply every CRD in `crd_dir` and wait until the API server serves them.

    Polls the Established condition itself: `kubectl wait` fails outright when
    it looks before the CRD has any status at all.
    """
    kubectl = [state.kubectl(), f"--kubeconfig={state.kubeconfig}"]
    applied = subprocess.run(
        [*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(crd_dir), "-o", "name"],
        capture_output=True,
        text=True,
        check=False,
    )
    if applied.returncode != 0:
        raise DevstackError(f"applying {crd_dir} failed: {applied.stderr.strip()}")
    names = [n.split("/", 1)[1] for n in applied.stdout.split() if "customresourcedefinition" in n]
    deadline = time.monotonic() + timeout
    for name in names:
        path = '{.status.conditions[?(@.type=="Established")].status}'
        while True:
            got = subprocess.run(
                [*kubectl, "get", "crd", name, "-o", f"jsonpath={path}"],
                capture_output=True,
                text=True,
                check=False,
            )
            if got.stdout.strip() == "True":
                break
            if time.monotonic() > deadline:
                raise DevstackError(f"CRD {name} was not Established after {timeout:.0f}s")
            time.sleep(0.1)


class Stack:
    """The local control plane and S3 server rooted at one run directory."""

    def __init__(
        self, run_dir: Path = DEFAULT_RUN_DIR, *, tied: bool = False, own_identities: bool = False
    ) -> None:
        """`tied`: processes die when this Python process does (for test sessions).
        `own_identities`: each controller acts under its own service account, as a real
        node's stack does (a stack running Kueue: the garbage collector must read Jobs
        and delete Workloads, the Job controller write Job status)."""
        self.run_dir = run_dir.resolve()
        self.tied = tied
        self.own_identities = own_identities

    def state(self) -> State | None:
        return State.load(self.run_dir)

    def up(
        self,
        ports: Ports | None = None,
        *,
        controllers: bool = True,
        scheduler: bool = False,
        s3: bool = True,
        kube: bool = True,
        real_node: bool = False,
    ) -> State:
        """Start the stack. `real_node`: also containerd + kubelet + CNI (hack/node), with
        the control-plane flags a real kubelet needs, and the S3 server on the node IP
        so that pods reach it."""
        ports = ports or Ports()
        existing = self.state()
        if existing:
            live = existing.running()
            if live:
                raise DevstackError(
                    f"a stack is already running from {self.run_dir} (pids {live}); "
                    f"use it (`hack/cluster env`), or stop it first with `hack/cluster down`"
                )
            raise DevstackError(
                f"{self.run_dir} is a stale run directory: it records a stack whose processes "
                f"are gone ({existing.pids}). Clean it with `hack/cluster down` and retry"
            )
        resolved = Ports(**{k: v or procs.free_port() for k, v in asdict(ports).items()})
        wanted = {"s3 server": resolved.s3} if s3 else {}
        if kube:
            wanted |= {
                "kube-apiserver": resolved.apiserver,
                "etcd (client)": resolved.etcd_client,
                "etcd (peer)": resolved.etcd_peer,
            }
        for what, port in wanted.items():
            procs.check_port_free(port, what)
        if real_node and not kube:
            raise DevstackError("a real node needs the control plane (kube=True)")
        bin_dir = k8s_bin_dir() if kube else None
        cache = realnode.node_cache() if real_node else None

        if self.run_dir.exists():
            shutil.rmtree(self.run_dir / "etcd-data", ignore_errors=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = State(run_dir=str(self.run_dir))
        try:
            if cache:
                state.node = realnode.plan(self.run_dir, cache)
                state.save()  # the claimed names first, so `down` can release them
            if bin_dir:
                self._start_kube(state, bin_dir, resolved, controllers, scheduler)
            if s3:
                self._start_s3(state, resolved.s3, state.node.ip if state.node else "127.0.0.1")
            if state.node and bin_dir:
                self._start_node(state, state.node, bin_dir)
        except BaseException:
            self._stop_all(state)
            (self.run_dir / "state.json").unlink(missing_ok=True)
            raise
        return state

    def _start_kube(
        self, state: State, bin_dir: Path, ports: Ports, controllers: bool, scheduler: bool
    ) -> None:
        run = self.run_dir
        real = state.node
        extra: dict[str, tuple[str, str | None]] = (
            {"node": (f"system:node:{real.name}", "system:nodes")} if real else {}
        )
        pki = certs.generate(run / "pki", extra)
        state.version = _version(bin_dir)
        state.bin_dir = str(bin_dir)
        state.server = f"https://127.0.0.1:{ports.apiserver}"
        for client in [*certs.CLIENTS, *extra]:
            (run / f"{client}.kubeconfig").write_text(certs.kubeconfig(pki, state.server, client))
        state.kubeconfig = str(run / "admin.kubeconfig")
        # The conventional name, so `kubectl --kubeconfig <run>/kubeconfig` works.
        (run / "kubeconfig").write_text(certs.kubeconfig(pki, state.server, "admin"))
        state.kubeconfig = str(run / "kubeconfig")

        etcd_url = f"http://127.0.0.1:{ports.etcd_client}"
        peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
        self._launch(
            state,
            "etcd",
            [
                str(bin_dir / "etcd"),
                "--name=devstack",
                f"--data-dir={run / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=devstack={peer_url}",
                "--unsafe-no-fsync",  # a throwaway store: fsync only slows tests
                "--log-level=warn",
            ],
            lambda: _http_ok(f"{etcd_url}/health"),
        )
        self._launch(
            state,
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports.apiserver}",
                f"--tls-cert-file={pki.server_cert}",
                f"--tls-private-key-file={pki.server_key}",
                f"--client-ca-file={pki.ca_cert}",
                # A real kubelet is authorized as its node (the Node authorizer).
                f"--authorization-mode={'Node,RBAC' if real else 'RBAC'}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                f"--cert-dir={run / 'pki'}",
                # Reach kubelets at their node IP (logs, exec): there is no DNS for nodes.
                *(["--kubelet-preferred-address-types=InternalIP"] if real else []),
                "--v=1",
            ],
            lambda: _https_ok(f"{state.server}/readyz", pki),
            timeout=90,
        )
        # A real node has a real kubelet: the node-lifecycle controller clears its
        # not-ready taint and evicts from it when it is lost. Each controller acts
        # under its own service account, as in a real cluster (without that they are
        # forbidden to create pods, configmaps and endpointslices).
        disabled = [
            c for c in DISABLED_CONTROLLERS if not (real and c == "node-lifecycle-controller")
        ]
        real_node_flags = (
            ["--use-service-account-credentials", "--node-monitor-grace-period=20s"] if real else []
        )
        if self.own_identities and not real:
            real_node_flags = ["--use-service-account-credentials"]
        if controllers:
            self._launch(
                state,
                "kube-controller-manager",
                [
                    str(bin_dir / "kube-controller-manager"),
                    f"--kubeconfig={run / 'controller-manager.kubeconfig'}",
                    f"--authentication-kubeconfig={run / 'controller-manager.kubeconfig'}",
                    f"--authorization-kubeconfig={run / 'controller-manager.kubeconfig'}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={ports.controller_manager}",
                    f"--service-account-private-key-file={pki.sa_key}",
                    f"--root-ca-file={pki.ca_cert}",
                    "--leader-elect=false",
                    "--controllers=*," + ",".join(f"-{c}" for c in disabled),
                    *real_node_flags,
                    "--v=1",
                ],
                lambda: _https_ok(f"https://127.0.0.1:{ports.controller_manager}/healthz", None),
            )
        if scheduler:
            self._launch(
                state,
                "kube-scheduler",
                [
                    str(bin_dir / "kube-scheduler"),
                    f"--kubeconfig={run / 'scheduler.kubeconfig'}",
                    f"--authentication-kubeconfig={run / 'scheduler.kubeconfig'}",
                    f"--authorization-kubeconfig={run / 'scheduler.kubeconfig'}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={ports.scheduler}",
                    "--leader-elect=false",
                    "--v=1",
                ],
                lambda: _https_ok(f"https://127.0.0.1:{ports.scheduler}/healthz", None),
            )

    def _start_s3(self, state: State, port: int, host: str = "127.0.0.1") -> None:
        endpoint = f"http://{host}:{port}"
        self._launch(
            state,
            "s3",
            [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
            lambda: _http_ok(f"{endpoint}/moto-api/"),
        )
        state.s3 = S3Info(endpoint, S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION)
        import boto3  # imported late: `hack/cluster down` must work without it

        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            region_name=S3_REGION,
        ).create_bucket(Bucket=S3_BUCKET)
        state.save()

    def _start_node(self, state: State, real: realnode.NodeInfo, bin_dir: Path) -> None:
        """containerd (with the local images), then kubelet; wait for the Node to be Ready."""
        realnode.prepare(
            real, certs.Pki(self.run_dir / "pki").ca_cert, self.run_dir / "node.kubeconfig"
        )
        argv, env = realnode.containerd_argv(real)
        self._launch(
            state, "containerd", argv, lambda: Path(real.containerd_socket).exists(), env=env
        )
        realnode.import_images(real)
        self._launch(
            state,
            "coredns",
            realnode.coredns_argv(real, self.run_dir / "kubeconfig"),
            lambda: realnode.dns_ready(real),
        )
        self._launch(
            state,
            "kubelet",
            realnode.kubelet_argv(real, bin_dir, self.run_dir / "node.kubeconfig"),
            lambda: _node_ready(state, real.name),
            timeout=90,
        )

    def launch(
        self,
        name: str,
        argv: list[str],
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> int:
        """Start one more process under this stack (the demo's operator); `down` stops it too."""
        state = self.state()
        if state is None:
            raise DevstackError(f"no stack in {self.run_dir}")
        pid = procs.start(name, argv, self.run_dir, env=env, die_with_parent=self.tied)
        state.pids[name] = pid
        state.save()
        try:
            procs.wait_until(name, pid, ready, self.run_dir, timeout)
        except BaseException:
            procs.stop(pid)
            del state.pids[name]
            state.save()
            raise
        return pid

    def _launch(
        self,
        state: State,
        name: str,
        argv: list[str],
        ready: Callable[[], bool],
        timeout: float = 60,
        *,
        env: dict[str, str] | None = None,
    ) -> None:
        pid = procs.start(name, argv, self.run_dir, env=env, die_with_parent=self.tied)
        state.pids[name] = pid
        state.argv[name] = argv
        state.save()  # record the pid first, so a crash here still lets `down` find it
        procs.wait_until(name, pid, ready, self.run_dir, timeout)

    def stop_component(self, name: str) -> None:
        """Stop one component (fault drills: an API server outage); `start_component`
        brings it back with the same flags, ports and data."""
        state = self.state()
        if state is None or name not in state.pids:
            raise DevstackError(f"no {name} in the stack in {self.run_dir}")
        procs.stop(state.pids[name])

    def start_component(self, name: str, timeout: float = 90) -> None:
        state = self.state()
        if state is None or name not in state.argv:
            raise DevstackError(f"no {name} to start again in {self.run_dir}")
        if procs.alive(state.pids.get(name, 0)):
            raise DevstackError(f"{name} is still running")
        pki = certs.Pki(self.run_dir / "pki")
        ready: dict[str, Callable[[], bool]] = {
            "kube-apiserver": lambda: _https_ok(f"{state.server}/readyz", pki),
        }
        self._launch(state, name, state.argv[name], ready.get(name, lambda: True), timeout)

    def down(self) -> list[str]:
        """Stop everything the run directory records; return the names stopped."""
        state = self.state()
        if state is None:
            return []
        self._stop_all(state)
        left = state.running()
        if left:
            raise DevstackError(f"could not stop {left}; kill them by hand (kill -9 <pid>)")
        (self.run_dir / "state.json").unlink(missing_ok=True)
        shutil.rmtree(self.run_dir / "etcd-data", ignore_errors=True)
        return list(state.pids)

    def _stop_all(self, state: State) -> None:
        """Stop every process, newest first; a real node's kubelet goes first, its
        containers before containerd, and its mounts, network and cgroups after."""
        pids = dict(state.pids)
        if state.node:
            if "kubelet" in pids:
                procs.stop(pids.pop("kubelet"))
            realnode.kill_containers(state.node)
            if "containerd" in pids:
                procs.stop(pids.pop("containerd"))
            realnode.teardown(state.node)
        for pid in reversed(list(pids.values())):
            procs.stop(pid)

    def wait_ready(self, state: State, timeout: float = 30) -> None:
        """Wait until a reused stack answers (used when tests attach to a running one)."""
        deadline = time.monotonic() + timeout
        pki = certs.Pki(self.run_dir / "pki")
        while time.monotonic() < deadline:
            try:
                if (not state.server or _https_ok(f"{state.server}/readyz", pki)) and (
                    not state.s3 or _http_ok(f"{state.s3.endpoint}/moto-api/")
                ):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise DevstackError(f"the stack in {self.run_dir} does not answer; `hack/cluster down` it")
