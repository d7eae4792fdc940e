"""Issue 13 defect 1: a Raft follower whose data dir was replaced by an empty one (the node's
own advice: "restore the data dir or resync from peers") must catch up from the leader.

Raft assumes a durable log, so the leader's `match` for that follower is stale: the follower
rejects appends with a hint below it. The leader must probe again from the hint instead of
flooring `next` at the old `match + 1` (which looped: probe at match, reject, probe at match)."""

from __future__ import annotations

import pytest
from consortium_node.consensus.api import Envelope
from consortium_node.consensus.raft import Message, MsgType, RaftEngine
from consortium_node.consensus.raft import decode as rdecode

from tests.support.engines import FakeApp
from tests.unit.consensus.test_consensus_raft_rules import A, B, deliver, elect, make

pytestmark = pytest.mark.unit


def _pump(leader: RaftEngine, app: FakeApp, follower: RaftEngine, rounds: int) -> None:
    """Ticks the leader and exchanges every message between it and `follower` (C is down);
    the leader applies what it commits. Bounded: at most 50 exchanges per tick."""
    for _ in range(rounds):
        leader.tick()
        for _ in range(50):
            to_b = [e for e in _drain(leader, app) if e.to == B]
            if not to_b:
                break
            for e in to_b:
                follower.step(e)
            rd = follower.ready()
            follower.advance(rd)
            for e in rd.messages:
                if e.to == A:
                    leader.step(e)


def _drain(eng: RaftEngine, app: FakeApp) -> list[Envelope]:
    rd = eng.ready()
    eng.advance(rd)
    for b in rd.committed:
        app.apply(b)
    return list(rd.messages)


def test_leader_reprobes_a_follower_that_lost_acknowledged_entries() -> None:
    leader, app = make(A)
    elect(leader)
    deliver(leader, B, Message(MsgType.APP_RESP, leader.term, index=1))  # the no-op
    app.add_tx(b"tx:1")
    leader.tick()
    rd = leader.ready()
    leader.advance(rd)
    assert [e.index for e in rd.entries] == [2]
    rd = deliver(leader, B, Message(MsgType.APP_RESP, leader.term, index=2))
    [b1] = rd.committed
    app.apply(b1)
    # B is wiped and restarted empty; the chain goes on (a new block needs B's vote: C is down)
    fresh, _ = make(B)
    app.add_tx(b"tx:2")
    _pump(leader, app, fresh, rounds=20)
    assert fresh.log.last_index == leader.log.last_index >= 3
    assert leader.commit == leader.log.last_index  # block 2 committed with the re-seeded B
    assert fresh.commit >= 2


def test_a_reject_below_match_reprobes_from_the_hint() -> None:
    """A reject whose hint is below match (a wiped follower, or a delayed reject from a healthy
    one): the leader probes from the hint; the follower's ack brings match and commit back."""
    leader, _ = make(A)
    elect(leader)
    deliver(leader, B, Message(MsgType.APP_RESP, leader.term, index=1))
    rd = deliver(leader, B, Message(MsgType.APP_RESP, leader.term, index=1, reject=True, hint=0))
    apps = [m for e in rd.messages if e.to == B and (m := rdecode(e.payload)).type is MsgType.APP]
    assert apps and apps[0].index == 0  # re-probe from the follower's hint
    deliver(leader, B, Message(MsgType.APP_RESP, leader.term, index=1))
    assert leader.commit == 1
