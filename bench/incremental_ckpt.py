"""What a checkpoint uploads when part of the model is frozen: Lazarus against HF's own save.

    hack/python -m bench.incremental_ckpt --rounds 3 --idle 2 --json out.json

Three jobs on one GPT-2 made in code (seeded; `--layers`/`--d-model` size it, the default
base is ~260 MB): (i) `lora`, a PEFT LoRA adapter on the frozen base; (ii) `full`, full
fine-tuning; (iii) `frozen-emb`, full fine-tuning with the embeddings (and the tied LM
head) frozen. Each is saved with AdamW state after one HF Trainer step by:

- `lazarus`: Lazarus's async save as its HF adapter registers the model (with frozen
  parameters: the fingerprinted base left out, its fingerprint recorded), content-addressed;
- `lazarus whole model` (lora, frozen-emb): the whole model, as a plain loop registers it,
  content-addressed (the store skips what an earlier checkpoint of the job holds);
- `lazarus before`: the whole model with LAZARUS_SAVE_DEDUP=0, the format before issue 27
  (for `full`, with nothing frozen, `lazarus` registers the whole model too);
- `lazarus <ENV=VALUE>` for each `--compare`: the same, made with that environment setting
  (`--compare LAZARUS_SAVE_DEDUP=0`: the format before content-addressed saves);
- `HF _save_checkpoint + boto3`: HF's own checkpoint directory (a PEFT model's: the adapter)
  uploaded file by file.

Columns per save: uploaded MB and requests (PUT/POST bodies counted at botocore's HTTP
session, every client in this process), time to durable (Lazarus: the manifest's
durableSeconds), training lost (blocked + the extra time of the steps run during a
background save: bench.save_datapath's measure). Methods run interleaved round by round after
a discarded warm-up round (the first save of a job is in it: what a later save can reuse
was uploaded then), against MinIO on loopback (bench/minio.py) or `--endpoint`. Ratios: (i)
uploaded / (adapter + optimizer + scheduler bytes), target <= 1.1; (iii) the same over the
trainable part, <= 1.1 says the frozen part was not uploaded again. Durable ratios pair
peers that differ in one thing (`pairs`): `full`, `lazarus` over `lazarus before` (content
addressing, target <= 1.05); otherwise `lazarus` over `lazarus whole model` (the frozen base
left out) and that over `lazarus before` (content addressing); `lazarus` over each
`--compare` peer. Each save also logs the share of its bytes stored as shared chunks
(`auto` stops chunking once everything changes). The fingerprint's cost at setup is timed
on the LoRA base.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.datapath_methods import Background
from bench.incremental_parts import Uploads, fingerprint_cost, hf_save
from bench.minio import PASSWORD, USER, minio, minio_binary
from bench.save_datapath import measure
from lazarus_devstack.bench_harness import interleaved, ratios, spread
from lazarus_trainer.base_fingerprint import KEY, FrozenBase
from lazarus_trainer.state import Stateful

MB = 1e6
JOBS = ("lora", "full", "frozen-emb")


def build(job: str, args: Any, work: Path) -> tuple[Any, Any, dict[str, torch.Tensor]]:
    """The job's model in an HF Trainer after one step (AdamW holds its state), one batch."""
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    torch.manual_seed(args.seed)
    config = GPT2Config(
        vocab_size=args.vocab, n_embd=args.d_model, n_layer=args.layers, n_head=8,
        n_positions=args.seq,
    )  # fmt: skip
    model: Any = GPT2LMHeadModel(config)
    if job == "lora":
        import peft

        lora = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"], task_type="CAUSAL_LM")
        model = peft.get_peft_model(model, lora)
    elif job == "frozen-emb":
        model.transformer.wte.requires_grad_(False)  # the LM head is tied to it
        model.transformer.wpe.requires_grad_(False)
    ids = torch.randint(0, args.vocab, (args.batch * 2, args.seq))
    data = [{"input_ids": r, "labels": r} for r in ids]
    targs = TrainingArguments(
        output_dir=str(work / f"hf-{job}"), max_steps=1, per_device_train_batch_size=args.batch,
        save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
        lr_scheduler_type="constant",  # every step moves the weights (a decay to 0 would not)
    )  # fmt: skip
    trainer = Trainer(model=model, args=targs, train_dataset=data)
    trainer.train()
    batch = {"input_ids": ids[: args.batch], "labels": ids[: args.batch]}
    return trainer, model, batch


def sizes(trainer: Any, model: Any) -> dict[str, int]:
    from lazarus_trainer.snapshot import tensor_bytes

    train = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    small = tensor_bytes(trainer.optimizer.state_dict()) + tensor_bytes(
        trainer.lr_scheduler.state_dict()
    )
    return {"model": tensor_bytes(model.state_dict()), "trainable": train, "opt+sched": small}


def lazarus(
    args: Any, trainer: Any, model: Any, root: str, whole: bool, env: dict[str, str] | None = None
) -> Any:
    """A Lazarus registered as its HF adapter registers this model (hf_trainer.py), made
    with `env` set (the settings it reads once, when made)."""
    from lazarus_trainer.adapters.hf_peft import TrainableView
    from lazarus_trainer.api import Lazarus
    from lazarus_trainer.config import LazarusConfig

    config = LazarusConfig(
        checkpoint_uri=f"s3://{args.bucket}/{root}", attempt=1, async_save=True,
        handle_signals=False, save_at_end=False, save_threads=args.save_threads, keep_latest=2,
    )  # fmt: skip
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        lz = Lazarus(config)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    base = FrozenBase()
    if not whole:
        base.add("model", model)
    registered = TrainableView(model, base) if base.models else model
    extras: dict[str, Stateful] = {KEY: base} if base.models else {}
    lz.register(model=registered, optimizer=trainer.optimizer, scheduler=trainer.lr_scheduler,
                extras=extras)  # fmt: skip
    return lz


def lazarus_save(lz: Any, chunked: list[float]) -> Callable[[], Background]:
    """Each save's Background; appends to `chunked` the share of its bytes it stored as
    shared chunks (LAZARUS_SAVE_DEDUP=auto: 0 once everything changes)."""
    counter = iter(range(1, 1_000_000))

    def save() -> Background:
        lz.run.progress.step = next(counter)
        t0 = time.perf_counter()
        lz.pipeline.save("periodic", sync=False)
        end: list[float] = []

        def done() -> float | None:
            if not end:
                out = lz.pipeline.collect(0.0)
                if out is None:
                    return None
                if out.name is None:
                    raise SystemExit(f"lazarus save failed: {out.detail}")
                manifest = lz.storage.read_manifest(out.name)
                extra = manifest.extra["lazarusTrainer"]
                chunked.append(manifest.shared_bytes / max(1, manifest.total_bytes))
                end.append(t0 + float(extra["timings"]["durableSeconds"]))
            return end[0]

        return Background(done)

    return save


def run_job(args: Any, job: str, work: Path, client: Any, uploads: Uploads) -> dict[str, Any]:
    trainer, model, batch = build(job, args, work)
    size = sizes(trainer, model)
    print(f"\n== {job}: state {size['model'] / MB:.1f} MB, trainable {size['trainable'] / MB:.2f}"
          f" MB, optimizer+scheduler {size['opt+sched'] / MB:.2f} MB", flush=True)  # fmt: skip

    def train_step() -> None:
        trainer.model(**batch).loss.backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=False)

    peers = make_peers(args, job, trainer, model)
    chunked: dict[str, list[float]] = {n: [] for n in peers}
    methods: dict[str, Callable[[], Background | None]] = {
        n: lazarus_save(lz, chunked[n]) for n, lz in peers.items()
    }
    methods["HF _save_checkpoint + boto3"] = hf_save(trainer, client, args.bucket, job)
    rows: dict[str, dict[str, list[float]]] = {n: {} for n in methods}
    for slot in interleaved(list(methods), args.rounds, warmup=1):
        before = uploads.now()
        s = measure(args, methods[slot.name], train_step)
        time.sleep(0.2)  # retention's listing after the commit is not an upload
        reqs, nbytes = (a - b for a, b in zip(uploads.now(), before, strict=True))
        share = chunked[slot.name][-1] if slot.name in chunked else 0.0
        print(f"{slot.tag:8s} {slot.name:34s} uploaded {nbytes / MB:9.2f} MB in {reqs:4d} requests"
              f" durable {s.durable:6.3f}s lost {s.lost:6.3f}s chunked {share:4.0%}",
              flush=True)  # fmt: skip
        if not slot.warmup:
            for k, v in (("mb", nbytes / MB), ("requests", reqs), ("durable", s.durable),
                         ("lost", s.lost), ("chunked", share)):  # fmt: skip
                rows[slot.name].setdefault(k, []).append(float(v))
    out: dict[str, Any] = {"sizes": size, "rows": rows, "ratios": {}}
    wanted = (size["trainable"] + size["opt+sched"]) / MB
    print(f"{'method':34s} {'uploaded MB':>22s} {'requests':>22s} {'durable s':>22s} "
          f"{'lost s':>22s}   median (min-max) of {args.rounds}")  # fmt: skip
    for n, r in rows.items():
        print(f"{n:34s} {spread(r['mb']):>22s} {spread(r['requests']):>22s} "
              f"{spread(r['durable']):>22s} {spread(r['lost']):>22s}")  # fmt: skip
    out["ratios"] = job_ratios(job, args.compare, rows, list(peers), wanted)
    for label, xs in out["ratios"].items():
        print(f"  {label:62s} {spread(xs)}")
    if job == "lora":
        out["fingerprint"] = fingerprint_cost(model, args.rounds)
    for lz in peers.values():
        lz.pipeline.collect(None)
    return out


def make_peers(args: Any, job: str, trainer: Any, model: Any) -> dict[str, Any]:
    if job == "full":  # nothing frozen: the adapter registers the model itself, as `before`
        assert all(p.requires_grad for p in model.parameters())
    peers = {"lazarus": lazarus(args, trainer, model, f"{job}-lz", False)}
    if job != "full":
        peers["lazarus whole model"] = lazarus(args, trainer, model, f"{job}-whole", True)
    off = {"LAZARUS_SAVE_DEDUP": "0"}
    peers["lazarus before"] = lazarus(args, trainer, model, f"{job}-before", True, off)
    for i, setting in enumerate(args.compare):
        key, value = setting.split("=", 1)
        env = {key: value}
        peers[f"lazarus {setting}"] = lazarus(args, trainer, model, f"{job}-cmp{i}", False, env)
    return peers


def job_ratios(
    job: str, compare: list[str], rows: dict[str, dict[str, list[float]]], peers: list[str],
    wanted: float,
) -> dict[str, list[float]]:  # fmt: skip
    out: dict[str, list[float]] = {}
    for n in peers:
        if job != "full":
            xs = [mb / wanted for mb in rows[n]["mb"]]
            out[f"{n}: uploaded / trainable+optimizer (target <= 1.1)"] = xs
    for a, b, differs in pairs(job, compare):
        xs = ratios(rows[a]["durable"], rows[b]["durable"])
        target = " (target <= 1.05)" if job == "full" and b == "lazarus before" else ""
        out[f"durable {a} / {b}: {differs}{target}"] = xs
    return out


def pairs(job: str, compare: list[str]) -> list[tuple[str, str, str]]:
    """(peer, peer, the one thing that differs): each durable ratio isolates one change."""
    if job == "full":  # registered alike (nothing frozen to leave out): content addressing
        out = [("lazarus", "lazarus before", "LAZARUS_SAVE_DEDUP default vs 0")]
    else:
        out = [
            ("lazarus", "lazarus whole model", "frozen base left out vs saved"),
            ("lazarus whole model", "lazarus before", "LAZARUS_SAVE_DEDUP default vs 0"),
        ]
    return out + [("lazarus", f"lazarus {c}", f"default vs {c}") for c in compare]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-model", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--jobs", default=",".join(JOBS), help="comma-separated subset of " + str(JOBS))
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds (plus one warm-up)")
    ap.add_argument("--idle", type=float, default=2.0, help="seconds of rest before each save")
    ap.add_argument("--baseline-steps", type=int, default=2)
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--save-threads", type=int, default=2, help="Lazarus's background I/O")
    ap.add_argument("--compare", action="append", default=[], help="ENV=VALUE: a Lazarus peer")
    ap.add_argument("--minio", help="MinIO binary (default: hack/minio/build.sh)")
    ap.add_argument("--endpoint", help="an S3 endpoint already running (tests: the S3 fixture)")
    ap.add_argument("--bucket", default="bench", help="created if missing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.torch_threads)
    work = Path(tempfile.mkdtemp(prefix="lazarus-incremental-"))
    (work / "minio").mkdir()
    try:
        if args.endpoint:
            return run(args, args.endpoint, work)
        with minio(minio_binary(args.minio), work / "minio") as url:
            return run(args, url, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: Any, url: str, work: Path) -> int:
    import boto3
    from botocore.config import Config

    os.environ.setdefault("AWS_ACCESS_KEY_ID", USER)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", PASSWORD)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.update(LAZARUS_S3_ENDPOINT=url, LAZARUS_S3_ADDRESSING_STYLE="path")
    client = boto3.client("s3", endpoint_url=url, config=Config(s3={"addressing_style": "path"}))
    if args.bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=args.bucket)
    uploads = Uploads()
    print(f"GPT-2 d{args.d_model} x{args.layers} vocab {args.vocab}, {args.rounds} rounds + "
          f"warm-up, idle {args.idle}s, S3 {url}, {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    found = {job: run_job(args, job, work, client, uploads) for job in args.jobs.split(",")}
    if args.json:
        found["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.json.write_text(json.dumps(found, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
