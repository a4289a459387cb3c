"""One S3 client per endpoint, credentials and settings, shared by every store.

Each new boto3 session re-parses botocore's service models (~13 MB and ~150 ms of
CPU), and clients are thread-safe, so stores with the same endpoint, credentials and
settings share one client and its connection pool. A changed Secret is a new key,
so a new client. Every client checks that listings come back in S3's shape
(s3_errors.check_listing_shape).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import Any

import boto3
import botocore.handlers
from botocore.config import Config

from .s3_errors import check_listing_shape

_CLIENTS: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_CLIENTS_MAX = 256
_CLIENTS_LOCK = threading.Lock()
_BUILDING: dict[tuple[Any, ...], threading.Lock] = {}  # key -> held while it is built
_BUILT = [0]  # clients built by this process (the operator exports it as a metric)


def clients_built() -> int:
    """How many S3 clients this process has built: one per endpoint and credentials
    when sharing works, whatever the number of stores."""
    return _BUILT[0]


@functools.cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


def _check_listings(client: Any) -> None:
    """Check listings' shape (s3_errors.check_listing_shape) before botocore's own
    before-parse handler turns an unparsable 200 into a retried 500 (as a truncated
    answer from S3 would be): a web page or a JSON API must read as "not S3", not
    as an S3 server failing. Only this client's event handlers are reordered."""
    events = client.meta.events
    builtin = getattr(botocore.handlers, "_handle_200_error", None)
    if builtin is not None:
        events.unregister("before-parse.s3.*", builtin)
    events.register_first("before-parse.s3.*", check_listing_shape)
    if builtin is not None:
        events.register_first("before-parse.s3.*", builtin)


def shared_client(key: tuple[Any, ...], config: Config) -> Any:
    with _CLIENTS_LOCK:
        if key in _CLIENTS:
            _CLIENTS.move_to_end(key)
            return _CLIENTS[key]
        session = _session()  # created once, under the lock
        building = _BUILDING.setdefault(key, threading.Lock())
    # One build per key: stores opened at once (a launch of many jobs) wait for the
    # first instead of each building a twin. Other keys build in parallel, and the
    # process-wide lock is not held: resolving credentials may go to the network (IMDS).
    with building:
        with _CLIENTS_LOCK:
            if key in _CLIENTS:
                return _CLIENTS[key]
        endpoint, region, key_id, secret = key[:4]
        if region is None and session.region_name is None:
            region = "us-east-1"  # S3-compatible servers accept any; boto3 needs one
        client = session.client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=config,
        )
        _check_listings(client)
        with _CLIENTS_LOCK:
            _BUILT[0] += 1
            _CLIENTS[key] = client
            _BUILDING.pop(key, None)
            while len(_CLIENTS) > _CLIENTS_MAX:
                _CLIENTS.popitem(last=False)
    return client
