"""S3 multipart uploads: a CRC32C per part and, where the server has it, a FULL_OBJECT
checksum on completion (falling back to per-part checksums once it says it has not)."""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..checksum import to_b64
from ..errors import StoreError
from .base import Data, ObjectMissing
from .s3_body import body_of
from .s3_errors import UNSUPPORTED, code_of

if TYPE_CHECKING:
    from .s3 import S3Backend


class S3PartUpload:
    """A multipart upload with a CRC32C per part and (where supported) a full-object one."""

    def __init__(self, backend: S3Backend, key: str) -> None:
        self._b = backend
        self._key = backend.key(key)
        self._rel = key
        self._parts: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        b = backend
        with b._errors(f"starting upload of {key}"):
            resp = None
            if b._full_object_checksums is not False:
                try:
                    resp = b.client.create_multipart_upload(
                        Bucket=b.bucket,
                        Key=self._key,
                        ChecksumAlgorithm="CRC32C",
                        ChecksumType="FULL_OBJECT",
                    )
                    b._full_object_checksums = True
                except ClientError as e:
                    if code_of(e) not in UNSUPPORTED:
                        raise
                    b._full_object_checksums = False  # fall back to per-part checksums
            if resp is None:
                resp = b.client.create_multipart_upload(
                    Bucket=b.bucket, Key=self._key, ChecksumAlgorithm="CRC32C"
                )
        self._full = bool(b._full_object_checksums)
        self._upload_id = str(resp["UploadId"])

    def upload_part(self, number: int, offset: int, data: Data, crc: int) -> None:
        b = self._b
        with b._errors(f"uploading part {number} of {self._rel}"):
            resp = b.client.upload_part(
                Bucket=b.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body_of(data),
                ChecksumCRC32C=to_b64(crc),
            )
        with self._lock:
            self._parts[number] = {
                "PartNumber": number,
                "ETag": resp["ETag"],
                "ChecksumCRC32C": resp.get("ChecksumCRC32C") or to_b64(crc),
            }

    def complete(self, size: int, crc: int) -> None:
        b = self._b
        parts = [self._parts[n] for n in sorted(self._parts)]
        extra: dict[str, Any] = {}
        if self._full:
            extra = {"ChecksumCRC32C": to_b64(crc), "ChecksumType": "FULL_OBJECT"}
        with b._errors(f"completing upload of {self._rel}"):
            b.client.complete_multipart_upload(
                Bucket=b.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
                **extra,
            )

    def abort(self) -> None:
        b = self._b
        with contextlib.suppress(StoreError, ObjectMissing), b._errors("aborting upload"):
            b.client.abort_multipart_upload(
                Bucket=b.bucket, Key=self._key, UploadId=self._upload_id
            )
