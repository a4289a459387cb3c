"""lazarus_store: the torch-free checkpoint store shared by the operator and the trainer.

Format and rules: docs/contract.md section 1. Typical use::

    store = open_store_from_env()
    w = store.begin(step=1200, attempt=3)
    w.put_bytes("model.pt", data)
    w.commit(reason="periodic", metrics={"loss": 0.4})
    sel = store.latest_valid(attempt=4)
"""

from .errors import (
    AccessDenied,
    AttemptTaken,
    BucketMissing,
    CheckpointNotFound,
    ChecksumMismatch,
    CommitConflict,
    FencedOut,
    InvalidCheckpoint,
    InvalidURI,
    StoreError,
    StoreUnavailable,
)
from .lineage import AttemptRecord
from .manifest import SCHEMA_VERSION, JobIdentity, Manifest, ObjectEntry
from .ownership import Owner
from .retention import Candidate, RetentionPlan, RetentionPolicy, plan_retention
from .store import (
    CheckpointInfo,
    CheckpointStore,
    CheckpointWriter,
    Selection,
    Skipped,
    Validation,
)
from .uri import open_store, open_store_from_env

__all__ = [
    "SCHEMA_VERSION",
    "AccessDenied",
    "AttemptRecord",
    "AttemptTaken",
    "BucketMissing",
    "Candidate",
    "CheckpointInfo",
    "CheckpointNotFound",
    "CheckpointStore",
    "CheckpointWriter",
    "ChecksumMismatch",
    "CommitConflict",
    "FencedOut",
    "InvalidCheckpoint",
    "InvalidURI",
    "JobIdentity",
    "Manifest",
    "ObjectEntry",
    "Owner",
    "RetentionPlan",
    "RetentionPolicy",
    "Selection",
    "Skipped",
    "StoreError",
    "StoreUnavailable",
    "Validation",
    "open_store",
    "open_store_from_env",
    "plan_retention",
]
