"""Governance by organisations (issue 14): policy truth tables, proposals, votes, expiry,
ABORTED / FAILED / REJECTED / WITHDRAWN, the offline endorsement path, SELF actions and the
legacy single-admin refusal.

The chain is ledger/state.py executed against a dict; every block re-checks the incremental
state root against one recomputed from scratch (as in test_ledger_state.py). Each test names
the rule of ledger/governance.py it pins."""

from __future__ import annotations

import itertools
import random

import pytest
from consortium_api.v1 import types_pb2
from consortium_node import crypto
from consortium_node.ledger import governance as gov
from consortium_node.ledger.errors import DecodeError, Reject, TxRejected
from consortium_node.ledger.genesis import Genesis, Organization
from consortium_node.ledger.hashing import sha256
from consortium_node.ledger.lthash import LtHash
from consortium_node.ledger.state import (
    INVALID,
    NOT_FOUND,
    OK,
    UNAUTHORIZED,
    BlockResult,
    Validator,
    check_nonces,
    config_seq,
    execute_block,
    get_proposal,
    latest_validators,
    member_organizations,
    nonce_key,
    org_key,
    param_key,
    policy_of,
    preflight,
    u64,
)
from consortium_node.ledger.tx import (
    AddMember,
    AddOrganization,
    AddValidator,
    GovAction,
    KvPut,
    MigrateGovernance,
    Payload,
    Propose,
    ReplaceValidator,
    SetAdmins,
    SetParam,
    SetPolicy,
    Tx,
    Vote,
    Withdraw,
    check_stateless,
)
from consortium_node.transport import codec

pytestmark = pytest.mark.unit

CHAIN = "gov-test"
ORGS = ("org-a", "org-b", "org-c", "org-d", "org-e", "org-f", "org-g")


def key_of(org: str, n: int = 0) -> crypto.Ed25519Key:
    return crypto.Ed25519Key(sha256(f"{org}/{n}".encode()))


def admin(org: str, n: int = 0) -> bytes:
    return key_of(org, n).public


def vnode(org: str, n: int = 0) -> bytes:
    return sha256(f"validator {org} {n}".encode())


def make_tx(sender: bytes, nonce: int, payload: Payload) -> Tx:
    body = repr((CHAIN, sender, nonce, payload)).encode()
    return Tx(sha256(body), body, body, bytes(64), CHAIN, sender, nonce, payload)


class Chain:
    """A dict-backed chain that checks the state root after every block."""

    def __init__(self, genesis: Genesis) -> None:
        self.state = {k: v for k, v in genesis.writes().items() if v is not None}
        self.acc = genesis.lthash()
        self.height = 0
        self._nonces: dict[bytes, int] = {}

    def tx(self, sender: bytes, payload: Payload) -> Tx:
        n = self._nonces.get(sender, u64(self.state.get(nonce_key(sender))))
        self._nonces[sender] = n + 1
        return make_tx(sender, n, payload)

    def run(self, *txs: Tx) -> BlockResult:
        assert check_nonces(self.state, txs) is None
        self.height += 1
        r = execute_block(self.state, self.acc, self.height, txs)
        for k, v in r.writes.items():
            if v is None:
                self.state.pop(k, None)
            else:
                self.state[k] = v
        ref = LtHash()
        for k, v in self.state.items():
            ref.add(k, v)
        assert r.state_root == ref.digest()
        self.acc = LtHash(r.lthash)
        return r

    def send(self, sender: bytes, payload: Payload) -> tuple[int, str]:
        """One tx in its own block: (code, message)."""
        (rc,) = self.run(self.tx(sender, payload)).receipts
        return rc.code, rc.message

    def propose(self, org: str, action: GovAction, ttl: int = 10) -> int:
        ab = codec.gov_action_to_pb(action).SerializeToString()
        code, msg = self.send(admin(org), Propose(action, ab, ttl))
        assert code == OK, msg
        return u64(self.state[gov.NEXT_PROPOSAL_KEY]) - 1

    def vote(self, org: str, pid: int, approve: bool = True, n: int = 0) -> tuple[int, str]:
        return self.send(admin(org, n), Vote(pid, approve))

    def proposal(self, pid: int) -> gov.Proposal:
        p = get_proposal(self.state, pid)
        assert p is not None
        return p


def org_genesis(n: int, **kw: object) -> Genesis:
    orgs = ORGS[:n]
    return Genesis(
        chain_id=CHAIN,
        time_ms=1,
        validators=tuple(Validator(vnode(o), o) for o in orgs),
        consensus="raft",
        organizations=tuple(Organization(o, admins=(admin(o), admin(o, 1))) for o in orgs),
        permissioned=True,
        **kw,  # type: ignore[arg-type]
    )


NEW_ORG = AddOrganization("newcomer", b"", (admin("newcomer"),))


# -- the policy language (truth tables) -------------------------------------------------------

RULES = ("ANY", "MAJORITY", "ALL", "2", "2/3", "SELF", "FORBIDDEN")


def expected(rule: str, n: int, yes: int, no: int, subject_vote: bool | None) -> str:
    """The rule written out independently of Rule.needed: the oracle for the tables."""
    if rule == "FORBIDDEN":
        return "rejected"
    if rule == "SELF":
        return {True: "passed", False: "rejected", None: "pending"}[subject_vote]
    need = {
        "ANY": 1,
        "MAJORITY": next(k for k in range(n + 2) if 2 * k > n),  # strictly more than half
        "ALL": n,
        "2": 2,
        "2/3": next(k for k in range(n + 2) if 3 * k >= 2 * n),
    }[rule]
    if yes >= need:
        return "passed"
    return "rejected" if yes + (n - yes - no) < need else "pending"


@pytest.mark.parametrize("n", [2, 3, 4, 7])
@pytest.mark.parametrize("rule", RULES)
def test_policy_truth_table(n: int, rule: str) -> None:
    """Every split of n organisations into yes / no / silent, for every rule."""
    members = ORGS[:n]
    r = gov.parse_rule(rule)
    for votes_tuple in itertools.product((True, False, None), repeat=n):
        votes = {o: v for o, v in zip(members, votes_tuple, strict=True) if v is not None}
        yes = sum(1 for v in votes.values() if v)
        no = len(votes) - yes
        t = gov.tally(r, members, members[0], votes)
        assert t.outcome == expected(rule, n, yes, no, votes.get(members[0])), (rule, votes)
        assert (t.yes, t.no, t.members) == (yes, no, n)


@pytest.mark.parametrize(("n", "need"), [(2, 2), (3, 2), (4, 3), (7, 4)])
def test_majority_is_strictly_more_than_half(n: int, need: int) -> None:
    assert gov.parse_rule("MAJORITY").needed(n) == need
    members = ORGS[:n]
    half = dict.fromkeys(members[: n // 2], True)  # exactly half (or less) is not a majority
    assert gov.tally(gov.parse_rule("MAJORITY"), members, None, half).outcome != "passed"


def test_votes_of_non_members_never_count() -> None:
    t = gov.tally(gov.parse_rule("ANY"), ("org-a", "org-b"), None, {"intruder": True})
    assert t.outcome == "pending" and t.yes == 0


@pytest.mark.parametrize(
    ("action", "rule", "why"),
    [
        ("set_param", "SELF", "SELF cannot govern"),
        ("set_policy", "FORBIDDEN", "unchangeable"),
        ("set_admins", "MAJORITY", "always SELF"),
        ("no_such_action", "ANY", "unknown action"),
        ("add_validator", "3/2", "n <= d"),
        ("add_validator", "most", "unknown policy rule"),
    ],
)
def test_invalid_policies_are_refused(action: str, rule: str, why: str) -> None:
    reason = gov.check_policy(action, rule)
    assert reason is not None and why in reason


@pytest.mark.parametrize("n", [2, 3, 4, 7])
def test_chain_executes_at_the_vote_that_makes_a_strict_majority(n: int) -> None:
    """The vote that satisfies the policy executes the action in that block, not before."""
    c = Chain(org_genesis(n))
    pid = c.propose("org-a", NEW_ORG)
    for i in range(1, n // 2 + 1):
        assert org_key("newcomer") not in c.state
        assert c.proposal(pid).state == gov.PENDING
        code, msg = c.vote(ORGS[i], pid)
        assert code == OK, msg
    assert c.proposal(pid).state == gov.EXECUTED
    assert "newcomer" in member_organizations(c.state)
    assert c.proposal(pid).closed == c.height


# -- done-when: one admin alone cannot add an organisation ------------------------------------


def test_one_admin_alone_cannot_add_an_organisation_on_a_three_organisation_chain() -> None:
    c = Chain(org_genesis(3))
    code, msg = c.send(admin("org-a"), NEW_ORG)  # the direct (old-style) transaction
    assert code == UNAUTHORIZED and msg.startswith(
        "policy not met: add_organization needs MAJORITY"
    )
    with pytest.raises(TxRejected) as e:
        preflight(c.state, make_tx(admin("org-a"), 1, NEW_ORG))
    assert e.value.reason is Reject.UNAUTHORIZED
    # both admins of the same organisation are still one organisation
    pid = c.propose("org-a", NEW_ORG)
    code, msg = c.vote("org-a", pid, n=1)
    assert code == INVALID and msg.startswith("already voted")
    assert org_key("newcomer") not in c.state
    assert c.proposal(pid).state == gov.PENDING


def test_a_one_organisation_chain_governs_itself_directly() -> None:
    c = Chain(org_genesis(1))
    assert c.send(admin("org-a"), SetParam("max_block_txs", "7")) == (OK, "")
    assert c.state[param_key("max_block_txs")] == b"7"
    assert config_seq(c.state) == 1


def test_non_admins_cannot_govern() -> None:
    c = Chain(org_genesis(3))
    outsider = sha256(b"outsider")
    c.state[b"m/" + outsider] = b"org-a"  # vouched member, but not an admin
    c.acc.add(b"m/" + outsider, b"org-a")
    code, msg = c.send(outsider, Propose(NEW_ORG, b"x", 5))
    assert code == UNAUTHORIZED and msg.startswith("not an admin")


# -- votes ---------------------------------------------------------------------------------------


def test_duplicate_vote_from_the_same_organisation_is_refused() -> None:
    c = Chain(org_genesis(4))
    pid = c.propose("org-a", NEW_ORG)
    assert c.vote("org-b", pid)[0] == OK
    for n in (0, 1):  # the same key again, or the organisation's other admin key
        code, msg = c.vote("org-b", pid, approve=False, n=n)
        assert code == INVALID and msg == f"already voted: org-b has voted on proposal {pid}"
        with pytest.raises(TxRejected):
            preflight(c.state, make_tx(admin("org-b", n), 99, Vote(pid, False)))
    assert c.proposal(pid).tally().yes == 2


def test_unknown_proposal() -> None:
    c = Chain(org_genesis(3))
    assert c.vote("org-a", 42) == (NOT_FOUND, "unknown proposal 42")


def test_rejected_when_the_threshold_can_no_longer_be_reached() -> None:
    c = Chain(org_genesis(3))
    pid = c.propose("org-a", NEW_ORG)
    assert c.vote("org-b", pid, approve=False)[0] == OK
    assert c.proposal(pid).state == gov.PENDING  # org-c can still make it 2 of 3
    code, msg = c.vote("org-c", pid, approve=False)
    assert code == OK and "REJECTED" in msg
    assert c.proposal(pid).state == gov.REJECTED
    assert c.vote("org-b", pid, n=1)[0] == INVALID  # closed
    assert gov.OPEN_PROPOSALS_KEY not in c.state


def test_receipt_message_carries_the_proposal_status() -> None:
    c = Chain(org_genesis(3))
    pid = c.propose("org-a", NEW_ORG)
    code, msg = c.vote("org-b", pid)
    assert code == OK and msg == f"proposal {pid} EXECUTED (2/3 yes, 0 no, need 2, MAJORITY)"


def test_withdraw_only_by_the_proposer_organisation() -> None:
    c = Chain(org_genesis(3))
    pid = c.propose("org-a", NEW_ORG)
    code, msg = c.send(admin("org-b"), Withdraw(pid))
    assert code == UNAUTHORIZED and "proposer" in msg
    assert c.send(admin("org-a", 1), Withdraw(pid))[0] == OK
    assert c.proposal(pid).state == gov.WITHDRAWN
    assert c.vote("org-b", pid)[0] == INVALID


# -- expiry --------------------------------------------------------------------------------------


def test_expiry_at_exactly_the_expiry_height() -> None:
    c = Chain(org_genesis(4))
    pid = c.propose("org-a", NEW_ORG, ttl=3)  # proposed in block 1: expires at height 4
    p = c.proposal(pid)
    assert (p.created, p.expiry) == (1, 4)
    c.run()  # 2
    assert c.vote("org-b", pid)[0] == OK  # block 3 = expiry - 1: still counts
    assert c.proposal(pid).state == gov.PENDING and c.proposal(pid).tally().yes == 2
    code, msg = c.vote("org-c", pid)  # block 4 = the expiry height: too late
    assert code == INVALID and msg.startswith("expired")
    p = c.proposal(pid)
    assert p.state == gov.EXPIRED and p.closed == 4
    assert org_key("newcomer") not in c.state


def test_an_idle_chain_expires_proposals_at_their_height() -> None:
    c = Chain(org_genesis(3))
    pid = c.propose("org-a", NEW_ORG, ttl=2)
    r = c.run()  # block 2: nothing expires yet
    assert gov.proposal_key(pid) not in r.writes
    r = c.run()  # block 3 = expiry
    assert gov.proposal_key(pid) in r.writes
    assert c.proposal(pid).state == gov.EXPIRED


def test_blocks_without_proposals_write_nothing_new() -> None:
    c = Chain(org_genesis(3))
    assert c.run().writes == {}


# -- ABORTED / FAILED ------------------------------------------------------------------------------


def test_aborted_when_the_organisation_set_changes() -> None:
    c = Chain(org_genesis(3))
    add = c.propose("org-a", NEW_ORG)
    param = c.propose("org-b", SetParam("max_block_txs", "9"))
    assert c.vote("org-c", add)[0] == OK  # executes: the member set is now 4
    assert c.proposal(add).state == gov.EXECUTED
    p = c.proposal(param)
    assert p.state == gov.ABORTED and p.reason == "the member organisations changed"
    code, _ = c.vote("org-c", param)  # its earlier approval never counts under 4 members
    assert code == INVALID
    assert param_key("max_block_txs") not in c.state


def test_aborted_when_the_action_policy_changes() -> None:
    c = Chain(org_genesis(3))
    val = c.propose("org-a", AddValidator(vnode("org-a", 1), "org-a"))
    other = c.propose("org-a", SetParam("max_block_txs", "9"))
    pol = c.propose("org-b", SetPolicy("add_validator", "ALL"))
    assert c.vote("org-c", pol)[0] == OK
    assert policy_of(c.state, "add_validator") == ("ALL", 1)
    assert c.proposal(val).state == gov.ABORTED
    assert c.proposal(val).reason == "the policy of add_validator changed"
    assert c.proposal(other).state == gov.PENDING  # another action's policy: untouched


def test_failed_when_the_action_is_invalid_at_that_height() -> None:
    c = Chain(org_genesis(3))
    first = c.propose("org-a", AddValidator(vnode("org-a", 1), "org-a"))
    second = c.propose("org-b", AddValidator(vnode("org-a", 1), "org-a"))
    assert c.vote("org-c", first)[0] == OK
    seq = config_seq(c.state)
    c.run()
    c.run()  # the validator change is effective now
    code, msg = c.vote("org-c", second)
    assert code == OK and "FAILED" in msg
    p = c.proposal(second)
    assert p.state == gov.FAILED and "already a validator" in p.reason
    assert config_seq(c.state) == seq  # nothing executed


# -- SELF -----------------------------------------------------------------------------------------


def test_replace_validator_is_self_service() -> None:
    c = Chain(org_genesis(3))
    lost, fresh = vnode("org-b"), vnode("org-b", 9)
    code, msg = c.send(admin("org-a"), ReplaceValidator(lost, fresh))  # not org-a's validator
    assert code == UNAUTHORIZED and "SELF" in msg
    assert c.send(admin("org-b"), ReplaceValidator(lost, fresh)) == (OK, "")
    _, vals = latest_validators(c.state)
    assert Validator(fresh, "org-b") in vals and all(v.node_id != lost for v in vals)
    assert sum(v.organization == "org-b" for v in vals) == 1  # the count per org is unchanged
    c.run()
    c.run()
    code, msg = c.send(admin("org-c"), ReplaceValidator(vnode("org-c"), vnode("org-a")))
    assert code == INVALID and "already a validator" in msg


def test_set_admins_by_the_organisation_itself() -> None:
    c = Chain(org_genesis(3))
    new = admin("org-b", 7)
    code, _ = c.send(admin("org-a"), SetAdmins("org-b", (new,)))
    assert code == UNAUTHORIZED
    assert c.send(admin("org-b"), SetAdmins("org-b", (new,))) == (OK, "")
    assert c.send(admin("org-b"), AddMember(sha256(b"u"), "org-b"))[0] == UNAUTHORIZED
    assert c.send(new, AddMember(sha256(b"u"), "org-b")) == (OK, "")


def test_admin_keys_act_for_one_organisation() -> None:
    c = Chain(org_genesis(3))
    code, msg = c.send(admin("org-b"), SetAdmins("org-b", (admin("org-a"),)))
    assert code == INVALID and "already acts for org-a" in msg


# -- offline path -------------------------------------------------------------------------------


def endorse(
    org: str, action_bytes: bytes, seq: int, expiry: int, chain: str = CHAIN
) -> types_pb2.Endorsement:
    """A detached endorsement, signed as `consortium gov sign` does."""
    k = key_of(org)
    sig = k.sign(gov.endorsement_message(chain, action_bytes, seq, expiry))
    return types_pb2.Endorsement(signer=k.public, signature=sig)


def action_bytes(action: GovAction) -> bytes:
    return codec.gov_action_to_pb(action).SerializeToString()


def signed(c: Chain, sender: str, sub: types_pb2.SubmitEndorsed) -> Tx:
    """Real wire bytes through the real decoder: the codec verifies each endorsement."""
    k = key_of(sender)
    n = c._nonces.get(k.public, u64(c.state.get(nonce_key(k.public))))
    c._nonces[k.public] = n + 1
    body = types_pb2.TxBody(chain_id=CHAIN, sender=k.public, nonce=n, submit_endorsed=sub)
    raw = body.SerializeToString()
    return codec.decode_tx(types_pb2.SignedTx(body=raw, signature=k.sign(raw)).SerializeToString())


def submission(
    orgs: tuple[str, ...], action: GovAction, seq: int, expiry: int
) -> types_pb2.SubmitEndorsed:
    ab = action_bytes(action)
    return types_pb2.SubmitEndorsed(
        action=ab,
        config_seq=seq,
        expiry=expiry,
        endorsements=[endorse(o, ab, seq, expiry) for o in orgs],
    )


def submit(c: Chain, sender: str, sub: types_pb2.SubmitEndorsed) -> tuple[int, str]:
    (rc,) = c.run(signed(c, sender, sub)).receipts
    return rc.code, rc.message


def config_state(state: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """The chain's configuration: everything but nonces and proposal bookkeeping."""
    skip = (b"n/", b"g/prop", b"g/ptx/")
    return {k: v for k, v in state.items() if not k.startswith(skip)}


@pytest.mark.parametrize(
    "action",
    [NEW_ORG, SetParam("max_block_txs", "9"), AddValidator(vnode("org-c", 1), "org-c")],
    ids=["add_organization", "set_param", "add_validator"],
)
def test_offline_equals_online(action: GovAction) -> None:
    online, offline = Chain(org_genesis(3)), Chain(org_genesis(3))
    pid = online.propose("org-a", action)
    assert online.vote("org-c", pid)[0] == OK  # executes in block 2
    offline.run()
    code, msg = submit(offline, "org-b", submission(("org-a", "org-c"), action, 0, 50))
    assert code == OK and "EXECUTED" in msg, msg
    assert config_state(online.state) == config_state(offline.state)
    p = offline.proposal(1)
    assert (
        p.offline
        and p.state == gov.EXECUTED
        and {v.organization for v in p.votes}
        == {
            "org-a",
            "org-c",
        }
    )


def test_offline_policy_not_met_with_one_organisation() -> None:
    c = Chain(org_genesis(3))
    code, msg = submit(c, "org-a", submission(("org-a",), NEW_ORG, 0, 50))
    assert code == UNAUTHORIZED and msg.startswith("policy not met")
    assert org_key("newcomer") not in c.state


def test_offline_two_endorsements_of_one_organisation_count_once() -> None:
    c = Chain(org_genesis(3))
    code, msg = submit(c, "org-a", submission(("org-a", "org-a"), NEW_ORG, 0, 50))
    assert code == INVALID and msg.startswith("already voted")


def test_offline_replay_across_chain_ids_is_refused() -> None:
    c = Chain(org_genesis(3))
    sub = submission(("org-b",), NEW_ORG, 0, 50)
    sub.endorsements.append(endorse("org-a", sub.action, 0, 50, chain="other-chain"))
    code, msg = submit(c, "org-a", sub)
    assert code == INVALID and "does not verify" in msg


def test_offline_replay_across_proposals_is_refused() -> None:
    """Endorsements cover the action bytes and the configuration sequence: they neither
    carry over to another action nor count twice for the same one."""
    c = Chain(org_genesis(3))
    sub = submission(("org-a", "org-b"), NEW_ORG, 0, 50)
    other = AddOrganization("intruder", b"", (admin("intruder"),))
    forged = types_pb2.SubmitEndorsed()
    forged.CopyFrom(sub)
    forged.action = action_bytes(other)
    code, msg = submit(c, "org-a", forged)
    assert code == INVALID and "does not verify" in msg
    assert submit(c, "org-a", sub)[0] == OK
    code, msg = submit(c, "org-a", sub)  # the same endorsements again
    assert code == INVALID and msg.startswith("stale endorsements")


def test_offline_expiry_is_exclusive() -> None:
    c = Chain(org_genesis(3))
    code, msg = submit(c, "org-a", submission(("org-a", "org-b"), NEW_ORG, 0, 1))
    assert code == INVALID and msg.startswith("expired")


# -- legacy single-admin chains --------------------------------------------------------------

LEGACY_ADMIN = sha256(b"legacy admin")


def legacy_genesis() -> Genesis:
    return Genesis(
        chain_id=CHAIN,
        time_ms=1,
        validators=(Validator(vnode("org-a"), "org-a"), Validator(vnode("org-b"), "org-b")),
        admins=(LEGACY_ADMIN,),
        consensus="raft",
        organizations=(Organization("org-a"), Organization("org-b")),
    )


def test_legacy_genesis_and_state_are_unchanged() -> None:
    g = legacy_genesis()
    assert "policies" not in g.to_dict()
    assert all("admins" not in o for o in g.to_dict()["organizations"])
    assert not any(k.startswith((b"g/gov", b"g/orgs", b"g/oadm")) for k in g.writes())


def test_legacy_chain_keeps_its_rule_and_refuses_proposals() -> None:
    c = Chain(legacy_genesis())
    assert c.send(LEGACY_ADMIN, SetParam("max_block_txs", "9")) == (OK, "")
    assert gov.CONFIG_SEQ_KEY not in c.state  # legacy writes exactly what they always did
    code, msg = c.send(LEGACY_ADMIN, Propose(NEW_ORG, b"x", 5))
    assert code == INVALID and "consortium gov migrate" in msg


def test_migrate_governance_moves_a_legacy_chain_once() -> None:
    c = Chain(legacy_genesis())
    partial = MigrateGovernance((("org-a", (admin("org-a"),)),))
    code, msg = c.send(LEGACY_ADMIN, partial)
    assert code == INVALID and "org-b" in msg
    full = MigrateGovernance((("org-a", (admin("org-a"),)), ("org-b", (admin("org-b"),))))
    assert c.send(admin("org-a"), full)[0] == UNAUTHORIZED  # not a genesis admin
    assert c.send(LEGACY_ADMIN, full)[0] == OK
    assert c.send(LEGACY_ADMIN, SetParam("max_block_txs", "9"))[0] == UNAUTHORIZED
    assert c.send(LEGACY_ADMIN, full)[0] == INVALID
    pid = c.propose("org-a", SetParam("max_block_txs", "9"))
    assert c.vote("org-b", pid)[0] == OK  # 2 of 2
    assert c.state[param_key("max_block_txs")] == b"9"


def test_genesis_refuses_mixed_or_partial_organisation_admins() -> None:
    g = org_genesis(3)
    d = g.to_dict()
    d["admins"] = [LEGACY_ADMIN.hex()]
    with pytest.raises(DecodeError, match="both top-level admins and organisation admins"):
        Genesis.from_dict(d)
    d = g.to_dict()
    del d["organizations"][1]["admins"]
    with pytest.raises(DecodeError, match="every organisation needs"):
        Genesis.from_dict(d)
    d = g.to_dict()
    d["policies"] = {"set_param": "SELF"}
    with pytest.raises(DecodeError, match="SELF cannot govern"):
        Genesis.from_dict(d)


def test_genesis_round_trip_with_admins_and_policies() -> None:
    g = org_genesis(3, policies={"add_organization": "all"})
    back = Genesis.from_json(g.canonical())
    assert back.canonical() == g.canonical() and back.hash == g.hash
    assert policy_of(Chain(back).state, "add_organization") == ("ALL", 0)


def test_action_encoding_round_trips() -> None:
    for a in (
        NEW_ORG,
        SetParam("max_block_txs", "9"),
        ReplaceValidator(vnode("a"), vnode("b")),
        SetAdmins("org-a", (admin("org-a"), admin("org-a", 1))),
        SetPolicy("set_param", "2/3"),
    ):
        assert gov.decode_action(gov.encode_action(a)) == a


def test_open_proposals_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gov, "MAX_OPEN_PROPOSALS", 2)
    c = Chain(org_genesis(3))
    c.propose("org-a", NEW_ORG)
    c.propose("org-b", SetParam("max_block_txs", "9"))
    code, msg = c.send(admin("org-c"), Propose(NEW_ORG, b"x", 5))
    assert code == INVALID and msg.startswith("too many open proposals")


@pytest.mark.parametrize(
    "payload",
    [
        Propose(NEW_ORG, b"x", 5),
        Vote(1, True),
        Vote(1, False),
        Withdraw(1),
        SetAdmins("org-a", (admin("org-a"),)),
        SetPolicy("set_param", "ALL"),
        ReplaceValidator(vnode("a"), vnode("b")),
        MigrateGovernance((("org-a", (admin("org-a"),)),)),
    ],
    ids=lambda p: type(p).__name__,
)
def test_well_formed_governance_txs_pass_the_stateless_checks(payload: Payload) -> None:
    check_stateless(make_tx(admin("org-a"), 0, payload), CHAIN, 1 << 20)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (Propose(NEW_ORG, b"x", 0), "ttl"),
        (Propose(Vote(1, True), b"x", 5), "cannot nest"),  # type: ignore[arg-type]
        (Vote(0, True), "start at 1"),
        (SetAdmins("org-a", ()), "admin keys"),
        (SetAdmins("org-a", (admin("org-a"), admin("org-a"))), "distinct"),
        (ReplaceValidator(vnode("a"), vnode("a")), "distinct"),
    ],
)
def test_malformed_governance_txs_are_refused_statelessly(payload: Payload, why: str) -> None:
    with pytest.raises(TxRejected, match=why):
        check_stateless(make_tx(admin("org-a"), 0, payload), CHAIN, 1 << 20)


@pytest.mark.parametrize(
    "payload",
    [
        Propose(AddValidator(b"short", "org-a"), b"x", 5),
        Propose(NEW_ORG, b"x", 0),
        SetAdmins("org-a", (b"short",)),
    ],
    ids=["propose-bad-action", "propose-ttl-0", "set-admins-bad-key"],
)
def test_malformed_governance_is_refused_again_at_execution(payload: Payload) -> None:
    """A block from a faulty proposer skips admission: execution re-runs the stateless
    checks, so nothing malformed reaches configuration state."""
    c = Chain(org_genesis(1))
    (rc,) = c.run(make_tx(admin("org-a"), 0, payload)).receipts
    assert rc.code == INVALID
    assert gov.NEXT_PROPOSAL_KEY not in c.state and config_seq(c.state) == 0


def test_malformed_migration_is_refused_at_execution() -> None:
    c = Chain(legacy_genesis())
    bad = MigrateGovernance((("org-a", (b"short",)), ("org-b", (admin("org-b"),))))
    (rc,) = c.run(make_tx(LEGACY_ADMIN, 0, bad)).receipts
    assert rc.code == INVALID and gov.GOV_ORGS_KEY not in c.state


# -- a seeded random workload: invariants of the proposal book ---------------------------------


def random_action(rng: random.Random) -> GovAction:
    org = rng.choice(ORGS[:4])
    choices: list[GovAction] = [
        AddOrganization(f"new-{rng.randrange(3)}", b"", (admin(f"new-{rng.randrange(3)}"),)),
        SetParam("max_block_txs", str(rng.randrange(1, 50))),
        AddValidator(vnode("org-a", rng.randrange(1, 3)), "org-a"),  # few keys: some FAIL
        ReplaceValidator(vnode(org), vnode(org, rng.randrange(1, 3))),
        SetPolicy(
            rng.choice(["set_param", "add_validator"]), rng.choice(["ANY", "ALL", "2", "1/2"])
        ),
        AddMember(sha256(bytes([rng.randrange(4)])), org),
    ]
    return rng.choice(choices)


def random_tx(c: Chain, rng: random.Random) -> Tx:
    org = rng.choice((*ORGS[:4], *ORGS[:4], "new-0", "outsider"))
    sender = admin(org, rng.randrange(2))
    last = max(u64(c.state.get(gov.NEXT_PROPOSAL_KEY)) - 1, 1)
    roll = rng.random()
    if roll < 0.3:
        a = random_action(rng)
        ab = codec.gov_action_to_pb(a).SerializeToString()
        return c.tx(sender, Propose(a, ab, rng.randrange(1, 12)))
    if roll < 0.7:
        return c.tx(sender, Vote(rng.randrange(max(last - 3, 1), last + 2), rng.random() < 0.6))
    if roll < 0.8:
        return c.tx(sender, Withdraw(rng.randrange(1, last + 2)))
    if roll < 0.9:
        return signed(
            c,
            rng.choice(ORGS[:4]),
            submission(
                tuple(rng.sample(ORGS[:4], rng.randrange(1, 5))),
                random_action(rng),
                config_seq(c.state) if rng.random() < 0.8 else 0,
                c.height + rng.randrange(1, 5),
            ),
        )
    return c.tx(sender, random_action(rng))


def check_book(state: dict[bytes, bytes], height: int) -> None:
    last = u64(state.get(gov.NEXT_PROPOSAL_KEY)) - 1
    props = [get_proposal(state, i) for i in range(1, last + 1)]
    assert all(p is not None for p in props)
    pending = [p.id for p in props if p is not None and p.state == gov.PENDING]
    assert gov.decode_ids(state.get(gov.OPEN_PROPOSALS_KEY)) == pending
    for p in props:
        assert p is not None and p.state in gov.STATES
        orgs = [v.organization for v in p.votes]
        assert len(orgs) == len(set(orgs)) and set(orgs) <= set(p.members)
        outcome = p.tally().outcome
        if p.state in (gov.EXECUTED, gov.FAILED):
            assert outcome == "passed", p
        elif p.state == gov.REJECTED:
            assert outcome == "rejected", p
        elif p.state == gov.PENDING:
            assert outcome == "pending" and p.expiry > height, p
        elif p.state == gov.EXPIRED:
            assert p.closed == p.expiry, p  # at exactly its height, even on an idle chain


@pytest.mark.parametrize("seed", range(40))
def test_random_governance_keeps_the_book_consistent_and_replays_identically(seed: int) -> None:
    """Random proposals, votes (also by outsiders and for unknown ids), withdrawals, endorsed
    submissions and direct changes: nothing raises, the open list is exactly the PENDING
    proposals, no organisation votes twice, every terminal state agrees with its tally, and
    replaying the same blocks on a fresh chain gives the same state root."""
    rng = random.Random(seed)
    c = Chain(org_genesis(4))
    blocks: list[list[Tx]] = []
    for _ in range(30):
        txs = [random_tx(c, rng) for _ in range(rng.randrange(0, 4))]
        blocks.append(txs)
        c.run(*txs)
        check_book(c.state, c.height)
    replay = Chain(org_genesis(4))
    for txs in blocks:
        replay.run(*txs)
    assert replay.acc.digest() == c.acc.digest() and replay.state == c.state


def test_a_legacy_chain_has_the_genesis_hash_and_state_root_it_had_before_governance() -> None:
    """Pinned values computed with the ledger as it was before governance by organisations
    (main at 7df626a): a legacy chain's genesis and its legacy admin's changes hash the same."""
    adm, m = sha256(b"adm"), sha256(b"m")
    g = Genesis(
        "c",
        1,
        tuple(Validator(sha256(o.encode()), o) for o in ("org-a", "org-b")),
        admins=(adm,),
        consensus="raft",
        organizations=(Organization("org-a"), Organization("org-b")),
        permissioned=True,
    )

    def tx(sender: bytes, nonce: int, p: Payload) -> Tx:
        body = repr(("c", sender, nonce, p)).encode()
        return Tx(sha256(body), body, body, bytes(64), "c", sender, nonce, p)

    state = {k: v for k, v in g.writes().items() if v is not None}
    r = execute_block(
        state,
        g.lthash(),
        1,
        [
            tx(adm, 0, SetParam("max_block_txs", "7")),
            tx(adm, 1, AddMember(m, "org-b")),
            tx(adm, 2, AddValidator(sha256(b"v"), "org-b")),
            tx(m, 0, KvPut(b"k", b"v")),
            tx(sha256(b"x"), 0, KvPut(b"k", b"v")),
        ],
    )
    assert g.hash.hex() == "9589b205743ab5957b001891eccc39cac428bbea4244625b0a009b16426eb91d"
    assert r.state_root.hex() == "76914db80e13970fef436cafed1047e648ff234e0bb721865d05f65472a88b83"
    assert [x.code for x in r.receipts] == [OK, OK, OK, OK, UNAUTHORIZED]
