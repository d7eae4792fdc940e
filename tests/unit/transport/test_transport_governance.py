"""The governance wire layer: codec (GovAction <-> domain, endorsement verification, the
Proposal message) and the Ledger service's governance queries (transport/governance.py),
over state produced by the real state machine."""

from __future__ import annotations

import pytest
from consortium_api.v1 import ledger_pb2, types_pb2
from consortium_node import crypto
from consortium_node.client.tx import Payload, build_body
from consortium_node.ledger import governance as gov
from consortium_node.ledger.errors import TxRejected
from consortium_node.ledger.genesis import Genesis, Organization
from consortium_node.ledger.hashing import sha256
from consortium_node.ledger.state import Validator, execute_block
from consortium_node.ledger.tx import (
    AddMember,
    AddOrganization,
    AddValidator,
    GovAction,
    Propose,
    RemoveMember,
    RemoveValidator,
    ReplaceValidator,
    SetAdmins,
    SetOrganizationCA,
    SetParam,
    SetPolicy,
    SubmitEndorsed,
    Tx,
    Vote,
)
from consortium_node.transport import codec
from consortium_node.transport import governance as queries

pytestmark = pytest.mark.unit

CHAIN = "wire-gov"
KEYS = {o: crypto.Ed25519Key(sha256(o.encode())) for o in ("org-a", "org-b", "org-c")}
K32 = sha256(b"k")

ACTIONS: list[GovAction] = [
    AddValidator(K32, "org-a"),
    RemoveValidator(K32),
    ReplaceValidator(K32, sha256(b"n")),
    SetParam("max_block_txs", "9"),
    AddMember(K32, "org-a"),
    RemoveMember(K32),
    AddOrganization("new", b"", (K32,)),
    SetOrganizationCA("org-a", b"-----BEGIN CERTIFICATE-----x"),
    SetAdmins("org-a", (K32,)),
    SetPolicy("set_param", "ALL"),
]


def signed(org: str, nonce: int, payload: Payload) -> Tx:
    k = KEYS[org]
    raw = build_body(CHAIN, k.public, nonce, payload).SerializeToString()
    return codec.decode_tx(types_pb2.SignedTx(body=raw, signature=k.sign(raw)).SerializeToString())


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: type(a).__name__)
def test_gov_action_round_trips(action: GovAction) -> None:
    raw = codec.gov_action_to_pb(action).SerializeToString()
    assert codec.decode_gov_action(raw) == action
    tx = signed("org-a", 0, types_pb2.Propose(action=raw, ttl=5))
    assert tx.payload == Propose(action, raw, 5)


def test_empty_or_garbage_action_is_malformed() -> None:
    for raw in (b"", b"\xff\xff"):
        with pytest.raises(TxRejected):
            codec.decode_gov_action(raw)


def test_endorsements_are_verified_once_by_the_decoder() -> None:
    raw = codec.gov_action_to_pb(ACTIONS[3]).SerializeToString()
    good = gov.endorsement_message(CHAIN, raw, 0, 9)
    other = gov.endorsement_message("other", raw, 0, 9)
    ends = [
        types_pb2.Endorsement(signer=KEYS["org-a"].public, signature=KEYS["org-a"].sign(good)),
        types_pb2.Endorsement(signer=KEYS["org-b"].public, signature=KEYS["org-b"].sign(other)),
        types_pb2.Endorsement(signer=b"short", signature=b"x"),
    ]
    sub = types_pb2.SubmitEndorsed(action=raw, config_seq=0, expiry=9, endorsements=ends)
    tx = signed("org-c", 0, sub)
    assert isinstance(tx.payload, SubmitEndorsed)
    assert [e.valid for e in tx.payload.endorsements] == [True, False, False]


def test_queries_over_real_state() -> None:
    g = Genesis(
        chain_id=CHAIN,
        time_ms=1,
        validators=tuple(Validator(sha256(o.encode() + b"v"), o) for o in KEYS),
        consensus="raft",
        organizations=tuple(Organization(o, admins=(k.public,)) for o, k in KEYS.items()),
    )
    state = {k: v for k, v in g.writes().items() if v is not None}
    raw = codec.gov_action_to_pb(ACTIONS[3]).SerializeToString()
    first = signed("org-a", 0, types_pb2.Propose(action=raw, ttl=5))
    second = signed("org-b", 0, types_pb2.Propose(action=raw, ttl=5))
    vote = signed("org-c", 0, types_pb2.Vote(proposal=1, approve=True))
    r = execute_block(state, g.lthash(), 1, [first, second, vote])
    assert [x.code for x in r.receipts] == [0, 0, 0]
    state.update({k: v for k, v in r.writes.items() if v is not None})

    listed = queries.list_proposals(state, 1, ledger_pb2.ListProposalsRequest())
    assert [p.id for p in listed.proposals] == [2, 1]  # newest first
    p1 = listed.proposals[1]
    assert p1.state == types_pb2.PROPOSAL_STATE_EXECUTED
    assert [(v.organization, v.approve) for v in p1.votes] == [("org-a", True), ("org-c", True)]
    assert (p1.yes, p1.needed, p1.policy, p1.action) == (2, 2, "MAJORITY", "set_param")
    assert p1.action_bytes == raw
    opened = queries.list_proposals(state, 1, ledger_pb2.ListProposalsRequest(open_only=True))
    assert [p.id for p in opened.proposals] == [2]
    assert queries.proposal(state, 3) is None

    # the receipt's proposal: found for the Propose tx (by tx id) and for the Vote
    rp = queries.receipt_proposal(state, second)
    assert rp is not None and rp.id == 2 and rp.state == types_pb2.PROPOSAL_STATE_PENDING
    rv = queries.receipt_proposal(state, vote)
    assert rv is not None and rv.id == 1

    gv = queries.governance(state, 1)
    assert gv.mode == "organizations" and gv.config_seq == 1
    assert {p.action: p.rule for p in gv.policies}["add_organization"] == "MAJORITY"
    assert [(o.organization, list(o.admins)) for o in gv.organizations] == [
        (o, [k.public]) for o, k in KEYS.items()
    ]


def test_vote_payload_decodes() -> None:
    tx = signed("org-a", 0, types_pb2.Vote(proposal=4, approve=False))
    assert tx.payload == Vote(4, False)
