"""What fault-tolerant replica groups cost and change, on this machine
(docs/fault-tolerance.md): `python -m tests.trainer.ft_measure` (not collected).

- per-step cost: the same loop (tests/trainer/ft_script.py, no pause) plain in one
  process, as one replica group alone, and as two groups;
- exactness: two groups undisturbed against two groups of which one is SIGKILLed at step
  100 and replaced: the survivor's training loss per 50 steps and the final model's loss
  on the whole data set;
- the replacement's join: its process start to its first committed step.
"""

from __future__ import annotations

import itertools
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .ft_harness import SCRIPT, FtJob

STEPS = 600


def step_ms(job: FtJob, group: int = 0) -> float:
    times = [r["t"] for r in job.steps(group)][50:]  # past the first quorum and warm-up
    return 1000 * float(statistics.median(b - a for a, b in itertools.pairwise(times)))


def plain(tmp: Path) -> float:
    job = FtJob(tmp)
    env = {k: v for k, v in job.env.items() if not k.startswith("LAZARUS_FT_")}
    env["LAZARUS_TERMINATION_LOG"] = str(tmp / "term.json")
    subprocess.run(
        [sys.executable, SCRIPT, str(tmp), str(STEPS), "0"],
        env=env,
        check=True,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return step_ms(job)


def groups(tmp: Path, n: int, kill: bool = False) -> FtJob:
    job = FtJob(tmp, groups=n, min_groups=1)
    try:
        job.start_lighthouse()
        procs = [job.start_group(g, STEPS, 0.0 if not kill else 0.02) for g in range(n)]
        if kill:
            job.wait_step(1, 100)
            procs[1].send_signal(signal.SIGKILL)
            procs[1].wait()
            procs[1] = job.start_group(1, STEPS, 0.02, LAZARUS_FT_REPLACEMENT="1")
        codes = [p.wait(600) for p in procs]
        assert codes == [0] * n, f"exit codes {codes}, logs in {tmp}"
    finally:
        job.stop()
    return job


def window_losses(job: FtJob) -> list[float]:
    losses = [r["loss"] for r in job.steps(0)]
    return [statistics.mean(losses[i : i + 50]) for i in range(0, len(losses) - 49, 50)]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ft-measure-") as d:
        root = Path(d)
        for name in ("plain", "one", "two", "calm", "calm2", "hit"):
            (root / name).mkdir()
        if "exactness" not in sys.argv:
            print(f"per step, median: plain {plain(root / 'plain'):.1f} ms", flush=True)
            print(f"  one group {step_ms(groups(root / 'one', 1)):.1f} ms", flush=True)
            print(f"  two groups {step_ms(groups(root / 'two', 2)):.1f} ms", flush=True)
        runs = {
            "undisturbed": groups(root / "calm", 2),
            "undisturbed again": groups(root / "calm2", 2),
            "one group killed at 100": (hit := groups(root / "hit", 2, kill=True)),
        }
        for name, job in runs.items():
            end = next(r for r in job.rows(0) if r["event"] == "end")
            losses = " ".join(f"{v:.4f}" for v in window_losses(job))
            print(f"{name}: loss per 50 steps {losses}; final on all data {end['eval_loss']:.5f}")
        rows = [r for r in hit.rows(1) if r["event"] in ("start", "step")]
        pid = rows[-1]["pid"]
        start = next(r["t"] for r in rows if r["pid"] == pid and r["event"] == "start")
        first = next(r["t"] for r in rows if r["pid"] == pid and r["event"] == "step")
        print(f"replacement: Lazarus up to its first committed step {first - start:.2f} s")


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    print(f"took {time.monotonic() - t0:.0f} s")
