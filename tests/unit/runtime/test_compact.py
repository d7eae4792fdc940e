"""Compact BFT proposals (runtime/compact.py): the payload a receiver hands its engine is byte
for byte the proposer's, whether its txs came from the pool or from the proposer; a tx that
does not match its digest is never used; bad bytes are rejected, never raised. Two
`Compactor`s talk through their return values; the txs are opaque bytes (the compactor never
decodes them). Seeded: a failing seed is in the test id."""

from __future__ import annotations

import random

import pytest
from consortium_node.consensus.api import Envelope
from consortium_node.consensus.bft import codec
from consortium_node.consensus.bft.codec import Kind, Proposal, Vote
from consortium_node.ledger.block import HEADER_LEN, Block, BlockHeader
from consortium_node.runtime import compact
from consortium_node.runtime.compact import Compactor, digest

pytestmark = pytest.mark.unit

P, R = b"P" * 32, b"R" * 32  # proposer, receiver


def _proposal(txs: list[bytes], height: int = 5, rnd: int = 0) -> bytes:
    header = BlockHeader(height, 1_000, b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, b"\x04" * 32, P)
    return codec.encode(Proposal(height, rnd, -1, P, Block(header, tuple(txs)), b"\x05" * 64))


def _txs(rng: random.Random, n: int) -> list[bytes]:
    return [rng.randbytes(rng.randint(1, 300)) for _ in range(n)]


def _pool(txs: list[bytes]) -> dict[bytes, bytes]:
    return {digest(t): t for t in txs}


def _exchange(
    proposer: Compactor, receiver: Compactor, full: bytes
) -> tuple[compact.Inbound, list[compact.Inbound]]:
    """The proposer sends `full` compact; every reply goes back and forth until none is left.
    Returns the first inbound result at the receiver and the rest."""
    env = proposer.outbound(Envelope(P, R, full))
    first = receiver.inbound(P, env.payload)
    rest: list[compact.Inbound] = []
    replies = list(first.replies)
    while replies:
        req = replies.pop(0)
        answer = proposer.inbound(R, req.payload)
        for a in answer.replies:
            got = receiver.inbound(P, a.payload)
            rest.append(got)
            replies.extend(got.replies)
    return first, rest


@pytest.mark.parametrize("seed", range(20), ids=lambda s: f"seed={s}")
def test_the_engine_gets_the_proposers_exact_payload(seed: int) -> None:
    rng = random.Random(seed)
    txs = _txs(rng, rng.randint(1, 60))
    full = _proposal(txs)
    held = _pool([t for t in txs if rng.random() < rng.choice([0.0, 0.5, 0.9, 1.0])])
    proposer = Compactor(P, lambda d: None)
    receiver = Compactor(R, held.get)
    first, rest = _exchange(proposer, receiver, full)
    delivered = [*first.deliver, *(d for r in rest for d in r.deliver)]
    assert delivered == [full]
    assert first.pooled == len(held)
    assert first.pooled + sum(r.fetched for r in rest) == len(txs)
    assert all(r.rejection is None for r in (first, *rest))
    # a tx request names only what the pool lacked
    if len(held) < len(txs):
        assert first.replies and first.deliver == ()
    else:
        assert first.replies == ()


def test_a_compact_proposal_is_small_and_other_messages_pass_unchanged() -> None:
    rng = random.Random(1)
    txs = [rng.randbytes(4096) for _ in range(100)]
    full = _proposal(txs)
    c = Compactor(P, lambda d: None)
    small = c.outbound(Envelope(P, R, full)).payload
    assert small[1] == compact.COMPACT and len(small) < len(full) // 50
    vote = codec.encode(Vote(Kind.PREVOTE, 5, 0, P, b"\x07" * 32, b"\x08" * 64))
    empty = _proposal([])
    for payload in (vote, empty):
        env = Envelope(P, R, payload)
        assert c.outbound(env) is env
    # the same proposal to another peer (or re-sent) is compacted once and reused
    assert c.outbound(Envelope(P, b"Q" * 32, full)).payload is small


def test_a_response_tx_that_does_not_match_its_digest_is_never_used() -> None:
    rng = random.Random(2)
    txs = _txs(rng, 8)
    full = _proposal(txs)
    proposer = Compactor(P, lambda d: None)
    receiver = Compactor(R, _pool(txs[:6]).get)
    first = receiver.inbound(P, proposer.outbound(Envelope(P, R, full)).payload)
    (req,) = first.replies
    (resp,) = proposer.inbound(R, req.payload).replies
    forged = bytearray(resp.payload)
    forged[-1] ^= 1  # the last byte of the last tx
    bad = receiver.inbound(P, bytes(forged))
    assert bad.deliver == () and bad.rejection is not None and "does not match" in bad.rejection
    # the honest answer still completes it (the good tx of the forged response was kept)
    good = receiver.inbound(P, resp.payload)
    assert good.deliver == (full,)


def test_only_the_proposer_that_sent_it_answers_and_only_the_asker_is_heard() -> None:
    rng = random.Random(3)
    txs = _txs(rng, 4)
    full = _proposal(txs)
    proposer, twin = Compactor(P, lambda d: None), Compactor(P, lambda d: None)
    receiver = Compactor(R, lambda d: None)
    (req,) = receiver.inbound(P, proposer.outbound(Envelope(P, R, full)).payload).replies
    assert req.to == P
    # a Twin sharing the proposer's id, which never sent this block, has nothing to say
    assert twin.inbound(R, req.payload) == compact.Inbound()
    (resp,) = proposer.inbound(R, req.payload).replies
    # the same answer from a peer we did not ask is ignored
    assert receiver.inbound(b"X" * 32, resp.payload) == compact.Inbound()
    assert receiver.inbound(P, resp.payload).deliver == (full,)
    # late duplicates of a completed proposal are ignored
    assert receiver.inbound(P, resp.payload) == compact.Inbound()


def test_a_lost_request_is_asked_again_when_the_proposal_is_re_sent() -> None:
    rng = random.Random(4)
    txs = _txs(rng, 10)
    full = _proposal(txs)
    pool: dict[bytes, bytes] = {}
    proposer = Compactor(P, lambda d: None)
    receiver = Compactor(R, pool.get)
    small = proposer.outbound(Envelope(P, R, full)).payload
    first = receiver.inbound(P, small)
    assert len(first.replies) == 1  # the request, then lost
    pool.update(_pool(txs[:7]))  # gossip delivers most of them meanwhile
    again = receiver.inbound(P, small)  # the engine's periodic re-send
    (req,) = again.replies
    assert again.pooled == 7
    assert req.payload[-12:] == b"".join(i.to_bytes(4, "big") for i in (7, 8, 9))
    (resp,) = proposer.inbound(R, req.payload).replies
    assert receiver.inbound(P, resp.payload).deliver == (full,)


def test_bad_requests_are_rejected() -> None:
    txs = _txs(random.Random(5), 3)
    full = _proposal(txs)
    proposer = Compactor(P, lambda d: None)
    receiver = Compactor(R, lambda d: None)
    (req,) = receiver.inbound(P, proposer.outbound(Envelope(P, R, full)).payload).replies
    out_of_range = req.payload[:-4] + (99).to_bytes(4, "big")
    got = proposer.inbound(R, out_of_range)
    assert got.replies == () and got.rejection is not None and "out of range" in got.rejection
    assert proposer.inbound(R, req.payload[:-1]).rejection is not None  # truncated


def test_pending_and_sent_proposals_are_bounded_and_pruned_at_commit() -> None:
    rng = random.Random(6)
    proposer = Compactor(P, lambda d: None)
    receiver = Compactor(R, lambda d: None)
    for rnd in range(compact.PENDING + 3):
        payload = proposer.outbound(Envelope(P, R, _proposal(_txs(rng, 2), 5, rnd))).payload
        assert receiver.inbound(P, payload).replies
    assert len(receiver._pending) == compact.PENDING
    assert len(proposer._sent) == compact.SENT
    receiver.committed(5)
    proposer.committed(5)
    assert not receiver._pending and not proposer._sent


@pytest.mark.parametrize("seed", range(30), ids=lambda s: f"seed={s}")
def test_garbled_messages_never_raise(seed: int) -> None:
    """Truncated or bit-flipped COMPACT, TX_REQUEST and TX_RESPONSE bytes: the compactor
    rejects or ignores them; anything it delivers consists of digest-checked txs."""
    rng = random.Random(seed)
    txs = _txs(rng, rng.randint(1, 12))
    full = _proposal(txs)
    pool = _pool([t for t in txs if rng.random() < 0.5])
    proposer = Compactor(P, lambda d: None)
    receiver = Compactor(R, pool.get)
    small = proposer.outbound(Envelope(P, R, full)).payload
    first = receiver.inbound(P, small)
    body = codec.PROPOSAL_HEAD_LEN + HEADER_LEN + 4  # head, header, tx count
    txs_end = len(full) - 4  # the certificate's length field follows the txs
    msgs = [small]
    if first.replies:
        msgs.append(first.replies[0].payload)
        msgs.extend(a.payload for a in proposer.inbound(R, first.replies[0].payload).replies)
    for _ in range(40):
        m = bytearray(rng.choice(msgs))
        if rng.random() < 0.5:
            del m[rng.randrange(2, len(m)) :]
        else:
            i = rng.randrange(2, len(m))
            m[i] ^= 1 << rng.randrange(8)
        for c, who in ((receiver, P), (proposer, R)):
            got = c.inbound(who, bytes(m))
            for d in got.deliver:
                # what may differ is a head, header or certificate field (the engine checks
                # those), never a tx: each one matched the digest the proposer sent
                assert d[body:txs_end] == full[body:txs_end]
