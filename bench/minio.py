"""MinIO on loopback for the storage benchmarks (bench.store_throughput,
bench.save_datapath): built from its Go module by hack/minio/build.sh (cached)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USER, PASSWORD = "lazarusbench", "lazarusbench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def minio_binary(given: str | None) -> str:
    """`given`, else the binary hack/minio/build.sh builds (or finds cached)."""
    if given:
        return given
    return subprocess.run(
        [str(REPO / "hack/minio/build.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()


@contextmanager
def minio(binary: str, data_dir: Path, cpus: str | None = None) -> Iterator[str]:
    """MinIO on loopback; `cpus` (a taskset list, "1") pins every thread it starts."""
    port, console = free_port(), free_port()
    env = {**os.environ, "MINIO_ROOT_USER": USER, "MINIO_ROOT_PASSWORD": PASSWORD}
    log = (data_dir.parent / "minio.log").open("wb")
    proc = subprocess.Popen(
        [*(["taskset", "-c", cpus] if cpus else []),
         binary, "server", str(data_dir), "--quiet", "--address", f"127.0.0.1:{port}",
         "--console-address", f"127.0.0.1:{console}"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/minio/health/live", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"MinIO did not start; see {log.name}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


@contextmanager
def given(url: str) -> Iterator[str]:
    """An endpoint already running, in place of `minio(...)`."""
    yield url
