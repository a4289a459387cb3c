#!/usr/bin/env python3
"""Pack a root filesystem directory as a one-layer image in docker-archive form.

No registry is reachable here and there is no Docker daemon, so the local node's
images are made from directories (a debootstrap rootfs, the pause binary) and
loaded with `ctr images import`, which reads this format: a tar holding
`manifest.json`, the image config, and the layer tar named by its digest.

Usage: pack_image.py ROOTFS OUT.tar NAME:TAG [--entrypoint CMD] [--env K=V]...
Standard library only: it runs before the project's venv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

# Runtime mounts and caches: their content does not belong in an image.
EMPTY_DIRS = ("dev", "proc", "sys", "run", "tmp", "var/cache/apt", "var/lib/apt/lists")


def _layer(rootfs: Path, out: Path) -> str:
    """Write the layer tar; return its sha256 (the diff ID: the layer is not compressed)."""

    def owner(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        rel = info.name.removeprefix("./")
        for d in EMPTY_DIRS:
            if rel.startswith(d + "/"):
                return None
        info.uname = info.gname = ""  # numeric owners only: the host's names mean nothing
        return info

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name, filter=owner)
    digest = hashlib.sha256()
    with out.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rootfs", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("ref", help="image name:tag, e.g. lazarus.local/base:bookworm")
    parser.add_argument("--entrypoint", action="append", default=[])
    parser.add_argument("--cmd", action="append", default=[])
    parser.add_argument("--env", action="append", default=[])
    args = parser.parse_args()
    if not args.rootfs.is_dir():
        print(f"pack_image.py: {args.rootfs} is not a directory", file=sys.stderr)
        return 1
    layer_tmp = args.out.with_suffix(".layer.tmp")
    diff_id = _layer(args.rootfs, layer_tmp)
    env = args.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    config: dict[str, object] = {"Env": env}
    if args.entrypoint:
        config["Entrypoint"] = args.entrypoint
    if args.cmd:
        config["Cmd"] = args.cmd
    image = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "hack/node"}],
        },
        sort_keys=True,
    ).encode()
    config_name = hashlib.sha256(image).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [args.ref], "Layers": [f"{diff_id}/layer.tar"]}]
    ).encode()
    tmp = args.out.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        for name, data in (("manifest.json", manifest), (config_name, image)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.add(layer_tmp, arcname=f"{diff_id}/layer.tar")
    layer_tmp.unlink()
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
