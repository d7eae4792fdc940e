"""Issue 13 defect 4 (trust rule): a block fetched to refill a damaged block store is stored
only if it hashes to what this node's own state recorded for that height and its commit
certificate verifies (runtime/node.py `restore_block`). On a real raft validator's data dir
(in process, files in a temp dir, fsync off; blocks built and certified by hand)."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from consortium_node.config import NodeConfig
from consortium_node.crypto import Ed25519Key
from consortium_node.ledger.block import Block, CommitCertificate, commit_sign_bytes
from consortium_node.ledger.errors import TxRejected
from consortium_node.localnet import init_data_dir, parse_manifest
from consortium_node.runtime.node import Node, load_genesis
from consortium_node.transport import codec

pytestmark = pytest.mark.unit

MANIFEST = {
    "kind": "Consortium",
    "metadata": {"name": "restore"},
    "spec": {
        "chainId": "restore",
        "consensus": {"type": "raft"},
        "organizations": [{"name": "org1", "validators": 2}, {"name": "org2", "validators": 1}],
    },
}


@pytest.fixture
def cfg(tmp_path: Path) -> NodeConfig:
    init_data_dir(parse_manifest(MANIFEST), tmp_path / "net", fsync=False)
    (path,) = sorted((tmp_path / "net" / "nodes").glob("org2-0/config.yaml"))
    return NodeConfig.load(path)


def _open(cfg: NodeConfig) -> Node:
    return Node(cfg, Ed25519Key.load(cfg.key_file), load_genesis(cfg.genesis_file), codec.decode_tx)


def _certify(node: Node, block: Block) -> Block:
    sig = node.sign(commit_sign_bytes(node.chain_id, block.height, 1, block.hash))
    return block.with_certificate(
        CommitCertificate(block.height, 1, block.hash, ((node.node_id, sig),))
    )


@pytest.fixture
def damaged(cfg: NodeConfig) -> Iterator[tuple[Node, list[Block]]]:
    """A validator that committed 6 empty blocks, then lost blocks 4..6 to a flipped byte."""
    node = _open(cfg)
    blocks = []
    for _ in range(6):
        b = node.build_block(node.height + 1, node.last_hash, allow_empty=True)
        assert b is not None
        b = _certify(node, b)
        node.apply(b)
        blocks.append(b)
    node.close()
    (seg,) = sorted((cfg.data_dir / "blocks").glob("seg-*.blk"))
    data = bytearray(seg.read_bytes())
    pos = 0
    for _ in range(3):  # skip blocks 1..3
        (length,) = struct.unpack_from(">I", data, pos)
        pos += 8 + length
    data[pos + 12] ^= 0xFF  # inside block 4
    seg.write_bytes(bytes(data))
    node = _open(cfg)
    try:
        yield node, blocks
    finally:
        node.close()


def test_a_node_that_lost_committed_blocks_starts_at_its_state_height(
    damaged: tuple[Node, list[Block]],
) -> None:
    node, _ = damaged
    assert node.height == 6 and node.blocks.height == 3 and node.repair_from == 4


def test_restore_accepts_the_committed_blocks_and_completes(
    damaged: tuple[Node, list[Block]],
) -> None:
    node, blocks = damaged
    for b in blocks[3:]:
        node.restore_block(b)
    assert node.repair_from is None and node.blocks.height == 6
    assert node.block_at(5) == blocks[4]


def test_restore_refuses_another_block_or_a_bad_certificate(
    damaged: tuple[Node, list[Block]],
) -> None:
    node, blocks = damaged
    real = blocks[3]
    other = Block(dataclasses.replace(real.header, time_ms=real.header.time_ms + 1), ())
    with pytest.raises(TxRejected, match="not the block this node committed"):
        node.restore_block(_certify(node, other))
    forged = real.with_certificate(
        CommitCertificate(real.height, 1, real.hash, ((node.node_id, b"\x00" * 64),))
    )
    with pytest.raises(TxRejected, match="certificate"):
        node.restore_block(forged)
    with pytest.raises(TxRejected, match="not a missing block"):
        node.restore_block(blocks[4])  # out of order
    assert node.blocks.height == 3 and node.repair_from == 4
