"""Issue 13 defect 2 (second half): a transaction a client submitted to this node reaches the
block proposer eventually: while it stays pooled it is gossiped again (2 s, then doubling to
30 s), and never after it left the pool. On a real solo node (temp dir, fsync off) with a
recording network and the node's clock passed in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from consortium_api.v1 import types_pb2
from consortium_node.__main__ import init_dev
from consortium_node.client.keys import Signer
from consortium_node.config import NodeConfig
from consortium_node.consensus.api import Envelope, Status
from consortium_node.crypto import Ed25519Key
from consortium_node.runtime.node import Node, load_genesis
from consortium_node.runtime.regossip import Regossip
from consortium_node.transport import codec

pytestmark = pytest.mark.unit


class Recorder:
    """The PeerNetwork: records what the node gossips."""

    def __init__(self) -> None:
        self.gossiped: list[bytes] = []
        self.to: list[bytes | None] = []

    def send(self, env: Envelope) -> None:
        pass

    def gossip(self, raw_tx: bytes, to: bytes | None = None) -> None:
        self.gossiped.append(raw_tx)
        self.to.append(to)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    init_dev(tmp_path, "regossip-chain")
    cfg = NodeConfig.load(tmp_path / "config.yaml")
    d = cfg.to_dict()
    d["fsync"] = False
    cfg = NodeConfig.from_dict(d, tmp_path)
    n = Node(cfg, Ed25519Key.load(cfg.key_file), load_genesis(cfg.genesis_file), codec.decode_tx)
    try:
        yield n
    finally:
        n.close()


def _tx(node: Node, signer: Signer, nonce: int) -> bytes:
    _, tx = signer.build_tx(node.chain_id, nonce, types_pb2.KvPut(key=b"k%d" % nonce, value=b"v"))
    return tx.SerializeToString()


PEER = b"\x05" * 32


def _led_by(node: Node, monkeypatch: pytest.MonkeyPatch, leader: bytes | None) -> None:
    """The solo engine always reports itself as the proposer; these tests set who proposes
    (the engine's one answer regossip_pending reads)."""
    real = node.engine.status()
    status = Status(real.role, leader, real.height, real.round)
    monkeypatch.setattr(node.engine, "status", lambda: status)


@pytest.mark.parametrize("leader", [PEER, None], ids=["to-the-proposer", "none-known-to-all"])
def test_pending_client_tx_is_gossiped_again_until_committed(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, leader: bytes | None
) -> None:
    net = Recorder()
    node.network = net
    _led_by(node, monkeypatch, leader)
    client = Signer.load(tmp_path / "keys" / "client.json")
    raw = _tx(node, client, 0)
    (a,) = node.submit_many([raw])
    assert a.reject is None and net.gossiped == [raw] and net.to == [None]  # first: to all
    # the node's own monotonic clock, advanced by hand from the admission time
    t0 = node._admitted_at[a.tx_id]
    assert node.regossip_pending(t0 + 1.9) == 0
    assert node.regossip_pending(t0 + 2.0) == 1 and net.gossiped[-1] == raw
    assert node.regossip_pending(t0 + 5.9) == 0  # next at +2 +4
    assert node.regossip_pending(t0 + 6.0) == 1
    assert node.regossip_pending(t0 + 14.0) == 1  # +8
    block = node.build_block(node.height + 1, node.last_hash, allow_empty=False)
    assert block is not None
    node.apply(block)
    assert node.regossip_pending(t0 + 1000) == 0  # committed: forgotten
    assert len(net.gossiped) == 4
    assert net.to[1:] == [leader] * 3  # re-sends: to the proposer only (all if none known)


def test_a_proposer_does_not_regossip_its_own_pool(node: Node, tmp_path: Path) -> None:
    net = Recorder()
    node.network = net  # the solo engine: this node proposes every block
    client = Signer.load(tmp_path / "keys" / "client.json")
    (a,) = node.submit_many([_tx(node, client, 0)])
    t0 = node._admitted_at[a.tx_id]
    assert node.regossip_pending(t0 + 2.0) == 0 and node.regossip_pending(t0 + 6.0) == 0
    assert len(net.gossiped) == 1  # the first gossip only


def test_gossip_received_from_peers_is_not_regossiped(node: Node, tmp_path: Path) -> None:
    net = Recorder()
    node.network = net
    client = Signer.load(tmp_path / "keys" / "client.json")
    node.on_peer_txs(b"\x01" * 32, [_tx(node, client, 0)])
    assert len(node.mempool) == 1
    assert node.regossip_pending(1e9) == 0 and net.gossiped == []


def test_schedule_doubles_to_the_cap_and_bounds_each_round() -> None:
    r = Regossip(first_s=1.0, max_s=4.0, per_round=2)
    pool = {b"a": "A", b"b": "B", b"c": "C"}
    for tid in pool:
        r.track(tid, 0.0)
    assert r.due(1.0, pool.get) == ["A", "B"]  # per_round
    assert r.due(1.0, pool.get) == ["C"]
    del pool[b"b"]
    assert r.due(3.0, pool.get) == ["A", "C"]  # +2; b left the pool
    assert len(r) == 2
    assert r.due(6.9, pool.get) == []
    assert r.due(7.0, pool.get) == ["A", "C"]  # +4 (capped)
    assert r.due(11.0, pool.get) == ["A", "C"]  # +4 again
