"""`lazarus-ckpt`: list, validate, show, choose and prune a job's checkpoints.

Errors print one line and exit 1 (2 for bad usage); never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from lazarus_contract import (
    ENV_CHECKPOINT_URI,
    ENV_S3_ADDRESSING_STYLE,
    ENV_S3_ENDPOINT,
)
from lazarus_contract.rules import DEFAULT_KEEP_BEST, DEFAULT_KEEP_LATEST

from .errors import StoreError
from .ownership import Owner
from .retention import DEFAULT_GC_AGE_S, RetentionPolicy
from .store import CheckpointStore
from .uri import open_store

PROG = "lazarus-ckpt"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def _age(seconds: float) -> str:
    s = max(0, int(seconds))
    for unit, width in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= width:
            return f"{s // width}{unit}"
    return f"{s}s"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument(
        "-u",
        "--uri",
        default=os.environ.get(ENV_CHECKPOINT_URI, ""),
        help=f"checkpoint root: s3://bucket/prefix or a path (default ${ENV_CHECKPOINT_URI})",
    )
    p.add_argument(
        "--endpoint",
        default=os.environ.get(ENV_S3_ENDPOINT) or None,
        help=f"S3 endpoint URL (default ${ENV_S3_ENDPOINT}; credentials: the AWS chain)",
    )
    p.add_argument(
        "--addressing-style",
        choices=("auto", "path", "virtual"),
        default=os.environ.get(ENV_S3_ADDRESSING_STYLE) or None,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="checkpoints, newest first, with validity")
    ls.add_argument("--json", action="store_true")
    v = sub.add_parser("validate", help="validate one checkpoint (exit 1 if invalid)")
    v.add_argument("name")
    v.add_argument("--full", action="store_true", help="also check every byte's CRC32C")
    s = sub.add_parser("show", help="print a checkpoint's manifest")
    s.add_argument("name")
    lt = sub.add_parser(
        "latest", help="the newest valid checkpoint in lineage, and why others lost"
    )
    lt.add_argument("--attempt", type=int)
    lt.add_argument("--full", action="store_true")
    q = sub.add_parser("quarantine", help="mark a checkpoint never to be chosen (keeps its bytes)")
    q.add_argument("name")
    q.add_argument("--reason", required=True)
    pr = sub.add_parser("prune", help="apply retention (dry run unless --apply)")
    pr.add_argument("--keep-latest", type=int, default=DEFAULT_KEEP_LATEST)
    pr.add_argument("--keep-best", type=int, default=DEFAULT_KEEP_BEST)
    pr.add_argument("--metric")
    pr.add_argument("--mode", choices=("min", "max"), default="min")
    pr.add_argument("--gc-age", type=float, default=DEFAULT_GC_AGE_S, help="seconds")
    pr.add_argument("--resumed-from", help="checkpoint the current attempt resumed from")
    pr.add_argument("--attempt", type=int, help="current attempt (lineage)")
    pr.add_argument("--apply", action="store_true", help="really delete")
    pr.add_argument("--job", help="NAMESPACE/NAME of the job whose checkpoints to prune")
    pr.add_argument("--uid", help="that job's UID (needed when the root holds several jobs)")
    return p


def _list(store: CheckpointStore, as_json: bool) -> int:
    now = time.time()
    rows: list[dict[str, Any]] = []
    for c in store.list_checkpoints():
        if c.quarantined:
            state = "quarantined"
        elif not c.committed:
            state = "uncommitted"
        else:
            v = store.validate(c.name, info=c)
            state = "valid" if v.ok else "INVALID: " + "; ".join(v.problems)
        m = c.manifest
        rows.append(
            {
                "name": c.name,
                "step": c.step,
                "attempt": c.attempt,
                "reason": m.reason if m else "-",
                "bytes": m.total_bytes if m else c.total_bytes,
                "own_bytes": m.own_bytes if m else c.total_bytes,
                "shared_bytes": m.shared_bytes if m else 0,
                "age_s": round(now - c.created.timestamp(), 1),
                "state": state,
            }
        )
    if as_json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no checkpoints under {store.description}")
        return 0
    # SIZE: under the checkpoint's own prefix; SHARED: the job's shared chunks it
    # references (stored once for every checkpoint that references them).
    print(f"{'NAME':<24} {'STEP':>12} {'REASON':<10} {'SIZE':>10} {'SHARED':>10} {'AGE':>5}  STATE")
    for r in rows:
        print(
            f"{r['name']:<24} {r['step']:>12} {r['reason']:<10} {_size(int(r['own_bytes'])):>10}"
            f" {_size(int(r['shared_bytes'])):>10} {_age(float(r['age_s'])):>5}  {r['state']}"
        )
    return 0


def _owner(store: CheckpointStore, job: str | None, uid: str | None) -> Owner | None:
    """Whose checkpoints prune may count and delete: the named job, or the root's only
    job. A root shared by several jobs is refused rather than pruned across them."""
    if uid:
        ns, _, name = (job or "").rpartition("/")
        return Owner(ns, name, uid)
    ids = {
        (m.job.namespace, m.job.name, m.job.uid)
        for c in store.list_checkpoints()
        if (m := c.manifest) is not None and m.job.uid
    }
    if job:
        ids = {i for i in ids if f"{i[0]}/{i[1]}" == job}
    if len(ids) > 1:
        named = ", ".join(sorted(f"{ns}/{n} (uid {u})" for ns, n, u in ids))
        raise StoreError(
            f"{store.description}: holds checkpoints of {len(ids)} jobs ({named}); "
            "pass --job NAMESPACE/NAME --uid UID to prune one"
        )
    return Owner(*ids.pop()) if ids else None


def _validate(store: CheckpointStore, args: argparse.Namespace) -> int:
    v = store.validate(args.name, full=args.full)
    for w in v.warnings:
        print(f"warning: {w}")
    for pr in v.problems:
        print(f"problem: {pr}")
    print(f"{args.name}: {'valid' if v.ok else 'INVALID'} ({'full' if args.full else 'cheap'})")
    return 0 if v.ok else 1


def _show(store: CheckpointStore, args: argparse.Namespace) -> int:
    print(store.read_manifest(args.name).to_bytes().decode(), end="")
    return 0


def _latest(store: CheckpointStore, args: argparse.Namespace) -> int:
    sel = store.valid_in_lineage(args.attempt, full=args.full)
    for sk in sel.skipped:
        print(f"skipped {sk.name}: {sk.reason}")
    if sel.chosen is None:
        print("no valid checkpoint")
        return 1
    print(sel.chosen.name)
    return 0


def _quarantine(store: CheckpointStore, args: argparse.Namespace) -> int:
    store.info(args.name)  # refuse to quarantine what does not exist
    store.quarantine(args.name, args.reason)
    print(f"{args.name}: quarantined")
    return 0


def _prune(store: CheckpointStore, args: argparse.Namespace) -> int:
    try:
        policy = RetentionPolicy(
            keep_latest=args.keep_latest,
            keep_best=args.keep_best,
            metric=args.metric,
            mode=args.mode,
            gc_age_s=args.gc_age,
        )
    except ValueError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    owner = _owner(store, args.job, args.uid)
    plan = store.prune(
        policy,
        args.resumed_from,
        attempt=args.attempt,
        dry_run=not args.apply,
        owner=owner,
    )
    verb = "deleted" if args.apply else "would delete"
    for name, why in sorted(plan.keep.items(), reverse=True):
        print(f"keep {name}: {', '.join(why)}")
    for name in plan.delete:
        print(f"{verb} {name}")
    for name in plan.garbage:
        print(f"{verb} {name} (garbage)")
    if not args.apply:  # applied, prune collected the shared chunks already
        swept = store.collect_shared(attempt=args.attempt, owner=owner, dry_run=True)
        if swept.deleted:
            print(
                f"{verb} {len(swept.deleted)} unreferenced shared chunks"
                f" ({_size(swept.freed_bytes)})"
            )
    if not args.apply:
        print("dry run: pass --apply to delete")
    return 0


_COMMANDS: dict[str, Callable[[CheckpointStore, argparse.Namespace], int]] = {
    "list": lambda store, args: _list(store, args.json),
    "validate": _validate,
    "show": _show,
    "latest": _latest,
    "quarantine": _quarantine,
    "prune": _prune,
}


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.uri:
        print(
            f"{PROG}: error: no checkpoint root: pass --uri or set {ENV_CHECKPOINT_URI}",
            file=sys.stderr,
        )
        return 2
    store = open_store(args.uri, endpoint_url=args.endpoint, addressing_style=args.addressing_style)
    return _COMMANDS[args.cmd](store, args)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except (
        StoreError,
        ValueError,
    ) as e:  # ValueError: a bad name or path from the user
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    sys.exit(main())
