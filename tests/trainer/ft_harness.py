"""A fault-tolerant job on this machine: the lighthouse and replica groups as real
processes (tests/trainer/ft_script.py), their step logs read back."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from .harness import REPO, wait_for

SCRIPT = str(REPO / "tests" / "trainer" / "ft_script.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StepLogs:
    """What ft_script.py's groups wrote under `tmp`: step logs and final states (one file
    per group; a replacement appends to its group's log)."""

    def __init__(self, tmp: Path, groups: int = 2) -> None:
        self.tmp, self.groups = tmp, groups

    def rows(self, group: int) -> list[dict[str, Any]]:
        path = self.tmp / f"steps-{group}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def steps(self, group: int) -> list[dict[str, Any]]:
        return [r for r in self.rows(group) if r["event"] == "step"]

    def wait_step(self, group: int, step: int, timeout: float = 120) -> None:
        wait_for(
            lambda: any(r["step"] >= step for r in self.steps(group)),
            timeout,
            f"group {group} step {step}",
        )

    def final(self, group: int) -> dict[str, Any]:
        state: dict[str, Any] = torch.load(self.tmp / f"final-{group}.pt")
        return state


class FtJob(StepLogs):
    """`groups` replica groups and their lighthouse, logs and checkpoints under `tmp`."""

    def __init__(self, tmp: Path, groups: int = 2, min_groups: int = 1, **env: str) -> None:
        super().__init__(tmp, groups)
        self.port = free_port()
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("LAZARUS_", "TORCHFT_"))
        }
        self.env.update(
            PYTHONPATH=os.pathsep.join(
                str(REPO / p) for p in ("contract", "store", "trainer_image")
            ),
            OMP_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
            LAZARUS_FT_GROUPS=str(groups),
            LAZARUS_FT_MIN_GROUPS=str(min_groups),
            LAZARUS_FT_LIGHTHOUSE_PORT=str(self.port),
            LAZARUS_FT_HEARTBEAT_TIMEOUT_MS="1000",
            LAZARUS_FT_LIGHTHOUSE=f"http://localhost:{self.port}",
            LAZARUS_CHECKPOINT_URI=str(tmp / "ckpt"),
            LAZARUS_SAVE_EVERY_STEPS="50",
            TORCHFT_QUORUM_RETRIES="10",
        )
        self.env.update(env)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.lighthouse: subprocess.Popen[bytes] | None = None

    def _start(self, args: list[str], log: str, **env: str) -> subprocess.Popen[bytes]:
        with (self.tmp / log).open("ab") as out:
            proc = subprocess.Popen(
                args, env={**self.env, **env}, stdout=out, stderr=out, cwd=self.tmp
            )
        self.procs.append(proc)
        return proc

    def start_lighthouse(self) -> None:
        self.lighthouse = self._start(
            [sys.executable, "-m", "lazarus_trainer.lighthouse"], "lh.log"
        )
        wait_for(
            lambda: "lighthouse serving" in (self.tmp / "lh.log").read_text(), 60, "lighthouse"
        )

    def start_group(
        self, group: int, steps: int, pause: float, argv: list[str] | None = None, **env: str
    ) -> subprocess.Popen[bytes]:
        """ft_script.py as group `group`, or `argv` (another trainer) in its place."""
        extra = {
            "LAZARUS_FT_REPLICA_GROUP": str(group),
            "LAZARUS_TERMINATION_LOG": str(self.tmp / f"term-{group}.json"),
            **env,
        }
        args = argv or [sys.executable, SCRIPT, str(self.tmp), str(steps), str(pause)]
        return self._start(args, f"g{group}.log", **extra)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()


def stalls(rows: list[dict[str, Any]]) -> list[float]:
    """Gaps between consecutive committed steps, longest first."""
    times = [r["t"] for r in rows if r["event"] == "step"]
    return sorted((b - a for a, b in itertools.pairwise(times)), reverse=True)


def states_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Model weights and every optimizer state tensor are torch.equal."""
    if a["model"].keys() != b["model"].keys():
        return False
    if not all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]):
        return False
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    if sa.keys() != sb.keys():
        return False
    for k in sa:
        for name, v in sa[k].items():
            w = sb[k][name]
            same = torch.equal(v, w) if isinstance(v, torch.Tensor) else v == w
            if not same:
                return False
    return True


def check_samples(logs: StepLogs, unlogged: int = 0, batch: int = 8) -> int:
    """Every committed step's ids, over all groups and all their processes: each step
    takes the next participants x `batch` samples of the global order, shared among its
    participants, none replayed or skipped; returns how many. Up to `unlogged` steps may
    lack a participant's row: a group killed after the step committed and before it
    wrote the line (its samples were trained on; nobody wrote them down)."""
    by_step: dict[int, list[dict[str, Any]]] = {}
    for group in range(logs.groups):
        for row in logs.steps(group):
            by_step.setdefault(row["step"], []).append(row)
    order, pos, short = global_order(), 0, []
    for step in sorted(by_step):
        rows = [r for r in by_step[step] if r["ids"]]  # a healing group's draw does not count
        n = max(r["n"] for r in by_step[step])
        ids = [i for r in rows for i in r["ids"]]
        assert len(ids) == len(set(ids)), f"step {step}: a sample was replayed"
        assert set(ids) <= set(order[pos : pos + n * batch]), f"step {step}: out of order"
        if len(rows) < n:
            short.append(step)
        pos += n * batch
    assert len(short) <= unlogged, f"samples skipped: steps {short} lack a participant's row"
    return pos


def contiguous_to_the_end(logs: StepLogs, group: int, last: int) -> bool:
    """Every step from the group's first to `last`, each once (a group that joined the
    first quorum late took the state of the step it joined at from its peer)."""
    steps = [r["step"] for r in logs.steps(group)]
    return steps == list(range(steps[0], last + 1))


def global_order(n: int = 16384, seed: int = 0, epoch: int = 0) -> list[int]:
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()
