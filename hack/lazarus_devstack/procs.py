"""Start, watch and stop the stack's processes.

Each process runs in its own session (process group), logs to a file in the run
directory, and is stopped with SIGTERM then SIGKILL, so `down` leaves nothing
behind even if a child forked helpers.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from .errors import DevstackError

PR_SET_PDEATHSIG = 1


def _ephemeral_low() -> int:
    """The bottom of the kernel's range for outgoing connections' local ports."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free on 127.0.0.1 now, from below the ephemeral range.

    A port the kernel hands out for bind(0) comes from the range it also gives
    outgoing connections: while a stack starts (etcd, the apiserver and the
    controllers open many), one of them can take the port before the server that
    was meant to get it binds. Ports below that range are never taken that way;
    random picks keep concurrent stacks apart."""
    low, rng = _ephemeral_low(), random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(10000, low) if low > 11000 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            got: int = s.getsockname()[1]
            return got
    raise DevstackError(f"no free port on 127.0.0.1 between 10000 and {low}")


def check_port_free(port: int, what: str) -> None:
    """Fail clearly when `port` is taken, instead of letting a server die on bind."""
    with socket.socket() as s:
        # As the servers themselves bind: TIME_WAIT leftovers of a stopped
        # stack do not count as busy, a live listener does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as err:
            raise DevstackError(
                f"port {port} on 127.0.0.1, wanted for {what}, is busy ({err.strerror}): "
                f"stop whatever uses it (`ss -ltnp 'sport = :{port}'` shows it) "
                f"or choose another port"
            ) from None


def alive(pid: int) -> bool:
    """True when `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGKILL us when the process that started us dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def start(
    name: str,
    argv: list[str],
    run_dir: Path,
    env: dict[str, str] | None = None,
    die_with_parent: bool = False,
) -> int:
    """Start `argv` in the background; return its pid. Output goes to <run_dir>/logs/<name>.log.

    `die_with_parent` ties the process's life to ours: tests use it so that a
    killed test run cannot leave a control plane behind.
    """
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = (logs / f"{name}.log").open("ab")
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=run_dir,
            preexec_fn=_die_with_parent if die_with_parent else None,  # noqa: PLW1509
        )
    except OSError as err:
        raise DevstackError(f"could not start {name} ({argv[0]}): {err}") from None
    finally:
        log.close()
    return proc.pid


def log_tail(run_dir: Path, name: str, lines: int = 15) -> str:
    path = run_dir / "logs" / f"{name}.log"
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def wait_until(
    name: str,
    pid: int,
    ready: Callable[[], bool],
    run_dir: Path,
    timeout: float,
) -> None:
    """Poll `ready` until true; fail with the log's tail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            raise DevstackError(
                f"{name} exited during start-up; last lines of its log "
                f"({run_dir / 'logs' / (name + '.log')}):\n{log_tail(run_dir, name)}"
            )
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.1)
    raise DevstackError(
        f"{name} was not ready after {timeout:.0f}s; "
        f"last lines of its log:\n{log_tail(run_dir, name)}"
    )


def stop(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group of `pid`, then SIGKILL whatever is left after `timeout`."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not alive(pid) and not _group_alive(pid):
                return
            time.sleep(0.05)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) also succeeds for zombies; look for a live member.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False
