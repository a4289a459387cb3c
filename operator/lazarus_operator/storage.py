"""The checkpoint store as the operator uses it: credentials from the job's
Secret, resume-point selection and the fence record, off the event loop on the
storage lane (lanes.py), in line per endpoint as resolved and per namespace.

Stores are cached per (root, endpoint, credentials) so a restart reuses warm
connections: the listing is on the restart's critical path.
"""

from __future__ import annotations

import base64
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import lazarus_store
from lazarus_contract import format_time
from lazarus_contract.rules import operator_records_attempts
from lazarus_store.cleanup import Deleted, delete_job_checkpoints
from lazarus_store.errors import (
    AccessDenied,
    AttemptTaken,
    BucketMissing,
    CheckpointNotFound,
    EndpointNotS3,
    InvalidURI,
    StoreError,
    StoreUnavailable,
)
from lazarus_store.ownership import Owner
from lazarus_store.selection import Skipped
from lazarus_store.store import CheckpointStore

from . import endpoints, owncreds
from . import status as s
from .builders import JobRef
from .lanes import Lane, LaneKey
from .spec import CheckpointSpec
from .vocabulary import Checkpoint, Selection, StorageProblem


@dataclass(frozen=True)
class Credentials:
    access_key_id: str | None
    secret_access_key: str | None
    region: str | None


class CredentialsError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def credentials(
    ck: CheckpointSpec,
    secret: dict[str, Any] | None,
    namespace: str,
    allowed: owncreds.AllowList | None = None,
) -> Credentials:
    """Credentials from the Secret the spec names (its `.data`, base64), else the
    operator's own environment (`AWS_*`, instance roles: boto3's chain), but only for
    a root the platform allows this namespace (`allowed`, default: owncreds.from_env):
    they are the platform's, not the tenant's (owncreds)."""
    ref = ck.secret_ref
    if ref is None:
        allowed = allowed if allowed is not None else owncreds.from_env()
        if not delegated(ck) and not allowed.allows(namespace, ck.uri, ck.endpoint):
            at = f" at {ck.endpoint}" if ck.endpoint else ""
            raise CredentialsError(
                s.R_CREDENTIALS_REQUIRED,
                f"no spec.checkpoint.secretRef, and the operator's own credentials are not "
                f"allowed for {ck.uri}{at} in namespace {namespace}: name a Secret with this "
                f"root's keys in spec.checkpoint.secretRef, or ask the platform to allow the "
                f"root for this namespace (chart value operatorCredentials)",
            )
        return Credentials(None, None, ck.region or os.environ.get("AWS_REGION"))
    if secret is None:
        raise CredentialsError(
            s.R_SECRET_NOT_FOUND,
            f"Secret {namespace}/{ref.name} (spec.checkpoint.secretRef) not found",
        )
    data = secret.get("data") or {}

    def get(key: str) -> str | None:
        v = data.get(key)
        return base64.b64decode(v).decode() if v else None

    missing = [k for k in (ref.access_key_id_key, ref.secret_access_key_key) if not get(k)]
    if missing:
        raise CredentialsError(
            s.R_SECRET_KEY_MISSING,
            f"Secret {namespace}/{ref.name} lacks key(s) {', '.join(missing)}",
        )
    return Credentials(
        get(ref.access_key_id_key), get(ref.secret_access_key_key), ck.region or get(ref.region_key)
    )


def problem_of(exc: Exception, where: str) -> StorageProblem:
    reasons: dict[type[Exception], str] = {
        StoreUnavailable: s.R_STORAGE_UNAVAILABLE,
        BucketMissing: s.R_BUCKET_MISSING,
        AccessDenied: s.R_ACCESS_DENIED,
        CheckpointNotFound: s.R_CHECKPOINT_NOT_FOUND,
        InvalidURI: s.R_STORAGE_ERROR,
        EndpointNotS3: s.R_ENDPOINT_NOT_S3,
        AttemptTaken: s.R_ROOT_SHARED,
    }
    reason = reasons.get(type(exc), s.R_STORAGE_ERROR)
    if isinstance(exc, CredentialsError):
        reason = exc.reason
    retry = reason != s.R_CREDENTIALS_REQUIRED  # only the spec or the platform can fix it
    return StorageProblem(reason, f"{where}: {exc}"[:1024], retry)


_stores: OrderedDict[tuple[Any, ...], CheckpointStore] = OrderedDict()
_stores_lock = threading.Lock()
_STORES_MAX = 1024  # a tenant's many spellings of one root must not grow it for ever
# The operator's calls are small (a listing, manifests, the fence log): a stalled
# endpoint gives up within ~2 minutes, not botocore's ~10 (120 s reads, 5 attempts).
TIMEOUTS = lazarus_store.S3Timeouts(connect_s=5, read_s=30, max_attempts=3)


def open_store(ck: CheckpointSpec, cred: Credentials) -> CheckpointStore:
    """The job root's store; its S3 client is shared with every root on the same
    endpoint and credentials (lazarus_store.backends.s3_client). A changed Secret is
    a new key, so a new store and client."""
    key = (ck.uri, ck.endpoint, ck.addressing_style, cred)
    with _stores_lock:
        store = _stores.get(key)
        if store is not None:
            _stores.move_to_end(key)
    if store is not None:
        return store
    # Opened outside the lock: a first client may resolve credentials over the network.
    store = lazarus_store.open_store(
        ck.uri,
        endpoint_url=ck.endpoint,
        addressing_style=ck.addressing_style,
        aws_access_key_id=cred.access_key_id,
        aws_secret_access_key=cred.secret_access_key,
        region=cred.region,
        s3_timeouts=TIMEOUTS,
    )
    with _stores_lock:
        store = _stores.setdefault(key, store)  # a racing twin is dropped
        while len(_stores) > _STORES_MAX:
            _stores.popitem(last=False)
        return store


# Skipped checkpoints become events at launch: a root full of another job's
# checkpoints must not flood the namespace with them.
MAX_SKIPPED = 10


def owner(job: JobRef) -> Owner:
    """The job as the store's ownership rule knows it (contract section 8)."""
    return Owner(job.namespace, job.name, job.uid)


def delegated(ck: CheckpointSpec) -> bool:
    """A filesystem root lives on the pods' volume, which the operator cannot see:
    the trainer selects and fences (contract section 8). The operator never opens a
    path a tenant chose on its own filesystem."""
    return not operator_records_attempts(ck.uri)


def _select(ck: CheckpointSpec, cred: Credentials, attempt: int | None, job: JobRef) -> Selection:
    store = open_store(ck, cred)
    # Ownership, lineage and cheap validity are ours; the trainer checks every byte.
    # attempt=None: a job's first launch, lineage of the attempt after the fence log's
    # newest. Attempt numbers are unique per root (next_attempt), so a job relaunches
    # above any number another job on the same root has taken.
    sel = store.valid_in_lineage(attempt, owner=owner(job))
    chosen = None
    if sel.chosen is not None:
        c = sel.chosen
        chosen = Checkpoint(
            name=c.name,
            step=c.step,
            attempt=c.attempt,
            uri=f"{ck.uri.rstrip('/')}/{c.name}",
            created=format_time(c.created),
            extra=dict(c.manifest.extra) if c.manifest else {},
        )
    return Selection(chosen, skipped_for_events(sel.skipped, job.namespace), store.next_attempt())


def skipped_for_events(skipped: list[Skipped], namespace: str) -> tuple[tuple[str, str], ...]:
    """The skipped checkpoints as the job's events name them. Another namespace's are
    only counted: their names and owners are that namespace's business."""
    ours = [k for k in skipped if not (k.job and k.job.namespace not in ("", namespace))]
    foreign = len(skipped) - len(ours)
    out = tuple((k.name, k.reason) for k in ours[:MAX_SKIPPED])
    if len(ours) > MAX_SKIPPED:
        out += (("...", f"and {len(ours) - MAX_SKIPPED} more"),)
    if foreign:
        out += ((f"{foreign} checkpoint(s)", "owned by jobs in other namespaces"),)
    return out


def lane_key(ck: CheckpointSpec, namespace: str) -> LaneKey:
    """Where a job's calls queue in the storage lane (lanes.Lane): its namespace and its
    endpoint as resolved (endpoints.py)."""
    return endpoints.lane_key(ck.endpoint, namespace)


async def select(
    ck: CheckpointSpec, cred: Credentials, attempt: int | None, job: JobRef, *, lane: Lane
) -> Selection | StorageProblem:
    """Newest valid checkpoint of this job in the lineage of `attempt`, or what is
    wrong with storage."""
    if delegated(ck):
        return Selection(None, (), 0, delegated=True)
    try:
        target = await endpoints.target(ck.endpoint, job.namespace, lane)
        if target.problem is not None:
            return StorageProblem(s.R_ENDPOINT_NOT_ALLOWED, target.problem)
        key = LaneKey(job.namespace, target.key)
        return await endpoints.call(lane, key, _select, ck, cred, attempt, job)
    except (StoreError, OSError) as exc:
        return problem_of(exc, ck.uri)


async def record_attempt(
    ck: CheckpointSpec,
    cred: Credentials,
    attempt: int,
    resume_from: str | None,
    step: int,
    *,
    job: JobRef,
    lane: Lane,
) -> None:
    """Fence record (contract section 6) naming the job; idempotent per attempt."""
    store = open_store(ck, cred)
    try:
        key, ident = lane_key(ck, job.namespace), owner(job).identity
        await endpoints.call(lane, key, store.record_attempt, attempt, resume_from, step, job=ident)
    except AttemptTaken:
        # The store's message names the other job, which may be another namespace's.
        raise AttemptTaken(
            f"{ck.uri}: attempt {attempt} is already in the fence log for another job "
            f"(two jobs share this root)"
        ) from None


async def delete_job(ck: CheckpointSpec, cred: Credentials, job: JobRef, *, lane: Lane) -> Deleted:
    """Delete this job's checkpoints, and nothing else under the root
    (spec.checkpoint.deleteOnJobDelete; lazarus_store.cleanup)."""
    target = await endpoints.target(ck.endpoint, job.namespace, lane)
    if target.problem is not None:
        raise StoreError(target.problem)
    store = open_store(ck, cred)
    key = LaneKey(job.namespace, target.key)
    return await endpoints.call(lane, key, delete_job_checkpoints, store, owner(job))
