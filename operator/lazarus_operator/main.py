"""`lazarus-operator`: run the kopf operator with Lazarus' own names and timeouts."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import kopf
from kubernetes import client, config

from lazarus_store import redact

from . import handlers, heap, metrics, owncreds
from .cycle import Reconciler
from .kube import Kube
from .runtime import Options, Runtime

FINALIZER = "lazarus.dev/finalizer"
PREFIX = "lazarus.dev"
PEERING_NAME = "lazarus"
RESYNC_SECONDS = 10.0
# A LIST of the pods' metadata this often catches pods deleted while a watch was away.
RELIST_SECONDS = 300.0
API_CONNECTIONS = 32  # the API client's pool, and as many threads to use it
MALLOC_ARENAS = 2  # glibc arenas for all threads (heap.limit_arenas; 0: glibc's default)


def _api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
        cfg = client.Configuration.get_default_copy()
    except config.ConfigException:
        cfg = client.Configuration()
        config.load_kube_config(client_configuration=cfg)
    # Enough connections for 20+ jobs' concurrent cycles (each pod create is one).
    cfg.connection_pool_maxsize = API_CONNECTIONS
    return client.ApiClient(cfg)


class JobsOnlyDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf builds an object's essence (a deep copy of its body, managedFields and all)
    on every event of every watched kind, but only the TrainingJobs' delete handler
    reads it: for pods, nodes, Secrets and Services it was 17% of the event loop in
    a 1,000-job launch (py-spy), for nothing. Theirs is empty."""

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Iterable[kopf.FieldSpec] | None = None,
    ) -> kopf.BodyEssence:
        if body.get("kind") in UNHANDLED_KINDS:
            return kopf.BodyEssence()
        return super().build(body=body, extra_fields=extra_fields)


# Kinds watched for the indexes and event handlers only: no change-detecting handler.
UNHANDLED_KINDS: Final = frozenset({"Pod", "Node", "Secret", "Service"})


def _configure(settings: kopf.OperatorSettings, peering: bool, lifetime: int) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = JobsOnlyDiffBase(
        prefix=PREFIX, key="last-handled-configuration"
    )
    # A silent watch must not hang forever: reconnect regularly.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    # Our own events say what happened; kopf's would echo every TemporaryError
    # (a backoff wait is not an error).
    settings.posting.enabled = False
    # One replica acts at a time: the others pause while a higher-priority peer lives.
    settings.peering.name = PEERING_NAME
    settings.peering.mandatory = peering
    settings.peering.standalone = not peering
    settings.peering.priority = random.randint(1, 2**30)
    settings.peering.lifetime = lifetime
    settings.peering.clusterwide = False


def _seconds(text: str) -> float:
    """A finite number of seconds >= 0 (argparse's type: its error is one line)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lazarus-operator", description=__doc__)
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch these namespaces (repeatable); default: all",
    )
    p.add_argument(
        "--peering",
        action="store_true",
        default=int(os.environ.get("LAZARUS_REPLICAS", "1")) > 1,
        help="coordinate with other replicas (on when LAZARUS_REPLICAS > 1)",
    )
    p.add_argument(
        "--peering-lifetime",
        type=int,
        default=int(os.environ.get("LAZARUS_PEERING_LIFETIME", "60")),
    )
    p.add_argument(
        "--progress-interval",
        type=float,
        default=float(os.environ.get("LAZARUS_PROGRESS_SECONDS", "30")),
        help="seconds between checkpoint-store refreshes of a running job",
    )
    p.add_argument(
        "--liveness",
        default=os.environ.get("LAZARUS_LIVENESS"),
        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("LAZARUS_METRICS_PORT", "8080")),
        help="serve Prometheus metrics on this port at /metrics (0: off)",
    )
    p.add_argument(
        "--metrics-keep-finished",
        type=_seconds,  # also applied to the default: a bad env value is a one-line error
        default=os.environ.get(
            "LAZARUS_METRICS_KEEP_FINISHED_SECONDS", str(metrics.KEEP_FINISHED_SECONDS)
        ),
        help="seconds a finished job's metric series are kept after it finished",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        owncreds.from_env()  # a bad allow-list stops the operator here, in one line
    except ValueError as err:
        parser.error(str(err))
    # Before any thread starts: the arenas are per thread, and so is a snapshot's view.
    heap.limit_arenas(int(os.environ.get("LAZARUS_MALLOC_ARENAS", MALLOC_ARENAS)))
    if snapshots := os.environ.get("LAZARUS_HEAP_SNAPSHOTS"):
        heap.HeapDumper(Path(snapshots))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # kopf's "Handler 'pod_event' succeeded." for every event of every pod: 9% of
        # the event loop in a 1,000-job launch. Its warnings and errors still show.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    redact.install()  # no credentials in the log, even at --verbose (botocore DEBUG)
    namespaces: list[str] = args.namespace

    settings = kopf.OperatorSettings()
    _configure(settings, args.peering, args.peering_lifetime)
    settings.peering.clusterwide = not namespaces

    runtime = Runtime(
        Reconciler(Kube(_api_client()), progress_interval=args.progress_interval),
        Options(
            namespaces=tuple(namespaces),
            peering=args.peering,
            priority=settings.peering.priority,
            peering_name=PEERING_NAME,
            resync_seconds=float(os.environ.get("LAZARUS_RESYNC_SECONDS", RESYNC_SECONDS)),
            relist_seconds=float(os.environ.get("LAZARUS_RELIST_SECONDS", RELIST_SECONDS)),
            api_threads=API_CONNECTIONS,
        ),
    )
    assert handlers.startup  # importing `handlers` registers every kopf handler
    metrics.METRICS.keep_finished = args.metrics_keep_finished
    metrics.serve(args.metrics_port)
    asyncio.run(
        kopf.operator(
            settings=settings,
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=not args.peering,
            priority=settings.peering.priority,
            peering_name=PEERING_NAME if args.peering else None,
            liveness_endpoint=args.liveness,
            memo=runtime,
        )
    )


if __name__ == "__main__":
    main()
