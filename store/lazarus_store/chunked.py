"""Writing one object as content-addressed chunks under the job's shared prefix.

Order (the safety argument is shared.py's): hash every piece (on the pool; a piece the
caller knows unchanged keeps its previous chunk and is not hashed), record the save's
intent, then LIST the shared prefix and upload only the pieces no earlier checkpoint
of the job stored. The object's CRC32C is its chunks' combined, no second pass.

A pass of another process may have marked before the intent existed and delete after
that LIST (sweep.py): its marker is then in the LIST, and the save waits for it to end
(or to pass its delete deadline), then re-uploads any chunk it deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from . import checksum, shared
from .manifest import Chunk, ObjectEntry
from .root import Root
from .upload import upload_parts


@dataclass(frozen=True)
class Piece:
    """Bytes [offset, offset + size) of the object; `known`: its chunk at the previous
    save when the caller can prove the bytes did not change (no hashing then)."""

    offset: int
    size: int
    known: Chunk | None = None


@dataclass
class ChunkedResult:
    entry: ObjectEntry
    uploaded_bytes: int
    reused_bytes: int
    hashed_bytes: int
    resent_bytes: int = 0  # re-uploaded after a foreign pass deleted them


Intend = Callable[[set[str]], tuple[Mapping[str, Chunk], Mapping[str, int]]]


def _hash(view: memoryview) -> tuple[str, int]:
    return shared.digest(view), len(view)


def _upload(root: Root, key: str, view: memoryview) -> int:
    if len(view) <= root.multipart_threshold:
        crc = checksum.crc32c(view)
        root.backend.put(key, view, crc)
        return crc
    return upload_parts(root, key, len(view), lambda off, n: view[off : off + n])


def put_chunks(
    root: Root,
    path: str,
    view: memoryview,
    pieces: Sequence[Piece],
    *,
    uid: str,
    intend: Intend,
    pool: Executor | None = None,
) -> ChunkedResult:
    """Store `view` as `pieces` (covering it in order); `intend(digests)` records the
    intent, then returns the chunks earlier checkpoints recorded and the sizes of the
    blobs listed after it (pass markers included): a chunk is reused only when both
    say so."""
    if [(p.offset, p.size) for p in pieces][:1] != [(0, pieces[0].size if pieces else 0)]:
        raise ValueError("pieces must start at offset 0")
    if sum(p.size for p in pieces) != len(view):
        raise ValueError("pieces must cover the object exactly")
    run = pool or root.pool()
    hashes: list[Future[tuple[str, int]] | None] = [
        None if p.known else run.submit(_hash, view[p.offset : p.offset + p.size]) for p in pieces
    ]
    digests = [
        p.known.sha256 if p.known else f.result()[0]  # type: ignore[union-attr]
        for p, f in zip(pieces, hashes, strict=True)
    ]
    known, present = intend(set(digests))
    listed_at = time.monotonic()
    hashed = sum(p.size for p in pieces if not p.known)
    chunks: list[Chunk | None] = []
    sent: dict[str, Future[int]] = {}
    big: dict[str, int] = {}  # uploaded in parts from this thread: the pool sends the parts
    for p, d in zip(pieces, digests, strict=True):
        old = known.get(d) or p.known
        if old is not None and old.size == p.size and present.get(d) == p.size:
            chunks.append(old)
            continue
        chunks.append(None)
        part = view[p.offset : p.offset + p.size]
        if d in sent or d in big:
            continue
        if p.size > root.multipart_threshold:
            big[d] = _upload(root, shared.blob_key(uid, d), part)
        else:
            sent[d] = run.submit(_upload, root, shared.blob_key(uid, d), part)
    crcs = big | {d: f.result() for d, f in sent.items()}
    done = [
        c or Chunk(d, p.size, checksum.to_b64(crcs[d]))
        for c, p, d in zip(chunks, pieces, digests, strict=True)
    ]
    need = dict(zip(digests, views(view, pieces), strict=True))
    passes = {n for n in present if n.startswith(shared.SWEEP_MARK)}
    resent = _settle(root, uid, passes, listed_at, need)
    crc = 0
    for c in done:
        crc = checksum.combine(crc, checksum.from_b64(c.crc32c), c.size)
    entry = ObjectEntry(path, len(view), checksum.to_b64(crc), tuple(done), uid)
    uploaded = sum(p.size for p, c in zip(pieces, chunks, strict=True) if c is None)
    return ChunkedResult(entry, uploaded, len(view) - uploaded, hashed, resent)


def views(view: memoryview, pieces: Sequence[Piece]) -> list[memoryview]:
    return [view[p.offset : p.offset + p.size] for p in pieces]


def _settle(
    root: Root, uid: str, passes: set[str], listed_at: float, need: Mapping[str, memoryview]
) -> int:
    """Wait until the passes seen in the LIST made at `listed_at` are gone or past their
    deadline, then re-upload any chunk of `need` missing from a LIST made after that;
    the bytes re-uploaded. No pass: nothing (the common case costs no request)."""
    if not passes:
        return 0
    end = listed_at + shared.WINDOW_S
    while True:
        now = time.monotonic()  # before the LIST: a LIST after `end` when the time is up
        present = {
            o.key.rsplit("/", 1)[-1]: o.size for o in root.backend.list_objects(shared.prefix(uid))
        }
        if now >= end or not passes & present.keys():
            break
        time.sleep(min(0.2, end - now))
    missing = {d: v for d, v in need.items() if present.get(d) != len(v)}
    for d, v in missing.items():
        _upload(root, shared.blob_key(uid, d), v)
    return sum(len(v) for v in missing.values())
