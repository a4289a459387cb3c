"""What one checkpoint costs training: Lazarus against its peers and the floors, same run.

    ~/.cache/lazarus/venv/bin/python bench/save_datapath.py --rounds 5 --idle 3 --json out.json

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

Ratios are taken within a round (same machine state), then summarised over rounds.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import torch
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from torch import nn

from lazarus_store import open_store
from lazarus_trainer.api import Lazarus
from lazarus_trainer.config import LazarusConfig
from lazarus_trainer.reference.model import TinyGPT
from lazarus_trainer.snapshot import tensor_bytes

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
_throughput: Any = importlib.import_module("store_throughput")  # its MinIO starter
minio, USER, PASSWORD = _throughput.minio, _throughput.USER, _throughput.PASSWORD
MiB = 1 << 20
BUCKET = "bench"


class WithLoss(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.inner(input_ids)
        return {"loss": nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())}


@dataclass
class Background:
    """A save still running: `done()` says when it is durable, and when that was."""

    done: Callable[[], float | None]  # perf_counter() of durability, None while running


@dataclass
class Row:
    method: str
    blocked: list[float] = field(default_factory=list)
    durable: list[float] = field(default_factory=list)
    slowdown: list[float] = field(default_factory=list)
    lost: list[float] = field(default_factory=list)
    steps_during: list[int] = field(default_factory=list)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def spread(xs: list[float]) -> str:
    if not xs:
        return "n/a"
    return f"{statistics.median(xs):7.3f} ({min(xs):.3f}-{max(xs):.3f})"


def main() -> int:
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
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)

    work = Path(tempfile.mkdtemp(prefix="lazarus-datapath-"))
    (work / "minio").mkdir()
    try:
        if args.endpoint:
            return run(args, args.endpoint, work)
        binary = (
            args.minio
            or subprocess.run(
                [str(REPO / "hack/minio/build.sh")], check=True, capture_output=True, text=True
            ).stdout.strip()
        )
        with minio(binary, work / "minio", args.minio_cpus) as url:
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
    client = boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=16),
    )  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    tc = TransferConfig(multipart_chunksize=16 * MiB, max_concurrency=8)

    def upload_dir(d: Path, prefix: str) -> None:
        for f in sorted(p for p in d.rglob("*") if p.is_file()):
            key = f"{prefix}/{f.relative_to(d).as_posix()}"
            client.upload_file(str(f), BUCKET, key, Config=tc,
                               ExtraArgs={"ChecksumAlgorithm": "CRC32C"})  # fmt: skip

    from accelerate import Accelerator
    from transformers import Trainer, TrainingArguments

    vocab = 64
    model = WithLoss(
        TinyGPT(vocab, d_model=args.d_model, n_layers=args.layers, n_heads=8, max_len=args.seq)
    )
    data = [
        {
            "input_ids": torch.randint(0, vocab, (args.seq,)),
            "labels": torch.randint(0, vocab, (args.seq,)),
        }
        for _ in range(args.batch * 2)
    ]
    targs = TrainingArguments(
        output_dir=str(work / "hf"), max_steps=1, per_device_train_batch_size=args.batch,
        save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
        save_only_model=False,
    )  # fmt: skip
    trainer = Trainer(model=model, args=targs, train_dataset=data)
    trainer.train()  # one step: the optimizer holds its AdamW state
    optimizer, scheduler = trainer.optimizer, trainer.lr_scheduler
    accelerator = Accelerator(cpu=True)
    accelerator.prepare(model, optimizer)  # save_state saves what it prepared
    batch = {
        "input_ids": torch.stack([d["input_ids"] for d in data[: args.batch]]),
        "labels": torch.stack([d["labels"] for d in data[: args.batch]]),
    }

    def train_step() -> None:
        out = model(**batch)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    def state() -> dict[str, Any]:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict()}

    nbytes = tensor_bytes(state())
    counter = iter(range(1, 1_000_000))

    def lazarus(async_save: bool, attempt: int) -> Lazarus:
        cfg = LazarusConfig(
            checkpoint_uri=f"s3://{BUCKET}/lazarus-{attempt}", attempt=attempt,
            async_save=async_save, handle_signals=False, save_at_end=False,
            save_threads=args.save_threads, save_nice=args.save_nice, keep_latest=2,
        )  # fmt: skip
        lz = Lazarus(cfg)
        lz.register(model=model, optimizer=optimizer, scheduler=scheduler)
        return lz

    lz_async, lz_sync = lazarus(True, 1), lazarus(False, 2)

    def lazarus_async() -> Background:
        lz_async.run.progress.step = next(counter)
        t0 = time.perf_counter()
        lz_async.pipeline.save("periodic", sync=False)
        end: list[float] = []

        def done() -> float | None:
            if end:
                return end[0]
            out = lz_async.pipeline.collect(0.0)
            if out is None:
                return None
            if out.name is None:
                raise SystemExit(f"lazarus async save failed: {out.detail}")
            # The manifest's durableSeconds run from the capture to the commit: exact, not
            # the step boundary at which training learnt of it (nor the pruning after it).
            end.append(t0 + durable_seconds(lz_async, out.name))
            return end[0]

        return Background(done)

    def durable_seconds(lz: Lazarus, name: str) -> float:
        timings = lz.storage.read_manifest(name).extra["lazarusTrainer"]["timings"]
        return float(timings["durableSeconds"])

    def lazarus_sync() -> Background:
        lz_sync.run.progress.step = next(counter)
        t0 = time.perf_counter()
        out = lz_sync.pipeline.save("periodic", sync=True)
        if out is None or out.name is None:
            raise SystemExit(f"lazarus sync save failed: {out}")
        end = t0 + durable_seconds(lz_sync, out.name)  # committed before retention ran
        return Background(lambda: end)

    def torch_save_boto3() -> None:
        n = next(counter)
        path = work / "torch.pt"
        torch.save(state(), path)
        client.upload_file(str(path), BUCKET, f"torch/{n}/state.pt", Config=tc,
                           ExtraArgs={"ChecksumAlgorithm": "CRC32C"})  # fmt: skip

    def hf_save_boto3() -> None:
        n = next(counter)
        trainer.state.global_step = n
        trainer._save_checkpoint(trainer.model, trial=None)
        d = Path(targs.output_dir) / f"checkpoint-{n}"
        upload_dir(d, f"hf/{n}")
        shutil.rmtree(d)

    def accelerate_boto3() -> None:
        n = next(counter)
        d = work / f"acc-{n}"
        accelerator.save_state(str(d))
        upload_dir(d, f"accelerate/{n}")
        shutil.rmtree(d)

    def dcp_async_boto3() -> Background:
        from torch.distributed.checkpoint.filesystem import FileSystemWriter
        from torch.distributed.checkpoint.state_dict import get_state_dict
        from torch.distributed.checkpoint.state_dict_saver import async_save

        n = next(counter)
        d = work / f"dcp-{n}"
        msd, osd = get_state_dict(model, optimizer)
        fut: Any = async_save(
            {"model": msd, "optimizer": osd}, storage_writer=FileSystemWriter(str(d))
        )
        end: list[float] = []
        errors: list[BaseException] = []

        def finish() -> None:
            try:
                fut.result()
                upload_dir(d, f"dcp/{n}")
                end.append(time.perf_counter())
            except BaseException as exc:
                errors.append(exc)
            finally:
                shutil.rmtree(d, ignore_errors=True)

        threading.Thread(target=finish, daemon=True).start()

        def done() -> float | None:
            if errors:
                raise SystemExit(f"dcp async_save failed: {errors[0]!r}")
            return end[0] if end else None

        return Background(done)

    floor_bufs: dict[str, torch.Tensor] = {}

    def floor_copy() -> None:
        """What Lazarus's capture does at best: every tensor into a buffer kept from before."""
        sd = state()
        flat = {f"m.{k}": v for k, v in sd["model"].items()}
        for i, s in sd["optimizer"]["state"].items():
            flat.update({f"o.{i}.{k}": v for k, v in s.items() if isinstance(v, torch.Tensor)})
        for k, v in flat.items():
            buf = floor_bufs.get(k)
            if buf is None or buf.shape != v.shape:
                buf = floor_bufs[k] = torch.empty_like(v)
            buf.copy_(v)

    raw = bytearray(os.urandom(nbytes))  # incompressible, like trained weights

    def floor_disk() -> None:
        path = work / "raw.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    raw_store = open_store(
        f"s3://{BUCKET}/raw", endpoint_url=url, addressing_style="path",
        aws_access_key_id=USER, aws_secret_access_key=PASSWORD, region="us-east-1",
    )  # fmt: skip

    def floor_store() -> None:
        w = raw_store.begin(step=next(counter), attempt=1)
        w.put_bytes("raw.bin", raw)
        w.commit(reason="periodic")

    methods: dict[str, Callable[[], Background | None]] = {
        "lazarus async": lazarus_async,
        "lazarus sync": lazarus_sync,
        "torch.save + boto3": torch_save_boto3,
        "HF Trainer save + boto3": hf_save_boto3,
        "Accelerate save_state + boto3": accelerate_boto3,
        "DCP async_save + boto3": dcp_async_boto3,
        "floor: copy into reused buffers": floor_copy,
        "floor: disk write + fsync": floor_disk,
        "floor: store raw write (S3)": floor_store,
    }
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",")]
        methods = {k: v for k, v in methods.items() if k in wanted}
    names = list(methods)
    rows = {n: Row(n) for n in names}
    print(
        f"state {nbytes / 1e6:.0f} MB (TinyGPT d{args.d_model} x{args.layers} + AdamW), "
        f"torch threads {args.torch_threads}, Lazarus save threads {args.save_threads} "
        f"nice {args.save_nice}, {args.rounds} rounds + warm-up, idle {args.idle}s, "
        f"MinIO {url} on CPUs {args.minio_cpus or 'all'}, {os.cpu_count()} CPUs",
        flush=True,
    )

    def measure(name: str) -> tuple[float, float, float | None, float, int]:
        gc.collect()
        time.sleep(args.idle)
        base = statistics.median(timed(train_step) for _ in range(args.baseline_steps))
        t0 = time.perf_counter()
        bg = methods[name]()
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
        return blocked, durable, slowdown, lost, len(during)

    for r in range(args.rounds + 1):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            blocked, durable, slowdown, lost, k = measure(name)
            tag = "warm-up" if r == 0 else f"round {r}"
            sd = f"{slowdown:.2f}x over {k} steps" if slowdown else "-"
            print(f"{tag:8s} {name:32s} blocked {blocked:6.3f}s durable {durable:6.3f}s "
                  f"slowdown {sd:18s} lost {lost:6.3f}s", flush=True)  # fmt: skip
            if r == 0:
                continue
            row = rows[name]
            row.blocked.append(blocked)
            row.durable.append(durable)
            row.lost.append(lost)
            row.steps_during.append(k)
            if slowdown is not None:
                row.slowdown.append(slowdown)

    print(f"\n{'method':34s} {'blocked s':>22s} {'durable s':>22s} {'step slowdown':>22s} "
          f"{'lost per ckpt s':>22s}   median (min-max) of {args.rounds}")  # fmt: skip
    for n in names:
        row = rows[n]
        print(f"{n:34s} {spread(row.blocked):>22s} {spread(row.durable):>22s} "
              f"{spread(row.slowdown):>22s} {spread(row.lost):>22s}")  # fmt: skip

    ratios: dict[str, list[float]] = {}

    def ratio(label: str, num: list[float], den: list[float]) -> None:
        if num and den and len(num) == len(den):
            ratios[label] = [a / b for a, b in zip(num, den, strict=True)]

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
    for label, xs in ratios.items():
        print(f"  {label:58s} {spread(xs)}")
    if args.json:
        out = {
            "state_bytes": nbytes,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "cpus": os.cpu_count(),
            "rows": {n: vars(r) for n, r in rows.items()},
            "ratios": ratios,
        }
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    for lz in (lz_async, lz_sync):
        lz.pipeline.collect(None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
