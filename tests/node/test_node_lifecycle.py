"""A real node beside another one, and `down` leaving nothing behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from kubernetes import client, config

from lazarus_devstack import node as realnode
from lazarus_devstack.stack import Ports, Stack
from tests.node.conftest import RealNode
from tests.operator.harness import wait_for

pytestmark = pytest.mark.e2e


def _leftovers(info: realnode.NodeInfo, sandboxes: set[str] | None = None) -> list[str]:
    """What the node holds outside its run directory; `sandboxes`: its pod sandboxes'
    IDs, whose shim sockets containerd keeps at a fixed path."""
    found = [
        f"shim socket of {s}" for s in sandboxes or () if realnode.shim_socket(info, s).exists()
    ]
    found += [p.name for p in realnode.CNI_RESULTS.glob(f"lazarus-{info.index}-*")]
    mounts = Path("/proc/self/mountinfo").read_text()
    if f" {info.run_dir}/" in mounts:
        found.append("mounts below the run directory")

    def ip(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)

    if ip("link", "show", info.bridge).returncode == 0:
        found.append(f"bridge {info.bridge}")
    if f"{info.ip}/32" in ip("-o", "addr", "show", "dev", "lo").stdout:
        found.append(f"address {info.ip}")
    found += [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{info.cgroup}")]
    if realnode.shim_pids(info):
        found.append("containerd shims")
    return found


def test_a_second_node_gets_its_own_names(real_node: RealNode, tmp_path: Path) -> None:
    """Asked for the index a running node holds, the claim moves on to a free one."""
    mine = real_node.node
    other = realnode.plan(tmp_path, Path(mine.cache), start=mine.index)
    try:
        assert other.index != mine.index
        assert (other.name, other.ip, other.subnet, other.bridge, other.cgroup) != (
            mine.name,
            mine.ip,
            mine.subnet,
            mine.bridge,
            mine.cgroup,
        )
    finally:
        realnode.teardown(other)


def test_down_removes_mounts_network_and_cgroups(real_node: RealNode, tmp_path: Path) -> None:
    """A second stack with a running pod, beside the session's; `down` undoes it all."""
    stack = Stack(tmp_path / "second", tied=True)
    state = stack.up(
        Ports(apiserver=0, etcd_client=0, etcd_peer=0, s3=0),
        controllers=True,
        s3=False,
        real_node=True,
    )
    try:
        assert state.node and state.node.name != real_node.node.name
        core = client.CoreV1Api(config.new_client_from_config(config_file=state.kubeconfig))
        # A list, not a read: until the controller manager creates it, a read is a 404.
        wait_for(
            lambda: (
                core.list_namespaced_service_account(
                    "default", field_selector="metadata.name=default"
                ).items
            ),
            30,
            "default SA",
        )
        core.create_namespaced_pod(
            "default",
            {
                "metadata": {"name": "sleeper"},
                "spec": {
                    "nodeName": state.node.name,
                    "containers": [
                        {
                            "name": "c",
                            "image": realnode.BASE_IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["sleep", "600"],
                        }
                    ],
                },
            },
        )
        wait_for(
            lambda: core.read_namespaced_pod("sleeper", "default").status.phase == "Running",
            60,
            "the pod running",
        )
        sandboxes = realnode.sandbox_ids(state.node)
        held = _leftovers(state.node, sandboxes)
        assert held, "a running pod shows up in mounts, cgroups and network"
        assert [h for h in held if h.startswith("shim socket")], held
        assert [h for h in held if h.startswith(f"lazarus-{state.node.index}-")], held
    finally:
        stack.down()
    assert _leftovers(state.node, sandboxes) == []
    # The session's node is untouched, kubelet's fixed device-plugin socket included.
    assert f"address {real_node.node.ip}" in _leftovers(real_node.node)
    assert (realnode.DEVICE_PLUGINS / "kubelet.sock").exists()
