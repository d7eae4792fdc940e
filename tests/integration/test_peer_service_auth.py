"""Issue 13 defect 7 (and 9 on the peer port), on a real TLS consortium: the Peer service
(`SyncState`: the whole world state; `SyncBlocks`) serves configured peers' node certificates
only. A member user's client certificate chains to a consortium CA too, so the TLS handshake
lets it in: the service itself must refuse it, as `Exchange` always did."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from consortium_api.v1 import peer_pb2, peer_pb2_grpc
from consortium_node import pki
from consortium_node.config import NodeConfig
from consortium_node.localnet import LocalNet, parse_manifest
from consortium_node.localnet import init_data_dir as init_net

from tests.support.wait import wait_for

from .localnets import running

pytestmark = pytest.mark.integration

MANIFEST = {
    "apiVersion": "consortium.dev/v1alpha1",
    "kind": "Consortium",
    "metadata": {"name": "peerauth"},
    "spec": {
        "chainId": "peerauth-chain",
        "consensus": {"type": "raft"},
        "organizations": [{"name": "org1", "validators": 2}, {"name": "org2", "validators": 1}],
    },
}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    d = tmp_path_factory.mktemp("peerauth") / "net"
    init_net(parse_manifest(MANIFEST), d, fsync=False)
    with running(d) as n:
        yield n


def _peer_stub(net: LocalNet, target: int, cert_pem: bytes, key_pem: bytes) -> grpc.Channel:
    ca = (net.data_dir / "tls" / "ca.pem").read_bytes()
    creds = grpc.ssl_channel_credentials(ca, key_pem, cert_pem)
    cfg = yaml.safe_load((net.nodes[target].directory / "config.yaml").read_text())
    server_id = bytes.fromhex(net.nodes[target].node_id)
    opts = [("grpc.ssl_target_name_override", pki.node_dns_name(server_id))]
    return grpc.secure_channel(str(cfg["peer_listen"]), creds, options=opts)


def _user_cert(net: LocalNet) -> tuple[bytes, bytes]:
    tls = net.tls
    assert tls is not None and tls.cert_pem is not None and tls.key_pem is not None
    return tls.cert_pem, tls.key_pem


def _node_cert(net: LocalNet, i: int) -> tuple[bytes, bytes]:
    cfg = NodeConfig.load(net.nodes[i].directory / "config.yaml")
    assert cfg.tls is not None
    return Path(cfg.tls.cert_file).read_bytes(), Path(cfg.tls.key_file).read_bytes()


def _height(net: LocalNet) -> int:
    with net.client(0) as c:
        return int(c.status().height)


def test_user_certificate_cannot_read_the_state_snapshot(net: LocalNet) -> None:
    with _peer_stub(net, 0, *_user_cert(net)) as ch, pytest.raises(grpc.RpcError) as e:
        list(peer_pb2_grpc.PeerStub(ch).SyncState(peer_pb2.SyncStateRequest(), timeout=10))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value.details()
    assert "no node certificate" in (e.value.details() or "")


def test_user_certificate_cannot_sync_blocks(net: LocalNet) -> None:
    wait_for(lambda: _height(net) >= 1, 30, "a first block")
    with _peer_stub(net, 0, *_user_cert(net)) as ch, pytest.raises(grpc.RpcError) as e:
        req = peer_pb2.SyncBlocksRequest(from_height=1, max_blocks=1)
        list(peer_pb2_grpc.PeerStub(ch).SyncBlocks(req, timeout=10))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value.details()


def test_a_peer_node_certificate_still_syncs(net: LocalNet) -> None:
    wait_for(lambda: _height(net) >= 1, 30, "a first block")
    with _peer_stub(net, 0, *_node_cert(net, 1)) as ch:
        req = peer_pb2.SyncBlocksRequest(from_height=1, max_blocks=1)
        blocks = list(peer_pb2_grpc.PeerStub(ch).SyncBlocks(req, timeout=10))
        assert len(blocks) == 1
        chunks = peer_pb2_grpc.PeerStub(ch).SyncState(peer_pb2.SyncStateRequest(), timeout=10)
        assert next(iter(chunks)).height >= 0


def test_undecodable_peer_request_is_invalid_argument(net: LocalNet) -> None:
    with _peer_stub(net, 0, *_node_cert(net, 1)) as ch:
        raw = ch.unary_stream(
            "/consortium.v1.Peer/SyncBlocks", request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.RpcError) as e:
            list(raw(b"\xff\xff\xff", timeout=10))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert "Traceback" not in (net.nodes[0].directory / "node.log").read_text(errors="replace")
