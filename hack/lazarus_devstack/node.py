"""A real node beside the local control plane: containerd + runc + kubelet + CNI.

Everything lives under the stack's run directory (containerd's root and state,
its sockets and network namespaces, kubelet's root, pod logs, the CNI config
and IPAM data) except what Linux keeps globally; those are named after one
small node index, claimed atomically, so two stacks on one machine never meet:

  - the node IP, a /32 on `lo` (kubelet refuses a loopback IP; dummy links are
    unavailable here), 10.213.<i>.1
  - the pod bridge `lzbr<i>` and its private /24, 10.214.<i>.0/24
  - the cgroup parent `/lazarus-<i>` in every hierarchy (the claim itself: mkdir
    is atomic)
  - the node name `lazarus-<i>`

`down` stops kubelet, kills what runs in the node's cgroups, stops containerd
and its shims, unmounts everything below the run directory, and removes the
bridge, the address and the cgroups, and what containerd and kubelet keep at
fixed paths for this node (shim sockets, cached CNI results, kubelet's
device-plugin socket when no other kubelet runs).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import DevstackError

REPO = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO / "hack" / "node" / "setup.sh"
CGROUP_ROOT = Path("/sys/fs/cgroup")
INDEXES = 250
PAUSE_IMAGE = "lazarus.local/pause:1"
BASE_IMAGE = "lazarus.local/base:bookworm"
KUBELET_PORT = 10250  # each node has its own IP, so every node can use the usual port


@dataclass
class NodeInfo:
    """What a node was given; recorded in the stack's state.json."""

    index: int
    name: str
    ip: str
    subnet: str
    bridge: str
    cgroup: str
    cache: str  # hack/node/setup.sh's cache: binaries and image tars
    run_dir: str

    @property
    def containerd_socket(self) -> str:
        return str(Path(self.run_dir) / "containerd.sock")

    @property
    def kubelet_healthz(self) -> str:
        return f"http://{self.ip}:10248/healthz"


def node_cache() -> Path:
    """hack/node/setup.sh's cache (binaries and images), set up on first use."""
    override = os.environ.get("LAZARUS_NODE_CACHE")
    if override:
        return Path(override)
    result = subprocess.run(
        ["bash", str(SETUP_SCRIPT)], stdout=subprocess.PIPE, stderr=None, text=True, check=False
    )
    if result.returncode != 0:
        raise DevstackError(
            "setting up the real node's binaries and images failed (hack/node/setup.sh, "
            "output above); fix the error it names and run it again"
        )
    return Path(result.stdout.strip().splitlines()[-1])


def _hierarchies(unified: bool = False) -> list[Path]:
    """The mounted cgroup v1 hierarchies (kubelet's cgroupfs driver creates its
    cgroups in each); with `unified`, also a hybrid host's v2 mount, where runc
    creates the containers' cgroups too."""
    types = ("cgroup", "cgroup2") if unified else ("cgroup",)
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] in types:
            out.append(Path(fields[1]))
    return out


def _check_host() -> None:
    if os.geteuid() != 0:
        raise DevstackError("a real node needs root (mounts, cgroups, network namespaces)")
    if not _hierarchies():
        raise DevstackError(
            "no cgroup v1 hierarchies are mounted under /sys/fs/cgroup; the real node is "
            "written for this machine's cgroup v1 host (cgroup v2 is not supported yet)"
        )


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise DevstackError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def _claim(index: int) -> bool:
    """Claim node index `index` by creating its cgroup parent; False if taken."""
    memory = CGROUP_ROOT / "memory" / f"lazarus-{index}"
    try:
        memory.mkdir()
    except FileExistsError:
        return False
    if _ip("link", "show", f"lzbr{index}", check=False).returncode == 0 or f"10.213.{index}.1/" in (
        _ip("-o", "addr", "show", "dev", "lo").stdout
    ):
        # A stack that was killed without `down` left these: not ours to reuse.
        memory.rmdir()
        return False
    return True


def plan(run_dir: Path, cache: Path, start: int | None = None) -> NodeInfo:
    """Claim a free node index, trying `start` first (default: one derived from the
    run directory, so a stack usually gets the same names each time)."""
    _check_host()
    if start is None:
        start = int(hashlib.sha256(str(run_dir).encode()).hexdigest(), 16) % INDEXES
    for k in range(INDEXES):
        i = (start + k) % INDEXES
        if _claim(i):
            info = NodeInfo(
                index=i,
                name=f"lazarus-{i}",
                ip=f"10.213.{i}.1",
                subnet=f"10.214.{i}.0/24",
                bridge=f"lzbr{i}",
                cgroup=f"lazarus-{i}",
                cache=str(cache),
                run_dir=str(run_dir),
            )
            remove_global_leftovers(info, set())  # a killed stack's, for this index
            # The node IP first: the stack's S3 server listens on it.
            _ip("addr", "add", f"{info.ip}/32", "dev", "lo")
            return info
    raise DevstackError("no free node index: stop stale stacks (`hack/cluster down`)")


def prepare(node: NodeInfo, ca_cert: Path, kubeconfig: Path) -> None:
    """Network, cgroups and config files; processes are started by the stack."""
    run = Path(node.run_dir)
    for h in _hierarchies():
        d = h / node.cgroup
        d.mkdir(exist_ok=True)
        if (h / "cpuset.cpus").exists():  # a new cpuset starts empty: inherit the parent's
            for f in ("cpuset.cpus", "cpuset.mems"):
                (d / f).write_text((h / f).read_text())
    debs = Path(node.cache) / "debs" / "root"
    (run / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
    (run / "cni" / "net.d" / "10-lazarus.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": f"lazarus-{node.index}",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": node.bridge,
                        "isGateway": True,
                        "ipMasq": False,  # pods only talk to this host: no iptables needed
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "dataDir": str(run / "cni" / "ipam"),
                            "ranges": [[{"subnet": node.subnet}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                        },
                    },
                    {"type": "loopback"},
                ],
            },
            indent=2,
        )
    )
    root = run / "containerd"
    (run / "containerd.toml").write_text(
        f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{node.containerd_socket}"
[ttrpc]
  address = "{node.containerd_socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # This host lacks CAP_SYS_RESOURCE: containers may only raise their OOM score.
  restrict_oom_score_adj = true
  # Network namespaces under the run directory, so `down` finds every one.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{debs / "usr" / "lib" / "cni"}"
    conf_dir = "{run / "cni" / "net.d"}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{debs / "usr" / "sbin" / "runc"}"
        SystemdCgroup = false
        # runc's state under the run directory too (default /run/containerd/runc).
        Root = "{run / "runc"}"
"""
    )
    kubelet_root = run / "kubelet"
    kubelet_root.mkdir(exist_ok=True)
    (run / "resolv.conf").write_text("nameserver 127.0.0.1\noptions ndots:1\n")
    (run / "kubelet.yaml").write_text(
        json.dumps(
            {
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "address": node.ip,
                "port": KUBELET_PORT,
                "readOnlyPort": 0,
                "healthzBindAddress": node.ip,
                "healthzPort": 10248,
                # The API server's kubelet client has no certificate here: anyone who can
                # reach the node IP (this host only) may read logs. A local-stack convenience.
                "authentication": {
                    "anonymous": {"enabled": True},
                    "webhook": {"enabled": False},
                    "x509": {"clientCAFile": str(ca_cert)},
                },
                "authorization": {"mode": "AlwaysAllow"},
                "cgroupDriver": "cgroupfs",
                "cgroupRoot": f"/{node.cgroup}",
                "failCgroupV1": False,  # this host is cgroup v1
                "failSwapOn": False,
                "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
                "podLogsDir": str(run / "pod-logs"),
                "resolvConf": str(run / "resolv.conf"),
                "clusterDomain": "cluster.local",
                "clusterDNS": [node.ip],  # CoreDNS, on the node IP
                "serializeImagePulls": False,
                "registerNode": True,
                "maxPods": 50,
                # The host's disk is shared with everything else: do not evict over it.
                "evictionHard": {
                    "memory.available": "100Mi",
                    "nodefs.available": "1%",
                    "imagefs.available": "1%",
                    "nodefs.inodesFree": "1%",
                },
                "imageGCHighThresholdPercent": 100,
                "imageGCLowThresholdPercent": 99,
                "nodeStatusUpdateFrequency": "5s",
                # Bounds how late a downward-API file sees new annotations (checkpoint-now).
                "syncFrequency": "10s",
                "shutdownGracePeriod": "0s",
                "protectKernelDefaults": False,
                "localStorageCapacityIsolation": True,
                "enforceNodeAllocatable": ["pods"],
            },
            indent=2,
        )
    )
    (run / "pod-logs").mkdir(exist_ok=True)


def containerd_argv(node: NodeInfo) -> tuple[list[str], dict[str, str]]:
    debs = Path(node.cache) / "debs" / "root"
    env = {"PATH": f"{debs / 'usr' / 'bin'}:{debs / 'usr' / 'sbin'}:{os.environ.get('PATH', '')}"}
    return [
        str(debs / "usr" / "bin" / "containerd"),
        f"--config={Path(node.run_dir) / 'containerd.toml'}",
        "--log-level=warn",
    ], env


def coredns_argv(node: NodeInfo, kubeconfig: Path) -> list[str]:
    """CoreDNS on the node IP (port 53 there is this node's own): cluster.local from
    the API server, everything else forwarded to the host's resolvers."""
    run = Path(node.run_dir)
    (run / "Corefile").write_text(
        f"""cluster.local:53 {{
    bind {node.ip}
    errors
    kubernetes cluster.local {{
        kubeconfig {kubeconfig}
    }}
}}
.:53 {{
    bind {node.ip}
    errors
    forward . /etc/resolv.conf
}}
"""
    )
    return [str(Path(node.cache) / "coredns"), "-conf", str(run / "Corefile")]


def dns_ready(node: NodeInfo) -> bool:
    """CoreDNS answers on TCP (it serves both)."""
    with socket.create_connection((node.ip, 53), timeout=1):
        return True


def kubelet_argv(node: NodeInfo, bin_dir: Path, kubeconfig: Path) -> list[str]:
    run = Path(node.run_dir)
    return [
        str(bin_dir / "kubelet"),
        f"--config={run / 'kubelet.yaml'}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={run / 'kubelet'}",
        f"--cert-dir={run / 'kubelet' / 'pki'}",  # default /var/lib/kubelet/pki
        f"--hostname-override={node.name}",
        f"--node-ip={node.ip}",
        "--node-labels=lazarus.dev/real-node=true",
        "--v=1",
    ]


def ctr(node: NodeInfo, *args: str, timeout: float = 300) -> str:
    """Run `ctr` against this node's containerd, in the CRI namespace."""
    debs = Path(node.cache) / "debs" / "root"
    result = subprocess.run(
        [str(debs / "usr" / "bin" / "ctr"), "-a", node.containerd_socket, "-n", "k8s.io", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise DevstackError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def import_images(node: NodeInfo) -> None:
    """Load the pause and base images (built by hack/node/setup.sh) into containerd."""
    images = Path(node.cache) / "images"
    for tar in ("pause.tar", "base.tar"):
        ctr(node, "images", "import", "--no-unpack=false", str(images / tar))


def _cgroup_pids(node: NodeInfo) -> set[int]:
    pids: set[int] = set()
    for h in _hierarchies(unified=True):
        top = h / node.cgroup
        if not top.exists():
            continue
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def kill_containers(node: NodeInfo) -> None:
    """SIGKILL every process in the node's cgroups (its pods' containers)."""
    for _ in range(50):
        pids = _cgroup_pids(node)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def shim_pids(node: NodeInfo) -> list[int]:
    """containerd's shims for this node (they outlive containerd by design)."""
    found = []
    needle = node.containerd_socket.encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = cmdline.read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and needle in argv:
                found.append(int(cmdline.parent.name))
    return found


# What containerd 1.6 and kubelet keep at fixed paths outside the run directory.
SHIM_SOCKETS = Path("/run/containerd/s")
CNI_RESULTS = Path("/var/lib/cni/results")
DEVICE_PLUGINS = Path("/var/lib/kubelet/device-plugins")


def sandbox_ids(node: NodeInfo) -> set[str]:
    """IDs of this node's pod sandboxes and tasks, from containerd's own directories
    and the running shims' arguments (one shim per sandbox)."""
    root = Path(node.run_dir) / "containerd"
    ids: set[str] = set()
    for d in (
        root / "root" / "io.containerd.grpc.v1.cri" / "sandboxes",
        root / "state" / "io.containerd.runtime.v2.task" / "k8s.io",
    ):
        with contextlib.suppress(OSError):
            ids.update(p.name for p in d.iterdir())
    needle = node.containerd_socket.encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = cmdline.read_bytes().split(b"\0")
            shim = argv and argv[0].endswith(b"containerd-shim-runc-v2") and needle in argv
            if shim and b"-id" in argv:
                ids.add(argv[argv.index(b"-id") + 1].decode())
    return ids


def shim_socket(node: NodeInfo, sandbox: str) -> Path:
    """Where containerd 1.6 puts a sandbox's shim socket (shim.SocketAddress)."""
    key = str(Path(node.containerd_socket) / "k8s.io" / sandbox)
    return SHIM_SOCKETS / hashlib.sha256(key.encode()).hexdigest()


def remove_global_leftovers(node: NodeInfo, ids: set[str]) -> None:
    """Remove what this node left at containerd's and kubelet's fixed paths, and only
    that: the shims' sockets (named by a hash of containerd's address, the namespace
    and the sandbox ID, as containerd's shim.SocketAddress does), the CNI plugins'
    cached results (named after this node's network and its sandboxes), and kubelet's
    device-plugin socket unless another kubelet runs (its path is fixed in kubelet)."""
    for sandbox in ids:
        shim_socket(node, sandbox).unlink(missing_ok=True)
        (CNI_RESULTS / f"cni-loopback-{sandbox}-lo").unlink(missing_ok=True)
    network = f"lazarus-{node.index}-"
    with contextlib.suppress(OSError):
        for result in CNI_RESULTS.iterdir():
            if result.name.startswith(network):  # this index is ours: any holder's are stale
                sandbox = result.name.removeprefix(network).rsplit("-", 1)[0]
                (CNI_RESULTS / f"cni-loopback-{sandbox}-lo").unlink(missing_ok=True)
                result.unlink(missing_ok=True)
    if not _other_kubelets():
        (DEVICE_PLUGINS / "kubelet.sock").unlink(missing_ok=True)
        for d in (DEVICE_PLUGINS, DEVICE_PLUGINS.parent):
            with contextlib.suppress(OSError):
                d.rmdir()  # only when empty: anything else there is not ours


def _other_kubelets() -> bool:
    """Whether any kubelet runs on this machine (ours is stopped before teardown)."""
    for exe in Path("/proc").glob("[0-9]*/exe"):
        with contextlib.suppress(OSError):
            if exe.readlink().name == "kubelet":
                return True
    return False


def _mount_points() -> list[str]:
    return [
        line.split()[4].replace("\\040", " ")
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    ]


def unmount_below(run_dir: Path) -> None:
    """Unmount everything mounted below `run_dir`, deepest first."""
    prefix = str(run_dir).rstrip("/") + "/"
    for _ in range(5):
        mounts = [p for p in _mount_points() if p.startswith(prefix)]
        if not mounts:
            return
        for point in sorted(set(mounts), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def remove_cgroups(node: NodeInfo) -> None:
    for h in _hierarchies(unified=True):
        top = h / node.cgroup
        if not top.exists():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts))
        for d in [*reversed(dirs), top]:
            with contextlib.suppress(OSError):
                d.rmdir()


def teardown(node: NodeInfo) -> None:
    """Undo everything but the processes the stack itself stops (kubelet, containerd)."""
    kill_containers(node)
    ids = sandbox_ids(node)
    for pid in shim_pids(node):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run = Path(node.run_dir)
    unmount_below(run)
    _ip("link", "del", node.bridge, check=False)
    _ip("addr", "del", f"{node.ip}/32", "dev", "lo", check=False)
    remove_cgroups(node)
    remove_global_leftovers(node, ids)
    # containerd's snapshots and kubelet's pod directories are large and root-owned.
    if any(p.startswith(str(run) + "/") for p in _mount_points()):
        raise DevstackError(f"mounts below {run} would not go away; see `findmnt -R {run}`")
    for d in ("containerd", "kubelet", "pod-logs", "cni", "runc"):
        shutil.rmtree(run / d, ignore_errors=True)
    for sock in Path(run).glob("containerd.sock*"):
        sock.unlink(missing_ok=True)


def to_dict(node: NodeInfo) -> dict[str, object]:
    return asdict(node)


CODE_DIRS = ("contract", "store", "operator", "trainer_image", "hack")


def with_local_code(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """`pod_spec` with its first container running this checkout's code on the node.

    A local-stack convenience (torch makes a real trainer image several GB): the
    container runs the base image, with the project's venv, the interpreter the
    venv was made from (its `python` links there) and this checkout's code folders
    mounted read-only at their host paths, `PYTHONPATH` on the checkout's packages, and
    the venv's bin first on PATH, so `lazarus-train` resolves as in the image.
    """
    spec = copy.deepcopy(pod_spec)
    # The code folders only, not the checkout: its .run/ holds the demo node's own mounts.
    paths = {
        "venv": Path(sys.prefix),
        "python": Path(sys.base_prefix).resolve(),
        **{d.replace("_", "-"): REPO / d for d in CODE_DIRS},
    }
    spec["volumes"] = [
        *(spec.get("volumes") or []),
        *(
            {"name": f"local-{k}", "hostPath": {"path": str(p), "type": "Directory"}}
            for k, p in paths.items()
        ),
    ]
    container = spec["containers"][0]
    container["image"] = BASE_IMAGE
    container["imagePullPolicy"] = "Never"
    container["volumeMounts"] = [
        *(container.get("volumeMounts") or []),
        *({"name": f"local-{k}", "mountPath": str(p), "readOnly": True} for k, p in paths.items()),
    ]
    env = {
        "PYTHONPATH": ":".join(str(REPO / d) for d in CODE_DIRS),
        "PYTHONUNBUFFERED": "1",
        "HOME": "/tmp",
        "PATH": f"{sys.prefix}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    container["env"] = [
        *({"name": k, "value": v} for k, v in env.items()),
        *(e for e in container.get("env") or [] if e.get("name") not in env),
    ]
    return spec
