"""S3 (or any S3-compatible endpoint) as checkpoint storage, through boto3.

- The commit marker is created with `If-None-Match: *` (412 if it exists).
- Every upload carries its CRC32C (`x-amz-checksum-crc32c`), so the server
  rejects bytes that changed on the way. Multipart uploads send one per part and
  ask for the FULL_OBJECT checksum type on completion when the server has it.
- Transient errors are retried with backoff by botocore's "standard" mode, within
  connect and read timeouts the caller may shorten (the operator does: a stalled
  endpoint must give up its threads soon).
- Bodies are sent from the caller's buffer (`ViewBody`), never copied into a bytes object,
  and the payload is not SHA-256 signed (S3's default over HTTPS): the CRC32C the server
  verifies already covers every byte, and a second hash pass costs as much CPU as the copy.

Clients are shared (s3_client.py); botocore's errors become the store's in s3_errors.py;
bodies are s3_body.py's views, multipart uploads s3_parts.py's.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, BinaryIO, cast

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..checksum import to_b64
from ..errors import BucketMissing, InvalidURI, StoreError
from .base import Data, ObjectInfo, ObjectMissing
from .s3_body import ViewBody, body_of
from .s3_client import shared_client
from .s3_errors import MISSING_KEY, PRECONDITION, code_of, translate
from .s3_parts import S3PartUpload

__all__ = ["S3Backend", "S3PartUpload", "ViewBody"]


class S3Backend:
    """A bucket and a prefix in it, through one shared client (s3_client.py)."""

    supports_parallel_parts = True

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        endpoint_url: str | None = None,
        addressing_style: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        region: str | None = None,
        max_connections: int = 16,
        max_attempts: int = 5,
        connect_timeout: float = 10,
        read_timeout: float = 120,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or None
        where = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.description = f"{where} (endpoint {self.endpoint_url})" if endpoint_url else where
        s3cfg: dict[str, Any] = {"payload_signing_enabled": False}
        if addressing_style and addressing_style != "auto":
            s3cfg["addressing_style"] = addressing_style
        config = Config(
            s3=cast(Any, s3cfg),  # the stubs want a TypedDict of literals; ours is validated
            retries={"mode": "standard", "max_attempts": max_attempts},
            max_pool_connections=max_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # We send and check CRC32C ourselves, computed while streaming;
            # botocore's own would be a second pass over every byte.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        key = (
            self.endpoint_url,
            region,
            aws_access_key_id,
            aws_secret_access_key,
            addressing_style,
            max_connections,
            max_attempts,
            connect_timeout,
            read_timeout,
        )
        try:
            self.client: Any = shared_client(key, config)
        except (BotoCoreError, ValueError) as e:  # e.g. a region boto3 refuses
            raise InvalidURI(f"{self.description}: {e}") from None
        self._full_object_checksums: bool | None = None  # learnt on first multipart
        self._lock = threading.Lock()

    # --- helpers -----------------------------------------------------------------
    def key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _errors(self, what: str, listing: bool = False) -> contextlib.AbstractContextManager[None]:
        """Turn botocore's exceptions into StoreErrors that say where and what."""
        return translate(
            what,
            bucket=self.bucket,
            where=self.description,
            endpoint=self._endpoint(),
            listing=listing,
        )

    def _endpoint(self) -> str:
        return self.endpoint_url or "AWS S3"

    # --- Backend -----------------------------------------------------------------
    def check(self) -> None:
        with self._errors("checking the bucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as e:
                # HEAD has no body: map its bare status codes by hand.
                if code_of(e) in ("404", "NoSuchBucket"):
                    raise BucketMissing(
                        f"bucket {self.bucket!r} does not exist at {self._endpoint()}"
                    ) from None
                raise

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        with self._errors(f"listing {prefix or '/'}", listing=True):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.key(prefix) if prefix else self.key("")
            )
            for page in pages:
                for o in page.get("Contents", []):
                    rel = self._rel(o["Key"])
                    out.append(ObjectInfo(rel, int(o["Size"]), o["LastModified"].timestamp()))
        return out

    def get(self, key: str) -> bytes:
        with self._errors(key):
            resp = self.client.get_object(Bucket=self.bucket, Key=self.key(key))
            return cast(bytes, resp["Body"].read())

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        with self._errors(key):
            resp = self.client.get_object(
                Bucket=self.bucket, Key=self.key(key), Range=f"bytes={start}-{start + length - 1}"
            )
            return cast(bytes, resp["Body"].read())

    def get_range_into(self, key: str, start: int, out: memoryview) -> int:
        if not len(out):
            return 0
        with self._errors(key):
            resp = self.client.get_object(
                Bucket=self.bucket, Key=self.key(key), Range=f"bytes={start}-{start + len(out) - 1}"
            )
            body = resp["Body"]
            # urllib3's readinto is a read plus a copy; http.client's under it reads the
            # socket straight into `out`. Only for a plain body (size and CRC32C are checked
            # by the caller); the connection then goes back to the pool by hand.
            raw: Any = getattr(body, "_raw_stream", None)
            orig: Any = getattr(raw, "_original_response", None)
            direct = (
                orig is not None
                and not getattr(raw, "chunked", False)
                and not raw.headers.get("content-encoding")
            )
            got = 0
            try:
                while got < len(out):
                    n = orig.readinto(out[got:]) if direct else body.readinto(out[got:])
                    if not n:
                        break
                    got += n
            finally:
                if direct and orig.isclosed():
                    raw.release_conn()
                else:
                    body.close()
            return got

    def open_get(self, key: str) -> BinaryIO:
        with self._errors(key):
            resp = self.client.get_object(Bucket=self.bucket, Key=self.key(key))
            return cast(BinaryIO, resp["Body"])

    def put(self, key: str, data: Data, crc: int) -> None:
        with self._errors(f"writing {key}"):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key(key),
                Body=body_of(data),
                ChecksumCRC32C=to_b64(crc),
            )

    def put_if_absent(self, key: str, data: bytes, crc: int) -> bool:
        with self._errors(f"committing {key}"):
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.key(key),
                    Body=data,
                    ChecksumCRC32C=to_b64(crc),
                    IfNoneMatch="*",
                )
            except ClientError as e:
                if code_of(e) in PRECONDITION:
                    return False
                raise
        return True

    def get_versioned(self, key: str, max_bytes: int | None = None) -> tuple[bytes, str] | None:
        try:
            with self._errors(key):
                resp = self.client.get_object(Bucket=self.bucket, Key=self.key(key))
                body = resp["Body"]
                try:
                    data = body.read() if max_bytes is None else body.read(max_bytes)
                finally:
                    body.close()  # the rest of an oversized object is never fetched
                return cast(bytes, data), str(resp["ETag"])
        except ObjectMissing:
            return None

    def put_if_token(self, key: str, data: bytes, token: str | None) -> bool:
        cond = {"IfMatch": token} if token is not None else {"IfNoneMatch": "*"}
        with self._errors(f"writing {key}"):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.key(key), Body=data, **cond)
            except ClientError as e:
                if code_of(e) in PRECONDITION or (token is not None and code_of(e) in MISSING_KEY):
                    return False
                raise
        return True

    def start_parts(self, key: str) -> S3PartUpload:
        return S3PartUpload(self, key)

    def delete_many(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = keys[i : i + 1000]
            with self._errors(f"deleting {len(batch)} objects"):
                resp = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self.key(k)} for k in batch], "Quiet": True},
                )
            errors = resp.get("Errors", [])
            if errors:
                e = errors[0]
                raise StoreError(
                    f"deleting from {self.description}: {len(errors)} objects failed,"
                    f" first {e.get('Key')}: {e.get('Code')} {e.get('Message', '')}"
                )

    def abort_uploads(self, prefix: str) -> int:
        """Abort unfinished multipart uploads under `prefix` (a killed writer's parts are
        invisible to LIST but still stored); returns how many."""
        n = 0
        full = self.key(prefix)
        with self._errors(f"listing uploads under {prefix}", listing=True):
            # No Prefix: MinIO matches it against whole object names only, so a
            # "directory" prefix finds nothing there. Filter here instead.
            pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket)
            for page in pages:
                for u in page.get("Uploads", []):
                    if not str(u["Key"]).startswith(full):
                        continue
                    with contextlib.suppress(ClientError):
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"]
                        )
                        n += 1
        return n
