"""A throwaway control plane for the operator's integration tier: etcd + kube-apiserver on
127.0.0.1 (random ports, a temporary directory, self-signed certificates made with
`cryptography`, a static bearer token, AlwaysAllow authorisation). No kubelet, scheduler or
controller-manager: objects are stored and validated, but no pod ever runs and nothing is
garbage-collected — which is exactly what these tests check (what the operator *writes*).

Binaries:
  kube-apiserver  $KUBE_APISERVER, else $CONSORTIUM_CACHE/k8s/*/bin/kube-apiserver (built by
                  `make cluster-up` / cluster/build-k8s.sh), else `kube-apiserver` on PATH
  etcd            $ETCD, else `etcd` on PATH (Debian: apt-get install etcd-server)
`find_binaries()` returns the reason when one is missing so the fixture can skip with it.

Used by tests/integration/operator (its `control_plane` fixture) and bench/operator_scale.py."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import shutil
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from .ports import free_ports
from .wait import WaitTimeout, wait_for

CACHE_DIR = Path(
    os.environ.get("CONSORTIUM_CACHE", Path.home() / ".cache" / "consortium")
).expanduser()


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: str
    etcd: str


def find_binaries() -> Binaries | str:
    """The binaries, or a one-line reason why they are not available."""
    apiserver = os.environ.get("KUBE_APISERVER")
    if not apiserver:
        # only complete builds (cluster/build-k8s.sh writes bin/.complete last)
        found = sorted(
            (
                p
                for p in CACHE_DIR.glob("k8s/*/bin/kube-apiserver")
                if (p.parent / ".complete").exists()
            ),
            reverse=True,
        )
        apiserver = str(found[0]) if found else (shutil.which("kube-apiserver") or "")
    if not apiserver or not os.access(apiserver, os.X_OK):
        return (
            "kube-apiserver not found: set KUBE_APISERVER or build it with 'make cluster-up' "
            f"(expected {CACHE_DIR}/k8s/<version>/bin/kube-apiserver)"
        )
    etcd = os.environ.get("ETCD") or shutil.which("etcd") or ""
    if not etcd:
        return "etcd not found: set ETCD or 'apt-get install -y etcd-server'"
    return Binaries(apiserver, etcd)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    crt, pem = directory / "apiserver.crt", directory / "apiserver.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return crt, pem


def _service_account_keys(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv, pub = directory / "sa.key", directory / "sa.pub"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub


class ControlPlane:
    """etcd + kube-apiserver processes; `kubeconfig` points at them with a static token."""

    def __init__(self, binaries: Binaries, directory: Path) -> None:
        self.binaries = binaries
        self.dir = directory
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self.port = 0
        self.kubeconfig = directory / "kubeconfig"
        self.token = secrets.token_hex(16)
        self.ca_file = directory / "apiserver.crt"

    def start(self, timeout: float = 90.0) -> ControlPlane:
        self.dir.mkdir(parents=True, exist_ok=True)
        etcd_port, peer_port, self.port = free_ports(3)  # distinct: picked together
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                self.binaries.etcd,
                "--data-dir",
                str(self.dir / "etcd"),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
            ],
            # etcd 3.4 on arm64 and others refuses to start without this
            {"ETCD_UNSUPPORTED_ARCH": os.environ.get("ETCD_UNSUPPORTED_ARCH", "arm64")},
        )
        crt, key = _self_signed(self.dir)
        sa_priv, sa_pub = _service_account_keys(self.dir)
        tokens = self.dir / "tokens.csv"
        tokens.write_text(f'{self.token},admin,admin,"system:masters"\n')
        self._spawn(
            "kube-apiserver",
            [
                self.binaries.kube_apiserver,
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={self.dir / 'certs'}",
                f"--tls-cert-file={crt}",
                f"--tls-private-key-file={key}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=AlwaysAllow",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_priv}",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
            ],
        )
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            "clusters:\n- name: test\n  cluster:\n"
            f"    server: https://127.0.0.1:{self.port}\n"
            f"    certificate-authority: {crt}\n"
            "users:\n- name: admin\n  user:\n"
            f"    token: {self.token}\n"
            "contexts:\n- name: test\n  context: {cluster: test, user: admin, namespace: default}\n"
            "current-context: test\n"
        )
        self._wait_ready(timeout)
        return self

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.dir / f"{name}.log").open("wb")
        self._logs.append(log)
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.procs.append(proc)

    def _wait_ready(self, timeout: float) -> None:
        """Until /readyz answers 200. RuntimeError (the callers skip on it) when a process
        exits or the time runs out."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        req = urllib.request.Request(
            f"https://127.0.0.1:{self.port}/readyz",
            headers={"Authorization": f"Bearer {self.token}"},
        )

        def ready() -> bool:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.pid} exited ({p.returncode}): {self.logs()}")
            with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
                return bool(resp.status == 200)

        try:
            wait_for(ready, timeout, "kube-apiserver /readyz", 0.3, retry_on=(OSError,))
        except WaitTimeout as e:
            raise RuntimeError(f"{e}\n{self.logs()}") from None

    def logs(self, tail: int = 3000) -> str:
        out = []
        for name in ("etcd", "kube-apiserver"):
            f = self.dir / f"{name}.log"
            if f.exists():
                out.append(f"--- {name}:\n{f.read_text(errors='replace')[-tail:]}")
        return "\n".join(out)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        self.procs.clear()
        for f in self._logs:
            f.close()
        self._logs.clear()
