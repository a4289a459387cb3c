"""The TrainingJob spec, parsed once into typed, defaulted values.

The API server already applies the CRD's defaults and CEL rules; the dataclasses
below hold the same defaults, once (the parser reads them from there), so the pure
core also works on objects that never went through admission (unit tests, objects
stored before a CRD upgrade); tests/operator/test_spec_defaults.py holds the two to
each other. `SpecError` names the field for anything the schema cannot express.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from lazarus_contract import EXIT_PERMANENT
from lazarus_contract.ft import DEFAULT_HEARTBEAT_TIMEOUT_MS, DEFAULT_LIGHTHOUSE_PORT, majority
from lazarus_contract.rules import DEFAULT_KEEP_BEST, DEFAULT_KEEP_LATEST

ResumeMode = Literal["auto", "none", "explicit"]

# Taints that announce that a node is about to go away (section 5 of the
# contract): the operator asks the trainer to save right away.
DEFAULT_DISRUPTION_TAINTS: tuple[str, ...] = (
    "ToBeDeletedByClusterAutoscaler",
    "karpenter.sh/disrupted",
    "karpenter.sh/disruption",
    "cloud.google.com/impending-node-termination",
    "aws-node-termination-handler/spot-itn",
    "aws-node-termination-handler/scheduled-maintenance",
    "aws-node-termination-handler/rebalance-recommendation",
    "kubernetes.azure.com/scalesetpriority-eviction",
)


class SpecError(ValueError):
    """The spec is unusable; the message names the field."""


@dataclass(frozen=True)
class SecretRef:
    name: str
    access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"
    region_key: str = "AWS_REGION"


@dataclass(frozen=True)
class AutoSave:
    """spec.checkpoint.save.auto: the automatic interval's bounds and prior (docs/trainer.md)."""

    enabled: bool = False
    min_seconds: int = 60
    max_seconds: int = 21600
    prior_mtbf_seconds: int = 86400


@dataclass(frozen=True)
class CheckpointSpec:
    uri: str
    endpoint: str | None = None
    addressing_style: str = "auto"
    region: str | None = None
    secret_ref: SecretRef | None = None
    resume: ResumeMode = "auto"
    resume_from: str | None = None  # for resume == "explicit"
    keep_latest: int = DEFAULT_KEEP_LATEST
    keep_best: int = DEFAULT_KEEP_BEST
    metric: str | None = None
    metric_mode: str = "min"
    save_every_steps: int = 0
    save_every_seconds: int = 0
    save_auto: AutoSave = field(default_factory=AutoSave)
    delete_on_job_delete: bool = False


@dataclass(frozen=True)
class Backoff:
    initial_seconds: float = 10.0
    max_seconds: float = 600.0
    multiplier: float = 2.0

    def delay(self, failures: int) -> float:
        """Delay before relaunching after the `failures`-th consecutive failure (1-based)."""
        if failures <= 0:
            return 0.0
        return float(
            min(self.max_seconds, self.initial_seconds * self.multiplier ** (failures - 1))
        )


@dataclass(frozen=True)
class FailurePolicy:
    max_failures: int = 6
    max_preemptions: int | None = None  # None: unlimited
    backoff: Backoff = field(default_factory=Backoff)
    permanent_exit_codes: frozenset[int] = frozenset({EXIT_PERMANENT})
    max_failures_without_progress: int = 3


@dataclass(frozen=True)
class Scheduling:
    """spec.scheduling: how an attempt's gang gets placed (docs/trainingjob.md)."""

    # An attempt whose pods are not all Running this long after its launch is torn
    # down and relaunched after a backoff (`starttimeout`); None: wait forever.
    start_timeout_seconds: int | None = None


START_TIMEOUT_MAX = 7 * 86400  # the CRD's maximum too


@dataclass(frozen=True)
class FaultTolerance:
    """spec.faultTolerance: torchft replica groups, each one pod (docs/fault-tolerance.md).
    A failed group is replaced alone while at least `min_groups` others train on."""

    groups: int
    min_groups: int
    heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS
    lighthouse_port: int = DEFAULT_LIGHTHOUSE_PORT

    @property
    def below_majority(self) -> bool:
        """Two lighthouses alive at once could each form a quorum (a split brain)."""
        return self.min_groups < majority(self.groups)


@dataclass(frozen=True)
class JobSpec:
    template: dict[str, Any]
    checkpoint: CheckpointSpec
    failure_policy: FailurePolicy = field(default_factory=FailurePolicy)
    replicas: int = 1
    processes_per_pod: int = 1
    grace_period_seconds: int = 120
    node_loss_timeout_seconds: int = 60
    stuck_terminating_timeout_seconds: int = 120
    suspend: bool = False
    ttl_seconds_after_finished: int | None = None
    master_port: int = 29500
    disruption_taints: tuple[str, ...] = DEFAULT_DISRUPTION_TAINTS
    scheduling: Scheduling = field(default_factory=Scheduling)
    fault_tolerance: FaultTolerance | None = None


def _int(d: dict[str, Any], key: str, default: int, path: str, minimum: int = 0) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(f"{path}.{key} must be an integer, got {v!r}")
    if v < minimum:
        raise SpecError(f"{path}.{key} must be >= {minimum}, got {v}")
    return v


def _num(d: dict[str, Any], key: str, default: float, path: str) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise SpecError(f"{path}.{key} must be a number >= 0, got {v!r}")
    return float(v)


def _dict(d: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    v = d.get(key) or {}
    if not isinstance(v, dict):
        raise SpecError(f"{path}.{key} must be an object")
    return v


def _template(raw: dict[str, Any]) -> dict[str, Any]:
    template = raw.get("template")
    if not isinstance(template, dict):
        raise SpecError("spec.template is required")
    pod_spec = template.get("spec")
    containers = pod_spec.get("containers") if isinstance(pod_spec, dict) else None
    if not isinstance(containers, list) or not containers:
        raise SpecError("spec.template.spec.containers must list the trainer container")
    if not isinstance(containers[0], dict) or not containers[0].get("image"):
        raise SpecError("spec.template.spec.containers[0].image is required")
    return template


def _secret_ref(ck: dict[str, Any]) -> SecretRef | None:
    raw = ck.get("secretRef")
    if not raw:
        return None
    if not isinstance(raw, dict) or not raw.get("name"):
        raise SpecError("spec.checkpoint.secretRef.name is required")
    d = SecretRef
    return SecretRef(
        name=raw["name"],
        access_key_id_key=raw.get("accessKeyIdKey", d.access_key_id_key),
        secret_access_key_key=raw.get("secretAccessKeyKey", d.secret_access_key_key),
        region_key=raw.get("regionKey", d.region_key),
    )


def _checkpoint(raw: dict[str, Any]) -> CheckpointSpec:
    ck = _dict(raw, "checkpoint", "spec")
    uri = ck.get("uri")
    if not isinstance(uri, str) or not (uri.startswith("s3://") or uri.startswith("/")):
        raise SpecError("spec.checkpoint.uri must be s3://bucket/prefix or an absolute path")
    d = CheckpointSpec
    resume = str(ck.get("resume", d.resume))
    resume_mode: ResumeMode
    resume_from = None
    if resume in ("auto", "none"):
        resume_mode = "auto" if resume == "auto" else "none"
    elif resume:
        resume_mode, resume_from = "explicit", resume
    else:
        raise SpecError("spec.checkpoint.resume must be auto, none or a checkpoint name/URI")
    ret = _dict(ck, "retention", "spec.checkpoint")
    save = _dict(ck, "save", "spec.checkpoint")
    mode = str(ret.get("mode", d.metric_mode))
    if mode not in ("min", "max"):
        raise SpecError("spec.checkpoint.retention.mode must be min or max")
    return CheckpointSpec(
        uri=uri,
        endpoint=ck.get("endpoint") or None,
        addressing_style=str(ck.get("addressingStyle", d.addressing_style)),
        region=ck.get("region") or None,
        secret_ref=_secret_ref(ck),
        resume=resume_mode,
        resume_from=resume_from,
        keep_latest=_int(ret, "keepLatest", d.keep_latest, "spec.checkpoint.retention", 1),
        keep_best=_int(ret, "keepBest", d.keep_best, "spec.checkpoint.retention"),
        metric=ret.get("metric") or None,
        metric_mode=mode,
        save_every_steps=_int(save, "everySteps", d.save_every_steps, "spec.checkpoint.save"),
        save_every_seconds=_int(save, "everySeconds", d.save_every_seconds, "spec.checkpoint.save"),
        save_auto=_auto_save(save),
        delete_on_job_delete=bool(ck.get("deleteOnJobDelete", d.delete_on_job_delete)),
    )


def _auto_save(save: dict[str, Any]) -> AutoSave:
    path = "spec.checkpoint.save.auto"
    auto = _dict(save, "auto", "spec.checkpoint.save")
    a = AutoSave
    out = AutoSave(
        enabled=bool(auto.get("enabled", a.enabled)),
        min_seconds=_int(auto, "minSeconds", a.min_seconds, path, 1),
        max_seconds=_int(auto, "maxSeconds", a.max_seconds, path, 1),
        prior_mtbf_seconds=_int(auto, "priorMTBFSeconds", a.prior_mtbf_seconds, path, 1),
    )
    if out.min_seconds > out.max_seconds:
        raise SpecError(f"{path}.minSeconds must not exceed maxSeconds")
    return out


def _failure_policy(raw: dict[str, Any]) -> FailurePolicy:
    fp = _dict(raw, "failurePolicy", "spec")
    bo = _dict(fp, "backoff", "spec.failurePolicy")
    b, path = Backoff, "spec.failurePolicy.backoff"
    backoff = Backoff(
        initial_seconds=_num(bo, "initialSeconds", b.initial_seconds, path),
        max_seconds=_num(bo, "maxSeconds", b.max_seconds, path),
        multiplier=_num(bo, "multiplier", b.multiplier, path),
    )
    if backoff.multiplier < 1:
        raise SpecError("spec.failurePolicy.backoff.multiplier must be >= 1")
    max_pre = fp.get("maxPreemptions")
    if max_pre is not None:
        max_pre = _int(fp, "maxPreemptions", 0, "spec.failurePolicy")
    codes = fp.get("permanentExitCodes") or []
    if not isinstance(codes, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 255 for c in codes
    ):
        raise SpecError("spec.failurePolicy.permanentExitCodes must be integers in 1..255")
    d = FailurePolicy
    return FailurePolicy(
        max_failures=_int(fp, "maxFailures", d.max_failures, "spec.failurePolicy"),
        max_preemptions=max_pre,
        backoff=backoff,
        permanent_exit_codes=frozenset({EXIT_PERMANENT, *codes}),
        max_failures_without_progress=_int(
            fp,
            "maxFailuresWithoutProgress",
            d.max_failures_without_progress,
            "spec.failurePolicy",
            1,
        ),
    )


def _scheduling(raw: dict[str, Any]) -> Scheduling:
    sch = _dict(raw, "scheduling", "spec")
    if sch.get("startTimeoutSeconds") is None:
        return Scheduling()
    timeout = _int(sch, "startTimeoutSeconds", 0, "spec.scheduling", 1)
    if timeout > START_TIMEOUT_MAX:
        raise SpecError(f"spec.scheduling.startTimeoutSeconds must be <= {START_TIMEOUT_MAX}")
    return Scheduling(start_timeout_seconds=timeout)


def _fault_tolerance(raw: dict[str, Any], replicas: int) -> FaultTolerance | None:
    ft = _dict(raw, "faultTolerance", "spec")
    if not ft:
        return None
    path = "spec.faultTolerance"
    groups = _int(ft, "replicaGroups", 2, path, 2)
    min_groups = _int(ft, "minReplicaGroups", majority(groups), path, 1)
    if min_groups > groups:
        raise SpecError(f"{path}.minReplicaGroups={min_groups} exceeds replicaGroups={groups}")
    if replicas != groups:
        raise SpecError(
            f"{path}.replicaGroups={groups} must equal spec.replicas={replicas}: each replica"
            " group is one pod (processesPerPod processes)"
        )
    beat = _int(ft, "heartbeatTimeoutMilliseconds", DEFAULT_HEARTBEAT_TIMEOUT_MS, path, 100)
    port = _int(ft, "lighthousePort", DEFAULT_LIGHTHOUSE_PORT, path, 1)
    return FaultTolerance(groups, min_groups, beat, port)


def parse_spec(raw: dict[str, Any]) -> JobSpec:
    """Parse `.spec` of a TrainingJob; raises `SpecError` naming the bad field."""
    if not isinstance(raw, dict):
        raise SpecError("spec must be an object")
    template = _template(raw)
    checkpoint = _checkpoint(raw)
    policy = _failure_policy(raw)
    ttl = raw.get("ttlSecondsAfterFinished")
    taints = raw.get("disruptionTaints")
    d = JobSpec
    replicas = _int(raw, "replicas", d.replicas, "spec", 1)
    return JobSpec(
        replicas=replicas,
        processes_per_pod=_int(raw, "processesPerPod", d.processes_per_pod, "spec", 1),
        template=template,
        checkpoint=checkpoint,
        failure_policy=policy,
        grace_period_seconds=_int(raw, "gracePeriodSeconds", d.grace_period_seconds, "spec"),
        node_loss_timeout_seconds=_int(
            raw, "nodeLossTimeoutSeconds", d.node_loss_timeout_seconds, "spec"
        ),
        stuck_terminating_timeout_seconds=_int(
            raw, "stuckTerminatingTimeoutSeconds", d.stuck_terminating_timeout_seconds, "spec"
        ),
        suspend=bool(raw.get("suspend", d.suspend)),
        ttl_seconds_after_finished=(
            None if ttl is None else _int(raw, "ttlSecondsAfterFinished", 0, "spec")
        ),
        master_port=_int(raw, "masterPort", d.master_port, "spec", 1),
        disruption_taints=(
            tuple(str(t) for t in taints) if isinstance(taints, list) else DEFAULT_DISRUPTION_TAINTS
        ),
        scheduling=_scheduling(raw),
        fault_tolerance=_fault_tolerance(raw, replicas),
    )
