"""Where a client's tx is gossiped after admission (Node._gossip_target), and who checks its
signature. Gossip: under raft to the leader only, and nowhere when this node leads (a raft
follower never validates the leader's blocks, so a tx in its pool would only cost it a
signature check); under bft to every peer (each validator verifies every tx and rebuilds
compact proposals from its pool); to every peer while no leader is known. The tx is tracked for
re-gossip either way, so it reaches a leader elected later. Signatures: once per raft cluster,
by the node a client handed the tx to (a peer's forwarded tx is trusted, as the crash-fault
model trusts every node); by every node under any other consensus. On a real one-validator raft
node and, for "every peer" (any consensus but raft; bft needs four validators), a solo node
(temp dir, fsync off) with a recording network."""

from __future__ import annotations

import dataclasses
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
from consortium_node.transport import codec

pytestmark = pytest.mark.unit

PEER = b"\x05" * 32
SELF = b"self"  # stands for the node's own id in the parametrisation


class Recorder:
    def __init__(self) -> None:
        self.to: list[bytes | None] = []

    def send(self, env: Envelope) -> None:
        pass

    def gossip(self, raw_tx: bytes, to: bytes | None = None) -> None:
        self.to.append(to)


@pytest.fixture(params=["raft", "solo"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Node]:
    init_dev(tmp_path, "gossip-chain")
    cfg = NodeConfig.load(tmp_path / "config.yaml")
    genesis = dataclasses.replace(load_genesis(cfg.genesis_file), consensus=request.param)
    cfg.genesis_file.write_bytes(genesis.canonical())
    d = cfg.to_dict()
    d["fsync"] = False
    cfg = NodeConfig.from_dict(d, tmp_path)
    n = Node(cfg, Ed25519Key.load(cfg.key_file), load_genesis(cfg.genesis_file), codec.decode_tx)
    try:
        yield n
    finally:
        n.close()


@pytest.mark.parametrize("leader", [PEER, SELF, None], ids=["follower", "leader", "no-leader"])
def test_a_client_tx_goes_to_the_raft_leader_only_and_elsewhere_to_every_peer(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, leader: bytes | None
) -> None:
    net = Recorder()
    node.network = net
    who = node.node_id if leader == SELF else leader
    real = node.engine.status()
    monkeypatch.setattr(node.engine, "status", lambda: Status(real.role, who, real.height, 0))
    client = Signer.load(tmp_path / "keys" / "client.json")
    _, tx = client.build_tx(node.chain_id, 0, types_pb2.KvPut(key=b"k", value=b"v"))
    (a,) = node.submit_many([tx.SerializeToString()])
    assert a.reject is None
    if node.genesis.consensus != "raft" or leader is None:
        assert net.to == [None]  # every peer
    elif leader == PEER:
        assert net.to == [PEER]
    else:
        assert net.to == []  # this node leads: the tx is in the pool it builds blocks from
    regossip = node._regossip
    assert regossip is not None and len(regossip) == 1  # re-sent to a later leader if pending


def test_a_raft_peers_tx_is_not_verified_again_and_a_clients_always_is(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every signature is checked once in a raft cluster, by the node a client handed the tx
    to; any other consensus checks a peer's tx too (bft: each validator verifies what it
    votes for)."""
    calls: list[bytes] = []
    real_verify = node.mempool._verify

    def counting(key: bytes, body: bytes, sig: bytes) -> bool:
        calls.append(body)
        return real_verify(key, body, sig)

    monkeypatch.setattr(node.mempool, "_verify", counting)
    client = Signer.load(tmp_path / "keys" / "client.json")
    raws = [
        client.build_tx(node.chain_id, i, types_pb2.KvPut(key=b"k%d" % i, value=b"v"))[1]
        for i in range(2)
    ]
    (a,) = node.submit_many([raws[0].SerializeToString()])  # from a client
    assert a.reject is None and len(calls) == 1
    node.on_peer_txs(PEER, [raws[1].SerializeToString()])  # forwarded by a peer
    assert len(node.mempool) == 2
    assert len(calls) == (1 if node.genesis.consensus == "raft" else 2)
