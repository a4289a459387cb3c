"""Manifests of one attempt: pure functions of (job, spec, attempt, resume point).

Names: pods `<job>-a<attempt>-<index>`, the headless Service `<job>`; index 0
is the torch rendezvous master. With spec.faultTolerance each pod is a replica group
of its own (its own torch world) and a replacement of group i is
`<job>-a<attempt>-<i>-r<generation>`; the lighthouse's manifests are in lighthouse.py.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import lazarus_contract as c
from lazarus_contract.ft import (
    ENV_FT_GROUPS,
    ENV_FT_LIGHTHOUSE,
    ENV_FT_MIN_GROUPS,
    ENV_FT_REPLACEMENT,
    ENV_FT_REPLICA_GROUP,
)
from lazarus_contract.identity import JobIdentity
from lazarus_contract.interval import (
    ENV_SAVE_AUTO,
    ENV_SAVE_AUTO_MAX_SECONDS,
    ENV_SAVE_AUTO_MIN_SECONDS,
)

from .spec import JobSpec

GROUP = "lazarus.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TrainingJob"
PLURAL = "trainingjobs"

LABEL_JOB = f"{GROUP}/job"
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_INDEX = f"{GROUP}/index"
LABEL_GENERATION = f"{GROUP}/generation"  # a replica group's replacement count
PODINFO_VOLUME = "lazarus-podinfo"
PODINFO_DIR = "/etc/lazarus/podinfo"
TRAINER_PORT_NAME = "rendezvous"


@dataclass(frozen=True)
class JobRef:
    """Identity of the TrainingJob (for names, env and owner references)."""

    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class ResumePoint:
    """What LAZARUS_RESUME_FROM says: '' (fresh), 'auto', or a checkpoint name/URI."""

    value: str
    name: str | None = None  # the checkpoint the operator chose, if any
    step: int = -1


def pod_name(job: str, attempt: int, index: int, generation: int = 0) -> str:
    base = f"{job}-a{attempt}-{index}"
    return f"{base}-r{generation}" if generation else base


def owner_reference(job: JobRef) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": job.name,
        "uid": job.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(job: str, attempt: int | None = None, index: int | None = None) -> dict[str, str]:
    out = {LABEL_JOB: job}
    if attempt is not None:
        out[LABEL_ATTEMPT] = str(attempt)
    if index is not None:
        out[LABEL_INDEX] = str(index)
    return out


def build_service(job: JobRef, port: int) -> dict[str, Any]:
    """Headless Service giving each pod a stable DNS name for rendezvous."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": job.name,
            "namespace": job.namespace,
            "labels": labels(job.name),
            "ownerReferences": [owner_reference(job)],
        },
        "spec": {
            "clusterIP": "None",
            "selector": labels(job.name),
            # Rendezvous must resolve before pods are Ready.
            "publishNotReadyAddresses": True,
            "ports": [{"name": TRAINER_PORT_NAME, "port": port, "targetPort": port}],
        },
    }


def _world(
    job: JobRef, spec: JobSpec, attempt: int, index: int, generation: int
) -> list[tuple[str, str]]:
    """torchrun's and torch's rendezvous: the gang is one world; a replica group is a
    world of its own (its pod's processes), joined to the others by torchft."""
    if spec.fault_tolerance is None:
        master, nodes, rank = pod_name(job.name, attempt, 0), spec.replicas, index
    else:
        master, nodes, rank = pod_name(job.name, attempt, index, generation), 1, 0
    addr = f"{master}.{job.name}.{job.namespace}.svc"
    return [
        ("PET_NNODES", str(nodes)),
        ("PET_NODE_RANK", str(rank)),
        ("PET_NPROC_PER_NODE", str(spec.processes_per_pod)),
        ("PET_MASTER_ADDR", addr),
        ("PET_MASTER_PORT", str(spec.master_port)),
        ("MASTER_ADDR", addr),
        ("MASTER_PORT", str(spec.master_port)),
        ("WORLD_SIZE", str(nodes * spec.processes_per_pod)),
        ("RANK", str(rank * spec.processes_per_pod)),
    ]


def build_env(
    job: JobRef,
    spec: JobSpec,
    attempt: int,
    index: int,
    resume: ResumePoint,
    *,
    generation: int = 0,
) -> list[dict[str, Any]]:
    """The contract's environment (docs/contract.md section 2) for pod `index`."""
    ck = spec.checkpoint
    plain: list[tuple[str, str]] = [
        *JobIdentity(job.name, job.namespace, job.uid).env(),
        (c.ENV_ATTEMPT, str(attempt)),
        (c.ENV_CHECKPOINT_URI, ck.uri),
        (c.ENV_S3_ENDPOINT, ck.endpoint or ""),
        (c.ENV_S3_ADDRESSING_STYLE, ck.addressing_style),
        (c.ENV_RESUME_FROM, resume.value),
        (c.ENV_GRACE_SECONDS, str(spec.grace_period_seconds)),
        (c.ENV_SAVE_EVERY_STEPS, str(ck.save_every_steps)),
        (c.ENV_SAVE_EVERY_SECONDS, str(ck.save_every_seconds)),
        (c.ENV_EVAL_METRIC, ck.metric or ""),
        (c.ENV_EVAL_MODE, ck.metric_mode),
        (c.ENV_KEEP_LATEST, str(ck.keep_latest)),
        (c.ENV_KEEP_BEST, str(ck.keep_best)),
        (c.ENV_ANNOTATIONS_FILE, c.DEFAULT_ANNOTATIONS_FILE),
        (c.ENV_TERMINATION_LOG, c.DEFAULT_TERMINATION_LOG),
        *_world(job, spec, attempt, index, generation),
        *group_env(job, spec, index, generation),
    ]
    if ck.save_auto.enabled:  # the automatic interval (contract section 5a)
        plain += [
            (ENV_SAVE_AUTO, "1"),
            (ENV_SAVE_AUTO_MIN_SECONDS, str(ck.save_auto.min_seconds)),
            (ENV_SAVE_AUTO_MAX_SECONDS, str(ck.save_auto.max_seconds)),
        ]
    if ck.region:
        plain.append(("AWS_REGION", ck.region))
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plain]
    if ck.secret_ref is not None:
        ref = ck.secret_ref
        for var, key, optional in (
            ("AWS_ACCESS_KEY_ID", ref.access_key_id_key, False),
            ("AWS_SECRET_ACCESS_KEY", ref.secret_access_key_key, False),
            ("AWS_REGION", ref.region_key, True),
        ):
            if var == "AWS_REGION" and ck.region:
                continue
            env.append(
                {
                    "name": var,
                    "valueFrom": {
                        "secretKeyRef": {"name": ref.name, "key": key, "optional": optional}
                    },
                }
            )
    return env


def group_env(job: JobRef, spec: JobSpec, index: int, generation: int) -> list[tuple[str, str]]:
    """A replica group's identity and its lighthouse (contract section 2a); none
    without spec.faultTolerance."""
    ft = spec.fault_tolerance
    if ft is None:
        return []
    lighthouse = f"http://{lighthouse_service(job.name)}.{job.namespace}.svc:{ft.lighthouse_port}"
    out = [
        (ENV_FT_LIGHTHOUSE, lighthouse),
        (ENV_FT_REPLICA_GROUP, str(index)),
        (ENV_FT_GROUPS, str(ft.groups)),
        (ENV_FT_MIN_GROUPS, str(ft.min_groups)),
    ]
    # A replacement joins its live peers and takes their state; a whole-job restart
    # (a new attempt, generation 0) resumes every group from the checkpoint.
    return [*out, (ENV_FT_REPLACEMENT, "1")] if generation else out


def lighthouse_service(job: str) -> str:
    return f"{job}-lighthouse"


def build_pod(
    job: JobRef,
    spec: JobSpec,
    attempt: int,
    index: int,
    resume: ResumePoint,
    *,
    generation: int = 0,
) -> dict[str, Any]:
    """Pod `index` of `attempt`: the user's template plus the contract's wiring."""
    tmpl = copy.deepcopy(spec.template)
    meta = tmpl.get("metadata") or {}
    pod_spec: dict[str, Any] = tmpl["spec"]
    ours = labels(job.name, attempt, index)
    name = pod_name(job.name, attempt, index, generation)
    annotations = dict(meta.get("annotations") or {})
    pod_spec["restartPolicy"] = "Never"  # the operator restarts the gang, not kubelet
    pod_spec["terminationGracePeriodSeconds"] = spec.grace_period_seconds
    pod_spec["hostname"] = name
    pod_spec["subdomain"] = job.name
    if spec.fault_tolerance is not None:
        ours[LABEL_GENERATION] = str(generation)
        # torchft advertises socket.gethostname() to its peers (the manager and the
        # live-state transport): the FQDN resolves through the headless Service.
        pod_spec["setHostnameAsFQDN"] = True
    volumes = [v for v in pod_spec.get("volumes") or [] if v.get("name") != PODINFO_VOLUME]
    volumes.append(
        {
            "name": PODINFO_VOLUME,
            "downwardAPI": {
                "items": [
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}
                ]
            },
        }
    )
    pod_spec["volumes"] = volumes
    trainer = pod_spec["containers"][0]
    ours_env = build_env(job, spec, attempt, index, resume, generation=generation)
    names = {e["name"] for e in ours_env}
    trainer["env"] = ours_env + [e for e in trainer.get("env") or [] if e.get("name") not in names]
    mounts = [m for m in trainer.get("volumeMounts") or [] if m.get("name") != PODINFO_VOLUME]
    mounts.append({"name": PODINFO_VOLUME, "mountPath": PODINFO_DIR, "readOnly": True})
    trainer["volumeMounts"] = mounts
    trainer.setdefault("terminationMessagePath", c.DEFAULT_TERMINATION_LOG)
    trainer.setdefault("terminationMessagePolicy", "File")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": job.namespace,
            "labels": {**(meta.get("labels") or {}), **ours},
            "annotations": annotations,
            "ownerReferences": [owner_reference(job)],
        },
        "spec": pod_spec,
    }


def build_attempt(
    job: JobRef, spec: JobSpec, attempt: int, resume: ResumePoint
) -> list[dict[str, Any]]:
    return [build_pod(job, spec, attempt, i, resume) for i in range(spec.replicas)]
