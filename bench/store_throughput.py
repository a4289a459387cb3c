"""Save and load a checkpoint of several files to MinIO on loopback: lazarus_store vs
boto3's own managed transfer (upload_file/download_file) of the same bytes, same run.

    hack/python -m bench.store_throughput [--gib 1 --files 8 --reps 3]

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
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from bench.minio import PASSWORD, USER, given, minio, minio_binary
from lazarus_devstack.bench_harness import interleaved, ratios, timed
from lazarus_store import open_store

MiB = 1 << 20
BUCKET = "bench"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    binary = None if args.endpoint else minio_binary(args.minio)
    total = int(args.gib * (1 << 30))
    sizes = [total // args.files] * args.files
    sizes[-1] += total - sum(sizes)
    work = Path(tempfile.mkdtemp(prefix="lazarus-bench-"))
    try:
        src, dst = work / "src", work / "dst"
        dst.mkdir()
        files = write_files(src, sizes)
        (work / "minio").mkdir()
        ctx = given(args.endpoint) if args.endpoint else minio(str(binary), work / "minio")
        with ctx as url:
            results = run(url, files, dst, args.part_mib * MiB, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = report(results, total, args)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


def write_files(src: Path, sizes: list[int]) -> list[Path]:
    """Incompressible shards of the given sizes, as trained weights are."""
    src.mkdir()
    for i, n in enumerate(sizes):
        with (src / f"shard-{i:02d}.bin").open("wb") as f:
            for off in range(0, n, 64 * MiB):
                f.write(os.urandom(min(64 * MiB, n - off)))
    return sorted(src.iterdir())


def report(results: dict[str, list[float]], total: int, args: Any) -> dict[str, Any]:
    """Print the table; return the JSON summary."""
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
        per_rep = ratios(base_t, ours_t)
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
    return summary


@dataclass
class Sides:
    """The two ways of moving the same files, each a (save, load) pair per rep."""

    files: list[Path]
    dst: Path
    store: Any
    client: Any
    tc: TransferConfig
    pause: float

    def ours(self, rep: int) -> tuple[float, float]:
        w = self.store.begin(step=rep, attempt=1)

        def save() -> None:
            for f in self.files:
                w.put_file(f.name, f)
            w.commit(reason="periodic")

        t = timed(save)
        time.sleep(self.pause)
        m = self.store.read_manifest(w.name)

        def load() -> None:
            for f in self.files:
                self.store.download_file(w.name, f.name, self.dst / f.name, manifest=m)

        return t, timed(load)

    def boto3(self, rep: int) -> tuple[float, float]:
        def save() -> None:
            for f in self.files:
                self.client.upload_file(
                    str(f), BUCKET, f"boto3/{rep}/{f.name}", Config=self.tc,
                    ExtraArgs={"ChecksumAlgorithm": "CRC32C"},
                )  # fmt: skip

        def load() -> None:
            for f in self.files:
                self.client.download_file(BUCKET, f"boto3/{rep}/{f.name}",
                                          str(self.dst / f.name), Config=self.tc)  # fmt: skip

        t = timed(save)
        time.sleep(self.pause)
        return t, timed(load)


def sides(url: str, files: list[Path], dst: Path, part: int, args: Any) -> Sides:
    user = os.environ.get("AWS_ACCESS_KEY_ID", USER) if args.endpoint else USER
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", PASSWORD) if args.endpoint else PASSWORD
    client = boto3.client(
        "s3", endpoint_url=url, aws_access_key_id=user, aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=args.threads + 2),
    )  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    tc = TransferConfig(
        multipart_threshold=part, multipart_chunksize=part, max_concurrency=args.threads,
        use_threads=True,
    )  # fmt: skip
    store = open_store(
        f"s3://{BUCKET}/ours", endpoint_url=url, addressing_style="path",
        aws_access_key_id=user, aws_secret_access_key=secret, region="us-east-1",
        part_size=part, concurrency=args.threads,
    )  # fmt: skip
    return Sides(files, dst, store, client, tc, args.pause)


def run(url: str, files: list[Path], dst: Path, part: int, args: Any) -> dict[str, list[float]]:
    both = sides(url, files, dst, part, args)
    side: dict[str, Callable[[int], tuple[float, float]]] = {
        "ours": both.ours,
        "boto3": both.boto3,
    }
    results: dict[str, list[float]] = {f"{w}_{op}": [] for op in ("save", "load") for w in side}
    # Alternate who goes first, so neither always gets the warmer machine.
    for slot in interleaved(list(side), args.reps):
        t, tl = side[slot.name](slot.r)
        for f in files:  # both sides really moved the same bytes
            if (dst / f.name).stat().st_size != f.stat().st_size:
                raise SystemExit(f"{slot.name}: {f.name} came back with the wrong size")
        results[f"{slot.name}_save"].append(t)
        results[f"{slot.name}_load"].append(tl)
        print(f"rep {slot.r} {slot.name:6s} save {t:6.2f}s load {tl:6.2f}s", file=sys.stderr)
        time.sleep(args.pause)
    return results


if __name__ == "__main__":
    sys.exit(main())
