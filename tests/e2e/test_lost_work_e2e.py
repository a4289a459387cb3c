"""Lost work is booked truthfully, with real parts: operator process, process kubelet,
reference trainer, S3 behind a switchable proxy (a real outage).

- an eviction whose SIGTERM save fails (storage down) loses the steps since the last
  checkpoint, and status, history and the Launched event say how many;
- a crash (SIGKILL, as an OOM kill) between checkpoints books the step its progress
  signal last reported;
- a lost node reports nothing: the loss is estimated from the step rate up to the
  node's last heartbeat, and says so ("at least");
- a crash loop with fast steps and an eviction in start-up: each booked figure is what
  the trainers' step logs show, within one progress-signal interval's steps.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from kubernetes import client

from lazarus_devstack.harness import LosableNode
from tests.conftest import ControlPlane, S3Server
from tests.operator.harness import OperatorProcess, wait_for
from tests.trainer.proxy import Proxy

pytestmark = pytest.mark.e2e
T = 120
STEP_LOG = "steps.jsonl"  # the reference trainer's per-step log, in the pod's directory
SIGNAL_S = 0.25  # the trainer's progress-signal interval (its default)


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
    node = LosableNode(cluster, f"{namespace}-local", tmp_path / "pods")
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
    cluster: ControlPlane,
    e: dict[str, Any],
    name: str,
    save_every: int = 20,
    step_sleep: float = 0.05,
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
            "failurePolicy": {
                "maxFailuresWithoutProgress": 6,
                "backoff": {"initialSeconds": 1, "maxSeconds": 1},
            },
            "template": {
                "spec": {
                    "nodeName": e["node"].name,
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "lazarus-trainer:dev",
                            "command": [f"{venv_bin}/lazarus-train"],
                            # Each pod's step log lands in its own directory (the
                            # local kubelet's working directory): the truth to check
                            # the booking against.
                            "args": [
                                *("--steps", "100000", "--step-sleep", str(step_sleep)),
                                *("--loss-log", STEP_LOG),
                            ],
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


def relaunched(status: Callable[[], dict[str, Any]], attempt: int = 2) -> dict[str, Any]:
    def launched() -> dict[str, Any] | None:
        st = status()
        ok = st.get("attempt", 0) >= attempt and len(st.get("history", [])) >= attempt
        return st if ok else None

    got: dict[str, Any] = wait_for(launched, T, f"attempt {attempt} launched")
    return got


def launched_message(e: dict[str, Any], job: str, attempt: int = 2) -> str:
    """The Launched event of `attempt` (posted right after the status write)."""

    def find() -> str | None:
        got = e["core"].list_namespaced_event(e["ns"], field_selector=f"involvedObject.name={job}")
        return next(
            (
                str(x.message)
                for x in got.items
                if x.reason == "Launched" and f"attempt {attempt} " in x.message
            ),
            None,
        )

    msg: str = wait_for(find, T, f"the Launched event of attempt {attempt}")
    return msg


def logged_steps(e: dict[str, Any], pod: str) -> list[int]:
    """The steps the pod's trainer logged (the truth the booking is checked against)."""
    try:
        lines = (e["pods"] / f"{e['ns']}_{pod}" / STEP_LOG).read_text().splitlines()
    except FileNotFoundError:
        return []
    steps = []
    for line in lines:
        with contextlib.suppress(ValueError, KeyError):  # the line being written
            steps.append(int(json.loads(line)["step"]))
    return steps


def kill_after(e: dict[str, Any], pod: str, steps: int) -> int:
    """SIGKILL the pod's trainer (as the OOM killer does) once it logged `steps` more
    steps; returns how many steps one signal interval holds at the pace it ran."""
    first = wait_for(lambda: len(logged_steps(e, pod)), T, f"{pod}'s first step", every=0.01)
    t0 = time.monotonic()
    wait_for(lambda: len(logged_steps(e, pod)) >= first + steps, T, f"{pod} at +{steps}", 0.01)
    elapsed = time.monotonic() - t0
    os.killpg(e["node"].pid(pod), signal.SIGKILL)
    rate = (len(logged_steps(e, pod)) - first) / max(elapsed, 1e-3)
    # A step is logged before its step() call; one more for rounding.
    return math.ceil(rate * SIGNAL_S) + 2


def truly_lost(
    e: dict[str, Any], st: dict[str, Any], job: str, attempt: int
) -> tuple[int, dict[str, Any]]:
    """What attempt `attempt` lost by its step log, and the entry that booked it (the
    next attempt's: it carries the resume step)."""
    entry = next(h for h in st["history"] if h["attempt"] == attempt + 1)
    last = max(logged_steps(e, f"{job}-a{attempt}-0"), default=-1)
    return max(0, last - max(entry.get("resumeStep", -1), 0)), entry


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
    # Saves every 100 steps (~5 s) and a signal written every 0.25 s (~5 steps): a
    # kill the moment the signal is 3-40 steps past the last commit lands well before
    # the next one. (Saves every ~1 s raced it, and so did a signal first read late in
    # the interval, on a loaded CI machine: a commit the stale signal had not yet seen
    # became the resume point, and the booking rightly found 0 lost.)
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
    node: LosableNode = env["node"]
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
    # Counted up to when the node was last known alive: a lower bound, and said so.
    truth, _ = truly_lost(env, st, "gone", 1)
    assert lost["lostBound"] == "atLeast" and "lost at least ~" in message, (lost, message)
    slack = math.ceil(float(st.get("stepRate") or 0) * SIGNAL_S) + 2  # heartbeat after the kill
    assert lost["lostSteps"] <= truth + slack, (lost, truth, message)


def test_a_crash_loop_with_fast_steps_books_what_the_step_logs_show(
    cluster: ControlPlane, env: dict[str, Any]
) -> None:
    """Three SIGKILLs (as OOM kills), the last two 40 fast steps after the resume: each
    booked figure is what the step log shows, within one signal interval's steps (the
    signal written at most once a second from step() alone booked 24 of 41)."""
    status = create_job(cluster, env, "loop", save_every=100, step_sleep=0.01)
    checkpointed(status, 100)
    slack = {}
    for attempt in (1, 2, 3):
        relaunched(status, attempt)
        slack[attempt] = kill_after(env, f"loop-a{attempt}-0", 40)
    st = relaunched(status, 4)
    for attempt in (1, 2, 3):
        truth, entry = truly_lost(env, st, "loop", attempt)
        booked = entry["lostSteps"]
        assert entry["lostEstimated"] is False and "lostBound" not in entry, entry
        assert truth - slack[attempt] <= booked <= truth, (attempt, truth, slack, entry)
        message = launched_message(env, "loop", attempt + 1)
        assert f"lost {booked} steps" in message, message


def test_an_eviction_in_start_up_books_no_lost_steps(
    cluster: ControlPlane, env: dict[str, Any]
) -> None:
    """Attempt 2 is evicted while its trainer starts (imports), before a step: it lost
    nothing, though the job has a step rate and the attempt ran for seconds (booked
    as rate x time since the resume checkpoint before)."""
    status = create_job(cluster, env, "early", save_every=100)
    checkpointed(status, 100)  # the job's step rate is known from here on
    slack = kill_after(env, "early-a1-0", 10)
    relaunched(status, 2)
    pod = "early-a2-0"
    node: LosableNode = env["node"]

    def started() -> bool:
        try:
            return node.pid(pod) > 0
        except StopIteration:
            return False

    wait_for(started, T, f"{pod}'s process", every=0.01)
    env["core"].create_namespaced_pod_eviction(
        pod, env["ns"], client.V1Eviction(metadata=client.V1ObjectMeta(name=pod))
    )
    st = relaunched(status, 3)
    assert logged_steps(env, pod) == [], "evicted after its first step: not a start-up"
    truth, entry = truly_lost(env, st, "early", 2)
    assert truth == 0 and entry["lostSteps"] == 0 and entry["lostSeconds"] == 0, entry
    assert entry["lostEstimated"] is False, entry
    assert "lost 0 steps" in launched_message(env, "early", 3)
    truth, entry = truly_lost(env, st, "early", 1)  # and the crash before it
    assert truth - slack <= entry["lostSteps"] <= truth, (truth, slack, entry)
