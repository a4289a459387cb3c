"""The operator process as bench.operator_scale watches it: peak RSS and CPU seconds from
/proc, and py-spy's sampled stacks."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path


class ProcWatch:
    """Peak RSS and CPU seconds of one process, sampled from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, clock ticks

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.peak_kb = max(self.peak_kb, self.rss_kb())
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()


def start_profile(path: Path, pid: int) -> subprocess.Popen[bytes]:
    spy = Path(sys.executable).parent / "py-spy"
    cmd = [str(spy), "record", "--pid", str(pid), "--rate", "20", "--format", "raw"]
    return subprocess.Popen(
        [*cmd, "--nonblocking", "--threads", "-o", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profile(spy: subprocess.Popen[bytes], path: Path, top: int = 15) -> dict[str, float]:
    """Stop py-spy; the share of samples in which each function was on the stack."""
    spy.send_signal(signal.SIGINT)
    spy.wait(60)
    total, inclusive = 0, Counter[str]()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        frames = {re.sub(r" \(.*?:\d+\)$", "", f) for f in stack.split(";")[1:]}
        for f in frames:
            inclusive[f] += int(n)
    return {f: round(100 * c / max(1, total), 1) for f, c in inclusive.most_common(top)}
