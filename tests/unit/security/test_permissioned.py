"""Permissioned membership (ledger/state.py, ledger/genesis.py): only sender keys a member
organisation vouches for (genesis `members`, or an admin's AddMember) and admins may transact,
at admission (preflight) and identically at execution; open chains accept any key."""

from __future__ import annotations

import datetime as dt

import pytest
from consortium_node import pki
from consortium_node.ledger.errors import DecodeError, Reject, TxRejected
from consortium_node.ledger.genesis import Genesis, Organization
from consortium_node.ledger.hashing import sha256
from consortium_node.ledger.lthash import LtHash
from consortium_node.ledger.state import (
    INVALID,
    OK,
    UNAUTHORIZED,
    execute_block,
    kv_key,
    member_key,
    nonce_key,
    org_key,
    preflight,
    u64,
)
from consortium_node.ledger.tx import AddMember, KvPut, Payload, RemoveMember, Tx, check_stateless

pytestmark = pytest.mark.unit

NODE = b"\x01" * 32
ADMIN, ALICE, BOB = b"\xad" * 32, b"\xa1" * 32, b"\xb0" * 32


def _ca(org: str, serial: int) -> bytes:
    """A real CA certificate (chain state now holds only parsable CA certificates)."""
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return pki.new_ca(org, now, pki.new_private_key(), serial).cert_pem


PEM = _ca("org1", 1)


def genesis(permissioned: bool = True) -> Genesis:
    from consortium_node.ledger.state import Validator

    return Genesis(
        chain_id="c",
        time_ms=1,
        validators=(Validator(NODE, "org1"),),
        admins=(ADMIN,),
        organizations=(Organization("org1", PEM, (ALICE,)), Organization("org2", PEM)),
        permissioned=permissioned,
    )


def tx(sender: bytes, nonce: int, payload: Payload) -> Tx:
    body = sender + nonce.to_bytes(8, "big") + repr(payload).encode()
    return Tx(sha256(body), body, body, b"s" * 64, "c", sender, nonce, payload)


class State(dict[bytes, bytes]):
    def __init__(self, g: Genesis) -> None:
        super().__init__({k: v for k, v in g.writes().items() if v is not None})
        self.acc = g.lthash()
        self.height = 0

    def run(self, *txs: Tx) -> list[int]:
        self.height += 1
        r = execute_block(self, self.acc, self.height, txs)
        for k, v in r.writes.items():
            if v is None:
                self.pop(k, None)
            else:
                self[k] = v
        self.acc = LtHash(r.lthash)
        return [x.code for x in r.receipts]


def test_genesis_records_organisations_members_and_mode() -> None:
    w = genesis().writes()
    assert w[org_key("org1")] == PEM and w[member_key(ALICE)] == b"org1"
    assert w[b"g/permissioned"] == b"1"
    assert b"g/permissioned" not in genesis(False).writes()
    back = Genesis.from_json(genesis().canonical())
    assert back == genesis() and back.ca_certs() == {"org1": PEM, "org2": PEM}


def test_genesis_rejects_bad_organisations() -> None:
    from consortium_node.ledger.state import Validator

    base = genesis()
    for orgs in (
        (Organization("org1", PEM), Organization("org1", PEM)),  # duplicate name
        (Organization("org1", b"not pem"),),
        (Organization("org1", PEM + b"-----BEGIN PRIVATE KEY-----"),),
        (Organization("org1", PEM, (ALICE,)), Organization("org2", PEM, (ALICE,))),
        (Organization("org1", PEM, (b"short",)),),
        (Organization("org2", PEM),),  # the validator's org1 is missing
    ):
        with pytest.raises(DecodeError):
            Genesis(base.chain_id, 1, (Validator(NODE, "org1"),), organizations=orgs).validate()


def test_unknown_sender_rejected_at_admission_and_execution() -> None:
    st = State(genesis())
    with pytest.raises(TxRejected) as e:
        preflight(st, tx(BOB, 0, KvPut(b"k", b"v")))
    assert e.value.reason is Reject.UNAUTHORIZED and "not vouched" in e.value.message
    preflight(st, tx(ALICE, 0, KvPut(b"k", b"v")))  # vouched by org1
    preflight(st, tx(ADMIN, 0, KvPut(b"k", b"v")))  # admins may always transact
    # a Byzantine proposer includes it anyway: it fails on every node and changes nothing
    # but the sender's nonce
    assert st.run(tx(BOB, 0, KvPut(b"k", b"v")), tx(ALICE, 0, KvPut(b"a", b"1"))) == [
        UNAUTHORIZED,
        OK,
    ]
    assert kv_key(b"k") not in st and st[kv_key(b"a")] == b"1"
    assert u64(st[nonce_key(BOB)]) == 1


def test_admin_vouches_and_revokes() -> None:
    st = State(genesis())
    assert st.run(tx(ALICE, 0, AddMember(BOB, "org2"))) == [UNAUTHORIZED]  # not an admin
    assert st.run(tx(ADMIN, 0, AddMember(BOB, "nowhere"))) == [INVALID]
    assert st.run(tx(ADMIN, 1, AddMember(BOB, "org2"))) == [OK]
    assert st[member_key(BOB)] == b"org2"
    assert st.run(tx(ADMIN, 2, AddMember(BOB, "org1"))) == [INVALID]  # already a member
    assert st.run(tx(BOB, 0, KvPut(b"b", b"1"))) == [OK]
    assert st.run(tx(ADMIN, 3, RemoveMember(BOB))) == [OK]
    assert st.run(tx(BOB, 1, KvPut(b"b", b"2"))) == [UNAUTHORIZED]
    assert st.run(tx(ADMIN, 4, RemoveMember(BOB))) == [INVALID]


def test_open_chain_accepts_any_key() -> None:
    st = State(genesis(permissioned=False))
    preflight(st, tx(BOB, 0, KvPut(b"k", b"v")))
    assert st.run(tx(BOB, 0, KvPut(b"k", b"v"))) == [OK]


def test_member_payloads_are_checked_statelessly() -> None:
    with pytest.raises(TxRejected):
        check_stateless(tx(ADMIN, 0, AddMember(b"short", "org1")), "c", 1 << 20)
    with pytest.raises(TxRejected):
        check_stateless(tx(ADMIN, 0, AddMember(BOB, "")), "c", 1 << 20)
    check_stateless(tx(ADMIN, 0, RemoveMember(BOB)), "c", 1 << 20)


def test_an_organisation_is_admitted_by_governance_once() -> None:
    from consortium_node.ledger.tx import AddOrganization

    st = State(genesis())
    org3 = _ca("org3", 3)
    assert st.run(tx(ALICE, 0, AddOrganization("org3", org3))) == [UNAUTHORIZED]
    assert st.run(tx(ADMIN, 0, AddMember(BOB, "org3"))) == [INVALID]  # not a member yet
    assert st.run(tx(ADMIN, 1, AddOrganization("org3", org3))) == [OK]
    assert st[org_key("org3")] == org3
    assert st.run(tx(ADMIN, 2, AddOrganization("org3", PEM))) == [INVALID]  # only once
    assert st.run(tx(ADMIN, 3, AddOrganization("org1", PEM))) == [INVALID]  # genesis org
    assert st[org_key("org3")] == org3
    # its users can now be vouched for and transact
    assert st.run(tx(ADMIN, 4, AddMember(BOB, "org3"))) == [OK]
    assert st.run(tx(BOB, 0, KvPut(b"org3", b"hi"))) == [OK]
    # a chain without TLS admits organisations without a CA
    assert st.run(tx(ADMIN, 5, AddOrganization("plain", b""))) == [OK]
    assert st[org_key("plain")] == b""


@pytest.mark.parametrize(
    ("name", "ca", "why"),
    [
        ("", PEM, "organization must be"),
        ("o" * 256, PEM, "organization must be"),
        ("org3", b"not a pem", "must be PEM"),
        ("org3", PEM + b"-----BEGIN PRIVATE KEY-----\n", "private key"),
        ("org3", PEM * 1000, "exceeds"),
    ],
)
def test_add_organization_is_checked_statelessly(name: str, ca: bytes, why: str) -> None:
    from consortium_node.ledger.tx import AddOrganization

    with pytest.raises(TxRejected) as e:
        check_stateless(tx(ADMIN, 0, AddOrganization(name, ca)), "c", 1 << 20)
    assert e.value.reason is Reject.INVALID and why in e.value.message


def test_an_organisations_ca_is_replaced_by_governance() -> None:
    from consortium_node.ledger.tx import SetOrganizationCA

    st = State(genesis())
    new = _ca("org1", 4)
    assert st.run(tx(ALICE, 0, SetOrganizationCA("org1", PEM + new))) == [UNAUTHORIZED]
    assert st.run(tx(ADMIN, 0, SetOrganizationCA("nowhere", new))) == [INVALID]
    assert st.run(tx(ADMIN, 1, SetOrganizationCA("org1", PEM + new))) == [OK]  # both, then
    assert st[org_key("org1")] == PEM + new
    assert st.run(tx(ADMIN, 2, SetOrganizationCA("org1", new))) == [OK]  # the new one alone
    assert st[org_key("org1")] == new
    assert st[member_key(ALICE)] == b"org1"  # members stay vouched for
    with pytest.raises(TxRejected, match="at least one CA"):
        check_stateless(tx(ADMIN, 3, SetOrganizationCA("org1", b"")), "c", 1 << 20)
