"""lazarus_store: the torch-free checkpoint store shared by the operator and the trainer.

Format and rules: docs/contract.md sections 1, 6-8. Typical use::

    store = open_store_from_env()
    w = store.begin(step=1200, attempt=3)
    w.put_bytes("model.pt", data)
    w.commit(reason="periodic", metrics={"loss": 0.4})
    sel = store.valid_in_lineage(attempt=4)

What it holds: `CheckpointStore` (store.py), a facade over one `Root` (root.py:
backend, tuning, I/O pool); the catalog and validation (catalog.py); selection of
the checkpoint to resume from (selection.py: `valid_in_lineage`); verified reads
(verified.py); the write path (writer.py, upload.py); the fence log (fencelog.py)
and its pure rules (lineage.py, ownership.py); quarantine markers (quarantine.py);
retention (retention.py: the pure policy; prune.py: applying it; cleanup.py:
deleting a job); the manifest format (manifest.py); backends for S3 and a
filesystem (backends/); opening a store from a URI (uri.py); the `lazarus-ckpt`
CLI (cli.py).

What it may import: the standard library, lazarus_contract, jsonschema, boto3 and
botocore (backends/s3*.py only). Never torch or numpy (the operator imports this
package; tests/store/test_manifest.py checks the import graph), nor the operator's
or the trainer's packages.
"""

from lazarus_contract.identity import JobIdentity

from .catalog import CheckpointInfo, Validation
from .errors import (
    AccessDenied,
    AttemptTaken,
    BucketMissing,
    CheckpointNotFound,
    ChecksumMismatch,
    CommitConflict,
    EndpointNotS3,
    FencedOut,
    InvalidCheckpoint,
    InvalidURI,
    StoreError,
    StoreUnavailable,
)
from .lineage import AttemptRecord
from .manifest import SCHEMA_VERSION, Manifest, ObjectEntry
from .ownership import Owner
from .retention import Candidate, RetentionPlan, RetentionPolicy, plan_retention
from .selection import Selection, Skipped
from .store import CheckpointStore
from .uri import S3Timeouts, open_store, open_store_from_env
from .writer import CheckpointWriter

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
    "EndpointNotS3",
    "FencedOut",
    "InvalidCheckpoint",
    "InvalidURI",
    "JobIdentity",
    "Manifest",
    "ObjectEntry",
    "Owner",
    "RetentionPlan",
    "RetentionPolicy",
    "S3Timeouts",
    "Selection",
    "Skipped",
    "StoreError",
    "StoreUnavailable",
    "Validation",
    "open_store",
    "open_store_from_env",
    "plan_retention",
]
