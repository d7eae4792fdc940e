"""pki.py: per-organisation CAs, node and client certificates, identity binding, and the
checks transport relies on. Inputs (clock, keys, serials) are injected: deterministic."""

from __future__ import annotations

import datetime as dt

import pytest
from consortium_node import pki
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

pytestmark = pytest.mark.unit

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
NODE_ID = bytes(range(32))


def _key(n: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(n, ec.SECP256R1())


def _ca(org: str = "org1", n: int = 1) -> pki.Issued:
    return pki.new_ca(org, NOW, _key(n), serial=n)


def test_ca_is_a_leaf_only_ca_of_its_organisation() -> None:
    ca = pki.load_cert(_ca().cert_pem)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    assert pki.organization_of(ca) == "org1"
    assert ca.serial_number == 1
    assert ca.not_valid_before_utc == NOW - pki.BACKDATE


def test_inputs_determine_the_certificate() -> None:
    a = pki.load_cert(pki.issue_node_cert(_ca(), "org1", "n", NODE_ID, NOW, _key(5), 9).cert_pem)
    b = pki.load_cert(pki.issue_node_cert(_ca(), "org1", "n", NODE_ID, NOW, _key(5), 9).cert_pem)
    # ECDSA signatures are randomised; everything else is a function of the inputs
    assert a.tbs_certificate_bytes == b.tbs_certificate_bytes


def test_node_certificate_binds_the_node_id() -> None:
    issued = pki.issue_node_cert(
        _ca(), "org1", "org1-0", NODE_ID, NOW, _key(5), 9, dns_names=("a.svc", "localhost")
    )
    cert = pki.load_cert(issued.cert_pem)
    assert pki.node_id_of(cert) == NODE_ID
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(x509.DNSName)
    assert pki.node_dns_name(NODE_ID) in dns and "a.svc" in dns
    assert all(len(label) <= 63 for label in pki.node_dns_name(NODE_ID).split("."))
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert b"PRIVATE KEY" not in issued.cert_pem and b"PRIVATE KEY" in issued.key_pem
    assert pki.load_key(issued.key_pem).public_key() == cert.public_key()


def test_client_certificate_has_no_node_id_and_may_name_its_sender() -> None:
    sender = b"\x07" * 32
    cert = pki.load_cert(
        pki.issue_client_cert(_ca(), "org1", "alice", NOW, _key(6), 10, sender).cert_pem
    )
    assert pki.node_id_of(cert) is None
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"consortium:sender:{sender.hex()}" in uris.get_values_for_type(
        x509.UniformResourceIdentifier
    )


def test_issuer_org_checks_signature_and_time() -> None:
    cas = {
        "org1": pki.load_cert(_ca("org1", 1).cert_pem),
        "org2": pki.load_cert(_ca("org2", 2).cert_pem),
    }
    leaf = pki.load_cert(
        pki.issue_node_cert(_ca("org2", 2), "org2", "n", NODE_ID, NOW, _key(5), 3).cert_pem
    )
    assert pki.issuer_org(leaf, cas, NOW) == "org2"
    with pytest.raises(pki.CertError, match="not valid"):
        pki.issuer_org(leaf, cas, NOW + dt.timedelta(days=pki.LEAF_DAYS + 1))
    # same subject name, different key: a stranger's CA does not verify
    forged = pki.load_cert(
        pki.issue_node_cert(_ca("org2", 99), "org2", "n", NODE_ID, NOW, _key(5), 3).cert_pem
    )
    with pytest.raises(pki.CertError, match="not issued"):
        pki.issuer_org(forged, cas, NOW)


def test_leaf_never_outlives_its_ca() -> None:
    short_ca = pki.new_ca("org1", NOW, _key(1), 1, days=10)
    leaf = pki.load_cert(
        pki.issue_node_cert(short_ca, "org1", "n", NODE_ID, NOW, _key(5), 3, days=90).cert_pem
    )
    assert leaf.not_valid_after_utc == NOW + dt.timedelta(days=10)


def test_garbage_is_a_cert_error() -> None:
    with pytest.raises(pki.CertError):
        pki.load_cert(b"nope")
    with pytest.raises(pki.CertError):
        pki.load_key(b"nope")
    with pytest.raises(pki.CertError):
        pki.issue_node_cert(_ca(), "org1", "n", b"short", NOW, _key(5), 3)
