"""Issue 13 defect 6: an organisation's CA bundle on chain is validated fully (parse, CA flag,
key usage, no private key, nothing outside the PEM blocks) at admission and again at
execution, by one pure function (ledger/certs.py), so every node decides the same; and a
node never becomes unstartable because of committed CA state (the TLS trust roots leave out a
bundle that fails the check instead of handing it to gRPC, which then cannot bind)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import pytest
from consortium_node import pki
from consortium_node.ledger.certs import ca_bundle_problem
from consortium_node.ledger.errors import TxRejected
from consortium_node.ledger.state import INVALID, OK, org_key
from consortium_node.ledger.tx import AddOrganization, SetOrganizationCA, check_stateless
from consortium_node.transport.tls import CertStore
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from tests.unit.security.test_permissioned import ADMIN, PEM, State, genesis, tx

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
GARBAGE = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"


def _cert(ca: bool, key_cert_sign: bool = True) -> bytes:
    key = pki.new_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(5)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=key_cert_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


BAD = [
    (GARBAGE, "not a parsable X.509 certificate"),
    (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "not a parsable"),
    (_cert(ca=False), "not a CA"),
    (_cert(ca=True, key_cert_sign=False), "keyCertSign"),
    (PEM + b"junk after the block\n", "outside its PEM blocks"),
    (PEM + pki.key_pem(pki.new_private_key()), "private key"),
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a CERTIFICATE"),
    (b"not pem at all", "must be PEM"),
]


@pytest.mark.parametrize(("pem", "says"), BAD, ids=[s for _, s in BAD])
def test_unusable_ca_bundles_are_refused_at_admission_and_execution(pem: bytes, says: str) -> None:
    problem = ca_bundle_problem(pem)
    assert problem is not None and says in problem
    add = tx(ADMIN, 0, AddOrganization("org3", pem))
    with pytest.raises(TxRejected) as e:
        check_stateless(add, "c", 1 << 20)
    assert says in e.value.message or "private key" in e.value.message
    # a block that carries it anyway (a peer skipped admission): execution refuses it too
    st = State(genesis())
    assert st.run(add) == [INVALID]
    assert org_key("org3") not in st
    assert st.run(tx(ADMIN, 1, SetOrganizationCA("org1", pem))) == [INVALID]
    assert st[org_key("org1")] == PEM


def test_real_ca_bundles_pass() -> None:
    other = pki.new_ca("org3", NOW, pki.new_private_key(), 9).cert_pem
    assert ca_bundle_problem(PEM) is None
    assert ca_bundle_problem(PEM + other) is None  # a rotation lists two
    st = State(genesis())
    assert st.run(tx(ADMIN, 0, AddOrganization("org3", other))) == [OK]


async def test_a_committed_unusable_ca_does_not_stop_a_node_from_serving(tmp_path: Path) -> None:
    """State committed before this check existed may hold garbage: the node's TLS servers
    must still bind (before: 'Failed to bind to address' on every node after a restart)."""
    ca = pki.new_ca("org1", NOW, pki.new_private_key(), 1)
    node_key = pki.new_private_key()
    cert = pki.issue_node_cert(ca, "org1", "n1", b"\x07" * 32, NOW, node_key, 2)
    (tmp_path / "node.pem").write_bytes(cert.cert_pem)
    (tmp_path / "node.key").write_bytes(cert.key_pem)
    store = CertStore(
        tmp_path / "node.pem", tmp_path / "node.key", {"org1": ca.cert_pem, "org3": GARBAGE}
    )
    assert set(store.ca_pems) == {"org1"}
    assert not store.set_cas({"org1": ca.cert_pem, "org4": GARBAGE})  # same usable roots
    server = grpc.aio.server()
    port = server.add_secure_port("127.0.0.1:0", store.server_credentials(True))
    assert port > 0
    await server.start()
    await server.stop(0)
