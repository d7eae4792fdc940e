"""Catch-up from a state snapshot: a BFT validator that was down while the chain moved far
ahead installs a peer's verified state snapshot instead of replaying every block, then
follows consensus again. Real node processes on 127.0.0.1."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from consortium_api.v1 import ledger_pb2, types_pb2
from consortium_node.client.errors import ClientError
from consortium_node.client.keys import Signer
from consortium_node.localnet import LocalNet, LocalNode, init_data_dir, parse_manifest

from tests.support.wait import wait_for

from .localnets import running

pytestmark = pytest.mark.integration
BEHIND = 15  # snapshot_sync_blocks for this test: behind by more than this -> snapshot


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNet]:
    doc = {
        "kind": "Consortium",
        "metadata": {"name": "snap"},
        "spec": {
            "chainId": "snap",
            "consensus": {
                "type": "bft",
                "tickMs": 5,
                "blockIntervalMs": 5,
                "emptyBlockIntervalMs": 50,
            },
            "organizations": [{"name": "org1", "validators": 2}, {"name": "org2", "validators": 2}],
        },
    }
    init_data_dir(parse_manifest(doc), tmp_path / "net")
    for cfg in (tmp_path / "net" / "nodes").glob("*/config.yaml"):
        d = yaml.safe_load(cfg.read_text())
        d["snapshot_sync_blocks"] = BEHIND
        cfg.write_text(yaml.safe_dump(d))
    with running(tmp_path / "net") as n:
        yield n


def _status(net: LocalNet, n: LocalNode) -> ledger_pb2.GetStatusResponse | None:
    try:
        with net.client(n, 2.0) as c:
            return c.status()
    except ClientError:
        return None


def test_far_behind_validator_installs_a_snapshot(net: LocalNet) -> None:
    lagger = net.nodes[3]
    live = net.nodes[:3]
    assert lagger.stop(signal.SIGTERM) == 0
    down_at = max(s.height for n in live if (s := _status(net, n)))
    # The chain moves on (empty blocks every 50 ms, plus some state changes).
    signer = Signer.generate()
    net.vouch([signer.public_key])
    with net.client(0, 10.0) as c:
        txs = [
            signer.build_tx(net.chain_id, i, types_pb2.KvPut(key=b"s%d" % i, value=b"v"))
            for i in range(50)
        ]
        assert all(r.code == 0 for r in c.submit([t for _, t in txs]))
        c.wait_tx(txs[-1][0], timeout=20)
    wait_for(
        lambda: max(s.height for n in live if (s := _status(net, n))) > down_at + 3 * BEHIND,
        60,
        "the chain to move far ahead",
    )
    lagger.start()
    lagger.wait_ready(time.monotonic() + 30)
    wait_for(
        lambda: (
            (s := _status(net, lagger)) is not None
            and s.height >= max(x.height for n in live if (x := _status(net, n))) - 1
        ),
        60,
        "the lagging node to catch up",
    )
    assert "installed state snapshot" in (lagger.directory / "node.log").read_text()
    # Same state as everyone at the same height, and the state includes what it missed.
    wait_for(
        lambda: len({(s.height, s.state_root) for n in net.nodes if (s := _status(net, n))}) == 1,
        30,
        "equal heights and state roots",
    )
    with net.client(lagger, 5.0) as c:
        assert c.query_key(b"s49").value == b"v"
        # Blocks inside the skipped range are not stored here (peers serve them).
        with pytest.raises(ClientError):
            c.get_block(down_at + BEHIND)
        h = c.status().height
    # And it keeps deciding with the others.
    wait_for(
        lambda: (s := _status(net, lagger)) is not None and s.height >= h + 5,
        30,
        "the node to follow consensus after the snapshot",
    )
