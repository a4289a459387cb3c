"""Store fixtures: one `store` per backend (a temp directory, and S3 over HTTP), plus
`raw`, an independent way to tamper with the bytes underneath it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lazarus_devstack.procs import free_port
from lazarus_store import CheckpointStore, open_store

MiB = 1 << 20
# S3 refuses parts under 5 MiB (but the last): the smallest multipart test object
# on S3 is two parts. The filesystem takes any part size, so it gets tiny ones.
S3_PART = 5 * MiB
FS_PART = 64 * 1024
PREFIX = "jobs/demo"


@dataclass
class Raw:
    """Direct access to the objects under a store's root, bypassing the store."""

    kind: str
    root: Path | None = None
    client: Any = None
    bucket: str = ""

    def key(self, key: str) -> str:
        return f"{PREFIX}/{key}"

    def put(self, key: str, data: bytes) -> None:
        if self.root is not None:
            p = self.root / key
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        else:
            self.client.put_object(Bucket=self.bucket, Key=self.key(key), Body=data)

    def get(self, key: str) -> bytes:
        if self.root is not None:
            return (self.root / key).read_bytes()
        return bytes(self.client.get_object(Bucket=self.bucket, Key=self.key(key))["Body"].read())

    def delete(self, key: str) -> None:
        if self.root is not None:
            (self.root / key).unlink()
        else:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(key))

    def listing(self) -> list[str]:
        if self.root is not None:
            return sorted(
                p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()
            )
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{PREFIX}/"
        ):
            out += [o["Key"][len(PREFIX) + 1 :] for o in page.get("Contents", [])]
        return sorted(out)


def s3_store(s3: Any, bucket: str, **kw: Any) -> CheckpointStore:
    store: CheckpointStore = s3.open_store(
        f"s3://{bucket}/{PREFIX}", **{"part_size": S3_PART, "concurrency": 4, **kw}
    )
    return store


@pytest.fixture(
    params=[
        pytest.param("fs", marks=pytest.mark.unit),
        pytest.param("s3", marks=pytest.mark.cluster),
    ]
)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[CheckpointStore, Raw]]:
    if request.param == "fs":
        root = tmp_path / "ckpt"
        store = open_store(str(root), part_size=FS_PART, concurrency=4)
        yield store, Raw("fs", root=root)
    else:
        s3 = request.getfixturevalue("s3")
        bucket = request.getfixturevalue("bucket")
        store = s3_store(s3, bucket)
        yield store, Raw("s3", client=s3.client(), bucket=bucket)
    store.close()


@pytest.fixture
def store(backend: tuple[CheckpointStore, Raw]) -> CheckpointStore:
    return backend[0]


@pytest.fixture
def raw(backend: tuple[CheckpointStore, Raw]) -> Raw:
    return backend[1]


@pytest.fixture(scope="session")
def auth_s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An S3 endpoint that checks credentials: the override server (MinIO does), or a
    moto server of our own with its IAM checks switched on."""
    override = os.environ.get("LAZARUS_TEST_S3_ENDPOINT")
    if override:
        yield override
        return
    port = free_port()
    log = (tmp_path_factory.mktemp("moto-auth") / "moto.log").open("wb")
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto (auth) did not start") from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)
