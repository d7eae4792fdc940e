"""Node batching (runtime/node.py `has_pending`): a non-full block is cut block_interval_ms
after the previous commit, and at once when the chain was idle for longer — on a real solo
node (files in a temp dir, fsync off) with a fake clock injected into the node."""

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


def test_batch_window_runs_from_the_last_commit(node: Node, clock: Clock, tmp_path: Path) -> None:
    client = Signer.load(tmp_path / "keys" / "client.json")
    assert not node.has_pending()
    # an idle chain (nothing committed yet): the first tx is proposed at once
    _submit(node, client, 0)
    assert node.has_pending()
    _commit(node)
    assert not node.has_pending()
    # 10 ms after that commit: the next tx waits for the rest of the 50 ms window ...
    clock.t += 0.010
    _submit(node, client, 1)
    assert not node.has_pending()
    clock.t += 0.030  # 40 ms after the commit
    assert not node.has_pending()
    clock.t += 0.011  # ... which ends 50 ms after the commit, not 50 ms after the tx
    assert node.has_pending()
    _commit(node)
    # idle for longer than the window: no later txs to wait for
    clock.t += 0.200
    _submit(node, client, 2)
    assert node.has_pending()
