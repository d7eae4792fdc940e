"""Golden scenarios for the Raft engine, one protocol rule each, citing the paper
(Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm", 2014: §5.x) or the
thesis (Ongaro 2014, "Consensus: Bridging Theory and Practice": §4, §6, §9.6).

Each test drives a single RaftEngine with hand-made peer messages and checks its Ready."""

from __future__ import annotations

import random

import pytest
from consortium_node.consensus.api import Entry, Envelope, Ready, SyncRequest
from consortium_node.consensus.raft import HardState, Message, MsgType, RaftConfig, RaftEngine
from consortium_node.consensus.raft import decode as rdecode
from consortium_node.consensus.raft import encode as rencode
from consortium_node.consensus.raft.log import decode_entry, encode_entry
from consortium_node.ledger.block import Block, commit_sign_bytes

from tests.support.engines import CHAIN_ID, GENESIS_HASH, FakeApp, Keyring, node_id

pytestmark = pytest.mark.unit

A, B, C = sorted(node_id(n) for n in ("a", "b", "c"))
IDS = (A, B, C)
CFG = RaftConfig(election_ticks=10, heartbeat_ticks=1, empty_block_ticks=None)


def make(
    nid: bytes,
    ids: tuple[bytes, ...] = IDS,
    *,
    hs: HardState | None = None,
    entries: list[Entry] | None = None,
) -> tuple[RaftEngine, FakeApp]:
    kr = Keyring()
    for i in (*ids, A, B, C):
        kr.add(i)
    app = FakeApp(nid, kr, lambda h: ids)
    if hs is None and entries is None:
        eng = RaftEngine(
            nid, app, random.Random(1), chain_id=CHAIN_ID, applied_hash=GENESIS_HASH, config=CFG
        )
    else:
        eng = RaftEngine.restore(
            nid,
            app,
            random.Random(1),
            chain_id=CHAIN_ID,
            hard_state=hs.encode() if hs else None,
            entries=entries or [],
            last_applied_height=0,
            last_block_hash=GENESIS_HASH,
            config=CFG,
        )
    return eng, app


def deliver(eng: RaftEngine, frm: bytes, m: Message) -> Ready:
    eng.step(Envelope(frm, eng.node_id, rencode(m)))
    rd = eng.ready()
    eng.advance(rd)
    return rd


def sent(rd: Ready, typ: MsgType | None = None) -> list[tuple[bytes, Message]]:
    out = [(e.to, rdecode(e.payload)) for e in rd.messages]
    return [(to, m) for to, m in out if typ is None or m.type is typ]


def tick_until(eng: RaftEngine, typ: MsgType, limit: int = 100) -> Ready:
    for _ in range(limit):
        eng.tick()
        rd = eng.ready()
        eng.advance(rd)
        if sent(rd, typ):
            return rd
    raise AssertionError(f"no {typ.name} within {limit} ticks")


def elect(eng: RaftEngine) -> Ready:
    """Run `eng` through PreVote and a real vote to leadership; returns the leader's Ready."""
    tick_until(eng, MsgType.PREVOTE)
    deliver(eng, B if eng.node_id != B else C, Message(MsgType.PREVOTE_RESP, eng.term + 1))
    return deliver(eng, B if eng.node_id != B else C, Message(MsgType.VOTE_RESP, eng.term))


def block(app: FakeApp, height: int, prev: bytes, txs: tuple[bytes, ...] = ()) -> Block:
    return app.make_block(height, prev, txs)


def test_election_timeout_is_randomized_within_bounds_and_prevote_keeps_term() -> None:
    """§5.2 (randomized election timeouts in [T, 2T)) and thesis §9.6 (PreVote: a pre-candidate
    asks with term+1 but does not bump its own term until a majority would vote for it)."""
    eng, _ = make(A)
    ticks = 0
    while True:
        ticks += 1
        eng.tick()
        rd = eng.ready()
        if sent(rd, MsgType.PREVOTE):
            break
    assert CFG.election_ticks <= ticks < 2 * CFG.election_ticks
    assert eng.term == 0 and rd.hard_state is None
    assert {to for to, _ in sent(rd)} == {B, C}
    assert all(m.term == 1 for _, m in sent(rd, MsgType.PREVOTE))


def test_candidate_persists_term_and_self_vote_in_the_ready_that_sends_requests() -> None:
    """§5.2 (a candidate increments its term and votes for itself) + persist-before-send: the
    hard state with the new term and vote is in the same Ready as the RequestVote messages."""
    eng, _ = make(A)
    tick_until(eng, MsgType.PREVOTE)
    rd = deliver(eng, B, Message(MsgType.PREVOTE_RESP, 1))
    assert rd.hard_state is not None
    hs = HardState.decode(rd.hard_state)
    assert (hs.term, hs.vote) == (1, A)
    assert [m.term for _, m in sent(rd, MsgType.VOTE)] == [1, 1]


def test_leader_appends_noop_and_replicates() -> None:
    """§5.2 (majority of votes -> leader) and §8 / §5.4.2 (a new leader appends an entry of its
    own term, a no-op, so earlier entries can be committed)."""
    eng, _ = make(A)
    rd = elect(eng)
    assert eng.status().role == "leader"
    assert rd.entries == (Entry(1, 1, b""),)
    apps = sent(rd, MsgType.APP)
    assert {to for to, _ in apps} == {B, C}
    assert all(m.entries == (Entry(1, 1, b""),) and m.index == 0 for _, m in apps)


def test_grants_at_most_one_vote_per_term_and_persists_it_first() -> None:
    """§5.2: each server votes for at most one candidate in a term (first-come-first-served);
    the vote is durable (in the Ready's hard state) before the grant is sent."""
    eng, _ = make(C)
    rd = deliver(eng, A, Message(MsgType.VOTE, 1, index=0, log_term=0))
    [(to, resp)] = sent(rd)
    assert to == A and resp.type is MsgType.VOTE_RESP and not resp.reject
    assert rd.hard_state is not None and HardState.decode(rd.hard_state).vote == A
    rd = deliver(eng, B, Message(MsgType.VOTE, 1, index=0, log_term=0))
    [(to, resp)] = sent(rd)
    assert to == B and resp.reject


def test_vote_survives_restart() -> None:
    """§5.2 + Figure 2 "persistent state": votedFor is persisted, so a restarted server does
    not vote twice in one term."""
    eng, _ = make(C)
    rd = deliver(eng, A, Message(MsgType.VOTE, 1))
    assert rd.hard_state is not None
    eng2, _ = make(C, hs=HardState.decode(rd.hard_state), entries=[])
    rd = deliver(eng2, B, Message(MsgType.VOTE, 1))
    assert sent(rd)[0][1].reject
    rd = deliver(eng2, A, Message(MsgType.VOTE, 1))
    assert not sent(rd)[0][1].reject  # re-granting the same candidate is fine


def test_election_restriction_rejects_stale_logs() -> None:
    """§5.4.1: a vote is granted only if the candidate's log is at least as up-to-date
    (higher last term, or same last term and at least as long)."""
    hs = HardState(1, None, 0, 0, 0, 0, GENESIS_HASH)
    entries = [Entry(1, 1, b""), Entry(2, 1, b"")]
    eng, _ = make(C, hs=hs, entries=entries)
    assert sent(deliver(eng, A, Message(MsgType.VOTE, 2, index=1, log_term=1)))[0][1].reject
    eng, _ = make(C, hs=hs, entries=entries)
    assert not sent(deliver(eng, A, Message(MsgType.VOTE, 2, index=2, log_term=1)))[0][1].reject
    eng, _ = make(C, hs=hs, entries=entries)
    assert not sent(deliver(eng, A, Message(MsgType.VOTE, 2, index=1, log_term=2)))[0][1].reject


def test_log_matching_truncates_conflicting_suffix() -> None:
    """§5.3: AppendEntries consistency check on (prevLogIndex, prevLogTerm); a conflicting
    entry and all that follow it are deleted (Ready.truncate_from) before appending."""
    hs = HardState(2, None, 0, 0, 0, 0, GENESIS_HASH)
    entries = [Entry(1, 1, b""), Entry(2, 1, b""), Entry(3, 2, b"")]
    eng, _ = make(C, hs=hs, entries=entries)
    rd = deliver(eng, A, Message(MsgType.APP, 3, index=2, log_term=1, entries=(Entry(3, 3, b""),)))
    assert rd.truncate_from == 3 and rd.entries == (Entry(3, 3, b""),)
    [(_, ack)] = sent(rd)
    assert ack.type is MsgType.APP_RESP and not ack.reject and ack.index == 3
    rd = deliver(eng, A, Message(MsgType.APP, 3, index=7, log_term=3))
    [(_, nack)] = sent(rd)
    assert nack.reject and nack.index == 7 and nack.hint <= 3


def test_leader_never_commits_an_old_term_entry_by_counting_replicas() -> None:
    """§5.4.2 (Figure 8): entries from previous terms are committed only indirectly, once an
    entry of the leader's current term is replicated on a majority."""
    kr_app = make(A)[1]
    b1 = block(kr_app, 1, GENESIS_HASH)
    hs = HardState(1, A, 0, 0, 0, 0, GENESIS_HASH)
    eng, _ = make(A, hs=hs, entries=[Entry(1, 1, encode_entry(IDS, b1))])
    elect(eng)
    assert eng.term == 2 and eng.log.last_index == 2  # the no-op of term 2 at index 2
    rd = deliver(eng, B, Message(MsgType.APP_RESP, 2, index=1))
    assert eng.commit == 0 and rd.committed == ()
    rd = deliver(eng, B, Message(MsgType.APP_RESP, 2, index=2))
    assert eng.commit == 2
    assert [b.hash for b in rd.committed] == [b1.hash]


def test_leader_proposes_one_block_at_a_time_with_a_leader_signature() -> None:
    """Block flow: after the no-op commits, the leader builds a block (app.build_block) and
    signs a one-signature certificate (crash-fault model: it names the proposer, it is not a
    quorum proof); the next block is only built after this one is committed and applied."""
    eng, app = make(A)
    elect(eng)
    deliver(eng, B, Message(MsgType.APP_RESP, 1, index=1))  # no-op committed
    app.add_tx(b"tx:1")
    eng.tick()
    rd = eng.ready()
    eng.advance(rd)
    [e] = rd.entries
    _, b1 = decode_entry(e.data)
    assert b1.height == 1 and b1.txs == (b"tx:1",) and b1.certificate is not None
    ((signer, sig),) = b1.certificate.signatures
    assert signer == A
    assert app.verify(A, commit_sign_bytes(CHAIN_ID, 1, eng.term, b1.hash), sig)
    app.add_tx(b"tx:2")
    eng.tick()
    rd = eng.ready()
    assert rd.entries == ()  # block 1 still in flight
    eng.advance(rd)
    rd = deliver(eng, C, Message(MsgType.APP_RESP, 1, index=2))
    assert [b.height for b in rd.committed] == [1]
    app.apply(rd.committed[0])
    eng.tick()
    rd = eng.ready()
    assert [decode_entry(e.data)[1].height for e in rd.entries] == [2]


def test_leader_tells_followers_a_new_commit_index_at_once() -> None:
    """Commit notices (engine docstring; etcd's bcastAppend after maybeCommit): the Ready in
    which the leader's commit index advances carries an empty append to every follower in
    REPLICATE holding entries above what it was told, prev = its match (always accepted), so
    a follower applies without waiting for the next block or heartbeat. Once told, no
    second notice (the follower's ack of the notice starts nothing). Fails without
    _tell_commit: no APP in the committing Ready for B."""
    eng, app = make(A)
    elect(eng)
    deliver(eng, B, Message(MsgType.APP_RESP, 1, index=1))  # no-op committed, B replicating
    app.add_tx(b"tx:1")
    eng.tick()
    eng.advance(eng.ready())  # block 1 (index 2) goes out
    rd = deliver(eng, B, Message(MsgType.APP_RESP, 1, index=2))
    assert eng.commit == 2 and [b.height for b in rd.committed] == [1]
    notices = [(to, m) for to, m in sent(rd, MsgType.APP) if not m.entries]
    assert notices == [(B, Message(MsgType.APP, 1, index=2, log_term=1, commit=2))]
    again = deliver(eng, B, Message(MsgType.APP_RESP, 1, index=2))  # B's ack of the notice
    assert sent(again, MsgType.APP) == []


def test_follower_takes_a_commit_notice_without_writing_its_hard_state() -> None:
    """The commit index is volatile (Figure 2): a notice that only moves it hands out the
    committed block with no hard state to persist (no fsync before the apply), and it never
    commits past the notice's prev (the entry the leader knows the follower holds)."""
    eng, app = make(B)
    b1 = block(app, 1, GENESIS_HASH)
    ents = (Entry(1, 1, b""), Entry(2, 1, encode_entry(IDS, b1)))
    deliver(eng, A, Message(MsgType.APP, 1, index=0, log_term=0, commit=0, entries=ents))
    rd = deliver(eng, A, Message(MsgType.APP, 1, index=1, log_term=1, commit=2))
    assert eng.commit == 1 and rd.committed == () and rd.hard_state is None
    rd = deliver(eng, A, Message(MsgType.APP, 1, index=2, log_term=1, commit=2))
    assert eng.commit == 2 and [b.hash for b in rd.committed] == [b1.hash]
    assert rd.hard_state is None and rd.entries == ()
    assert sent(rd, MsgType.APP_RESP) == [(A, Message(MsgType.APP_RESP, 1, index=2))]


def test_prevote_does_not_disrupt_a_live_leader() -> None:
    """Thesis §4.2.3 / §9.6: a server that heard from a leader within the minimum election
    timeout ignores (pre-)vote requests with higher terms, so a rejoining partitioned node
    cannot depose a healthy leader."""
    eng, _ = make(C)
    deliver(eng, A, Message(MsgType.HEARTBEAT, 1))
    rd = deliver(eng, B, Message(MsgType.PREVOTE, 5, index=9, log_term=4))
    assert sent(rd) == [] and eng.term == 1
    rd = deliver(eng, B, Message(MsgType.VOTE, 5, index=9, log_term=4))
    assert sent(rd) == [] and eng.term == 1


def test_stale_leader_learns_the_newer_term() -> None:
    """§5.1: a server receiving a request with a stale term rejects it and replies with its
    current term; the stale leader then steps down."""
    eng, _ = make(C, hs=HardState(3, None, 0, 0, 0, 0, GENESIS_HASH), entries=[])
    rd = deliver(eng, A, Message(MsgType.APP, 2))
    [(to, m)] = sent(rd)
    assert to == A and m.term == 3
    leader, _ = make(A)
    elect(leader)
    deliver(leader, C, Message(MsgType.APP_RESP, 3))
    assert leader.status().role == "follower" and leader.term == 3


def test_non_voter_never_campaigns() -> None:
    """Thesis §4.1: only members of the current configuration (validators_at) stand for
    election; a removed or not-yet-added node stays a follower."""
    eng, _ = make(C, ids=(A, B))
    for _ in range(100):
        eng.tick()
    assert eng.ready().messages == ()


def test_non_voters_lease_on_a_silent_leader_expires() -> None:
    """Thesis §4.2.3 with §4.1 (etcd's tickElection): the lease that makes a follower ignore
    (pre-)votes lasts one election timeout after it last heard from the leader — also for a
    node that may not campaign itself (a joiner whose log does not list it yet). Its timer
    must keep running, or a chain whose only other member restarted can never elect again."""
    eng, _ = make(C, ids=(A, B))
    deliver(eng, A, Message(MsgType.HEARTBEAT, 1))
    for _ in range(CFG.election_ticks):  # the leader fell silent: the lease runs out
        eng.tick()
        eng.advance(eng.ready())
    for _ in range(4 * CFG.election_ticks):  # and stays out, at every tick from then on
        eng.tick()
        eng.advance(eng.ready())
        rd = deliver(eng, B, Message(MsgType.PREVOTE, 2, index=0, log_term=0))
        assert [m.type for _, m in sent(rd)] == [MsgType.PREVOTE_RESP]


def test_follower_behind_compacted_log_syncs_blocks_then_resumes() -> None:
    """Thesis §5 (log compaction / InstallSnapshot), adapted: the leader's SNAP names the
    block height the follower must reach by block sync (Ready.sync); once synced the follower
    adopts the snapshot point (hard state + truncate) and acknowledges it."""
    eng, _ = make(C)
    snap = Message(MsgType.SNAP, 2, index=10, log_term=2, snap_height=4, snap_hash=b"\x07" * 32)
    rd = deliver(eng, A, snap)
    assert rd.sync == (SyncRequest(A, 1),) and sent(rd) == []
    eng.synced(4, b"\x07" * 32)
    rd = eng.ready()
    assert rd.hard_state is not None
    hs = HardState.decode(rd.hard_state)
    assert (hs.snap_index, hs.snap_term, hs.snap_height, hs.commit) == (10, 2, 4, 10)
    [(to, ack)] = sent(rd)
    assert to == A and ack.type is MsgType.APP_RESP and ack.index == 10


def test_leader_sends_snap_when_follower_needs_compacted_entries() -> None:
    """Thesis §5.1: when the next entry a follower needs was compacted, the leader sends the
    snapshot point instead of AppendEntries."""
    app = make(A)[1]
    b1 = block(app, 1, GENESIS_HASH)
    hs = HardState(1, A, 0, 0, 0, 0, GENESIS_HASH)
    eng, app = make(A, hs=hs, entries=[Entry(1, 1, encode_entry(IDS, b1))])
    elect(eng)
    rd = deliver(eng, B, Message(MsgType.APP_RESP, 2, index=2))
    assert rd.committed == (b1,)
    app.apply(b1)
    eng.compact(2)
    assert eng.log.snap_index == 2 and eng.log.snap_block == (1, b1.hash)
    rd = deliver(eng, C, Message(MsgType.APP_RESP, 2, index=1, reject=True, hint=0))
    snaps = sent(rd, MsgType.SNAP)
    assert snaps and snaps[0][1].index == 2 and snaps[0][1].snap_height == 1


def test_configuration_in_effect_is_the_latest_in_the_log() -> None:
    """Thesis §4.1: a server uses the latest configuration in its log, whether or not that
    entry is committed. Block entries carry the validator set deciding them, so a follower
    whose log already holds a block without it stops campaigning, before any apply."""
    d = node_id("d")
    app = make(A)[1]
    b1 = block(app, 1, GENESIS_HASH)
    hs = HardState(1, None, 0, 0, 0, 0, GENESIS_HASH)
    eng, _ = make(C, hs=hs, entries=[Entry(1, 1, encode_entry(tuple(sorted((A, B, d))), b1))])
    assert eng._voters() == frozenset((A, B, d))
    for _ in range(100):
        eng.tick()
    assert eng.ready().messages == ()
