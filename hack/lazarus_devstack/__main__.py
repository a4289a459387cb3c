"""`hack/cluster up|down|status|env`: the local control plane and S3 server."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from .errors import DevstackError
from .stack import DEFAULT_RUN_DIR, Ports, Stack, State


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/cluster", description=__doc__)
    parser.add_argument(
        "--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="default: %(default)s"
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start etcd, kube-apiserver, controllers and the S3 server")
    up.add_argument("--apiserver-port", type=int, default=6443)
    up.add_argument("--etcd-port", type=int, default=23790)
    up.add_argument("--s3-port", type=int, default=9566)
    up.add_argument("--no-controllers", action="store_true", help="skip kube-controller-manager")
    up.add_argument("--scheduler", action="store_true", help="also start kube-scheduler")
    up.add_argument("--no-s3", action="store_true", help="skip the S3 server")
    up.add_argument(
        "--real-node",
        action="store_true",
        help="also start a real node: containerd + runc + kubelet + CNI (needs root; "
        "hack/node/setup.sh obtains them); the S3 server then listens on the node IP",
    )
    up.add_argument(
        "--kueue",
        action="store_true",
        help="also run Kueue (hack/kueue/build.sh builds it) with a ResourceFlavor, "
        "ClusterQueue and a LocalQueue 'lazarus' in namespace default (docs/kueue.md)",
    )
    up.add_argument(
        "--kueue-wait-for-pods-ready",
        type=float,
        metavar="SECONDS",
        help="Kueue's waitForPodsReady timeout (default: off)",
    )
    sub.add_parser("down", help="stop everything the run directory records")
    sub.add_parser("status", help="show what runs")
    sub.add_parser("env", help="print shell exports for KUBECONFIG and the S3 client")
    args = parser.parse_args(argv)
    stack = Stack(args.run_dir, own_identities=getattr(args, "kueue", False))
    try:
        if args.cmd == "up":
            start = time.monotonic()
            kueue_built = _kueue_dir() if args.kueue else None  # before anything starts
            state = stack.up(
                Ports(
                    apiserver=args.apiserver_port,
                    etcd_client=args.etcd_port,
                    etcd_peer=args.etcd_port + 10,
                    s3=args.s3_port,
                ),
                controllers=not args.no_controllers,
                scheduler=args.scheduler,
                s3=not args.no_s3,
                real_node=args.real_node,
            )
            if kueue_built:
                _up_kueue(stack, state, kueue_built, args.kueue_wait_for_pods_ready)
            print(
                f"# Lazarus devstack up in {time.monotonic() - start:.1f}s "
                f"(Kubernetes {state.version}); run dir {state.run_dir}",
                file=sys.stderr,
            )
            if state.node:
                print(
                    f"# real node {state.node.name}: IP {state.node.ip}, "
                    f"pods {state.node.subnet} on {state.node.bridge}",
                    file=sys.stderr,
                )
            _print_env(state.env())
        elif args.cmd == "down":
            stopped = stack.down()
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}", file=sys.stderr)
        elif args.cmd == "status":
            current = stack.state()
            if not current:
                print("not running")
                return 1
            live = current.running()
            for name, pid in current.pids.items():
                print(f"{name:26} pid {pid:<8} {'running' if name in live else 'DEAD'}")
        elif args.cmd == "env":
            found = stack.state()
            if not found:
                raise DevstackError(
                    f"no stack in {stack.run_dir}: start one with `hack/cluster up`"
                )
            _print_env(found.env())
    except DevstackError as err:
        print(f"hack/cluster {args.cmd}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _kueue_dir() -> Path:
    from . import kueue

    return kueue.kueue_dir()


def _up_kueue(stack: Stack, state: State, built: Path, wait_for_pods_ready: float | None) -> None:
    """Kueue and one set of queues, or nothing: a failure stops the whole stack."""
    from . import kueue
    from .kueue_manifests import KueueOptions, Queues

    try:
        kueue.start(stack, state, KueueOptions(wait_for_pods_ready=wait_for_pods_ready), built)
        queues = Queues(namespace="default")
        kueue.apply(state, queues.docs())
    except BaseException:
        stack.down()
        raise
    print(
        f"# Kueue up: LocalQueue {queues.local_queue} (namespace default) -> ClusterQueue "
        f"{queues.cluster_queue} ({', '.join(f'{k}={v}' for k, v in queues.quota.items())})",
        file=sys.stderr,
    )


def _print_env(env: dict[str, str]) -> None:
    for key, value in env.items():
        print(f"export {key}={shlex.quote(value)}")


if __name__ == "__main__":
    sys.exit(main())
