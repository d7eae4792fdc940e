"""Node batching (runtime/node.py `has_pending`): a non-full block is cut block_interval_ms
after the previous block began (the commit before it), and at once when that block or the
idle chain took longer — on a real solo node (files in a temp dir, fsync off) with a fake
clock injected into the node."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from consortium_api.v1 import types_pb2
from consortium_node.__main__ import init_dev
from consortium_node.client.keys import Signer
from consortium_node.config import NodeConfig
from consortium_node.crypto import Ed25519Key
from consortium_node.runtime.node import Node, load_genesis
from consortium_node.transport import codec

pytestmark = pytest.mark.unit


class Clock:
    """The clock injected into the node (runtime/clock.py): monotonic time set by the test."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def wall_ms(self) -> int:
        return int(time.time() * 1000)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def node(tmp_path: Path, clock: Clock) -> Iterator[Node]:
    init_dev(tmp_path, "batch-chain")
    cfg = NodeConfig.load(tmp_path / "config.yaml")
    d = cfg.to_dict()
    d["fsync"] = False
    d["consensus"]["block_interval_ms"] = 50
    cfg = NodeConfig.from_dict(d, tmp_path)
    n = Node(
        cfg,
        Ed25519Key.load(cfg.key_file),
        load_genesis(cfg.genesis_file),
        codec.decode_tx,
        clock=clock,
    )
    try:
        yield n
    finally:
        n.close()


def _submit(node: Node, signer: Signer, nonce: int) -> None:
    _, tx = signer.build_tx(node.chain_id, nonce, types_pb2.KvPut(key=b"k%d" % nonce, value=b"v"))
    (a,) = node.submit_many([tx.SerializeToString()], gossip=False)
    assert a.reject is None, a.message


def _commit(node: Node) -> None:
    block = node.build_block(node.height + 1, node.last_hash, allow_empty=False)
    assert block is not None
    node.apply(block)


def test_batch_window_runs_from_the_start_of_the_last_block(
    node: Node, clock: Clock, tmp_path: Path
) -> None:
    client = Signer.load(tmp_path / "keys" / "client.json")
    assert not node.has_pending()
    # an idle chain (nothing committed yet): the first tx is proposed at once
    _submit(node, client, 0)
    assert node.has_pending()
    _commit(node)  # block 1 (t = 0 ms), the start of block 2
    assert not node.has_pending()
    clock.t += 0.010
    _submit(node, client, 1)
    assert node.has_pending()  # block 1 began long ago (the idle chain before it)
    _commit(node)  # block 2 committed 10 ms after block 1: it began at t = 0
    # a fast block: the next tx waits for the rest of the 50 ms window of block 2 ...
    clock.t += 0.010  # t = 20 ms
    _submit(node, client, 2)
    assert not node.has_pending()
    clock.t += 0.029  # t = 49 ms
    assert not node.has_pending()
    clock.t += 0.002  # ... which ends 50 ms after block 2 began, not 50 ms after the tx
    assert node.has_pending()
    # a slow block (60 ms from its start to its commit, longer than the window): the txs
    # that arrived meanwhile are proposed at once, they already waited behind it
    clock.t += 0.060
    _submit(node, client, 3)  # pooled behind block 3
    _commit(node)  # block 3 holds txs 2 and 3, committed 60 ms after block 2
    _submit(node, client, 4)
    assert node.has_pending()
    _commit(node)
    # idle for longer than the window: no later txs to wait for
    clock.t += 0.200
    _submit(node, client, 5)
    assert node.has_pending()
