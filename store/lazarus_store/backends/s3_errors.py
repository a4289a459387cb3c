"""How botocore's exceptions become the store's errors: one line that says what was
being done, where, and what to check."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from ..errors import AccessDenied, BucketMissing, StoreError, StoreUnavailable
from .base import ObjectMissing

DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AllAccessDisabled",
    "403",
}
MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
UNSUPPORTED = {"InvalidArgument", "NotImplemented", "InvalidRequest", "501"}


def code_of(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def translate(what: str, *, bucket: str, where: str, endpoint: str) -> Iterator[None]:
    """Raise a StoreError (or ObjectMissing) for what botocore raises inside."""
    try:
        yield
    except ClientError as e:
        code = code_of(e)
        msg = e.response.get("Error", {}).get("Message", "") or code
        if code in MISSING_KEY:
            raise ObjectMissing(what) from None
        if code == "NoSuchBucket":
            raise BucketMissing(f"bucket {bucket!r} does not exist at {endpoint}") from None
        if code in DENIED:
            raise AccessDenied(
                f"{what} in {where}: access denied ({code}: {msg});"
                " check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile"
            ) from None
        raise StoreError(f"{what} in {where}: {code}: {msg}") from None
    except (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError) as e:
        raise StoreUnavailable(
            f"cannot reach S3 endpoint {endpoint} ({type(e).__name__})"
        ) from None
    except ReadTimeoutError:
        raise StoreUnavailable(f"S3 endpoint {endpoint} timed out ({what})") from None
    except NoCredentialsError:
        raise AccessDenied(
            f"no AWS credentials found for {where}"
            " (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)"
        ) from None
    except BotoCoreError as e:
        raise StoreError(f"{what} in {where}: {e}") from None
    except (ResponseParserError, KeyError, TypeError):
        # Unparsable, or parsed into something without S3's fields (an HTML page).
        raise StoreError(
            f"{what} in {where}: {endpoint} does not answer as an S3"
            " server (unparsable response): check spec.checkpoint.endpoint"
        ) from None
