"""Save and load a checkpoint of several files to MinIO on loopback: lazarus_store vs
boto3's own managed transfer (upload_file/download_file) of the same bytes, same run.

    ~/.cache/lazarus/venv/bin/python bench/store_throughput.py [--gib 1 --files 8 --reps 3]

MinIO is built from its Go module by hack/minio/build.sh (cached). Both sides send
CRC32C checksums (ours streamed per part plus the full-object value; boto3 with
ChecksumAlgorithm=CRC32C), use the same part size and the same number of threads.
Repetitions alternate between the two and pause in between (see design notes: this
machine returns freed memory to the host within seconds, which flatters back-to-back runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from lazarus_store import open_store

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20
USER, PASSWORD = "lazarusbench", "lazarusbench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gib", type=float, default=1.0, help="checkpoint size in GiB")
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--pause", type=float, default=5.0, help="seconds between runs")
    p.add_argument("--part-mib", type=int, default=16)
    p.add_argument("--threads", type=int, default=10)
    p.add_argument("--minio", help="MinIO binary (default: hack/minio/build.sh)")
    p.add_argument("--endpoint", help="use this running S3 endpoint instead of starting MinIO")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    binary = args.minio
    if not binary and not args.endpoint:
        binary = subprocess.run(
            [str(REPO / "hack/minio/build.sh")], check=True, capture_output=True, text=True
        ).stdout.strip()
    part = args.part_mib * MiB
    total = int(args.gib * (1 << 30))
    sizes = [total // args.files] * args.files
    sizes[-1] += total - sum(sizes)

    work = Path(tempfile.mkdtemp(prefix="lazarus-bench-"))
    try:
        src, dst = work / "src", work / "dst"
        src.mkdir()
        dst.mkdir()
        for i, n in enumerate(sizes):
            with (src / f"shard-{i:02d}.bin").open("wb") as f:
                for off in range(0, n, 64 * MiB):
                    f.write(os.urandom(min(64 * MiB, n - off)))
        files = sorted(src.iterdir())
        (work / "minio").mkdir()
        ctx = minio(binary, work / "minio") if not args.endpoint else _given(args.endpoint)
        with ctx as url:
            results = run(url, files, dst, part, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mb = total / 1e6
    where = f"endpoint {args.endpoint}" if args.endpoint else "MinIO on loopback"
    summary: dict[str, Any] = {"bytes": total, "files": args.files, "part_mib": args.part_mib,
                               "threads": args.threads, "reps": args.reps}  # fmt: skip
    print(f"\n{total / (1 << 30):.2f} GiB in {args.files} files, part {args.part_mib} MiB,"
          f" {args.threads} threads, median (min-max) of {args.reps} alternating reps,"
          f" {where}")  # fmt: skip
    for op in ("save", "load"):
        ours_t, base_t = results[f"ours_{op}"], results[f"boto3_{op}"]
        ours, base = statistics.median(ours_t), statistics.median(base_t)
        # Speed ratio per rep (the two ran back to back, in alternating order): the spread
        # says whether one side is faster or the reps just disagree.
        per_rep = [b / o for o, b in zip(ours_t, base_t, strict=True)]
        ratio = statistics.median(per_rep)
        summary[op] = {
            "ours_MBps": round(mb / ours, 1), "boto3_MBps": round(mb / base, 1),
            "ours_MBps_all": [round(mb / t, 1) for t in ours_t],
            "boto3_MBps_all": [round(mb / t, 1) for t in base_t],
            "ratio_median": round(ratio, 3), "ratio_all": [round(r, 3) for r in per_rep],
        }  # fmt: skip
        print(f"  {op}: lazarus_store {mb / ours:7.1f} MB/s ({mb / max(ours_t):.1f}-"
              f"{mb / min(ours_t):.1f})   boto3 managed {mb / base:7.1f} MB/s "
              f"({mb / max(base_t):.1f}-{mb / min(base_t):.1f})   ours/boto3 per rep: median "
              f"{ratio:.2f}, min {min(per_rep):.2f}, max {max(per_rep):.2f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


def run(url: str, files: list[Path], dst: Path, part: int, args: Any) -> dict[str, list[float]]:
    user = os.environ.get("AWS_ACCESS_KEY_ID", USER) if args.endpoint else USER
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", PASSWORD) if args.endpoint else PASSWORD
    client = boto3.client(
        "s3", endpoint_url=url, aws_access_key_id=user, aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=args.threads + 2),
    )  # fmt: skip
    bucket = "bench"
    client.create_bucket(Bucket=bucket)
    tc = TransferConfig(
        multipart_threshold=part, multipart_chunksize=part, max_concurrency=args.threads,
        use_threads=True,
    )  # fmt: skip
    store = open_store(
        f"s3://{bucket}/ours", endpoint_url=url, addressing_style="path",
        aws_access_key_id=user, aws_secret_access_key=secret, region="us-east-1",
        part_size=part, concurrency=args.threads,
    )  # fmt: skip
    keys = ("ours_save", "boto3_save", "ours_load", "boto3_load")
    results: dict[str, list[float]] = {k: [] for k in keys}

    for rep in range(args.reps):
        # Alternate who goes first, so neither always gets the warmer machine.
        order = ["ours", "boto3"] if rep % 2 == 0 else ["boto3", "ours"]
        for who in order:
            if who == "ours":
                w = store.begin(step=rep, attempt=1)

                def save(w: Any = w) -> None:
                    for f in files:
                        w.put_file(f.name, f)
                    w.commit(reason="periodic")

                t = timed(save)
                name = w.name
                time.sleep(args.pause)
                m = store.read_manifest(name)

                def load(name: str = name, m: Any = m) -> None:
                    for f in files:
                        store.download_file(name, f.name, dst / f.name, manifest=m)

                tl = timed(load)
            else:

                def bsave(rep: int = rep) -> None:
                    for f in files:
                        client.upload_file(
                            str(f), bucket, f"boto3/{rep}/{f.name}", Config=tc,
                            ExtraArgs={"ChecksumAlgorithm": "CRC32C"},
                        )  # fmt: skip

                def bload(rep: int = rep) -> None:
                    for f in files:
                        client.download_file(bucket, f"boto3/{rep}/{f.name}", str(dst / f.name),
                                             Config=tc)  # fmt: skip

                t = timed(bsave)
                time.sleep(args.pause)
                tl = timed(bload)
            for f in files:  # both sides really moved the same bytes
                if (dst / f.name).stat().st_size != f.stat().st_size:
                    raise SystemExit(f"{who}: {f.name} came back with the wrong size")
            results[f"{who}_save"].append(t)
            results[f"{who}_load"].append(tl)
            print(f"rep {rep} {who:6s} save {t:6.2f}s load {tl:6.2f}s", file=sys.stderr)
            time.sleep(args.pause)
    return results


if __name__ == "__main__":
    sys.exit(main())
