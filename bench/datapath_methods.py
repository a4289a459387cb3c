"""The save methods bench.save_datapath compares, over one model and optimizer: Lazarus
async and sync, torch.save / HF Trainer / Accelerate / DCP async_save each + boto3
upload, and the floors (a copy into kept buffers, the disk's write+fsync, the store's
raw write). Each call saves once; a background save returns a `Background`."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import torch
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from torch import nn

from bench.minio import PASSWORD, USER
from lazarus_store import open_store
from lazarus_trainer.api import Lazarus
from lazarus_trainer.config import LazarusConfig
from lazarus_trainer.reference.model import TinyGPT
from lazarus_trainer.snapshot import tensor_bytes

MiB = 1 << 20
BUCKET = "bench"
VOCAB = 64


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
class Training:
    """The model under save, its AdamW state (one HF Trainer step), and one batch."""

    model: nn.Module
    optimizer: Any
    scheduler: Any
    trainer: Any
    output_dir: Path
    accelerator: Any
    batch: dict[str, torch.Tensor]

    def step(self) -> None:
        out = self.model(**self.batch)
        out["loss"].backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=False)

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}


def training(args: Any, work: Path) -> Training:
    from accelerate import Accelerator
    from transformers import Trainer, TrainingArguments

    model = WithLoss(
        TinyGPT(VOCAB, d_model=args.d_model, n_layers=args.layers, n_heads=8, max_len=args.seq)
    )
    data = [
        {
            "input_ids": torch.randint(0, VOCAB, (args.seq,)),
            "labels": torch.randint(0, VOCAB, (args.seq,)),
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
    return Training(model, optimizer, scheduler, trainer, Path(targs.output_dir), accelerator,
                    batch)  # fmt: skip


class Methods:
    """Every method, saving `t`'s state to the bucket at `url` (LAZARUS_S3_* set by the
    caller); `nbytes` is the state's size, which the floors write."""

    def __init__(self, args: Any, url: str, work: Path, t: Training) -> None:
        self.work, self.t = work, t
        self.client = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, max_pool_connections=16),
        )  # fmt: skip
        self.client.create_bucket(Bucket=BUCKET)
        self.tc = TransferConfig(multipart_chunksize=16 * MiB, max_concurrency=8)
        self.nbytes = tensor_bytes(t.state())
        self.counter = iter(range(1, 1_000_000))
        self.lz_async, self.lz_sync = self._lazarus(args, True, 1), self._lazarus(args, False, 2)
        self.floor_bufs: dict[str, torch.Tensor] = {}
        self.raw = bytearray(os.urandom(self.nbytes))  # incompressible, like trained weights
        self.raw_store = open_store(
            f"s3://{BUCKET}/raw", endpoint_url=url, addressing_style="path",
            aws_access_key_id=USER, aws_secret_access_key=PASSWORD, region="us-east-1",
        )  # fmt: skip

    def table(self) -> dict[str, Callable[[], Background | None]]:
        return {
            "lazarus async": self.lazarus_async,
            "lazarus sync": self.lazarus_sync,
            "torch.save + boto3": self.torch_save_boto3,
            "HF Trainer save + boto3": self.hf_save_boto3,
            "Accelerate save_state + boto3": self.accelerate_boto3,
            "DCP async_save + boto3": self.dcp_async_boto3,
            "floor: copy into reused buffers": self.floor_copy,
            "floor: disk write + fsync": self.floor_disk,
            "floor: store raw write (S3)": self.floor_store,
        }

    def close(self) -> None:
        for lz in (self.lz_async, self.lz_sync):
            lz.pipeline.collect(None)

    def _lazarus(self, args: Any, async_save: bool, attempt: int) -> Lazarus:
        cfg = LazarusConfig(
            checkpoint_uri=f"s3://{BUCKET}/lazarus-{attempt}", attempt=attempt,
            async_save=async_save, handle_signals=False, save_at_end=False,
            save_threads=args.save_threads, save_nice=args.save_nice, keep_latest=2,
        )  # fmt: skip
        lz = Lazarus(cfg)
        lz.register(model=self.t.model, optimizer=self.t.optimizer, scheduler=self.t.scheduler)
        return lz

    def _upload_dir(self, d: Path, prefix: str) -> None:
        for f in sorted(p for p in d.rglob("*") if p.is_file()):
            key = f"{prefix}/{f.relative_to(d).as_posix()}"
            self.client.upload_file(str(f), BUCKET, key, Config=self.tc,
                                    ExtraArgs={"ChecksumAlgorithm": "CRC32C"})  # fmt: skip

    @staticmethod
    def _durable_seconds(lz: Lazarus, name: str) -> float:
        timings = lz.storage.read_manifest(name).extra["lazarusTrainer"]["timings"]
        return float(timings["durableSeconds"])

    def lazarus_async(self) -> Background:
        lz = self.lz_async
        lz.run.progress.step = next(self.counter)
        t0 = time.perf_counter()
        lz.pipeline.save("periodic", sync=False)
        end: list[float] = []

        def done() -> float | None:
            if end:
                return end[0]
            out = lz.pipeline.collect(0.0)
            if out is None:
                return None
            if out.name is None:
                raise SystemExit(f"lazarus async save failed: {out.detail}")
            # The manifest's durableSeconds run from the capture to the commit: exact, not
            # the step boundary at which training learnt of it (nor the pruning after it).
            end.append(t0 + self._durable_seconds(lz, out.name))
            return end[0]

        return Background(done)

    def lazarus_sync(self) -> Background:
        lz = self.lz_sync
        lz.run.progress.step = next(self.counter)
        t0 = time.perf_counter()
        out = lz.pipeline.save("periodic", sync=True)
        if out is None or out.name is None:
            raise SystemExit(f"lazarus sync save failed: {out}")
        end = t0 + self._durable_seconds(lz, out.name)  # committed before retention ran
        return Background(lambda: end)

    def torch_save_boto3(self) -> None:
        n = next(self.counter)
        path = self.work / "torch.pt"
        torch.save(self.t.state(), path)
        self.client.upload_file(str(path), BUCKET, f"torch/{n}/state.pt", Config=self.tc,
                                ExtraArgs={"ChecksumAlgorithm": "CRC32C"})  # fmt: skip

    def hf_save_boto3(self) -> None:
        n = next(self.counter)
        trainer = self.t.trainer
        trainer.state.global_step = n
        trainer._save_checkpoint(trainer.model, trial=None)
        d = self.t.output_dir / f"checkpoint-{n}"
        self._upload_dir(d, f"hf/{n}")
        shutil.rmtree(d)

    def accelerate_boto3(self) -> None:
        n = next(self.counter)
        d = self.work / f"acc-{n}"
        self.t.accelerator.save_state(str(d))
        self._upload_dir(d, f"accelerate/{n}")
        shutil.rmtree(d)

    def dcp_async_boto3(self) -> Background:
        from torch.distributed.checkpoint.filesystem import FileSystemWriter
        from torch.distributed.checkpoint.state_dict import get_state_dict
        from torch.distributed.checkpoint.state_dict_saver import async_save

        n = next(self.counter)
        d = self.work / f"dcp-{n}"
        msd, osd = get_state_dict(self.t.model, self.t.optimizer)
        fut: Any = async_save(
            {"model": msd, "optimizer": osd}, storage_writer=FileSystemWriter(str(d))
        )
        end: list[float] = []
        errors: list[BaseException] = []

        def finish() -> None:
            try:
                fut.result()
                self._upload_dir(d, f"dcp/{n}")
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

    def floor_copy(self) -> None:
        """What Lazarus's capture does at best: every tensor into a buffer kept from before."""
        sd = self.t.state()
        flat = {f"m.{k}": v for k, v in sd["model"].items()}
        for i, s in sd["optimizer"]["state"].items():
            flat.update({f"o.{i}.{k}": v for k, v in s.items() if isinstance(v, torch.Tensor)})
        for k, v in flat.items():
            buf = self.floor_bufs.get(k)
            if buf is None or buf.shape != v.shape:
                buf = self.floor_bufs[k] = torch.empty_like(v)
            buf.copy_(v)

    def floor_disk(self) -> None:
        path = self.work / "raw.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(self.raw)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def floor_store(self) -> None:
        w = self.raw_store.begin(step=next(self.counter), attempt=1)
        w.put_bytes("raw.bin", self.raw)
        w.commit(reason="periodic")
