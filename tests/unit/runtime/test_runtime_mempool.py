"""Mempool (runtime/mempool.py): admission checks and their order, per-sender nonce tracking,
capacity, batch cut for the block builder, cleanup after a commit. State is a dict and the
signature check is injected (and counted: each admitted tx is verified exactly once)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from consortium_node.contracts import WasmEngine
from consortium_node.ledger import contracts as cx
from consortium_node.ledger.contracts import ContractVM
from consortium_node.ledger.errors import Reject, TxRejected
from consortium_node.ledger.hashing import sha256
from consortium_node.ledger.state import (
    balance_key,
    check_nonces,
    issuer_key,
    nonce_key,
    pack_u64,
)
from consortium_node.ledger.tx import AssetTransfer, Invoke, KvPut, Payload, Tx
from consortium_node.runtime.mempool import Mempool

from tests.support import wat

pytestmark = pytest.mark.unit

CHAIN = "pool-test"
MAX = 128 * 1024
ALICE, BOB, CAROL = b"A" * 32, b"B" * 32, b"C" * 32


def make_tx(
    sender: bytes, nonce: int, payload: Payload | None = None, size: int = 100, tag: bytes = b""
) -> Tx:
    p = payload if payload is not None else KvPut(b"k", tag)
    body = repr((sender, nonce, p, tag)).encode()
    return Tx(sha256(body), body.ljust(size, b"."), body, b"s" * 64, CHAIN, sender, nonce, p)


class Verifier:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.calls: list[bytes] = []

    def __call__(self, _pk: bytes, body: bytes, _sig: bytes) -> bool:
        self.calls.append(sha256(body))
        return self.ok


class Pool:
    """A mempool with its state and committed-set, as the runtime wires it."""

    def __init__(
        self, capacity: int = 100, verify_ok: bool = True, vm: ContractVM | None = None
    ) -> None:
        self.state: dict[bytes, bytes] = {}
        self.committed: set[bytes] = set()
        self.verifier = Verifier(verify_ok)
        self.pool = Mempool(CHAIN, capacity, self.verifier, vm)

    def admit(self, tx: Tx) -> None:
        self.pool.admit(tx, self.state, MAX, self.committed.__contains__)

    def reject(self, tx: Tx) -> TxRejected:
        before = self.pool.take(10**6, 10**12)
        with pytest.raises(TxRejected) as e:
            self.admit(tx)
        assert self.pool.take(10**6, 10**12) == before  # nothing pooled, nothing lost
        return e.value

    def commit(self, txs: list[Tx]) -> None:
        """Apply a block's nonce effects to the state and tell the pool."""
        assert check_nonces(self.state, txs) is None
        for t in txs:
            self.state[nonce_key(t.sender)] = pack_u64(t.nonce + 1)
            self.committed.add(t.id)
        self.pool.remove_committed(txs, self.state)


@pytest.fixture
def p() -> Pool:
    return Pool()


def test_admission_order_is_arrival_order(p: Pool) -> None:
    txs = [
        make_tx(ALICE, 0),
        make_tx(BOB, 0),
        make_tx(ALICE, 1),
        make_tx(CAROL, 0),
        make_tx(BOB, 1),
    ]
    for t in txs:
        p.admit(t)
    assert len(p.pool) == 5
    assert all(t.id in p.pool and p.pool.get(t.id) == t for t in txs)
    assert p.pool.get(b"x" * 32) is None
    assert p.pool.take(100, 10**9) == txs
    assert p.verifier.calls == [t.id for t in txs]  # each verified once, on admission


def test_nonces_start_at_the_committed_nonce(p: Pool) -> None:
    p.state[nonce_key(ALICE)] = pack_u64(3)
    e = p.reject(make_tx(ALICE, 2))
    assert e.reason is Reject.NONCE_REPLAY and "next nonce is 3" in e.message
    e = p.reject(make_tx(ALICE, 4))
    assert e.reason is Reject.NONCE_GAP and "next nonce is 3" in e.message
    e = p.reject(make_tx(ALICE, 0))
    assert e.reason is Reject.NONCE_REPLAY
    p.admit(make_tx(ALICE, 3))
    # now the pooled nonce is what counts
    e = p.reject(make_tx(ALICE, 3, tag=b"other"))
    assert e.reason is Reject.NONCE_REPLAY and "next nonce is 4" in e.message
    assert p.reject(make_tx(ALICE, 5)).reason is Reject.NONCE_GAP
    p.admit(make_tx(ALICE, 4))
    # another sender is independent
    p.admit(make_tx(BOB, 0))
    assert p.reject(make_tx(BOB, 2)).reason is Reject.NONCE_GAP
    assert p.verifier.calls == [make_tx(ALICE, 3).id, make_tx(ALICE, 4).id, make_tx(BOB, 0).id]


def test_duplicates(p: Pool) -> None:
    t = make_tx(ALICE, 0)
    p.admit(t)
    e = p.reject(t)
    assert e.reason is Reject.DUPLICATE and t.id.hex() in e.message
    # a tx already committed is a duplicate, not a replay
    old = make_tx(BOB, 0)
    p.committed.add(old.id)
    assert p.reject(old).reason is Reject.DUPLICATE
    assert p.verifier.calls == [t.id]  # duplicates are never re-verified


def test_capacity() -> None:
    small = Pool(capacity=3)
    for i in range(3):
        small.admit(make_tx(ALICE, i))
    e = small.reject(make_tx(ALICE, 3))
    assert e.reason is Reject.MEMPOOL_FULL and "3" in e.message
    assert small.reject(make_tx(BOB, 0)).reason is Reject.MEMPOOL_FULL
    # nonce checks come before the capacity check: a replay is reported as such when full
    assert small.reject(make_tx(ALICE, 0, tag=b"x")).reason is Reject.NONCE_REPLAY
    small.commit(small.pool.take(1, 10**9))
    assert len(small.pool) == 2
    small.admit(make_tx(ALICE, 3))  # the freed slot is usable, nonce continues
    assert len(small.pool) == 3


def test_bad_signature_is_not_pooled_and_does_not_consume_the_nonce() -> None:
    p = Pool(verify_ok=False)
    t = make_tx(ALICE, 0)
    e = p.reject(t)
    assert e.reason is Reject.BAD_SIGNATURE
    p.verifier.ok = True
    p.admit(t)  # the same nonce is still admissible
    assert p.pool.take(10, 10**9) == [t]


def test_stateless_checks_come_first_and_skip_verification(p: Pool) -> None:
    wrong_chain = Tx(b"i" * 32, b"r", b"b", b"s" * 64, "other", ALICE, 0, KvPut(b"k", b""))
    assert p.reject(wrong_chain).reason is Reject.WRONG_CHAIN
    big = make_tx(ALICE, 0, size=MAX + 1)
    assert p.reject(big).reason is Reject.TOO_LARGE
    bad_sig_len = Tx(b"j" * 32, b"r", b"b", b"s" * 10, CHAIN, ALICE, 0, KvPut(b"k", b""))
    assert p.reject(bad_sig_len).reason is Reject.BAD_SIGNATURE
    assert p.verifier.calls == []


def test_preflight_failures_are_not_pooled(p: Pool) -> None:
    p.state[issuer_key("G")] = CAROL
    p.state[balance_key("G", ALICE)] = pack_u64(5)
    e = p.reject(make_tx(ALICE, 0, AssetTransfer("G", BOB, 6)))
    assert e.reason is Reject.INSUFFICIENT_BALANCE
    assert p.reject(make_tx(ALICE, 0, AssetTransfer("G", ALICE, 1))).reason is Reject.INVALID
    ok = make_tx(ALICE, 0, AssetTransfer("G", BOB, 5))
    p.admit(ok)  # the nonce was not consumed by the failures
    assert p.pool.take(10, 10**9) == [ok]


def test_take_limits_and_order(p: Pool) -> None:
    txs = [make_tx(ALICE, i, size=100 + 10 * i) for i in range(6)]
    for t in txs:
        p.admit(t)
    assert p.pool.take(0, 10**9) == []
    assert p.pool.take(3, 10**9) == txs[:3]
    assert p.pool.take(100, 100 + 110) == txs[:2]  # exactly fits
    assert p.pool.take(100, 100 + 110 - 1) == txs[:1]
    assert p.pool.take(100, 99) == []  # the oldest does not fit: nothing (never reorder)
    assert p.pool.take(100, 10**9) == txs
    assert len(p.pool) == 6  # take() does not remove


def test_take_stops_at_the_first_tx_that_does_not_fit(p: Pool) -> None:
    big, small = make_tx(ALICE, 0, size=1000), make_tx(BOB, 0, size=10)
    p.admit(big)
    p.admit(small)
    # a later, smaller tx is not pulled ahead of an older one
    assert p.pool.take(10, 500) == []


def test_remove_committed_and_stale_nonces(p: Pool) -> None:
    ours = [make_tx(ALICE, i) for i in range(3)] + [make_tx(BOB, 0)]
    for t in ours:
        p.admit(t)
    # another proposer's block has different ALICE txs at nonces 0 and 1, plus our BOB tx
    theirs = [make_tx(ALICE, 0, tag=b"x"), make_tx(ALICE, 1, tag=b"x"), ours[3]]
    p.commit(theirs)
    assert p.pool.take(10, 10**9) == [ours[2]]  # ALICE 0 and 1 are stale, BOB's is committed
    # ALICE continues at 3, BOB at 1 (read back from state now that BOB has nothing pooled)
    assert p.reject(make_tx(ALICE, 2, tag=b"y")).reason is Reject.NONCE_REPLAY
    p.admit(make_tx(ALICE, 3))
    assert p.reject(make_tx(BOB, 0, tag=b"y")).reason is Reject.NONCE_REPLAY
    p.admit(make_tx(BOB, 1))


def test_remove_committed_drops_a_stale_tx_between_two_committed_ones(p: Pool) -> None:
    """A sender who signed two txs for nonce 1: the block has ours at 0 and 2 but theirs at 1.
    Ours at 1 is stale although the pool's count and next nonce alone would look consistent
    with "nothing stale" if the check compared against the old committed nonce."""
    ours = [make_tx(ALICE, i) for i in range(4)]
    for t in ours:
        p.admit(t)
    p.commit([ours[0], make_tx(ALICE, 1, tag=b"x"), ours[2]])
    assert p.pool.take(10, 10**9) == [ours[3]]
    p.admit(make_tx(ALICE, 4))  # the sequence goes on from the pooled 3
    assert p.reject(make_tx(ALICE, 3, tag=b"y")).reason is Reject.NONCE_REPLAY


def test_remove_committed_when_the_chain_overtakes_the_pool(p: Pool) -> None:
    for i in range(2):
        p.admit(make_tx(ALICE, i))
    p.commit([make_tx(ALICE, i, tag=b"x") for i in range(4)])
    assert len(p.pool) == 0
    assert p.reject(make_tx(ALICE, 2, tag=b"z")).reason is Reject.NONCE_REPLAY
    p.admit(make_tx(ALICE, 4))


def test_remove_committed_of_unknown_txs_is_harmless(p: Pool) -> None:
    p.admit(make_tx(ALICE, 0))
    p.commit([make_tx(BOB, 0), make_tx(CAROL, 0)])
    assert len(p.pool) == 1
    p.admit(make_tx(BOB, 1))


@pytest.mark.parametrize("seed", range(8), ids=lambda s: f"seed={s}")
def test_random_workload_keeps_the_invariants(seed: int) -> None:
    """Random admissions (valid, replayed, gapped, duplicated) and commits of pool prefixes or
    of foreign txs: every take() prefix is a valid nonce sequence, and per sender the pooled
    nonces are contiguous from the committed nonce."""
    rng = random.Random(seed)
    p = Pool(capacity=rng.randrange(5, 40))
    senders = [bytes([i]) * 32 for i in range(5)]
    expected_next = dict.fromkeys(senders, 0)  # model: next admissible nonce per sender
    for step in range(300):
        s = rng.choice(senders)
        r = rng.random()
        if r < 0.6:
            n = expected_next[s] + rng.choice([0, 0, 0, -1, 1])
            t = make_tx(s, max(n, 0), tag=b"%d" % step)
            try:
                p.admit(t)
            except TxRejected as e:
                assert e.reason in (Reject.NONCE_REPLAY, Reject.NONCE_GAP, Reject.MEMPOOL_FULL)
                if e.reason is Reject.MEMPOOL_FULL:
                    assert len(p.pool) == p.pool.capacity
            else:
                assert t.nonce == expected_next[s]
                expected_next[s] += 1
        elif r < 0.8:
            batch = p.pool.take(rng.randrange(0, 10), 10**9)
            p.commit(batch)
        else:  # a foreign block: a sender's txs we never saw
            committed = int.from_bytes(p.state.get(nonce_key(s), bytes(8)), "big")
            k = rng.randrange(1, 4)
            p.commit([make_tx(s, committed + i, tag=b"foreign%d" % step) for i in range(k)])
            expected_next[s] = max(expected_next[s], committed + k)
        # invariants
        pooled = p.pool.take(10**6, 10**12)
        assert len(pooled) == len(p.pool) <= p.pool.capacity
        for cut in (len(pooled), rng.randrange(len(pooled) + 1)):
            assert check_nonces(p.state, pooled[:cut]) is None
        for snd in senders:
            mine = [t.nonce for t in pooled if t.sender == snd]
            base = int.from_bytes(p.state.get(nonce_key(snd), bytes(8)), "big")
            assert mine == list(range(base, base + len(mine)))
            if mine:
                assert expected_next[snd] == base + len(mine)
    assert len(set(p.verifier.calls)) == len(p.verifier.calls)  # never verified twice


def test_verify_receives_sender_body_and_signature() -> None:
    seen: list[tuple[bytes, bytes, bytes]] = []

    def verify(pk: bytes, body: bytes, sig: bytes) -> bool:
        seen.append((pk, body, sig))
        return True

    pool = Mempool(CHAIN, 10, verify)
    t = make_tx(ALICE, 0)
    committed: Callable[[bytes], bool] = lambda _tx_id: False  # noqa: E731
    pool.admit(t, {}, MAX, committed)
    assert seen == [(t.sender, t.body, t.signature)]


# --- gossiped txs ahead of a nonce gap are held aside (the module's third invariant) -------


def gossip(p: Pool, tx: Tx) -> None:
    p.pool.admit(tx, p.state, MAX, p.committed.__contains__, hold_future=True)


def test_gossiped_future_nonce_is_held_then_promoted_when_the_gap_fills(p: Pool) -> None:
    t0, t1, t2 = make_tx(ALICE, 0), make_tx(ALICE, 1), make_tx(ALICE, 2)
    gossip(p, t2)
    gossip(p, t1)
    assert p.pool.held() == 2 and len(p.pool) == 0 and p.pool.take(10, MAX) == []
    p.admit(t0)  # fills the gap: the held txs follow in nonce order
    assert p.pool.take(10, MAX) == [t0, t1, t2] and p.pool.held() == 0
    assert sorted(p.verifier.calls) == sorted([t0.id, t1.id, t2.id])  # each verified once


def test_held_tx_is_promoted_when_a_commit_fills_the_gap(p: Pool) -> None:
    t0, t1 = make_tx(ALICE, 0), make_tx(ALICE, 1)
    gossip(p, t1)
    p.commit([t0])  # t0 was committed through another node's block
    assert p.pool.take(10, MAX) == [t1] and p.pool.held() == 0


def test_clients_get_the_gap_as_an_error_and_nothing_is_held(p: Pool) -> None:
    assert p.reject(make_tx(ALICE, 1)).reason is Reject.NONCE_GAP
    assert p.pool.held() == 0


def test_holding_is_bounded_by_window_and_total(p: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    import consortium_node.runtime.mempool as mp

    far = make_tx(ALICE, mp.FUTURE_WINDOW + 1)
    with pytest.raises(TxRejected) as e:
        gossip(p, far)
    assert e.value.reason is Reject.NONCE_GAP and p.pool.held() == 0
    monkeypatch.setattr(mp, "FUTURE_MAX", 2)
    gossip(p, make_tx(ALICE, 1))
    gossip(p, make_tx(BOB, 1))
    with pytest.raises(TxRejected) as e:
        gossip(p, make_tx(CAROL, 1))
    assert e.value.reason is Reject.NONCE_GAP and p.pool.held() == 2


def test_held_txs_are_verified_and_deduplicated_by_nonce() -> None:
    bad = Pool(verify_ok=False)
    with pytest.raises(TxRejected) as e:
        gossip(bad, make_tx(ALICE, 1))
    assert e.value.reason is Reject.BAD_SIGNATURE and bad.pool.held() == 0
    p = Pool()
    gossip(p, make_tx(ALICE, 1))
    with pytest.raises(TxRejected) as e:
        gossip(p, make_tx(ALICE, 1, tag=b"other"))
    assert e.value.reason is Reject.DUPLICATE and p.pool.held() == 1


def invoke(sender: bytes, nonce: int, fuel: int) -> Tx:
    return make_tx(sender, nonce, Invoke("token", "transfer", b"", fuel))


@pytest.fixture
def cp() -> Pool:
    """A pool on a chain with contracts: contract "token" (method transfer) deployed."""
    vm = WasmEngine()
    pool = Pool(vm=vm)
    code = wat.bench_token()
    pool.state[cx.ENGINE_KEY] = vm.engine.encode()
    info = cx.new_info(vm, "token", code, 1, None)
    pool.state[cx.contract_key("token")] = info.encode()
    return pool


def test_take_stops_before_the_invoke_that_exceeds_the_block_fuel(cp: Pool) -> None:
    """contract_block_fuel: the Invokes' fuel limits add up to at most the cap; the first
    Invoke that would go over it and everything after it wait (never reordered); kv txs
    cost no fuel."""
    txs = [
        invoke(ALICE, 0, 400),
        make_tx(BOB, 0),
        invoke(ALICE, 1, 600),
        invoke(CAROL, 0, 1),
        make_tx(BOB, 1),
    ]
    for t in txs:
        cp.admit(t)
    assert cp.pool.take(100, 10**9) == txs  # no cap (the old call)
    assert cp.pool.take(100, 10**9, 1001) == txs
    assert cp.pool.take(100, 10**9, 1000) == txs[:3]  # exactly the cap
    assert cp.pool.take(100, 10**9, 999) == txs[:2]
    assert cp.pool.take(2, 10**9, 999) == txs[:2]


def test_the_first_invoke_of_a_block_always_fits(cp: Pool) -> None:
    """A call whose limit alone exceeds the cap is not stuck at the head of the pool."""
    txs = [invoke(ALICE, 0, 5000), invoke(BOB, 0, 1), make_tx(CAROL, 0)]
    for t in txs:
        cp.admit(t)
    assert cp.pool.take(100, 10**9, 1000) == txs[:1]
    cp.commit(txs[:1])
    assert cp.pool.take(100, 10**9, 1000) == txs[1:]
