"""The stack the operator benchmarks run on: the devstack (API server, etcd, controllers,
optionally the scheduler, and the S3 server) with the CRDs applied, one namespace holding
the S3 Secret, and a bucket; then the operator as a subprocess (lazarus_devstack.harness)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from kubernetes import client, config

from lazarus_devstack.harness import GROUP, VERSION, create_namespace
from lazarus_devstack.stack import Ports, S3Info, Stack, State, apply_crds


@dataclass
class KubeBench:
    """A running stack and the clients a benchmark drives it with."""

    stack: Stack
    state: State
    s3: S3Info
    api: client.ApiClient
    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    ns: str
    bucket: str

    def job(self, name: str, replicas: int, **spec: Any) -> dict[str, Any]:
        """A TrainingJob of `replicas` pods checkpointing to this bucket; `spec` adds to it."""
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "template": {"spec": {"containers": [{"name": "t", "image": "t"}]}},
                "checkpoint": {
                    "uri": f"s3://{self.bucket}/{name}",
                    "endpoint": self.s3.endpoint,
                    "addressingStyle": "path",
                    "region": self.s3.region,
                    "secretRef": {"name": "s3"},
                },
                "gracePeriodSeconds": 5,
                **spec,
            },
        }

    def store(self, name: str) -> Any:
        """The checkpoint store of job `name`."""
        from lazarus_store import open_store

        return open_store(
            f"s3://{self.bucket}/{name}",
            endpoint_url=self.s3.endpoint,
            addressing_style="path",
            aws_access_key_id=self.s3.access_key,
            aws_secret_access_key=self.s3.secret_key,
            region=self.s3.region,
        )


def start(
    run_dir: Path, ns: str, bucket_prefix: str, *, scheduler: bool = False, pool: int = 0
) -> KubeBench:
    """Bring the stack up in `run_dir` (the caller calls `.stack.down()`), with the CRDs,
    namespace `ns` with an `s3` Secret, and a fresh bucket. `pool`: the API client's
    connection pool size, when the default is too small."""
    stack = Stack(run_dir)
    ports = Ports(apiserver=0, etcd_client=0, etcd_peer=0, s3=0)
    state = stack.up(ports, controllers=True, scheduler=scheduler)
    try:
        return _prepare(stack, state, ns, bucket_prefix, pool)
    except BaseException:
        stack.down()
        raise


def _prepare(stack: Stack, state: State, ns: str, bucket_prefix: str, pool: int) -> KubeBench:
    assert state.s3 is not None
    s3 = state.s3
    apply_crds(state)
    api = config.new_client_from_config(config_file=state.kubeconfig)
    if pool:
        api.configuration.connection_pool_maxsize = pool
    core = client.CoreV1Api(api)
    create_namespace(core, ns)
    keys = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    core.create_namespaced_secret(
        ns,
        {
            "metadata": {"name": "s3"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in keys.items()},
        },
    )
    bucket = f"{bucket_prefix}-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name=s3.region,
    ).create_bucket(Bucket=bucket)
    custom = client.CustomObjectsApi(api)
    return KubeBench(stack, state, s3, api, core, custom, ns, bucket)
