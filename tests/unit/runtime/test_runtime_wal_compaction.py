"""Consensus-log compaction is driven by `Ready.compact_below` (consensus/api.py), not by the
runtime inspecting engine types: a real raft `Node` (runtime/node.py) on in-memory storage
keeps its consensus log bounded (entries of applied blocks beyond `compact_every` go) and still
restarts from what it kept. (bft's compact_below runs in every tests/sim whole-node seed.)"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from consortium_api.v1 import types_pb2
from consortium_node import crypto
from consortium_node.config import ConsensusConfig, NodeConfig
from consortium_node.consensus.raft import RaftConfig
from consortium_node.ledger.genesis import Genesis
from consortium_node.ledger.state import Validator
from consortium_node.runtime import engines
from consortium_node.runtime.node import Node
from consortium_node.storage.memory import (
    Disk,
    MemoryBlockLog,
    MemoryConsensusLog,
    MemoryStateStore,
)
from consortium_node.storage.ports import NodeStorage
from consortium_node.transport import codec

pytestmark = pytest.mark.unit


class Ticks:
    def __init__(self) -> None:
        self.now = 0

    def monotonic(self) -> float:
        return self.now / 100

    def wall_ms(self) -> int:
        return 1_700_000_000_000 + self.now * 10


def _node(disk: Disk, key: crypto.Ed25519Key, genesis: Genesis, clock: Ticks) -> Node:
    root = Path("/unused")
    cfg = NodeConfig(
        data_dir=root,
        key_file=root / "k",
        genesis_file=root / "g",
        consensus=ConsensusConfig(block_interval_ms=10, empty_block_ms=0, election_ticks=3),
    )
    conf = engines.engine_config("raft", cfg)
    assert isinstance(conf, RaftConfig)
    return Node(
        cfg,
        key,
        genesis,
        codec.decode_tx,
        storage=NodeStorage(MemoryBlockLog(disk), MemoryStateStore(disk), MemoryConsensusLog(disk)),
        clock=clock,
        engine_config=dataclasses.replace(conf, compact_every=4),
    )


def test_raft_node_compacts_its_consensus_log_and_restarts_from_it() -> None:
    rng = random.Random(5)
    key, client = crypto.Ed25519Key(rng.randbytes(32)), crypto.Ed25519Key(rng.randbytes(32))
    genesis = Genesis("wal-chain", 0, (Validator(key.public, "org"),), consensus="raft")
    disk, clock = Disk(rng), Ticks()
    node = _node(disk, key, genesis, clock)
    longest = 0
    for nonce in range(40):
        body = types_pb2.TxBody(
            chain_id=genesis.chain_id,
            sender=client.public,
            nonce=nonce,
            kv_put=types_pb2.KvPut(key=b"k%d" % nonce, value=b"v"),
        ).SerializeToString()
        raw = types_pb2.SignedTx(body=body, signature=client.sign(body)).SerializeToString()
        assert node.submit(raw).reject is None
        h = node.height
        while node.height == h:
            clock.now += 1
            node.tick()
        assert node.wal is not None
        longest = max(longest, len(node.wal.entries))
    assert node.height >= 40
    assert longest <= 3 * 4 + 2  # compact_every entries kept, at most twice that before a cut
    height = node.height
    disk.crash()
    again = _node(disk, key, genesis, clock)
    assert again.height == height and again.last_hash == node.last_hash
