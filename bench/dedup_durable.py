"""Content-addressed saves against whole-object saves, same run: time to durable and bytes
uploaded per checkpoint (issue 27).

    hack/python -m bench.dedup_durable --rounds 5 --json out.json

One model (embedding + MLP blocks, AdamW) trained a step before each save, in two
modes: `full` (every parameter trained: every chunk changes) and `frozen-emb` (the
embedding frozen: its chunks are referenced, not uploaded, and not hashed). Each mode
saves with LAZARUS_SAVE_DEDUP off, auto and on, interleaved round by round, to the same MinIO
(hack/minio/build.sh). durable: the manifest's durableSeconds (capture to commit);
uploaded: bytes the save put (its own objects plus the chunks no earlier checkpoint had).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.minio import PASSWORD, USER, minio, minio_binary
from lazarus_trainer import Lazarus, LazarusConfig

BUCKET = "dedup"


def model(vocab: int, d: int, layers: int, frozen_emb: bool) -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Embedding(vocab, d), *(nn.Linear(d, d) for _ in range(layers)))
    m[0].weight.requires_grad_(not frozen_emb)
    return m


def uploaded(lz: Lazarus, name: str, before: set[str]) -> tuple[int, set[str]]:
    m = lz.storage.read_manifest(name)
    chunks = {c.sha256: c.size for o in m.objects for c in o.chunks}
    new = sum(s for d, s in chunks.items() if d not in before)
    return m.own_bytes + new, before | set(chunks)


def variant(mode: str, dedup: str, args: Any, n: int) -> dict[str, Any]:
    root = f"{args.fs}/{mode}-{dedup}" if args.fs else f"s3://{BUCKET}/{mode}-{dedup}"
    net = model(args.vocab, args.d, args.layers, mode == "frozen-emb")
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    cfg = LazarusConfig(
        checkpoint_uri=root, attempt=1, async_save=False,
        handle_signals=False, save_at_end=False, keep_latest=2,
    )  # fmt: skip
    lz = Lazarus(cfg)
    lz.register(model=net, optimizer=opt)
    lz.pipeline.committer.dedup = dedup
    return {"lz": lz, "net": net, "opt": opt, "seen": set(), "durable": [], "bytes": [], "n": n}


def step(v: dict[str, Any], args: Any) -> None:
    x = torch.randint(0, args.vocab, (8, 16))
    v["net"](x).pow(2).mean().backward()
    v["opt"].step()
    v["opt"].zero_grad()


def run(args: Any) -> dict[str, Any]:
    variants = {
        (mode, dedup): variant(mode, dedup, args, i)
        for i, (mode, dedup) in enumerate(
            (m, d) for m in ("full", "frozen-emb") for d in ("off", "auto", "on")
        )
    }
    for r in range(args.rounds + 1):  # round 0: warm-up, discarded
        keys = list(variants)
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            v = variants[key]
            step(v, args)
            lz = v["lz"]
            lz.run.progress.step = r + 1
            out = lz.pipeline.save("periodic", sync=True)
            assert out is not None and out.name is not None, out
            timings = lz.storage.read_manifest(out.name).extra["lazarusTrainer"]["timings"]
            nbytes, v["seen"] = uploaded(lz, out.name, v["seen"])
            if r:
                v["durable"].append(float(timings["durableSeconds"]))
                v["bytes"].append(nbytes)
    rows = {}
    for (mode, dedup), v in variants.items():
        label = f"{mode} dedup={dedup}"
        rows[label] = {
            "durable_median_s": statistics.median(v["durable"]),
            "durable_s": v["durable"],
            "uploaded_bytes_median": statistics.median(v["bytes"]),
        }
        print(
            f"{label:<24} durable {rows[label]['durable_median_s']:.3f}s"
            f" (all {', '.join(f'{d:.2f}' for d in v['durable'])})"
            f" uploaded {rows[label]['uploaded_bytes_median'] / 1e6:.1f} MB"
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--fs", help="a directory: filesystem roots under it instead of MinIO")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="lazarus-dedup-"))
    try:
        if args.fs:
            rows = run(args)
            return _dump(args, rows)
        with minio(minio_binary(None), work / "minio") as url:
            os.environ.update(
                LAZARUS_S3_ENDPOINT=url, LAZARUS_S3_ADDRESSING_STYLE="path",
                AWS_ACCESS_KEY_ID=USER, AWS_SECRET_ACCESS_KEY=PASSWORD,
                AWS_DEFAULT_REGION="us-east-1",
            )  # fmt: skip
            import boto3

            boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(
                Bucket=BUCKET
            )
            rows = run(args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _dump(args, rows)


def _dump(args: Any, rows: dict[str, Any]) -> int:
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
