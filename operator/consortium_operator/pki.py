"""Key material for a consortium: per-node Ed25519 keys and the consortium's governance admin
key, in the node's key file format `{"public_key": hex, "private_key": hex seed}`.

Pure and deterministic given its inputs: randomness comes in through `entropy` (os.urandom in
production, a seeded source in tests). Private keys only ever leave this module as key file
text destined for a Secret; everything else sees public keys (`public_key_of`).

Per-organisation CAs and node TLS certificates (consortium_node.pki does the X.509): the
clock, serial numbers and private keys are arguments, so tests are deterministic. Which
certificate is due is decided by the provisioning core's PKI plan (consortium_node.provision.pki);
the functions at the end of this module are the operator's spelling of those decisions.

Client identities: every organisation gets a client certificate (`client_tls`) in a Secret laid
out as a CLI TLS directory (ca.pem = every organisation's CA, client.pem, client.key), and the
operator gets its own, which it uses for its status and governance calls to the nodes."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from consortium_node import pki as x509pki
from consortium_node.crypto import Ed25519Key, KeyFileError
from consortium_node.provision import pki as plan_pki
from cryptography.hazmat.primitives.asymmetric import ec

Entropy = Callable[[int], bytes]


class KeyError_(ValueError):
    """A stored key file is malformed (the message never contains key material)."""


def new_key(entropy: Entropy = os.urandom) -> Ed25519Key:
    """A new Ed25519 key from 32 bytes of `entropy`."""
    seed = entropy(32)
    if len(seed) != 32:
        raise ValueError("entropy must return the number of bytes asked for")
    return Ed25519Key(seed)


def key_file(key: Ed25519Key) -> str:
    """The key file text a node reads with `--key-file` (and the operator for its admin key)."""
    return key.to_json()


def load_key(text: str, source: str) -> Ed25519Key:
    try:
        return Ed25519Key.from_json(text, source)
    except KeyFileError:
        raise KeyError_(f"{source} is not a valid key file") from None


def public_key_of(text: str, source: str) -> bytes:
    """The public key of a stored key file, checked against its private key."""
    return load_key(text, source).public


def public_key_hint(text: str) -> str:
    """The public key field as written, without parsing the private half (for messages)."""
    try:
        return str(json.loads(text).get("public_key", ""))[:16]
    except (ValueError, AttributeError):
        return ""


# --------------------------------------------------------------------------- X.509 / TLS

Issued = x509pki.Issued


def new_tls_key() -> ec.EllipticCurvePrivateKey:
    return x509pki.new_private_key()


def serial_from(entropy: Entropy = os.urandom) -> int:
    """A positive 127-bit certificate serial number from `entropy`."""
    return int.from_bytes(entropy(16), "big") >> 1


def org_ca(org: str, now: dt.datetime, key: ec.EllipticCurvePrivateKey, serial: int) -> Issued:
    """An organisation's CA (10 years); its key stays in the organisation's CA Secret."""
    return x509pki.new_ca(org, now, key, serial)


@dataclass(frozen=True, slots=True)
class Issue:
    """How to sign one certificate: the time, its new private key, its serial number and its
    validity in days (all injected: tests are deterministic)."""

    now: dt.datetime
    key: ec.EllipticCurvePrivateKey
    serial: int
    days: int


def node_tls(ca: Issued, cert: plan_pki.NodeCert, issue: Issue) -> Issued:
    """A node pod's TLS certificate, binding its node id, with the names the PKI plan chose
    (see consortium_node.pki)."""
    return x509pki.issue_node_cert(
        ca,
        cert.org,
        cert.member,
        cert.node_id,
        issue.now,
        issue.key,
        issue.serial,
        dns_names=cert.dns_names,
        ips=cert.ips,
        days=issue.days,
    )


def client_tls(ca: Issued, cert: plan_pki.ClientCert, issue: Issue) -> Issued:
    """A client certificate of organisation `cert.org` (`consortium:client:<name>`): what the
    node's client port asks of a writer."""
    return x509pki.issue_client_cert(
        ca, cert.org, cert.name, issue.now, issue.key, issue.serial, cert.sender, issue.days
    )


def trust_bundle(cas: Mapping[str, bytes]) -> bytes:
    """Every organisation's CA certificate, in organisation order (provision.pki)."""
    return plan_pki.trust_bundle(cas)


def client_dir_due(
    existing: Mapping[str, bytes] | None,
    bundle: bytes,
    ca_pem: bytes,
    now: dt.datetime,
    lead: dt.timedelta,
) -> bool:
    """True when a client TLS Secret must be (re)written (provision.pki.client_dir_due)."""
    return plan_pki.client_dir_due(existing, bundle, ca_pem, plan_pki.Window(now, lead))


def needs_renewal(cert_pem: bytes, now: dt.datetime, lead: dt.timedelta) -> bool:
    """True when the certificate expires within `lead` (or cannot be read: reissue it)."""
    return plan_pki.Window(now, lead).expiring(cert_pem)


def certs_to_issue(
    existing: Mapping[str, bytes],
    node_keys: Mapping[str, bytes],
    now: dt.datetime,
    lead: dt.timedelta,
) -> list[str]:
    """Pods (of `node_keys`: pod -> node id) whose TLS certificate in `existing` (the TLS
    Secret's entries: `<pod>.pem`) is missing, expires within `lead`, or binds another node
    id. Sorted, so passes are reproducible (provision.pki.node_certs_due decides)."""
    due = plan_pki.node_certs_due("", existing, node_keys, lambda _: (), plan_pki.Window(now, lead))
    return [c.member for c in due]
