"""LMDB world state, indexes and metadata (storage/state.py): genesis init, one-transaction
block commits, snapshots, tx/hash indexes, validator history."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest
from consortium_node.ledger.genesis import Genesis
from consortium_node.ledger.hashing import sha256
from consortium_node.ledger.lthash import LtHash
from consortium_node.ledger.state import (
    INSUFFICIENT_BALANCE,
    NOT_FOUND,
    OK,
    BlockResult,
    Receipt,
    Validator,
    balance_key,
    execute_block,
    kv_key,
    nonce_key,
    u64,
)
from consortium_node.ledger.tx import (
    AddValidator,
    AssetIssue,
    AssetTransfer,
    KvDelete,
    KvPut,
    Payload,
    RemoveValidator,
    Tx,
)
from consortium_node.storage.state import Meta, StateStore, TxLocation

pytestmark = pytest.mark.unit

CHAIN = "store-test"
ADMIN = b"\xad" * 32
ALICE, BOB = b"A" * 32, b"B" * 32
V1, V2 = b"\x01" * 32, b"\x02" * 32
MAP_SIZE = 32 * 1024 * 1024


def make_tx(sender: bytes, nonce: int, payload: Payload) -> Tx:
    body = repr((sender, nonce, payload)).encode()
    return Tx(sha256(body), body, body, bytes(64), CHAIN, sender, nonce, payload)


GENESIS = Genesis(CHAIN, 1, (Validator(V1, "org1"),), admins=(ADMIN,), kv=((b"g", b"0"),))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "state", map_size=MAP_SIZE, sync=False)
    acc = GENESIS.lthash()
    s.init_genesis(GENESIS.writes(), acc.lanes(), acc.digest(), GENESIS.hash)
    yield s
    s.close()


def block_hash(height: int) -> bytes:
    return sha256(b"block %d" % height)


def execute(store: StateStore, height: int, txs: list[Tx]) -> BlockResult:
    meta = store.meta()
    assert meta is not None and meta.height == height - 1
    with store.snapshot() as snap:
        r = execute_block(snap, LtHash(meta.lthash), height, txs)
    store.commit_block(height, block_hash(height), r)
    return r


def full_state(store: StateStore) -> dict[bytes, bytes]:
    with store.snapshot() as snap:
        return dict(snap.prefix(b""))


def test_fresh_store_has_no_meta(tmp_path: Path) -> None:
    s = StateStore(tmp_path / "fresh", map_size=MAP_SIZE, sync=False)
    assert s.meta() is None
    with s.snapshot() as snap:
        assert snap.get(b"anything") is None
        assert list(snap.prefix(b"")) == []
    assert s.tx_location(b"x" * 32) is None
    assert s.height_of(b"x" * 32) is None
    assert s.validator_history() == []
    s.close()


def test_init_genesis(store: StateStore) -> None:
    acc = GENESIS.lthash()
    assert store.meta() == Meta(0, GENESIS.hash, acc.lanes(), acc.digest(), GENESIS.hash)
    assert full_state(store) == GENESIS.writes()
    assert store.validator_history() == [(1, (Validator(V1, "org1"),))]


def test_commit_block_updates_state_indexes_and_meta(store: StateStore) -> None:
    txs = [
        make_tx(ALICE, 0, KvPut(b"k", b"v")),
        make_tx(ALICE, 1, KvDelete(b"g")),
        make_tx(BOB, 0, KvDelete(b"missing")),
        make_tx(ALICE, 2, AssetIssue("G", BOB, 5)),
        make_tx(BOB, 1, AssetTransfer("G", ALICE, 6)),
    ]
    r = execute(store, 1, txs)
    meta = store.meta()
    assert meta == Meta(1, block_hash(1), r.lthash, r.state_root, GENESIS.hash)
    state = full_state(store)
    assert state[kv_key(b"k")] == b"v"
    assert kv_key(b"g") not in state  # deletions are applied
    assert u64(state[balance_key("G", BOB)]) == 5
    assert u64(state[nonce_key(ALICE)]) == 3 and u64(state[nonce_key(BOB)]) == 2
    # the stored state is exactly what the state root commits to
    h = LtHash()
    for k, v in state.items():
        h.add(k, v)
    assert h.digest() == r.state_root == meta.state_root
    codes = [OK, OK, NOT_FOUND, OK, INSUFFICIENT_BALANCE]
    for i, (tx, code) in enumerate(zip(txs, codes, strict=True)):
        loc = store.tx_location(tx.id)
        assert loc == TxLocation(1, i, code, r.receipts[i].message)
    assert store.height_of(block_hash(1)) == 1
    assert store.height_of(block_hash(2)) is None


def test_receipt_messages_round_trip_utf8(store: StateStore) -> None:
    tid = b"t" * 32
    result = BlockResult(
        {}, (Receipt(tid, 1, 7, 3, "nicht gefunden: \u00fc \u2713"),), bytes(2048), b"r" * 32
    )
    store.commit_block(1, block_hash(1), result)
    assert store.tx_location(tid) == TxLocation(1, 7, 3, "nicht gefunden: \u00fc \u2713")


@pytest.mark.parametrize("seed", range(3), ids=lambda s: f"seed={s}")
def test_many_blocks_and_reopen(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "state"
    s = StateStore(path, map_size=MAP_SIZE, sync=False)
    acc = GENESIS.lthash()
    s.init_genesis(GENESIS.writes(), acc.lanes(), acc.digest(), GENESIS.hash)
    nonces = {ALICE: 0, BOB: 0}
    all_txs: list[tuple[int, int, Tx]] = []
    for h in range(1, 16):
        txs = []
        for _ in range(rng.randrange(0, 6)):
            who = rng.choice([ALICE, BOB])
            key = b"k%d" % rng.randrange(5)
            p: Payload = KvPut(key, rng.randbytes(4)) if rng.random() < 0.7 else KvDelete(key)
            txs.append(make_tx(who, nonces[who], p))
            nonces[who] += 1
        execute(s, h, txs)
        all_txs += [(h, i, t) for i, t in enumerate(txs)]
    meta, state = s.meta(), full_state(s)
    s.close()
    s = StateStore(path, map_size=MAP_SIZE, sync=False)
    assert s.meta() == meta
    assert full_state(s) == state
    for h, i, t in all_txs:
        loc = s.tx_location(t.id)
        assert loc is not None and (loc.height, loc.index) == (h, i)
    for h in range(1, 16):
        assert s.height_of(block_hash(h)) == h
    s.close()


def test_commit_is_atomic(store: StateStore) -> None:
    """A block whose write transaction fails (LMDB refuses an empty key) leaves no trace: not
    its earlier writes, receipts, hash index nor meta."""
    before_meta, before_state = store.meta(), full_state(store)
    bad = BlockResult(
        {kv_key(b"first"): b"1", b"": b"empty key", kv_key(b"last"): b"2"},
        (Receipt(b"t" * 32, 1, 0, OK),),
        b"\x01" * 2048,
        b"r" * 32,
    )
    with pytest.raises(lmdb.Error):
        store.commit_block(1, block_hash(1), bad)
    assert store.meta() == before_meta
    assert full_state(store) == before_state
    assert store.tx_location(b"t" * 32) is None
    assert store.height_of(block_hash(1)) is None
    # the store is still usable
    execute(store, 1, [make_tx(ALICE, 0, KvPut(b"ok", b"1"))])
    assert full_state(store)[kv_key(b"ok")] == b"1"


def test_snapshot_isolation(store: StateStore) -> None:
    execute(store, 1, [make_tx(ALICE, 0, KvPut(b"k", b"old"))])
    with store.snapshot() as before:
        execute(
            store, 2, [make_tx(ALICE, 1, KvPut(b"k", b"new")), make_tx(BOB, 0, KvPut(b"j", b"x"))]
        )
        execute(store, 3, [make_tx(ALICE, 2, KvDelete(b"g"))])
        # the old snapshot still sees height 1's state
        assert before.get(kv_key(b"k")) == b"old"
        assert before.get(kv_key(b"j")) is None
        assert before.get(kv_key(b"g")) == b"0"
        assert u64(before.get(nonce_key(ALICE))) == 1
        with store.snapshot() as after:
            assert after.get(kv_key(b"k")) == b"new"
            assert after.get(kv_key(b"j")) == b"x"
            assert after.get(kv_key(b"g")) is None
    assert store.meta() is not None


def test_snapshot_prefix_scan(store: StateStore) -> None:
    execute(
        store,
        1,
        [make_tx(ALICE, i, KvPut(k, b"v")) for i, k in enumerate([b"b", b"a", b"a2", b"c"])],
    )
    with store.snapshot() as snap:
        got = list(snap.prefix(kv_key(b"a")))
        assert got == [(kv_key(b"a"), b"v"), (kv_key(b"a2"), b"v")]
        assert [k for k, _ in snap.prefix(b"k/")] == [
            kv_key(x) for x in (b"a", b"a2", b"b", b"c", b"g")
        ]
        assert list(snap.prefix(b"zzz")) == []
        assert list(snap.prefix(b"k/zz")) == []
        assert all(isinstance(v, bytes) for _, v in snap.prefix(b""))


def test_validator_history(store: StateStore) -> None:
    execute(store, 1, [make_tx(ADMIN, 0, AddValidator(V2, "org2"))])
    execute(store, 2, [])
    execute(store, 3, [make_tx(ADMIN, 1, RemoveValidator(V1))])
    hist = store.validator_history()
    assert hist == [
        (1, (Validator(V1, "org1"),)),
        (3, (Validator(V1, "org1"), Validator(V2, "org2"))),
        (5, (Validator(V2, "org2"),)),
    ]
