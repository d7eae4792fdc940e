"""Issue 13 defect 5 on real node processes: a validator seeded from a state snapshot holds
blocks base+1..height only. Its status says so (base_height), and lookups below the base say
so (OUT_OF_RANGE naming the base) instead of "not found" / "no block" for what is in fact
committed. A full node still answers them."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from consortium_api.v1 import ledger_pb2, ledger_pb2_grpc, types_pb2
from consortium_node.client.errors import ClientError
from consortium_node.client.keys import Signer
from consortium_node.localnet import LocalNet, LocalNode, init_data_dir, parse_manifest

from tests.support.wait import wait_for

from .localnets import running

pytestmark = pytest.mark.integration
BEHIND = 15  # snapshot_sync_blocks: behind by more than this -> snapshot


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNet]:
    doc = {
        "kind": "Consortium",
        "metadata": {"name": "base"},
        "spec": {
            "chainId": "base",
            "consensus": {
                "type": "bft",
                "tickMs": 5,
                "blockIntervalMs": 5,
                "emptyBlockIntervalMs": 50,
            },
            "organizations": [{"name": "org1", "validators": 2}, {"name": "org2", "validators": 2}],
        },
    }
    init_data_dir(parse_manifest(doc), tmp_path / "net", fsync=False)
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


def _height(net: LocalNet, nodes: list[LocalNode]) -> int:
    return max((s.height for n in nodes if (s := _status(net, n)) is not None), default=0)


def test_a_snapshot_seeded_node_reports_its_base_and_says_so_below_it(net: LocalNet) -> None:
    lagger, live = net.nodes[3], net.nodes[:3]
    assert lagger.stop(signal.SIGTERM) == 0
    signer = Signer.generate()
    net.vouch([signer.public_key])
    with net.client(0, 10.0) as c:
        tx_id, tx = signer.build_tx(net.chain_id, 0, types_pb2.KvPut(key=b"old", value=b"v"))
        assert c.submit([tx])[0].code == 0
        old_height = c.wait_tx(tx_id, timeout=20).receipt.height
    wait_for(lambda: _height(net, live) > old_height + 3 * BEHIND, 60, "the chain far ahead")
    lagger.start()
    lagger.wait_ready(time.monotonic() + 30)
    wait_for(
        lambda: (s := _status(net, lagger)) is not None and s.height >= _height(net, live) - 1,
        60,
        "the lagging node to catch up",
    )
    assert "installed state snapshot" in (lagger.directory / "node.log").read_text()
    st = _status(net, lagger)
    assert st is not None
    assert old_height < st.base_height < st.height
    assert all((s := _status(net, n)) is not None and s.base_height == 0 for n in live)
    with net.client(lagger, 5.0) as c:
        with pytest.raises(ClientError) as e:
            c.get_tx(tx_id)  # committed below the base: not "not found"
        assert f"after block {st.base_height}" in str(e.value)
        with pytest.raises(ClientError) as e:
            c.get_block(old_height)
        assert f"below this node's base height {st.base_height}" in str(e.value)
        assert c.get_block(st.base_height + 1).header_view.height == st.base_height + 1
    # StreamBlocks from below the base: OUT_OF_RANGE, not an internal error
    tls = lagger.tls
    assert tls is not None
    creds = grpc.ssl_channel_credentials(tls.ca_pem, tls.key_pem, tls.cert_pem)
    opts = [("grpc.ssl_target_name_override", tls.server_name)] if tls.server_name else []
    with grpc.secure_channel(lagger.endpoint, creds, options=opts) as ch:
        stub = ledger_pb2_grpc.LedgerStub(ch)
        with pytest.raises(grpc.RpcError) as rpc:
            list(stub.StreamBlocks(ledger_pb2.StreamBlocksRequest(from_height=1), timeout=5))
        assert rpc.value.code() == grpc.StatusCode.OUT_OF_RANGE
    with net.client(0, 5.0) as c:  # a full node still knows it
        got = c.get_tx(tx_id)
        assert got is not None and got.receipt.height == old_height
