"""What one checkpoint costs training: Lazarus against its peers and the floors, same run.

    hack/python -m bench.save_datapath --rounds 5 --idle 3 --json out.json

Every method saves the same model + AdamW state (TinyGPT, seeded) to the same MinIO
(built by hack/minio/build.sh, started here on loopback): Lazarus async and sync saves;
`torch.save` to a file + boto3 `upload_file`; HF Trainer's `_save_checkpoint` + boto3
upload of its files; Accelerate's `save_state` + upload; `torch.distributed.checkpoint.
async_save` to a local directory + upload in the background. Floors, measured like for
like in the same rounds: a copy of every tensor into buffers kept from the previous round
(what Lazarus's capture is), the disk's write+fsync of the same bytes, and the store's raw
write of the same bytes (one buffer, `put_bytes` + commit).

Methods run interleaved round by round (the order rotates) after a warm-up round that is
discarded, each after an idle gap (this VM hands freed memory back within seconds) and a
few baseline training steps. For a background save, real training steps run until it is
durable; each step started before it ended counts whole. Columns:

- blocked: how long the training loop waited for the save call;
- durable: from the call until the checkpoint is committed in the store;
- slowdown: a training step during the background save / the baseline step (median);
- lost: blocked + the extra time of the steps run during the background save.

Ratios are taken within a round (same machine state), then summarised over rounds. The
methods are in bench/datapath_methods.py; the rounds, gaps and summaries are
lazarus_devstack.bench_harness's.
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
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.datapath_methods import Background, Methods, training
from bench.minio import PASSWORD, USER, minio, minio_binary
from lazarus_devstack.bench_harness import interleaved, ratios, rest, spread, timed


@dataclass
class Row:
    method: str
    blocked: list[float] = field(default_factory=list)
    durable: list[float] = field(default_factory=list)
    slowdown: list[float] = field(default_factory=list)
    lost: list[float] = field(default_factory=list)
    steps_during: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Sample:
    """One save of one method: see the module's columns."""

    blocked: float
    durable: float
    slowdown: float | None
    lost: float
    steps_during: int


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5, help="measured rounds (plus one warm-up)")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds of rest before each method")
    ap.add_argument("--baseline-steps", type=int, default=3)
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--save-threads", type=int, default=2, help="Lazarus's background I/O")
    ap.add_argument("--save-nice", type=int, default=10)
    ap.add_argument("--methods", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--minio", help="MinIO binary (default: hack/minio/build.sh)")
    ap.add_argument(
        "--minio-cpus",
        help="pin MinIO to these CPUs (e.g. 1): off training's core, as a remote S3 server is",
    )
    ap.add_argument("--endpoint", help="an S3 endpoint already running (e.g. moto, to smoke-test)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)

    work = Path(tempfile.mkdtemp(prefix="lazarus-datapath-"))
    (work / "minio").mkdir()
    try:
        if args.endpoint:
            return run(args, args.endpoint, work)
        with minio(minio_binary(args.minio), work / "minio", args.minio_cpus) as url:
            return run(args, url, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: Any, url: str, work: Path) -> int:
    os.environ.update(
        LAZARUS_S3_ENDPOINT=url,
        LAZARUS_S3_ADDRESSING_STYLE="path",
        AWS_ACCESS_KEY_ID=USER,
        AWS_SECRET_ACCESS_KEY=PASSWORD,
        AWS_DEFAULT_REGION="us-east-1",
    )
    t = training(args, work)
    m = Methods(args, url, work, t)
    methods = m.table()
    if args.methods:
        wanted = [name.strip() for name in args.methods.split(",")]
        methods = {k: v for k, v in methods.items() if k in wanted}
    print(
        f"state {m.nbytes / 1e6:.0f} MB (TinyGPT d{args.d_model} x{args.layers} + AdamW), "
        f"torch threads {args.torch_threads}, Lazarus save threads {args.save_threads} "
        f"nice {args.save_nice}, {args.rounds} rounds + warm-up, idle {args.idle}s, "
        f"MinIO {url} on CPUs {args.minio_cpus or 'all'}, {os.cpu_count()} CPUs",
        flush=True,
    )
    rows = measure_rounds(args, methods, t.step)
    found = report(args, rows)
    if args.json:
        out = {
            "state_bytes": m.nbytes,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "cpus": os.cpu_count(),
            "rows": {n: vars(r) for n, r in rows.items()},
            "ratios": found,
        }
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    m.close()
    return 0


def measure(
    args: Any, save: Callable[[], Background | None], train_step: Callable[[], None]
) -> Sample:
    """One save after an idle gap and a few baseline steps; training steps run until a
    background save is durable, each step started before it ended counting whole."""
    rest(args.idle)
    base = statistics.median(timed(train_step) for _ in range(args.baseline_steps))
    t0 = time.perf_counter()
    bg = save()
    t1 = time.perf_counter()
    blocked, durable, during = t1 - t0, t1 - t0, []
    if isinstance(bg, Background):
        while (end := bg.done()) is None:
            during.append(timed(train_step))
        durable = end - t0
        if durable < blocked:  # a sync save that was durable before it returned
            during = []
    slowdown = statistics.median(during) / base if during else None
    lost = blocked + sum(max(0.0, d - base) for d in during)
    return Sample(blocked, durable, slowdown, lost, len(during))


def measure_rounds(
    args: Any,
    methods: dict[str, Callable[[], Background | None]],
    train_step: Callable[[], None],
) -> dict[str, Row]:
    """Every method once per round, in rotated order, after one discarded warm-up round."""
    rows = {n: Row(n) for n in methods}
    for slot in interleaved(list(methods), args.rounds, warmup=1):
        s = measure(args, methods[slot.name], train_step)
        sd = f"{s.slowdown:.2f}x over {s.steps_during} steps" if s.slowdown else "-"
        print(f"{slot.tag:8s} {slot.name:32s} blocked {s.blocked:6.3f}s durable "
              f"{s.durable:6.3f}s slowdown {sd:18s} lost {s.lost:6.3f}s", flush=True)  # fmt: skip
        if slot.warmup:
            continue
        row = rows[slot.name]
        row.blocked.append(s.blocked)
        row.durable.append(s.durable)
        row.lost.append(s.lost)
        row.steps_during.append(s.steps_during)
        if s.slowdown is not None:
            row.slowdown.append(s.slowdown)
    return rows


def report(args: Any, rows: dict[str, Row]) -> dict[str, list[float]]:
    """Print the table and the ratios within a round; return the ratios."""
    print(f"\n{'method':34s} {'blocked s':>22s} {'durable s':>22s} {'step slowdown':>22s} "
          f"{'lost per ckpt s':>22s}   median (min-max) of {args.rounds}")  # fmt: skip
    for n, row in rows.items():
        print(f"{n:34s} {spread(row.blocked):>22s} {spread(row.durable):>22s} "
              f"{spread(row.slowdown):>22s} {spread(row.lost):>22s}")  # fmt: skip
    found: dict[str, list[float]] = {}

    def ratio(label: str, num: list[float], den: list[float]) -> None:
        if xs := ratios(num, den):
            found[label] = xs

    copy, store_raw = "floor: copy into reused buffers", "floor: store raw write (S3)"
    for n in ("lazarus async", "DCP async_save + boto3"):
        if n in rows and copy in rows:
            ratio(f"{n}: lost / copy floor (target <= 3)", rows[n].lost, rows[copy].blocked)
            ratio(f"{n}: blocked / copy floor", rows[n].blocked, rows[copy].blocked)
    for n in ("lazarus async", "lazarus sync"):
        if n in rows and store_raw in rows:
            ratio(f"{n}: durable / store raw write (target <= 1.2)", rows[n].durable,
                  rows[store_raw].durable)  # fmt: skip
    print("\nratios within a round, median (min-max):")
    for label, xs in found.items():
        print(f"  {label:58s} {spread(xs)}")
    return found


if __name__ == "__main__":
    sys.exit(main())
