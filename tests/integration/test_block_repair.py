"""Issue 13 defect 4 on real node processes: five flipped bytes inside a committed block of a
validator's block store. At start-up the store cuts the damaged tail (so it is never served)
but keeps the bytes aside; the node fetches the lost blocks from its peers, checks each
against the hash its own state recorded and its commit certificate, and starts. Before the
fix it deleted blocks from disk and then refused to start ("committed blocks are
missing")."""

from __future__ import annotations

import signal
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from consortium_node.client.errors import ClientError
from consortium_node.config import NodeConfig
from consortium_node.localnet import LocalNet, LocalNode, init_data_dir, parse_manifest

from tests.support.wait import wait_for

from .localnets import fast_raft_manifest, running

pytestmark = pytest.mark.integration

MANIFEST = fast_raft_manifest("repair")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNet]:
    init_data_dir(parse_manifest(MANIFEST), tmp_path / "net", fsync=False)
    with running(tmp_path / "net") as n:
        yield n


def _height(net: LocalNet, n: LocalNode) -> int:
    try:
        with net.client(n, 2.0) as c:
            return int(c.status().height)
    except ClientError:
        return -1


def _blocks_dir(n: LocalNode) -> Path:
    return NodeConfig.load(n.directory / "config.yaml").data_dir / "blocks"


def _record_offsets(seg: Path) -> list[tuple[int, int]]:
    """(payload offset, payload length) of each record of a segment."""
    data, pos, out = seg.read_bytes(), 0, []
    while pos + 8 <= len(data):
        length, _ = struct.unpack_from(">II", data, pos)
        out.append((pos + 8, length))
        pos += 8 + length
    return out


def test_a_damaged_block_store_is_repaired_from_peers(net: LocalNet) -> None:
    victim = net.nodes[2]
    others = [n for n in net.nodes if n is not victim]
    wait_for(lambda: _height(net, victim) >= 60, 60, "60 blocks")
    assert victim.stop(signal.SIGTERM) == 0
    (seg,) = sorted(_blocks_dir(victim).glob("seg-*.blk"))
    records = _record_offsets(seg)
    stored = len(records)
    middle = stored // 2  # block `middle + 1`
    off, length = records[middle]
    original = seg.read_bytes()
    damaged = bytearray(original)
    for i in range(5):
        damaged[off + length // 2 + i] ^= 0xA5
    seg.write_bytes(bytes(damaged))

    victim.start()
    victim.wait_ready(time.monotonic() + 60)
    log = (victim.directory / "node.log").read_text(errors="replace")
    assert "block store repaired:" in log and "block store repaired from peers" in log
    # the damaged bytes were kept aside, not destroyed
    (kept,) = (_blocks_dir(victim) / "damaged").glob("*/seg-*.blk")
    assert kept.read_bytes() == bytes(damaged)
    # every block is served again, identical to a peer's, and the node follows the chain
    with net.client(victim, 5.0) as mine, net.client(others[0], 5.0) as theirs:
        for h in range(1, stored + 1):
            assert mine.get_block(h).header_view.hash == theirs.get_block(h).header_view.hash
    top = max(_height(net, n) for n in others)
    wait_for(lambda: _height(net, victim) > top + 5, 30, "the repaired node to follow")
