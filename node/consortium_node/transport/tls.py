"""TLS for the node's gRPC endpoints: credentials built from the node's certificate files and
the consortium's trust roots (every organisation CA listed in genesis), reloaded from disk
when the files change, and the identity of the peer at the other end of a connection.

- Trust roots: the genesis organisations' CA certificates (plus an optional extra bundle).
  A certificate that does not chain to one of them fails the handshake (BoringSSL checks the
  chain, validity times and key usage), so a stranger's self-signed or an expired certificate
  never reaches a handler.
- Servers use `grpc.dynamic_ssl_server_credentials`: gRPC asks `CertStore.server_config` before
  every handshake and gets a new configuration only after the files changed, so rotated
  certificates take effect for new connections without a restart; live connections go on.
- Peer channels verify the server against the DNS SAN naming the node id they dial
  (`ssl_target_name_override`, see pki.node_dns_name); servers read the client's certificate
  from `context.auth_context()` and compare the node id it binds with the one the hello claims.

gRPC's Python API cannot *request* an optional client certificate (require_client_auth=False
means "don't ask"), so the client port requires one (member organisations' users and nodes)
and read-only access without a certificate is a separate, opt-in `public_listen` port.
Used by transport/server.py, transport/peers.py and runtime/service.py."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization

from .. import pki
from ..ledger.certs import ca_bundle_problem

log = logging.getLogger(__name__)


class TlsError(ValueError):
    """TLS material is missing or unusable (the message never holds key bytes)."""


@dataclass(frozen=True, slots=True)
class Material:
    cert_pem: bytes
    key_pem: bytes
    not_after: dt.datetime
    fingerprint: str  # sha256 of the certificate, for logs


def _read_material(cert_file: Path, key_file: Path) -> Material:
    try:
        cert_pem, key_pem = cert_file.read_bytes(), key_file.read_bytes()
    except OSError as e:
        raise TlsError(f"cannot read TLS files: {e.strerror}: {e.filename}") from None
    try:
        certs = pki.load_certs(cert_pem)
        key = pki.load_key(key_pem)
    except pki.CertError as e:
        raise TlsError(f"{cert_file} / {key_file}: {e}") from None
    if not certs or certs[0].public_key() != key.public_key():
        raise TlsError(f"{key_file} is not the private key of {cert_file}")
    return Material(
        cert_pem,
        key_pem,
        certs[0].not_valid_after_utc,
        hashlib.sha256(certs[0].public_bytes(serialization.Encoding.DER)).hexdigest()[:16],
    )


def _with_ca(ca_pems: Mapping[str, bytes]) -> dict[str, bytes]:
    """The organisations that have a usable CA (an organisation of a chain without TLS has
    none). A bundle that fails the chain's own check (ledger.certs; state committed before
    that check existed) is left out and logged: handed to gRPC it would make every server
    fail to start ("Failed to bind"), and committed state must never do that."""
    out: dict[str, bytes] = {}
    for org, pem in ca_pems.items():
        if not pem:
            continue
        why = ca_bundle_problem(pem)
        if why is not None:
            log.error(
                "organisation CA not trusted: unusable certificate on chain",
                extra={"fields": {"organization": org, "reason": why}},
            )
            continue
        out[org] = pem
    return out


class CertStore:
    """The node's certificate and key files, and the trust roots. `poll()` re-reads the files
    (cheap: two small reads) and bumps `version` when they changed and are valid; a broken
    half-written pair is ignored until it is whole (the old one stays in use)."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        ca_pems: Mapping[str, bytes],
        extra_roots: bytes = b"",
    ) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.ca_pems = _with_ca(ca_pems)
        if not self.ca_pems and not extra_roots:
            raise TlsError(
                "TLS is on but genesis lists no organisation CA certificates (and no ca_file)"
            )
        self._extra_roots = extra_roots
        self.material = _read_material(cert_file, key_file)
        self.version = 1
        self._lock = threading.Lock()
        self._cas: list[tuple[str, Any]] | None = None  # parsed ca_pems, on first use

    @property
    def roots(self) -> bytes:
        """Every trusted CA certificate: the organisations' and the extra bundle."""
        return b"".join(self.ca_pems.values()) + self._extra_roots

    def set_cas(self, ca_pems: Mapping[str, bytes]) -> bool:
        """New trust roots (organisations admitted on chain after genesis); True when they
        changed. Servers use them from the next handshake; callers re-create client channels
        (PeerHub.refresh_credentials). Organisations without a CA (no TLS) add no root."""
        fresh = _with_ca(ca_pems)
        if fresh == self.ca_pems:
            return False
        with self._lock:
            self.ca_pems = fresh
            self._cas = None
            self.version += 1
        log.info("TLS trust roots updated", extra={"fields": {"organizations": sorted(fresh)}})
        return True

    def issuer_of(self, cert: Any) -> str | None:
        """The genesis organisation whose CA signed `cert` (an x509.Certificate the handshake
        already verified), or None (an extra root, or no longer valid)."""
        if self._cas is None:
            parsed: list[tuple[str, Any]] = []  # (organisation, CA): one rotating its CA
            for org, pem in self.ca_pems.items():  # lists the old and the new one
                try:
                    parsed.extend((org, ca) for ca in pki.load_certs(pem))
                except pki.CertError:
                    continue
            self._cas = parsed
        now = dt.datetime.now(dt.UTC)
        for org, ca in self._cas:
            try:
                return pki.issuer_org(cert, {org: ca}, now)
            except pki.CertError:
                continue
        return None

    def ca_expiry(self) -> dict[str, dt.datetime]:
        out = {}
        for org, pem in self.ca_pems.items():
            try:
                out[org] = min(c.not_valid_after_utc for c in pki.load_certs(pem))
            except (pki.CertError, ValueError):
                continue
        return out

    def poll(self) -> bool:
        """Re-reads the files; True when a new valid pair was loaded."""
        try:
            fresh = _read_material(self.cert_file, self.key_file)
        except TlsError as e:
            log.warning(
                "TLS files unusable; keeping the current ones", extra={"fields": {"error": str(e)}}
            )
            return False
        if fresh.cert_pem == self.material.cert_pem and fresh.key_pem == self.material.key_pem:
            return False
        with self._lock:
            self.material = fresh
            self.version += 1
        log.info(
            "TLS certificate reloaded",
            extra={"fields": {"cert": fresh.fingerprint, "not_after": fresh.not_after.isoformat()}},
        )
        return True

    # -- credentials --------------------------------------------------------------------------
    def _server_config(self) -> grpc.ServerCertificateConfiguration:
        m = self.material
        return grpc.ssl_server_certificate_configuration(
            [(m.key_pem, m.cert_pem)], root_certificates=self.roots
        )

    def server_credentials(self, require_client_auth: bool) -> grpc.ServerCredentials:
        """Credentials that pick up reloaded certificates at the next handshake."""
        state = {"version": self.version}

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            # Called by gRPC before every handshake: must be cheap and must not raise.
            try:
                if state["version"] == self.version:
                    return None
                with self._lock:
                    state["version"] = self.version
                    return self._server_config()
            except Exception:  # pragma: no cover - keep serving with the current config
                return None

        return grpc.dynamic_ssl_server_credentials(
            self._server_config(),
            fetch,  # type: ignore[arg-type]  # grpc-stubs: the fetcher may return None
            require_client_authentication=require_client_auth,
        )

    def channel_credentials(self, organization: str | None = None) -> grpc.ChannelCredentials:
        """Client credentials; with `organization` (of a known validator) the server must
        hold a certificate from that organisation's CA alone, not from any consortium CA."""
        m = self.material
        roots = self.ca_pems.get(organization or "") or self.roots
        return grpc.ssl_channel_credentials(roots, m.key_pem, m.cert_pem)


# --------------------------------------------------------------------------- peer identity


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    node_id: bytes | None  # the node id the certificate binds, if it is a node certificate
    organization: str  # the subject's organisation (O=), as the certificate claims it
    issuer: str | None = None  # the organisation whose CA signed it (when a store was given)


def peer_identity(context: Any, store: CertStore | None = None) -> PeerIdentity | None:
    """The verified certificate of the other end of a server-side call, or None when the
    connection carries none (plaintext, or TLS without a client certificate). With `store`,
    `issuer` names the genesis organisation whose CA signed it."""
    try:
        auth = context.auth_context()
    except Exception:  # pragma: no cover - grpc internals
        return None
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        return None
    try:
        cert = pki.load_cert(pems[0])
    except pki.CertError:
        return None
    issuer = store.issuer_of(cert) if store is not None else None
    return PeerIdentity(pki.node_id_of(cert), pki.organization_of(cert), issuer)


def has_client_cert(context: Any) -> bool:
    try:
        return bool(context.auth_context().get("x509_pem_cert"))
    except Exception:  # pragma: no cover - grpc internals
        return False
