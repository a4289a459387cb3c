"""A local or mounted filesystem (a PVC) as checkpoint storage.

Durability: data objects are written to a temporary name, fsynced and renamed;
the commit marker is linked into place with os.link, which fails if the name
exists, so of two writers exactly one commits.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..checksum import crc32c
from ..errors import AccessDenied, BucketMissing, StoreError
from .base import Data, ObjectInfo, ObjectMissing

TMP_PREFIX = ".lazarus-tmp-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    try:
        yield
    except PermissionError as e:
        raise AccessDenied(f"{what}: permission denied ({e.strerror})") from None
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise StoreError(f"{what}: no space left on device") from None
        raise


class FsPartUpload:
    """Parts written with pwrite into one temp file, renamed into place on complete."""

    def __init__(self, backend: FsBackend, key: str) -> None:
        self._final = backend.path(key)
        self._final.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self._final.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

    def upload_part(self, number: int, offset: int, data: Data, crc: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, offset)
            view, offset = view[n:], offset + n

    def complete(self, size: int, crc: int) -> None:
        os.ftruncate(self._fd, size)
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._tmp.replace(self._final)
        _fsync_dir(self._final.parent)

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


class FsBackend:
    supports_parallel_parts = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.description = str(self.root)

    def path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def check(self) -> None:
        if self.root.is_dir():
            if not os.access(self.root, os.R_OK | os.X_OK):
                raise AccessDenied(f"{self.root}: permission denied")
            return
        if self.root.exists():
            raise BucketMissing(f"{self.root}: exists but is not a directory")
        if not self.root.parent.is_dir():
            raise BucketMissing(
                f"{self.root}: neither it nor its parent directory exists (is the volume mounted?)"
            )

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        self.check()
        # Walk only the directory the prefix names, then filter by the rest.
        head, _, _ = prefix.rpartition("/")
        start = self.path(head) if head else self.root
        out: list[ObjectInfo] = []
        with _os_errors(f"listing {start}"):
            for dirpath, _dirs, files in os.walk(start):
                for f in files:
                    p = Path(dirpath) / f
                    key = p.relative_to(self.root).as_posix()
                    if not key.startswith(prefix):
                        continue
                    try:
                        st = p.stat()
                    except FileNotFoundError:
                        continue  # deleted while we walked
                    out.append(ObjectInfo(key, st.st_size, st.st_mtime))
        return out

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectMissing(key) from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with self.path(key).open("rb") as f:
                f.seek(start)
                return f.read(length)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectMissing(key) from None

    def get_range_into(self, key: str, start: int, out: memoryview) -> int:
        try:
            fd = os.open(self.path(key), os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectMissing(key) from None
        try:
            got = 0
            while got < len(out):
                n = os.preadv(fd, [out[got:]], start + got)
                if n == 0:
                    break
                got += n
            return got
        finally:
            os.close(fd)

    def open_get(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectMissing(key) from None

    def _write_tmp(self, key: str, data: Data) -> tuple[Path, Path]:
        final = self.path(key)
        with _os_errors(f"writing {final}"):
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}"
            with tmp.open("xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        return tmp, final

    def put(self, key: str, data: Data, crc: int) -> None:
        tmp, final = self._write_tmp(key, data)
        tmp.replace(final)
        _fsync_dir(final.parent)

    def put_if_absent(self, key: str, data: bytes, crc: int) -> bool:
        tmp, final = self._write_tmp(key, data)
        try:
            os.link(tmp, final)  # atomic, and never overwrites: exactly one writer wins
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        _fsync_dir(final.parent)
        return True

    def get_versioned(self, key: str, max_bytes: int | None = None) -> tuple[bytes, str] | None:
        try:
            with self.path(key).open("rb") as f:
                data = f.read() if max_bytes is None else f.read(max_bytes)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return data, f"{crc32c(data):08x}-{len(data)}"

    def put_if_token(self, key: str, data: bytes, token: str | None) -> bool:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        lock = final.parent / f".{final.name}.lock"
        with lock.open("a") as lf:
            fcntl.flock(lf, fcntl.LOCK_EX)  # read-compare-write under one lock
            current = self.get_versioned(key)
            if (current[1] if current else None) != token:
                return False
            self.put(key, data, crc32c(data))
            return True

    def start_parts(self, key: str) -> FsPartUpload:
        with _os_errors(f"writing {self.path(key)}"):
            return FsPartUpload(self, key)

    def abort_uploads(self, prefix: str) -> int:
        # A killed writer's parts are a temporary file next to the object: listed, and
        # deleted with the prefix. Nothing is hidden from LIST here.
        return 0

    def delete_many(self, keys: list[str]) -> None:
        dirs: set[Path] = set()
        for key in keys:
            p = self.path(key)
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            dirs.add(p.parent)
        # Remove directories left empty, deepest first, never the root itself.
        for leaf in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
            d = leaf
            while d != self.root and self.root in d.parents:
                try:
                    d.rmdir()
                except OSError:
                    break
                d = d.parent
