"""A fresh node enforces its genesis's chain parameters from its first block (found by the
node sim once seeds drew a genesis max_block_txs: tests/sim/nodesim.py). The params were read
before the genesis state was written, so a node on its first run enforced the defaults
(max_block_txs 2000) and one that had restarted the genesis values: a proposer built a block
its restarted peers refused, and a locked BFT round never ended. On a real solo node (temp
dir, fsync off), started fresh and again on the same data dir."""

from __future__ import annotations

import dataclasses
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


def _node(cfg: NodeConfig) -> Node:
    return Node(cfg, Ed25519Key.load(cfg.key_file), load_genesis(cfg.genesis_file), codec.decode_tx)


@pytest.mark.parametrize("restart", [False, True], ids=["first-run", "restarted"])
def test_a_node_cuts_blocks_at_its_genesis_max_block_txs(tmp_path: Path, restart: bool) -> None:
    init_dev(tmp_path, "params-chain")
    cfg = NodeConfig.load(tmp_path / "config.yaml")
    genesis = dataclasses.replace(load_genesis(cfg.genesis_file), params={"max_block_txs": 2})
    cfg.genesis_file.write_bytes(genesis.canonical())
    d = cfg.to_dict()
    d["fsync"] = False
    cfg = NodeConfig.from_dict(d, tmp_path)
    node = _node(cfg)
    if restart:
        node.close()
        node = _node(cfg)
    try:
        client = Signer.load(tmp_path / "keys" / "client.json")
        raws = [
            client.build_tx(node.chain_id, i, types_pb2.KvPut(key=b"k%d" % i, value=b"v"))[1]
            for i in range(3)
        ]
        assert all(
            a.reject is None for a in node.submit_many([t.SerializeToString() for t in raws])
        )
        block = node.build_block(node.height + 1, node.last_hash, allow_empty=False)
        assert block is not None and len(block.txs) == 2
        assert node.validate_block(block) is None
    finally:
        node.close()
