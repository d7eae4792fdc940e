"""X.509 for the consortium (`cryptography`): one certificate authority per organisation,
node certificates for peer and client TLS, client certificates for users, and the checks the
transport makes on a peer's certificate.

Pure given its inputs: the clock (`now`), serial numbers and private keys come in as arguments
(the operator injects them so its tests are deterministic; `consortium up` passes the wall
clock and fresh keys). ECDSA P-256 keys: cheap handshakes, supported by every TLS stack.

Identity binding: a node certificate carries the node id (its Ed25519 public key, hex) twice:
as the URI SAN `consortium:node:<hex>` (what a server reads from a client's certificate) and
as the DNS SAN `<hex[:32]>.<hex[32:]>.node.consortium` (what a dialling node asks the TLS stack
to verify, via the target name override, so the peer it reaches must hold a certificate for
the node id it meant to reach). A client certificate carries `consortium:client:<name>` and,
optionally, the Ed25519 sender key it vouches for as `consortium:sender:<hex>`.

Used by consortium_node.localnet (`consortium up`), the operator (consortium_operator.pki) and
transport/tls.py (verification of peer certificates)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NODE_URI_PREFIX = "consortium:node:"
CLIENT_URI_PREFIX = "consortium:client:"
SENDER_URI_PREFIX = "consortium:sender:"
NODE_DNS_SUFFIX = ".node.consortium"
CA_DAYS = 3650
LEAF_DAYS = 90
BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock skew between issuer and verifiers


class CertError(ValueError):
    """A certificate or key could not be parsed or does not verify (never holds key bytes)."""


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key, PEM. `key_pem` is secret material: write it to a
    0600 file or a Secret, never to a log, an event, a status or a ConfigMap."""

    cert_pem: bytes
    key_pem: bytes


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise CertError(f"not a PEM certificate: {e}") from None


def load_certs(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        raise CertError(f"not a PEM certificate bundle: {e}") from None


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise CertError("not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError("private key is not an ECDSA key")
    return key


def node_dns_name(node_id: bytes) -> str:
    """The DNS SAN naming a node id (two 32-character labels: a label is at most 63)."""
    h = node_id.hex()
    return f"{h[:32]}.{h[32:]}{NODE_DNS_SUFFIX}"


def _name(org: str, cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def new_ca(
    organization: str,
    now: dt.datetime,
    key: ec.EllipticCurvePrivateKey,
    serial: int,
    days: int = CA_DAYS,
) -> Issued:
    """A self-signed CA certificate for `organization` (may sign leaves only: pathlen 0)."""
    name = _name(organization, f"{organization} CA")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem(key))


def _leaf(
    ca: Issued,
    subject: x509.Name,
    sans: list[x509.GeneralName],
    now: dt.datetime,
    key: ec.EllipticCurvePrivateKey,
    serial: int,
    days: int,
) -> Issued:
    ca_cert, ca_key = load_cert(ca.cert_pem), load_key(ca.key_pem)
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem(key))


def issue_node_cert(
    ca: Issued,
    organization: str,
    name: str,
    node_id: bytes,
    now: dt.datetime,
    key: ec.EllipticCurvePrivateKey,
    serial: int,
    dns_names: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1",),
    days: int = LEAF_DAYS,
) -> Issued:
    """A node's TLS certificate (serverAuth + clientAuth) binding `node_id`."""
    if len(node_id) != 32:
        raise CertError("node id must be a 32-byte Ed25519 public key")
    sans: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(NODE_URI_PREFIX + node_id.hex()),
        x509.DNSName(node_dns_name(node_id)),
        *(x509.DNSName(d) for d in dict.fromkeys(dns_names)),
        *(x509.IPAddress(ipaddress.ip_address(i)) for i in dict.fromkeys(ips)),
    ]
    return _leaf(ca, _name(organization, name), sans, now, key, serial, days)


def issue_client_cert(
    ca: Issued,
    organization: str,
    name: str,
    now: dt.datetime,
    key: ec.EllipticCurvePrivateKey,
    serial: int,
    sender: bytes | None = None,
    days: int = LEAF_DAYS,
) -> Issued:
    """A user's client certificate; `sender` (an Ed25519 public key) is recorded in it."""
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(CLIENT_URI_PREFIX + name)]
    if sender is not None:
        sans.append(x509.UniformResourceIdentifier(SENDER_URI_PREFIX + sender.hex()))
    return _leaf(ca, _name(organization, name), sans, now, key, serial, days)


# --------------------------------------------------------------------------- inspection


def _uris(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(u) for u in ext.value.get_values_for_type(x509.UniformResourceIdentifier)]


def names_of(cert: x509.Certificate) -> tuple[frozenset[str], frozenset[str]]:
    """The DNS names and IP addresses (as text) a certificate's SAN extension names."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return frozenset(), frozenset()
    dns = frozenset(str(d) for d in ext.value.get_values_for_type(x509.DNSName))
    ips = frozenset(str(i) for i in ext.value.get_values_for_type(x509.IPAddress))
    return dns, ips


def node_id_of(cert: x509.Certificate) -> bytes | None:
    """The node id a certificate binds (its `consortium:node:` URI SAN), if exactly one."""
    ids = [u[len(NODE_URI_PREFIX) :] for u in _uris(cert) if u.startswith(NODE_URI_PREFIX)]
    if len(ids) != 1:
        return None
    try:
        nid = bytes.fromhex(ids[0])
    except ValueError:
        return None
    return nid if len(nid) == 32 else None


def organization_of(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(attrs[0].value) if attrs else ""


def not_after(pem: bytes) -> dt.datetime:
    return load_cert(pem).not_valid_after_utc


def issuer_org(cert: x509.Certificate, cas: dict[str, x509.Certificate], now: dt.datetime) -> str:
    """The organisation whose CA signed `cert`, checking validity times of both; raises
    CertError otherwise. (TLS already verified the chain; this names the issuer and repeats
    the check for callers outside a handshake.)"""
    for org, ca in cas.items():
        if ca.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        for c, what in ((cert, "certificate"), (ca, f"CA of {org}")):
            if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
                raise CertError(f"{what} is not valid at {now.isoformat()}")
        return org
    raise CertError("certificate is not issued by a consortium organisation's CA")
