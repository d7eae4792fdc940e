"""Issue 13 defect 1 on real node processes: follow the node's own advice ("restore the data
dir or resync from peers") — stop a Raft follower, move its ledger aside, restart it empty.
It must catch up with the chain (block sync from the leader) while the chain keeps
committing, without a change of leader. Before the fix the leader probed it at its old match
index forever: it stayed at height 0 and both burnt CPU."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from consortium_api.v1 import types_pb2
from consortium_node.client.errors import ClientError
from consortium_node.client.keys import Signer
from consortium_node.config import NodeConfig
from consortium_node.localnet import LocalNet, LocalNode, init_data_dir, parse_manifest

from tests.support.wait import wait_for

from .localnets import fast_raft_manifest, running

pytestmark = pytest.mark.integration

MANIFEST = fast_raft_manifest("reseed")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNet]:
    init_data_dir(parse_manifest(MANIFEST), tmp_path / "net", fsync=False)
    with running(tmp_path / "net") as n:
        yield n


def _status(net: LocalNet, n: LocalNode) -> tuple[int, bytes] | None:
    try:
        with net.client(n, 2.0) as c:
            st = c.status()
            return int(st.height), bytes(st.leader)
    except ClientError:
        return None


def test_a_follower_reseeded_empty_catches_up(net: LocalNet) -> None:
    def leader() -> LocalNode | None:
        for n in net.nodes:
            st = _status(net, n)
            if st is not None and st[1].hex() == n.node_id:
                return n
        return None

    wait_for(
        lambda: leader() is not None and (_status(net, net.nodes[0]) or (0,))[0] >= 40,
        60,
        "a leader and 40 blocks",
    )
    lead = leader()
    assert lead is not None
    follower = next(n for n in net.nodes if n is not lead)
    assert follower.stop(signal.SIGTERM) == 0
    data = NodeConfig.load(follower.directory / "config.yaml").data_dir
    data.rename(data.with_name(data.name + ".aside"))
    follower.start()
    follower.wait_ready(time.monotonic() + 30)
    # the chain keeps committing a client's transactions, and the empty follower catches up
    signer = Signer.load(net.data_dir / "keys" / "client.json")
    with net.client(lead, 10.0) as c:
        nonce = c.next_nonce(signer.public_key)
        tx_id, tx = signer.build_tx(net.chain_id, nonce, types_pb2.KvPut(key=b"re", value=b"1"))
        assert c.submit([tx])[0].code == 0
        committed_at = c.wait_tx(tx_id, timeout=15).receipt.height
    wait_for(
        lambda: (st := _status(net, follower)) is not None and st[0] > committed_at,
        30,
        "the re-seeded follower to catch up",
    )
    with net.client(follower, 5.0) as c:
        assert c.get_tx(tx_id) is not None
    assert leader() is lead  # no leadership change was needed
