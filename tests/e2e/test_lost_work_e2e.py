"""Lost work is booked truthfully, with real parts: operator process, process kubelet,
reference trainer, S3 behind a switchable proxy (a real outage).

- an eviction whose SIGTERM save fails (storage down) loses the steps since the last
  checkpoint, and status, history and the Launched event say how many;
- a crash (SIGKILL, as an OOM kill) between checkpoints books the step its progress
  signal last reported;
- a lost node reports nothing: the loss is estimated from the step rate, and says so.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from kubernetes import client

from lazarus_devstack.kubelet import LocalKubelet
from tests.conftest import ControlPlane, S3Server
from tests.operator.harness import OperatorProcess, wait_for
from tests.trainer.proxy import Proxy

pytestmark = pytest.mark.e2e
T = 120


class Node:
    """A process kubelet that can be lost (its processes die, it stops heartbeating)."""

    def __init__(self, cluster: ControlPlane, name: str, work: Path) -> None:
        self.cluster, self.name, self.work = cluster, name, work
        self.kubelet: LocalKubelet | None = None

    def start(self) -> None:
        self.kubelet = LocalKubelet(str(self.cluster.kubeconfig), self.name, self.work)
        threading.Thread(target=self.kubelet.run, daemon=True).start()

    def lose(self) -> None:
        assert self.kubelet is not None
        self.kubelet.shutdown()  # SIGKILLs its pods' processes
        self.kubelet = None

    def report_unknown(self, core: client.CoreV1Api) -> None:
        """What the node-lifecycle controller (off in this stack) writes for a node that
        stopped heartbeating: Ready=Unknown, as of now (about when training stopped)."""
        now = datetime.now(UTC).isoformat()
        cond = {
            "type": "Ready",
            "status": "Unknown",
            "reason": "NodeStatusUnknown",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        core.patch_node_status(self.name, {"status": {"conditions": [cond]}})

    def pid(self, pod: str) -> int:
        assert self.kubelet is not None
        return next(r.proc.pid for r in self.kubelet.running.values() if r.pod == pod)


@pytest.fixture
def env(
    cluster: ControlPlane, namespace: str, s3: S3Server, bucket: str, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    core = client.CoreV1Api(cluster.api_client())
    keys = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "s3"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in keys.items()},
        },
    )
    url = urlparse(s3.endpoint_url)
    proxy = Proxy(url.hostname or "127.0.0.1", url.port or 80)
    node = Node(cluster, f"{namespace}-local", tmp_path / "pods")
    node.start()
    operator = OperatorProcess(
        {**cluster.env(), "LAZARUS_PROGRESS_SECONDS": "1"}, namespace, tmp_path / "operator.log"
    )
    yield {
        "core": core,
        "proxy": proxy,
        "node": node,
        "pods": tmp_path / "pods",
        "bucket": bucket,
        "ns": namespace,
        "s3": s3,
    }
    operator.stop()
    print(f"--- operator log (tail) ---\n{operator.log()[-3000:]}")
    if node.kubelet is not None:
        node.kubelet.shutdown()
    for log in (tmp_path / "pods").glob("*/log"):
        print(f"--- {log.parent.name} ---\n{log.read_text(errors='replace')[-1500:]}")
    core.delete_node(node.name)


def create_job(
    cluster: ControlPlane, e: dict[str, Any], name: str, save_every: int = 20
) -> Callable[[], dict[str, Any]]:
    custom = client.CustomObjectsApi(cluster.api_client())
    venv_bin = str(Path(sys.executable).parent)
    body = {
        "apiVersion": "lazarus.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "gracePeriodSeconds": 8,
            "nodeLossTimeoutSeconds": 3,
            "checkpoint": {
                "uri": f"s3://{e['bucket']}/{name}",
                "endpoint": f"http://127.0.0.1:{e['proxy'].port}",
                "addressingStyle": "path",
                "secretRef": {"name": "s3"},
                "save": {"everySteps": save_every},
            },
            "failurePolicy": {"backoff": {"initialSeconds": 1, "maxSeconds": 1}},
            "template": {
                "spec": {
                    "nodeName": e["node"].name,
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "lazarus-trainer:dev",
                            "command": [f"{venv_bin}/lazarus-train"],
                            "args": ["--steps", "100000", "--step-sleep", "0.05"],
                        }
                    ],
                }
            },
        },
    }
    custom.create_namespaced_custom_object("lazarus.dev", "v1alpha1", e["ns"], "trainingjobs", body)

    def status() -> dict[str, Any]:
        got = custom.get_namespaced_custom_object(
            "lazarus.dev", "v1alpha1", e["ns"], "trainingjobs", name
        )
        return dict(got.get("status") or {})

    return status


def checkpointed(status: Callable[[], dict[str, Any]], at_least: int) -> int:
    got: int = wait_for(
        lambda: (
            ((status().get("latestCheckpoint") or {}).get("step") or 0) >= at_least
            and status()["latestCheckpoint"]["step"]
        ),
        T,
        f"a checkpoint at step >= {at_least}",
    )
    return got


def signal_past_checkpoint(e: dict[str, Any], pod: str, by: int = 3, within: int = 40) -> None:
    """Wait until the pod's progress signal reports a step `by` to `within` past its last
    commit: far enough that work is lost, and early enough in the save interval that a
    kill now lands before the next commit (a signal read just before it would not)."""
    path = e["pods"] / f"{e['ns']}_{pod}" / "termination-log"

    def past() -> bool:
        try:
            sig = json.loads(path.read_text())
        except (OSError, ValueError):
            return False  # not written yet, or caught mid-write
        last = (sig.get("lastCheckpoint") or {}).get("step")
        return (
            sig.get("outcome") == "running"
            and last is not None
            and last + by <= sig["step"] <= last + within
        )

    wait_for(
        past, T, f"{pod}'s progress signal {by}-{within} steps past its last commit", every=0.02
    )


def relaunched(status: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    def second() -> dict[str, Any] | None:
        st = status()
        return st if st.get("attempt", 0) >= 2 and len(st.get("history", [])) >= 2 else None

    got: dict[str, Any] = wait_for(second, T, "attempt 2 launched")
    return got


def launched_message(e: dict[str, Any], job: str) -> str:
    """The Launched event of attempt 2 (posted right after the status write)."""

    def find() -> str | None:
        got = e["core"].list_namespaced_event(e["ns"], field_selector=f"involvedObject.name={job}")
        return next(
            (
                str(x.message)
                for x in got.items
                if x.reason == "Launched" and "attempt 2" in x.message
            ),
            None,
        )

    msg: str = wait_for(find, T, "the Launched event of attempt 2")
    return msg


def test_a_sigterm_save_that_fails_books_the_steps_it_lost(
    cluster: ControlPlane, env: dict[str, Any]
) -> None:
    status = create_job(cluster, env, "nosave")
    checkpointed(status, 40)
    env["proxy"].set_up(False)  # storage down: the SIGTERM save cannot commit
    pod = "nosave-a1-0"
    env["core"].create_namespaced_pod_eviction(
        pod, env["ns"], client.V1Eviction(metadata=client.V1ObjectMeta(name=pod))
    )
    wait_for(lambda: status().get("phase") == "Restarting", T, "restart booked")
    time.sleep(10)  # past the grace period: the trainer gave up and reported its step
    env["proxy"].set_up(True)
    st = relaunched(status)
    lost = st["history"][-1]
    assert lost["lostSteps"] > 0 and lost["lostEstimated"] is False, st
    assert st["lostSteps"] == lost["lostSteps"] and st["lostSeconds"] > 0
    assert f"lost {lost['lostSteps']} steps" in launched_message(env, "nosave")


def test_a_crash_between_checkpoints_books_its_progress_signal(
    cluster: ControlPlane, env: dict[str, Any]
) -> None:
    # Saves every 100 steps (~5 s) and a signal written at most once a second (~20
    # steps): a kill the moment the signal is 3-40 steps past the last commit lands well
    # before the next one. (Saves every ~1 s raced it, and so did a signal first read
    # late in the interval, on a loaded CI machine: a commit the stale signal had not
    # yet seen became the resume point, and the booking rightly found 0 lost.)
    status = create_job(cluster, env, "crash", save_every=100)
    checkpointed(status, 100)
    signal_past_checkpoint(env, "crash-a1-0")
    os.killpg(env["node"].pid("crash-a1-0"), signal.SIGKILL)  # as the OOM killer does
    st = relaunched(status)
    lost = st["history"][-1]
    assert lost["lostSteps"] > 0 and lost["lostEstimated"] is False, st
    assert st["lastFailure"]["exitCode"] == 137


def test_a_lost_node_books_an_estimate_marked_as_such(
    cluster: ControlPlane, env: dict[str, Any]
) -> None:
    status = create_job(cluster, env, "gone", save_every=100)
    seen = checkpointed(status, 100)
    checkpointed(status, seen + 100)  # two checkpoints of the attempt: its step rate
    # Lose the node a known while after a commit, well before the next one (~5 s).
    store = env["s3"].open_store(f"s3://{env['bucket']}/gone")
    newest = store.list_checkpoints()[0].name
    wait_for(lambda: store.list_checkpoints()[0].name != newest, T, "a fresh checkpoint")
    time.sleep(2.5)
    node: Node = env["node"]
    node.lose()
    node.report_unknown(env["core"])
    st = relaunched(status)
    # The node comes back (or is replaced). Until it is Ready, attempts pinned to it
    # are lost at once too, losing nothing: the booking that counts is attempt 1's.
    node.start()
    assert st["history"][0]["cause"] == "NodeLost"
    lost = next(h for h in st["history"] if h["attempt"] == 2)
    message = launched_message(env, "gone")
    assert lost["lostEstimated"] is True and "estimated" in message, (lost, message)
    assert lost["lostSteps"] > 0 and lost["lostSeconds"] > 0, (lost, message, st.get("stepRate"))
