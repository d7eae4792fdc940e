"""The PKI plan: which certificate authority or certificate is due, for whom, with which names.

Pure decisions over what an executor observed (certificates it holds, what the chain trusts) and
a renewal `Window` (the time is an argument, never read here); the executor issues what is due
(consortium_node.pki does the X.509 with keys and serials it passes in) and stores it (the
operator in Secrets, `consortium up` in files). cloudnative-pg's cluster_pki.go over pkg/certs
is the model: "ensure CA, then ensure each leaf", each decision a function of the stored
material alone.

Invariants:
- a CA the chain already trusts is never replaced (`CaDecision.LOST`: a new one would be
  refused by every node, and its certificates with it);
- a certificate is (re)issued when it is missing, cannot be read, expires within the window's
  lead, binds another node id, or (client certificates) was issued by another CA or carries a
  stale trust bundle;
- results are sorted by member name, so passes and runs are reproducible.

Who calls it: consortium_operator.reconcile (through its planner) and consortium_node.localnet."""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .. import pki as x509pki

CLIENT_FILES = ("ca.pem", "client.pem", "client.key")  # a CLI TLS directory


@dataclass(frozen=True, slots=True)
class Window:
    """`now` and how long before expiry a certificate is renewed."""

    now: dt.datetime
    lead: dt.timedelta

    def expiring(self, cert_pem: bytes) -> bool:
        """True when the certificate expires within `lead` (or cannot be read: reissue it)."""
        try:
            return x509pki.not_after(cert_pem) - self.lead <= self.now
        except x509pki.CertError:
            return True


class CaDecision(enum.Enum):
    HAVE = "have"  # the executor holds the organisation's CA: use it
    ISSUE = "issue"  # no CA and the chain does not trust one yet: create it
    WAIT = "wait"  # no CA, and no node tells yet whether the chain lists the organisation
    LOST = "lost"  # no CA, but the chain trusts one: restore it; a new CA would be refused


def ca_decision(present: bool, trusted_on_chain: bool | None) -> CaDecision:
    """What to do about an organisation's CA: `present` whether the executor holds it,
    `trusted_on_chain` whether the chain lists a CA of the organisation (None: unknown)."""
    if present:
        return CaDecision.HAVE
    if trusted_on_chain is None:
        return CaDecision.WAIT
    return CaDecision.LOST if trusted_on_chain else CaDecision.ISSUE


@dataclass(frozen=True, slots=True)
class NodeCert:
    """A node certificate due: member `member` of `org`, binding `node_id`, for these names."""

    org: str
    member: str
    node_id: bytes
    dns_names: tuple[str, ...]
    ips: tuple[str, ...] = ("127.0.0.1",)


def node_cert_stale(
    cert_pem: bytes | None,
    has_key: bool,
    node_id: bytes,
    window: Window,
    dns_names: Sequence[str] = (),
    ips: Sequence[str] = (),
) -> bool:
    """A stored node certificate must be reissued: missing (or its key is), expiring,
    binding another node id, or not naming every DNS name and IP address it must carry now
    (e.g. an organisation exposed for other clusters after its certificates were issued:
    its peers dial the external address, which the certificate must name)."""
    if cert_pem is None or not has_key or window.expiring(cert_pem):
        return True
    try:
        cert = x509pki.load_cert(cert_pem)
    except x509pki.CertError:
        return True
    if x509pki.node_id_of(cert) != node_id:
        return True
    named_dns, named_ips = x509pki.names_of(cert)
    return not (set(dns_names) <= named_dns and {_ip_text(i) for i in ips} <= named_ips)


def _ip_text(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))  # the form the certificate's SAN reads back in
    except ValueError:
        return ip


def node_certs_due(
    org: str,
    existing: Mapping[str, bytes],
    members: Mapping[str, bytes],
    dns_names: Callable[[str], Sequence[str]],
    window: Window,
    ips: Callable[[str], Sequence[str]] = lambda _: (),
) -> tuple[NodeCert, ...]:
    """The node certificates of `org` to issue. `existing`: stored entries `<member>.pem` /
    `<member>.key`; `members`: member name -> node id; `dns_names` and `ips`: the names and
    addresses (besides 127.0.0.1) a member's certificate must carry (the executor's
    addressing scheme); a certificate lacking one of them is reissued."""
    return tuple(
        NodeCert(org, member, node_id, tuple(dns_names(member)), ("127.0.0.1", *ips(member)))
        for member, node_id in sorted(members.items())
        if node_cert_stale(
            existing.get(f"{member}.pem"),
            f"{member}.key" in existing,
            node_id,
            window,
            dns_names(member),
            ips(member),
        )
    )


@dataclass(frozen=True, slots=True)
class ClientCert:
    """A client TLS directory (ca.pem = trust bundle, client.pem, client.key) held in
    `holder` (a Secret name, a directory), certificate `consortium:client:<name>` of `org`,
    optionally vouching for Ed25519 sender key `sender`."""

    holder: str
    org: str
    name: str
    sender: bytes | None = None


def trust_bundle(cas: Mapping[str, bytes]) -> bytes:
    """Every organisation's CA certificate, in organisation-name order: what a client trusts
    (a client Service may route to a node of any organisation)."""
    return b"".join(pem if pem.endswith(b"\n") else pem + b"\n" for _, pem in sorted(cas.items()))


def client_dir_due(
    existing: Mapping[str, bytes] | None, bundle: bytes, ca_pem: bytes, window: Window
) -> bool:
    """True when a client TLS directory (`existing` entries; None = absent) must be
    (re)written: an entry is missing, the trust bundle changed, the certificate expires within
    the lead, or it was not issued by the CA `ca_pem` (the organisation's CA was replaced)."""
    if existing is None or any(k not in existing for k in CLIENT_FILES):
        return True
    if existing["ca.pem"] != bundle or window.expiring(existing["client.pem"]):
        return True
    try:
        cert, ca = x509pki.load_cert(existing["client.pem"]), x509pki.load_cert(ca_pem)
    except x509pki.CertError:
        return True
    return cert.issuer != ca.subject


def client_certs_due(
    wanted: Sequence[ClientCert],
    existing: Mapping[str, Mapping[str, bytes] | None],
    cas: Mapping[str, bytes],
    window: Window,
) -> tuple[ClientCert, ...]:
    """The client directories of `wanted` to (re)write, given what each holder stores now
    (`existing`, by holder) and the organisations' CA certificates `cas` (the trust bundle
    is all of them). A wanted directory whose organisation has no CA yet is not due."""
    bundle = trust_bundle(cas)
    return tuple(
        c
        for c in wanted
        if c.org in cas and client_dir_due(existing.get(c.holder), bundle, cas[c.org], window)
    )
