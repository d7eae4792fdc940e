"""Golden scenarios for the BFT engine, one rule each, citing Tendermint's Algorithm 1
(Buchman, Kwon, Milosevic, "The latest gossip on BFT consensus", arXiv:1807.04938) by line.

Each test drives one BftEngine (4 validators, f = 1) with hand-signed peer messages."""

from __future__ import annotations

import random

import pytest
from consortium_node.consensus.api import Entry, Envelope, Ready, SyncRequest
from consortium_node.consensus.bft import (
    BftConfig,
    BftEngine,
    Decision,
    HardState,
    Kind,
    Proposal,
    Vote,
    decode,
    encode,
)
from consortium_node.consensus.bft.codec import NIL, proposal_sign_bytes, vote_sign_bytes
from consortium_node.ledger.block import Block, commit_sign_bytes
from consortium_node.ledger.hashing import sha256

from tests.support.engines import CHAIN_ID, GENESIS_HASH, FakeApp, Keyring, certificate_for, node_id

pytestmark = pytest.mark.unit

V = tuple(sorted(node_id(f"v{i}") for i in range(4)))
OUTSIDER = node_id("mallory")
CFG = BftConfig(
    timeout_propose=6,
    timeout_prevote=3,
    timeout_precommit=3,
    timeout_delta=2,
    empty_block_ticks=5,
    rebroadcast_ticks=50,
)
KR = Keyring()
for _v in (*V, OUTSIDER):
    KR.add(_v)


def proposer(h: int, r: int) -> bytes:
    return V[(h + r) % len(V)]


def make(nid: bytes) -> tuple[BftEngine, FakeApp]:
    app = FakeApp(nid, KR, lambda h: V)
    eng = BftEngine(
        nid, app, random.Random(0), chain_id=CHAIN_ID, applied_hash=GENESIS_HASH, config=CFG
    )
    eng.advance(eng.ready())
    return eng, app


def a_block(h: int = 1, tx: bytes = b"tx:1", prop: bytes | None = None) -> Block:
    app = FakeApp(prop or proposer(h, 0), KR, lambda _h: V)
    return app.make_block(h, GENESIS_HASH, (tx,))


def proposal(block: Block, r: int = 0, vr: int = -1, by: bytes | None = None) -> Proposal:
    by = by or proposer(block.height, r)
    sig = KR.sign(by, proposal_sign_bytes(CHAIN_ID, block.height, r, vr, block.hash))
    return Proposal(block.height, r, vr, by, block, sig)


def vote(kind: Kind, who: bytes, bh: bytes, r: int = 0, h: int = 1) -> Vote:
    return Vote(kind, h, r, who, bh, KR.sign(who, vote_sign_bytes(CHAIN_ID, kind, h, r, bh)))


def deliver(eng: BftEngine, m: Proposal | Vote | Decision, sender: bytes | None = None) -> Ready:
    if sender is None:
        sender = (
            m.validator
            if isinstance(m, Vote)
            else (m.proposer if isinstance(m, Proposal) else V[1])
        )
    eng.step(Envelope(sender, eng.node_id, encode(m)))
    rd = eng.ready()
    eng.advance(rd)
    return rd


def ticks(eng: BftEngine, n: int) -> list[Ready]:
    out = []
    for _ in range(n):
        eng.tick()
        rd = eng.ready()
        eng.advance(rd)
        out.append(rd)
    return out


def sent_votes(rds: Ready | list[Ready], kind: Kind) -> list[Vote]:
    rds = rds if isinstance(rds, list) else [rds]
    out = []
    for rd in rds:
        for e in rd.messages:
            m = decode(e.payload)
            if isinstance(m, Vote) and m.kind is kind:
                out.append(m)
    # one broadcast = one vote to each of the 3 peers
    return list({(v.round, v.block_hash): v for v in out}.values())


ME = V[0]  # not the proposer of (1, 0): that is V[1]
OTHERS = V[1:]


def test_proposer_rotates_over_sorted_validators_by_height_and_round() -> None:
    """Algorithm 1 line 14 (proposer(h_p, round_p)): deterministic round-robin."""
    eng, _ = make(ME)
    assert eng.status().leader == proposer(1, 0) == V[1]
    eng._start_round(3)
    assert eng.status().leader == proposer(1, 3) == V[0]


def test_valid_proposal_gets_prevote_persisted_before_it_is_sent() -> None:
    """Lines 22-27: upon PROPOSAL(h, r, v, -1) in step propose, prevote id(v) if valid(v) and
    not locked on another value. The hard state recording the prevote is in the same Ready."""
    eng, _ = make(ME)
    b = a_block()
    rd = deliver(eng, proposal(b))
    [pv] = sent_votes(rd, Kind.PREVOTE)
    assert pv.block_hash == b.hash and pv.round == 0
    assert rd.hard_state is not None
    hs = HardState.decode(rd.hard_state)
    assert (hs.prevote_round, hs.prevote_hash) == (0, b.hash)


def test_invalid_proposal_gets_nil_prevote_and_a_rejection() -> None:
    """Lines 22-27 (valid(v) false -> prevote nil); rule 2: the proposer is named."""
    eng, _ = make(ME)
    bad = FakeApp(V[1], KR, lambda h: V).make_block(1, GENESIS_HASH, (b"not-a-tx",))
    rd = deliver(eng, proposal(bad))
    [pv] = sent_votes(rd, Kind.PREVOTE)
    assert pv.block_hash == NIL
    assert any(r.offender == V[1] and "invalid block" in r.reason for r in rd.rejections)


def _lock_on(eng: BftEngine, b: Block, r: int = 0) -> Ready:
    deliver(eng, proposal(b, r))
    rd = Ready()
    for v in OTHERS:
        rd = deliver(eng, vote(Kind.PREVOTE, v, b.hash, r))
        if sent_votes(rd, Kind.PRECOMMIT):
            break
    return rd


def test_polka_locks_and_precommits() -> None:
    """Lines 36-43: upon PROPOSAL(h, r, v) and 2f+1 PREVOTE(h, r, id(v)) in step prevote:
    lockedValue = v, lockedRound = r, precommit id(v); validValue = v. The lock and the
    precommit are durable in the Ready that sends it, with the block and its polka."""
    eng, _ = make(ME)
    b = a_block()
    rd = _lock_on(eng, b)
    [pc] = sent_votes(rd, Kind.PRECOMMIT)
    assert pc.block_hash == b.hash
    assert (eng.locked_round, eng.locked_hash, eng.valid_round) == (0, b.hash, 0)
    assert rd.hard_state is not None
    hs = HardState.decode(rd.hard_state)
    assert (hs.locked_round, hs.locked_hash, hs.precommit_hash) == (0, b.hash, b.hash)
    assert any(e.data.startswith(b"P") for e in rd.entries)  # the polka, for re-sending


def test_nil_polka_precommits_nil() -> None:
    """Lines 44-46: upon 2f+1 PREVOTE(h, r, nil) in step prevote: precommit nil."""
    eng, _ = make(ME)
    ticks(eng, CFG.timeout_propose + CFG.empty_block_ticks)  # L57: prevote nil
    rds = [deliver(eng, vote(Kind.PREVOTE, v, NIL)) for v in OTHERS[:2]]
    [pc] = sent_votes(rds, Kind.PRECOMMIT)
    assert pc.block_hash == NIL


def test_locked_validator_prevotes_nil_for_a_different_value() -> None:
    """Lines 22-27: a validator locked on v prevotes nil for a new proposal v' (vr = -1)."""
    eng, _ = make(ME)
    x, y = a_block(tx=b"tx:x"), a_block(tx=b"tx:y", prop=proposer(1, 1))
    _lock_on(eng, x)
    for v in OTHERS[1:]:  # lines 55-56: f+1 messages of round 1 -> start round 1
        deliver(eng, vote(Kind.PREVOTE, v, NIL, r=1))
    assert eng.round == 1
    rd = deliver(eng, proposal(y, r=1))
    [pv] = sent_votes(rd, Kind.PREVOTE)
    assert pv.round == 1 and pv.block_hash == NIL


def test_higher_polka_unlocks() -> None:
    """Lines 28-33: upon PROPOSAL(h, r, v, vr) with 2f+1 PREVOTE(h, vr, id(v)), vr < r: prevote
    id(v) if lockedRound <= vr (a newer polka overrides an older lock)."""
    eng, _ = make(ME)
    x, y = a_block(tx=b"tx:x"), a_block(tx=b"tx:y", prop=proposer(1, 1))
    _lock_on(eng, x)
    for v in OTHERS:
        deliver(eng, vote(Kind.PREVOTE, v, y.hash, r=1))
    for v in OTHERS[1:]:
        deliver(eng, vote(Kind.PRECOMMIT, v, NIL, r=2))
    assert eng.round == 2
    rd = deliver(eng, proposal(y, r=2, vr=1))
    [pv] = sent_votes(rd, Kind.PREVOTE)
    assert (pv.round, pv.block_hash) == (2, y.hash)


def test_commit_with_2f1_precommits_produces_a_verifiable_certificate() -> None:
    """Lines 49-54: upon PROPOSAL(h, r, v) and 2f+1 PRECOMMIT(h, r, id(v)): decide v. The
    certificate is the precommit signatures over commit_sign_bytes, checkable by anyone."""
    eng, _ = make(ME)
    b = a_block()
    deliver(eng, proposal(b))
    rd = Ready()
    for v in OTHERS:
        rd = deliver(eng, vote(Kind.PRECOMMIT, v, b.hash))
        if rd.committed:
            break
    [c] = rd.committed
    assert c.hash == b.hash and c.certificate is not None
    sigs = c.certificate.signatures
    assert len(sigs) >= 3 and len({s for s, _ in sigs}) == len(sigs)
    data = commit_sign_bytes(CHAIN_ID, 1, c.certificate.round, b.hash)
    assert all(KR.verify(s, data, sig) for s, sig in sigs)
    assert eng.status().height == 1 and eng.height == 2


def test_timeouts_grow_with_round() -> None:
    """Lines 57-67: OnTimeoutPropose -> prevote nil; OnTimeoutPrevote (after 2f+1 prevotes of
    any kind, line 34) -> precommit nil; OnTimeoutPrecommit (line 47) -> next round; every
    timeout grows by timeout_delta per round."""
    eng, _ = make(ME)
    wait0 = CFG.timeout_propose + CFG.empty_block_ticks
    rds = ticks(eng, wait0 - 1)
    assert not sent_votes(rds, Kind.PREVOTE)
    assert sent_votes(ticks(eng, 1), Kind.PREVOTE)[0].block_hash == NIL
    deliver(eng, vote(Kind.PREVOTE, V[1], a_block().hash))
    deliver(eng, vote(Kind.PREVOTE, V[2], NIL))  # 2f+1 prevotes, no quorum for anything
    rds = ticks(eng, CFG.timeout_prevote)
    assert sent_votes(rds, Kind.PRECOMMIT)[0].block_hash == NIL
    deliver(eng, vote(Kind.PRECOMMIT, V[1], a_block().hash))
    deliver(eng, vote(Kind.PRECOMMIT, V[2], NIL))
    ticks(eng, CFG.timeout_precommit)
    assert eng.round == 1
    rds = ticks(eng, CFG.timeout_propose + CFG.timeout_delta)
    assert sent_votes(rds, Kind.PREVOTE)[-1].round == 1


def test_round_skip_on_f_plus_one_messages() -> None:
    """Lines 55-56: upon f+1 messages of a round > round_p: StartRound(that round)."""
    eng, _ = make(ME)
    deliver(eng, vote(Kind.PREVOTE, V[1], NIL, r=5))
    assert eng.round == 0
    deliver(eng, vote(Kind.PRECOMMIT, V[2], NIL, r=5))
    assert eng.round == 5


def test_equivocating_proposer_is_named_and_first_proposal_kept() -> None:
    """Byzantine proposer: two signed proposals for one (height, round) -> Rejection naming it;
    the second does not change our prevote (we sign one value per round)."""
    eng, _ = make(ME)
    x, y = a_block(tx=b"tx:x"), a_block(tx=b"tx:y")
    deliver(eng, proposal(x))
    rd = deliver(eng, proposal(y))
    assert [r.offender for r in rd.rejections] == [V[1]]
    assert "equivocating proposer" in rd.rejections[0].reason
    assert not sent_votes(rd, Kind.PREVOTE)


def test_double_vote_invalid_signature_and_outsiders_are_rejected() -> None:
    """Byzantine validators: a double vote names the signer; a bad signature names the sender;
    a vote signed by a non-validator is rejected; none of them counts toward a quorum."""
    eng, _ = make(ME)
    x, y = a_block(tx=b"tx:x"), a_block(tx=b"tx:y")
    deliver(eng, vote(Kind.PREVOTE, V[2], x.hash))
    rd = deliver(eng, vote(Kind.PREVOTE, V[2], y.hash))
    assert rd.rejections[0].offender == V[2] and "double prevote" in rd.rejections[0].reason
    forged = Vote(Kind.PREVOTE, 1, 0, V[3], x.hash, b"\x00" * 64)
    rd = deliver(eng, forged, sender=V[1])
    assert (
        rd.rejections[0].offender == V[1] and "invalid prevote signature" in rd.rejections[0].reason
    )
    rd = deliver(eng, vote(Kind.PREVOTE, OUTSIDER, x.hash), sender=OUTSIDER)
    assert rd.rejections[0].offender == OUTSIDER and "non-validator" in rd.rejections[0].reason
    assert len(eng._prevotes[0].votes) == 1  # only V[2]'s first vote counts for "any 2f+1"
    rd = deliver(eng, Proposal(1, 0, -1, V[2], x, KR.sign(V[2], b"x")))
    assert "non-proposer" in rd.rejections[0].reason


def test_garbage_is_rejected_not_raised() -> None:
    """Rule 2 (untrusted input never raises through the core)."""
    eng, _ = make(ME)
    eng.step(Envelope(V[1], ME, b"\x01\x02garbage"))
    rd = eng.ready()
    assert rd.rejections and rd.rejections[0].offender == V[1]


def test_restart_never_double_signs() -> None:
    """Durable votes: after prevoting nil on timeout and crashing, a restarted validator that
    then receives the round's proposal must not prevote it (it re-sends its nil prevote)."""
    eng, app = make(ME)
    hs = b""
    entries: list[Entry] = []
    for rd in ticks(eng, CFG.timeout_propose + CFG.empty_block_ticks):
        hs = rd.hard_state or hs
        entries += rd.entries
    eng2 = BftEngine.restore(
        ME,
        app,
        random.Random(0),
        chain_id=CHAIN_ID,
        hard_state=hs,
        entries=entries,
        last_applied_height=0,
        last_block_hash=GENESIS_HASH,
        config=CFG,
    )
    rd = eng2.ready()
    assert [v.block_hash for v in sent_votes(rd, Kind.PREVOTE)] == [NIL]  # re-sent as signed
    eng2.advance(rd)
    rd = deliver(eng2, proposal(a_block()))
    assert not sent_votes(rd, Kind.PREVOTE)


def test_lagging_node_asks_for_sync_and_accepts_a_certified_decision() -> None:
    """Catch-up: a message two heights ahead -> SyncRequest to its sender; a DECISION carrying
    2f+1 valid precommit signatures decides directly; a short certificate is rejected."""
    eng, _ = make(ME)
    rd = deliver(eng, vote(Kind.PREVOTE, V[2], NIL, h=3))
    assert rd.sync == (SyncRequest(V[2], 1),)
    b = a_block()
    weak = b.with_certificate(certificate_for(KR, list(V[1:3]), 1, 0, b.hash))
    rd = deliver(eng, Decision(weak), sender=V[1])
    assert rd.committed == () and "needs 3" in rd.rejections[0].reason
    good = b.with_certificate(certificate_for(KR, list(V[1:]), 1, 0, b.hash))
    rd = deliver(eng, Decision(good), sender=V[1])
    assert [c.hash for c in rd.committed] == [b.hash]


def test_node_one_height_behind_gets_the_decision() -> None:
    """Catch-up: a vote from a peer still at our previous height is answered with our last
    DECISION (block + certificate)."""
    eng, app = make(ME)
    b = a_block()
    deliver(eng, proposal(b))
    rd = Ready()
    for v in OTHERS:
        rd = deliver(eng, vote(Kind.PRECOMMIT, v, b.hash))
    app.apply(b)
    rd = deliver(eng, vote(Kind.PREVOTE, V[3], NIL, r=1, h=1))
    [m] = [decode(e.payload) for e in rd.messages if e.to == V[3]]
    assert isinstance(m, Decision) and m.block.hash == b.hash


def test_empty_block_only_after_the_configured_wait_unless_txs_are_pending() -> None:
    """Block production: the proposer proposes at once when it has txs, else an empty block
    after empty_block_ticks."""
    eng, _app = make(V[1])  # proposer of (1, 0)

    def proposals(rds: list[Ready]) -> list[Proposal]:
        out = [decode(e.payload) for rd in rds for e in rd.messages]
        return [m for m in out if isinstance(m, Proposal)]

    assert not proposals(ticks(eng, CFG.empty_block_ticks - 1))
    [p] = proposals(ticks(eng, 1))[:1]
    assert p.block.txs == ()
    eng2, app2 = make(V[1])
    app2.add_tx(b"tx:now")
    [p2] = proposals(ticks(eng2, 1))[:1]
    assert p2.block.txs == (b"tx:now",)
    assert sha256(b"") != p2.block.hash


def test_non_validator_follows_but_never_signs() -> None:
    """Validator-set change: a node outside validators_at(h) (removed, or not yet added) is an
    observer: it processes the round but sends no proposal or vote."""
    app = FakeApp(OUTSIDER, KR, lambda h: V)
    eng = BftEngine(
        OUTSIDER, app, random.Random(0), chain_id=CHAIN_ID, applied_hash=GENESIS_HASH, config=CFG
    )
    rds = [eng.ready(), deliver(eng, proposal(a_block()))]
    rds += ticks(eng, 3 * CFG.timeout_propose)
    assert eng.status().role == "observer"
    assert all(rd.messages == () for rd in rds)


def test_pending_txs_shorten_the_round0_propose_timeout() -> None:
    """Lines 57-60 with empty-block pacing: without txs a non-proposer waits empty_block_ticks
    more for the proposer; once txs are pending it times the proposer out normally."""
    eng, app = make(ME)
    ticks(eng, 2)
    app.add_tx(b"tx:late")
    rds = ticks(eng, CFG.timeout_propose + 1)  # the tick that sees the tx, then the timeout
    assert 1 + 2 + CFG.timeout_propose < CFG.timeout_propose + CFG.empty_block_ticks + 2
    assert [v.block_hash for v in sent_votes(rds, Kind.PREVOTE)] == [NIL]


def test_nil_precommit_majority_starts_the_next_round_without_the_timeout() -> None:
    """Lines 47 + 65 shortened: 2f+1 PRECOMMIT(h, r, nil) from distinct validators mean no
    value can be decided in round r (2f+1 precommits for it would need f+1 double-signers), so
    StartRound(r+1) at once instead of after timeout_precommit. A mixed 2f+1 (one for a value)
    still waits for the timeout: the fourth validator could complete the value's quorum."""
    eng, _ = make(ME)
    ticks(eng, CFG.timeout_propose + CFG.empty_block_ticks)  # L57: prevote nil
    for v in OTHERS[:2]:
        deliver(eng, vote(Kind.PREVOTE, v, NIL))  # L44: we precommit nil
    assert eng.round == 0
    deliver(eng, vote(Kind.PRECOMMIT, V[1], NIL))
    assert eng.round == 0  # 2 of 4 nil precommits: not yet
    rd = deliver(eng, vote(Kind.PRECOMMIT, V[2], NIL))
    assert eng.round == 1  # 2f+1 nil (ours included): round 1 with no tick in between
    assert rd.hard_state is not None and HardState.decode(rd.hard_state).round == 1

    mixed, _ = make(ME)
    ticks(mixed, CFG.timeout_propose + CFG.empty_block_ticks)
    for v in OTHERS[:2]:
        deliver(mixed, vote(Kind.PREVOTE, v, NIL))
    deliver(mixed, vote(Kind.PRECOMMIT, V[1], NIL))
    deliver(mixed, vote(Kind.PRECOMMIT, V[2], a_block().hash))
    assert mixed.round == 0
    ticks(mixed, CFG.timeout_precommit)
    assert mixed.round == 1


def test_a_peer_first_heard_late_in_a_height_gets_our_votes_at_once() -> None:
    """Gossip (the paper assumes every message of a correct process reaches every correct
    process): a validator first heard from long into the height (restarted, or block-synced up
    to here) is sent our current-round votes at once, not at the next rebroadcast; a peer heard
    from early gets nothing extra."""
    eng, _ = make(ME)
    deliver(eng, vote(Kind.PREVOTE, V[1], NIL, r=0))  # early: within the height's first ticks
    ticks(eng, CFG.timeout_propose + CFG.empty_block_ticks)  # L57: prevote nil (broadcast)
    ticks(eng, CFG.rebroadcast_ticks // 2)  # "late": half a rebroadcast period in, none yet
    assert CFG.timeout_propose + CFG.empty_block_ticks + CFG.rebroadcast_ticks // 2 < (
        CFG.rebroadcast_ticks
    )
    rd = deliver(eng, vote(Kind.PREVOTE, V[1], a_block().hash, r=1))
    assert [e for e in rd.messages if e.to == V[1]] == []  # V[1] was heard early
    rd = deliver(eng, vote(Kind.PREVOTE, V[3], a_block().hash, r=0))  # 2f+1 mixed: no vote
    sent = [decode(e.payload) for e in rd.messages]
    assert {e.to for e in rd.messages} == {V[3]}
    assert [(m.kind, m.round, m.block_hash) for m in sent if isinstance(m, Vote)] == [
        (Kind.PREVOTE, 0, NIL)
    ]
    rd = deliver(eng, vote(Kind.PRECOMMIT, V[3], a_block().hash, r=0))
    assert rd.messages == ()  # once per peer and height
