"""Keep credential material out of logs at any verbosity.

botocore at DEBUG prints every request's headers (`Authorization: ... Credential=
<access key id>/..., Signature=...`), its canonical request and string to sign, and
presigned URLs carry the same in their query. A filter on the log handlers rewrites
such values to `<redacted>` whatever logger emitted them. The operator and
`lazarus-ckpt` install it on their handlers at start (`install()`).
"""

from __future__ import annotations

import logging
import re

REDACTED = "<redacted>"
_PATTERNS = (
    # header values: 'Authorization': b'AWS4-HMAC-SHA256 Credential=...'
    re.compile(r"(?i)((?:authorization|x-amz-security-token)['\"]?\s*[:=]\s*b?['\"]?)([^'\"\n]+)"),
    # key=value forms in signatures, string-to-sign dumps and presigned URLs
    re.compile(
        r"(?i)((?:credential|signature|x-amz-credential|x-amz-signature|x-amz-security-token)=)([^&,\s'\"]+)"
    ),
    re.compile(
        r"(?i)(aws_(?:secret_access_key|session_token|access_key_id)['\"]?\s*[:=]\s*['\"]?)([^'\",}\s]+)"
    ),
    # botocore.auth logs the signature on the line after "Signature:"
    re.compile(r"(?i)(signature:\s*\n?)([0-9a-f]{32,})"),
)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class Redactor(logging.Filter):
    """A handler filter: rewrites the formatted message of any record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add the filter to every handler of `logger` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, Redactor) for f in handler.filters):
            handler.addFilter(Redactor())
