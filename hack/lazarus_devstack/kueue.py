"""Kueue's controller manager in a running local stack, on demand.

`start` applies Kueue's namespace, ServiceAccount and ClusterRole, its CRDs, runs the
binary hack/kueue/build.sh built (as that ServiceAccount, through a token) and, once
it serves, its webhook configurations; `apply` creates queues (kueue_manifests.Queues).
The process is recorded in the stack's state, so `hack/cluster down` stops it.

Webhooks: the stack has no kube-proxy, so the API server calls Kueue at
https://127.0.0.1:<port> (a `url` client config), on a serving cert signed by a CA
made here; Kueue's internal cert rotator is off. With the rotator off Kueue also
insists on a metrics serving cert at a fixed path, /etc/kueue/metrics/certs: the one
thing made outside the run directory (self-signed, shared by every stack, kept).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import kueue_manifests as km
from . import procs
from .errors import DevstackError
from .stack import REPO, Ports, Stack, State, apply_crds

BUILD_SCRIPT = REPO / "hack" / "kueue" / "build.sh"
METRICS_CERT_DIR = Path("/etc/kueue/metrics/certs")  # fixed in Kueue's main
COMPONENT = "kueue"
# What hack/kueue/build.sh copies from the module beside the binary.
MANIFESTS = ("crds", "manager-role.yaml", "manager-secrets-role.yaml", "webhooks.yaml")


def kueue_dir() -> Path:
    """The cached Kueue build (binary + manifests/), built from its Go module on first use."""
    override = os.environ.get("LAZARUS_KUEUE_DIR")
    if override:
        built = Path(override)
    else:
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=None, text=True, check=False
        )
        if result.returncode != 0:
            raise DevstackError(
                "building Kueue failed (hack/kueue/build.sh, output above); "
                "fix the error it names and run it again"
            )
        built = Path(result.stdout.strip().splitlines()[-1])
    wanted = ["kueue", *(f"manifests/{m}" for m in MANIFESTS)]
    missing = [w for w in wanted if not (built / w).exists()]
    if missing:
        raise DevstackError(
            f"{built} is not a Kueue build (no {', '.join(missing)}); "
            f"unset LAZARUS_KUEUE_DIR or point it at what hack/kueue/build.sh prints"
        )
    return built


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey]
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def serving_cert(directory: Path) -> bytes:
    """A CA and a cert for 127.0.0.1 it signs, as tls.crt/tls.key in `directory` (where
    Kueue's webhook server reads them); returns the CA's PEM for the caBundles."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = "lazarus-devstack-kueue-ca"
    ca = (
        _cert(ca_name, ca_key, (ca_name, ca_key))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        _cert("kueue-webhook", key, (ca_name, ca_key))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "tls.crt").write_bytes(_pem(leaf))
    (directory / "tls.key").write_bytes(_key_pem(key))
    (directory / "tls.key").chmod(0o600)
    (directory / "ca.crt").write_bytes(_pem(ca))
    return _pem(ca)


def ensure_metrics_cert(directory: Path = METRICS_CERT_DIR) -> None:
    """The metrics cert Kueue reads at a fixed path when its rotator is off; made once,
    moved into place whole (stacks start side by side), and kept: it names nothing
    stack-specific."""
    if (directory / "tls.crt").exists():
        return
    tmp = directory.parent / f".certs-{os.getpid()}"
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        serving_cert(tmp)
        tmp.replace(directory)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (directory / "tls.crt").exists():  # else another stack made it first
            raise DevstackError(
                f"Kueue needs a metrics cert in {directory} and it cannot be made there "
                f"({err.strerror}); make that directory writable (or run as root) and retry"
            ) from None


def _kubectl(
    state: State, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [state.kubectl(), f"--kubeconfig={state.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def apply(state: State, docs: list[km.Doc]) -> None:
    """Server-side apply `docs` as the stack's admin; a refusal is one clear error."""
    listed = {"apiVersion": "v1", "kind": "List", "items": docs}
    got = _kubectl(
        state, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=json.dumps(listed)
    )
    if got.returncode != 0:
        kinds = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
        raise DevstackError(f"applying {kinds} failed: {got.stderr.strip()}")


def _token_kubeconfig(state: State, path: Path) -> None:
    """A kubeconfig for Kueue's ServiceAccount, so it runs with its own RBAC only."""
    got = _kubectl(
        state, "create", "token", km.SERVICE_ACCOUNT, "-n", km.NAMESPACE, "--duration=8760h"
    )
    if got.returncode != 0:
        raise DevstackError(f"a token for Kueue's ServiceAccount: {got.stderr.strip()}")
    ca = Path(state.run_dir) / "pki" / "ca.crt"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {"server": state.server, "certificate-authority": str(ca)},
                    }
                ],
                "users": [{"name": "kueue", "user": {"token": got.stdout.strip()}}],
                "contexts": [{"name": "kueue", "context": {"cluster": "local", "user": "kueue"}}],
                "current-context": "kueue",
            }
        )
    )
    path.chmod(0o600)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


def _webhook_mutates(state: State) -> bool:
    """True once the API server calls Kueue's webhooks: a dry-run Job in a queue comes
    back suspended, which only Kueue's mutating webhook does (a dry-run that merely
    succeeds could predate the API server seeing the webhook configuration)."""
    probe = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "kueue-probe",
            "namespace": "default",
            "labels": {km.QUEUE_LABEL: "kueue-probe"},
        },
        "spec": {
            "suspend": False,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "c", "image": "probe", "resources": {"requests": {"cpu": "1m"}}}
                    ],
                }
            },
        },
    }
    got = _kubectl(
        state, "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(probe)
    )
    return got.returncode == 0 and json.loads(got.stdout)["spec"].get("suspend") is True


def start(
    stack: Stack, state: State, opts: km.KueueOptions | None = None, built: Path | None = None
) -> int:
    """Run Kueue in the stack `state` describes; return its pid once its webhooks answer
    through the API server. `built`: kueue_dir()'s answer, if already asked."""
    opts = opts or km.KueueOptions()
    built = built or kueue_dir()
    manifests = built / "manifests"
    run = Path(state.run_dir) / "kueue"
    (run / "crds").mkdir(parents=True, exist_ok=True)
    ends = km.Endpoints(
        webhook=procs.free_port(),
        health=procs.free_port(),
        metrics=procs.free_port(),
        cert_dir=str(run / "certs"),
    )
    ensure_metrics_cert()
    ca = serving_cert(run / "certs")
    base = f"https://127.0.0.1:{ends.webhook}"

    roles = [
        (manifests / f).read_text() for f in ("manager-role.yaml", "manager-secrets-role.yaml")
    ]
    apply(state, km.rbac(*roles))
    for src in sorted((manifests / "crds").glob("*.yaml")):
        (run / "crds" / src.name).write_text(json.dumps(km.crd(src.read_text(), base, ca)))
    apply_crds(state, run / "crds")
    _token_kubeconfig(state, run / "kubeconfig")
    (run / "config.yaml").write_text(json.dumps(km.configuration(opts, ends), indent=2))

    pid = stack.launch(
        COMPONENT,
        [str(built / "kueue"), f"--config={run / 'config.yaml'}"],
        lambda: _http_ok(f"http://127.0.0.1:{ends.health}/readyz"),
        env={"KUBECONFIG": str(run / "kubeconfig")},
        timeout=120,
    )
    apply(state, km.webhooks((manifests / "webhooks.yaml").read_text(), base, ca))
    if "batch/job" in opts.integrations:
        procs.wait_until(COMPONENT, pid, lambda: _webhook_mutates(state), Path(state.run_dir), 60)
    return pid


@contextmanager
def kueue_stack(
    run_dir: Path, opts: km.KueueOptions | None = None, *, s3: bool = False
) -> Iterator[State]:
    """A stack of its own with Kueue (tests, benchmarks): Kueue's webhooks see every Job
    and Pod of the cluster it runs in, so it does not join a shared one. Tied to this
    process, on free ports, the controllers under their own identities; down on exit."""
    built = kueue_dir()
    stack = Stack(run_dir, tied=True, own_identities=True)
    state = stack.up(Ports(apiserver=0, etcd_client=0, etcd_peer=0, s3=0), s3=s3)
    try:
        start(stack, state, opts, built)
        yield state
    finally:
        stack.down()
