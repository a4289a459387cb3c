"""How botocore's exceptions become the store's errors: one line that says what was
being done, where, and what to check; and how an answer that is not S3's is told
from one that is."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast
from xml.etree.ElementTree import ParseError, XMLPullParser

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

from ..errors import AccessDenied, BucketMissing, EndpointNotS3, StoreError, StoreUnavailable
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


# The root element S3 answers each listing with (a 2xx answer with any other is no S3's).
LISTING_ROOTS = {
    "ListObjectsV2": "ListBucketResult",
    "ListMultipartUploads": "ListMultipartUploadsResult",
}
_SNIFF_BYTES = 64 << 10  # the root tag comes first: a declaration, comments, then it


class NotS3Answer(Exception):
    """Raised from botocore's before-parse event: a listing answered in another shape."""


def root_tag(body: bytes) -> str | None:
    """The local name of the document's root element, None if there is none (not XML,
    or none in the first _SNIFF_BYTES). Stops at the root's start tag."""
    parser: XMLPullParser[Any] = XMLPullParser(events=("start",))
    try:
        for i in range(0, min(len(body), _SNIFF_BYTES), 4096):
            parser.feed(body[i : i + 4096])
            for _, elem in cast(Iterator[tuple[str, Any]], parser.read_events()):
                return str(elem.tag).rpartition("}")[2]
    except ParseError:
        pass
    return None


def check_listing_shape(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
    """botocore's `before-parse` handler (s3_client.py): a 2xx listing must be S3's
    document, or botocore would read an HTML page or another API's XML as "empty"."""
    expected = LISTING_ROOTS.get(getattr(operation_model, "name", ""))
    if expected is None or not 200 <= int(response_dict.get("status_code", 0)) < 300:
        return
    got = root_tag(bytes(response_dict.get("body") or b""))
    if got != expected:
        shape = f"a <{got}> document" if got else "no XML"
        raise NotS3Answer(f"answered a bucket listing with {shape}, not <{expected}>")


def not_s3(what: str, where: str, endpoint: str, detail: str) -> EndpointNotS3:
    return EndpointNotS3(
        f"{what} in {where}: {endpoint} does not answer as an S3 server ({detail}):"
        " check the endpoint URL"
    )


def code_of(e: ClientError) -> str:
    """S3's error code; the HTTP status where the body had none (botocore does the
    same for an empty body, not for a page that parses as XML)."""
    code = e.response.get("Error", {}).get("Code") or ""
    return str(code or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


@contextlib.contextmanager
def translate(
    what: str, *, bucket: str, where: str, endpoint: str, listing: bool = False
) -> Iterator[None]:
    """Raise a StoreError (or ObjectMissing) for what botocore raises inside. In a
    `listing`, a 404 without S3's NoSuchBucket (a bare 404, NoSuchKey) is no S3
    server's answer: S3 lists an empty prefix as empty."""
    try:
        yield
    except ClientError as e:
        code = code_of(e)
        msg = e.response.get("Error", {}).get("Message", "") or code
        if code in MISSING_KEY and listing:
            raise not_s3(what, where, endpoint, f"{code} to a bucket listing") from None
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
    except NotS3Answer as e:
        raise not_s3(what, where, endpoint, str(e)) from None
    except ResponseParserError:
        raise not_s3(what, where, endpoint, "unparsable response") from None
    except BotoCoreError as e:
        raise StoreError(f"{what} in {where}: {e}") from None
    except (KeyError, TypeError):
        # Parsed into something without S3's fields (an HTML page has no ETag).
        raise not_s3(what, where, endpoint, "an answer without S3's fields") from None
