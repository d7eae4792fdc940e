"""Issue 13 defect 2 on a real TLS raft consortium: a second `Exchange` stream for a peer id
(a stale process with the same identity, e.g. an old pod during a failover) must replace the
first cleanly: the older stream is closed, `connected` tracks the stream that carries
traffic, and once the intruder is gone the real peer's link works again in both directions
(before the fix the leader never wrote to that follower again: it stopped committing)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from consortium_api.v1 import peer_pb2, peer_pb2_grpc, types_pb2
from consortium_node import pki
from consortium_node.client.keys import Signer
from consortium_node.client.rpc import Client
from consortium_node.config import NodeConfig
from consortium_node.crypto import Ed25519Key
from consortium_node.localnet import LocalNet, LocalNode, parse_manifest
from consortium_node.localnet import init_data_dir as init_net
from consortium_node.transport.peers import hello_bytes

from tests.support.wait import wait_for

from .localnets import gauge, running

pytestmark = pytest.mark.integration

MANIFEST = {
    "apiVersion": "consortium.dev/v1alpha1",
    "kind": "Consortium",
    "metadata": {"name": "streams"},
    "spec": {
        "chainId": "streams-chain",
        "consensus": {"type": "raft"},
        "organizations": [{"name": "org1", "validators": 2}, {"name": "org2", "validators": 1}],
    },
}


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNet]:
    init_net(parse_manifest(MANIFEST), tmp_path / "net", fsync=False)
    with running(tmp_path / "net") as n:
        yield n


def _status(node: LocalNode) -> tuple[int, bytes]:
    with Client(node.endpoint, 2.0, tls=node.tls) as c:
        st = c.status()
        return int(st.height), bytes(st.leader)


def _connected(node: LocalNode) -> int:
    return int(gauge(node, "consortium_peers_connected"))


class Intruder:
    """An Exchange stream to `target` claiming to be `victim` (its real key and certificate):
    sends the hello, reads the answer, then holds the stream open until `close`."""

    def __init__(self, net: LocalNet, target: LocalNode, victim: LocalNode) -> None:
        cfg = NodeConfig.load(victim.directory / "config.yaml")
        assert cfg.tls is not None
        ca = (net.data_dir / "tls" / "ca.pem").read_bytes()
        creds = grpc.ssl_channel_credentials(
            ca, Path(cfg.tls.key_file).read_bytes(), Path(cfg.tls.cert_file).read_bytes()
        )
        peer_listen = yaml.safe_load((target.directory / "config.yaml").read_text())["peer_listen"]
        server_id = bytes.fromhex(target.node_id)
        self.channel = grpc.secure_channel(
            str(peer_listen),
            creds,
            options=[("grpc.ssl_target_name_override", pki.node_dns_name(server_id))],
        )
        key = Ed25519Key.load(victim.directory / "key.json")
        gh = hashlib.sha256((net.data_dir / "genesis.json").read_bytes()).digest()
        t = int(time.time() * 1000)
        hello = peer_pb2.PeerHello(
            node_id=key.public,
            peer_id=server_id,
            chain_id=net.chain_id,
            genesis_hash=gh,
            time_ms=t,
            signature=key.sign(hello_bytes(net.chain_id, gh, key.public, server_id, t)),
        )
        self._done = threading.Event()

        def requests() -> Iterator[peer_pb2.PeerBatch]:
            yield peer_pb2.PeerBatch(hello=hello)
            self._done.wait(60)  # the stream stays open (sending nothing) until close()

        self.replies = peer_pb2_grpc.PeerStub(self.channel).Exchange(requests(), timeout=60)
        first = next(iter(self.replies))
        assert first.HasField("hello"), "the target refused the intruder's hello"

    def close(self) -> None:
        self._done.set()
        self.channel.close()


def test_a_second_stream_for_a_peer_id_replaces_the_first_cleanly(net: LocalNet) -> None:
    leader: list[LocalNode] = []

    def has_leader() -> bool:
        leader.clear()
        leader.extend(n for n in net.nodes if _status(n)[1].hex() == n.node_id)
        return bool(leader)

    wait_for(has_leader, 30, "a raft leader")
    x = leader[0]
    y = next(n for n in net.nodes if n is not x)
    wait_for(lambda: all(_connected(n) == 2 for n in net.nodes), 20, "all links up")
    intruder = Intruder(net, x, y)
    time.sleep(1.0)  # the duration the intruder holds its stream: what is under test
    intruder.close()
    wait_for(lambda: _connected(x) == 2, 10, f"{x.name} back to 2 links")
    # the real follower is served again: a tx submitted to it commits and it sees the commit
    signer = Signer.load(net.data_dir / "keys" / "client.json")
    with Client(y.endpoint, 20.0, tls=y.tls) as c:
        nonce = c.next_nonce(signer.public_key)
        tx_id, tx = signer.build_tx(net.chain_id, nonce, types_pb2.KvPut(key=b"s", value=b"1"))
        (res,) = c.submit([tx])
        assert res.code == 0, res.message
        assert c.wait_tx(tx_id, timeout=15).receipt.code == 0
    log = (x.directory / "node.log").read_text(errors="replace")
    assert "peer link replaced by a newer stream" in log
