"""Transport security on a real local consortium (`consortium up`'s layout: TLS on by default,
permissioned): who may connect as a peer or a client, expired and foreign certificates,
permissioned senders, certificate rotation under load, and no secret material in logs."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
import yaml
from consortium_api.v1 import peer_pb2, peer_pb2_grpc, types_pb2
from consortium_node import pki
from consortium_node.client.discovery import ClientTLS
from consortium_node.client.errors import ClientError
from consortium_node.client.keys import Signer
from consortium_node.client.rpc import Client
from consortium_node.crypto import Ed25519Key
from consortium_node.localnet import (
    LocalNet,
    issue_node_tls,
    load_ca,
    parse_manifest,
)
from consortium_node.localnet import (
    init_data_dir as init_net,
)
from consortium_node.transport.peers import hello_bytes

from .localnets import gauge, running

pytestmark = pytest.mark.integration

MANIFEST = {
    "apiVersion": "consortium.dev/v1alpha1",
    "kind": "Consortium",
    "metadata": {"name": "tls"},
    "spec": {
        "chainId": "tls-chain",
        "consensus": {"type": "bft", "blockIntervalMs": 10, "tickMs": 5},
        "organizations": [{"name": "org1", "validators": 2}, {"name": "org2", "validators": 2}],
    },
}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    d = tmp_path_factory.mktemp("tls") / "net"
    init_net(parse_manifest(MANIFEST), d, fsync=False)
    with running(d) as n:
        yield n


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stranger_ca() -> pki.Issued:
    return pki.new_ca("org1", _now(), pki.new_private_key(), 7)  # same name, other key


def _tls_with(net: LocalNet, issued: pki.Issued | None) -> ClientTLS:
    ca = (net.data_dir / "tls" / "ca.pem").read_bytes()
    if issued is None:
        return ClientTLS(ca)
    return ClientTLS(ca, issued.cert_pem, issued.key_pem)


def _put(c: Client, signer: Signer, chain_id: str, key: bytes) -> tuple[bytes, int, str]:
    tx_id, tx = signer.build_tx(
        chain_id, c.next_nonce(signer.public_key), types_pb2.KvPut(key=key, value=b"v")
    )
    (res,) = c.submit([tx])
    return tx_id, res.code, res.message


def test_member_client_writes_and_reads(net: LocalNet) -> None:
    client = Signer.load(net.data_dir / "keys" / "client.json")
    with net.client(0, 10.0) as c:
        tx_id, code, msg = _put(c, client, net.chain_id, b"tls/ok")
        assert code == 0, msg
        assert c.wait_tx(tx_id, timeout=20).receipt.code == 0
    meta = json.loads((net.nodes[0].directory / "ready.json").read_text())
    assert meta["tls"] is True


def test_plaintext_client_is_refused(net: LocalNet) -> None:
    with Client(net.nodes[0].endpoint, 3.0) as c, pytest.raises(ClientError) as e:
        c.status()
    assert "--tls-dir" in str(e.value)  # the message says what to do


def test_client_without_certificate_is_refused(net: LocalNet) -> None:
    with Client(net.nodes[0].endpoint, 3.0, tls=_tls_with(net, None)) as c:
        with pytest.raises(ClientError) as e:
            c.status()
        assert "may require a client certificate" in str(e.value)


def test_stranger_with_self_signed_certificate_cannot_submit(net: LocalNet) -> None:
    stranger_ca = _stranger_ca()
    cert = pki.issue_client_cert(stranger_ca, "org1", "mallory", _now(), pki.new_private_key(), 8)
    signer = Signer.load(net.data_dir / "keys" / "client.json")  # even with a member's key
    _, tx = signer.build_tx(net.chain_id, 0, types_pb2.KvPut(key=b"x", value=b"y"))
    with Client(net.nodes[0].endpoint, 3.0, tls=_tls_with(net, cert)) as c:
        with pytest.raises(ClientError):
            c.submit([tx])
        with pytest.raises(ClientError):
            c.status()


def test_expired_certificate_is_refused(net: LocalNet) -> None:
    long_ago = _now() - dt.timedelta(days=30)
    expired = pki.issue_client_cert(
        load_ca(net.data_dir, "org1"), "org1", "late", long_ago, pki.new_private_key(), 9, days=1
    )
    assert pki.not_after(expired.cert_pem) < _now()
    with (
        Client(net.nodes[0].endpoint, 3.0, tls=_tls_with(net, expired)) as c,
        pytest.raises(ClientError),
    ):
        c.status()
    fresh = pki.issue_client_cert(
        load_ca(net.data_dir, "org1"), "org1", "fresh", _now(), pki.new_private_key(), 10
    )
    with Client(net.nodes[0].endpoint, 3.0, tls=_tls_with(net, fresh)) as c:
        assert c.status().chain_id == net.chain_id


def test_permissioned_chain_rejects_an_unknown_sender(net: LocalNet) -> None:
    unknown = Signer.generate()
    with net.client(1, 10.0) as c:
        _, code, msg = _put(c, unknown, net.chain_id, b"tls/unknown")
        assert code == grpc.StatusCode.PERMISSION_DENIED.value[0], msg
        assert "not vouched" in msg
    net.vouch([unknown.public_key], "org2")
    with net.client(1, 10.0) as c:
        tx_id, code, msg = _put(c, unknown, net.chain_id, b"tls/vouched")
        assert code == 0, msg
        assert c.wait_tx(tx_id, timeout=20).receipt.code == 0


def _peer_port(net: LocalNet, i: int) -> str:
    cfg = yaml.safe_load((net.nodes[i].directory / "config.yaml").read_text())
    return str(cfg["peer_listen"])


def _exchange(
    net: LocalNet, target: int, cert: pki.Issued, claim: Ed25519Key, server_id: bytes
) -> grpc.RpcError | None:
    """Opens a peer Exchange to node `target` with TLS certificate `cert` and a hello signed
    by `claim`; returns the error the node answered with (None if it accepted)."""
    ca = (net.data_dir / "tls" / "ca.pem").read_bytes()
    creds = grpc.ssl_channel_credentials(ca, cert.key_pem, cert.cert_pem)
    genesis = (net.data_dir / "genesis.json").read_bytes()
    import hashlib

    gh = hashlib.sha256(genesis).digest()
    t = int(time.time() * 1000)
    hello = peer_pb2.PeerHello(
        node_id=claim.public,
        peer_id=server_id,
        chain_id=net.chain_id,
        genesis_hash=gh,
        time_ms=t,
        signature=claim.sign(hello_bytes(net.chain_id, gh, claim.public, server_id, t)),
    )
    opts = [("grpc.ssl_target_name_override", pki.node_dns_name(server_id))]
    with grpc.secure_channel(_peer_port(net, target), creds, options=opts) as ch:
        stub = peer_pb2_grpc.PeerStub(ch)
        try:
            replies = stub.Exchange(iter([peer_pb2.PeerBatch(hello=hello)]), timeout=5)
            first = next(iter(replies))
            assert first.HasField("hello")
            return None
        except grpc.RpcError as e:
            return e


def test_stranger_cannot_join_as_peer(net: LocalNet) -> None:
    server_id = bytes.fromhex(net.nodes[0].node_id)
    stranger_key = Ed25519Key.generate()
    cert = pki.issue_node_cert(
        _stranger_ca(), "org1", "mallory", stranger_key.public, _now(), pki.new_private_key(), 11
    )
    err = _exchange(net, 0, cert, stranger_key, server_id)
    assert err is not None and err.code() == grpc.StatusCode.UNAVAILABLE  # handshake refused


def test_peer_whose_node_id_does_not_match_its_certificate_is_refused(net: LocalNet) -> None:
    # A member organisation's valid certificate, but for another node id than the hello's
    # (here: org1-1's real Ed25519 key, so the hello itself verifies).
    server_id = bytes.fromhex(net.nodes[0].node_id)
    victim = Ed25519Key.load(net.nodes[1].directory / "key.json")
    cert = pki.issue_node_cert(
        load_ca(net.data_dir, "org1"),
        "org1",
        "impostor",
        Ed25519Key.generate().public,
        _now(),
        pki.new_private_key(),
        12,
    )
    err = _exchange(net, 0, cert, victim, server_id)
    assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "certificate is for node" in (err.details() or "")


def test_another_organisations_ca_cannot_speak_for_a_validator(net: LocalNet) -> None:
    # org2's CA is a consortium CA (the handshake passes) and the certificate binds the right
    # node id, but the chain registered that validator with org1: refused.
    server_id = bytes.fromhex(net.nodes[0].node_id)
    victim = Ed25519Key.load(net.nodes[1].directory / "key.json")  # org1-1
    assert net.nodes[1].organization == "org1"
    cert = pki.issue_node_cert(
        load_ca(net.data_dir, "org2"),
        "org1",  # the subject may claim anything: the issuer decides
        "impostor",
        victim.public,
        _now(),
        pki.new_private_key(),
        13,
    )
    err = _exchange(net, 0, cert, victim, server_id)
    assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "issued by the CA of org2, but the validator belongs to org1" in (err.details() or "")


def _metric(net: LocalNet, i: int, cert: str) -> float:
    return gauge(
        net.nodes[i], rf'consortium_cert_expiry_timestamp_seconds\{{cert="{re.escape(cert)}"\}}'
    )


def _peers_connected(net: LocalNet, i: int) -> int:
    return int(gauge(net.nodes[i], "consortium_peers_connected"))


def test_rotation_under_load_loses_no_transaction(net: LocalNet) -> None:
    before = {i: _metric(net, i, "node") for i in range(len(net.nodes))}
    assert all(v > time.time() for v in before.values())
    assert _metric(net, 0, "ca/org2") > time.time()
    signers = [Signer.generate() for _ in range(3)]
    net.vouch([s.public_key for s in signers])
    acked: dict[bytes, int] = {}
    stop = threading.Event()
    errors: list[str] = []

    def load(idx: int, s: Signer) -> None:
        nonce = 0
        while not stop.is_set():
            try:
                with net.client(idx % len(net.nodes), 5.0) as c:
                    nonce = c.next_nonce(s.public_key)
                    batch = [
                        s.build_tx(
                            net.chain_id, nonce + k, types_pb2.KvPut(key=b"r%d" % k, value=b"v")
                        )
                        for k in range(10)
                    ]
                    res = c.submit([t for _, t in batch])
                    ok = [tid for (tid, _), r in zip(batch, res, strict=True) if r.code == 0]
                    if ok:
                        c.wait_tx(ok[-1], timeout=15)
                        for tid in ok:
                            got = c.get_tx(tid)
                            if got is not None:
                                acked[tid] = got.receipt.height
            except ClientError as e:
                errors.append(str(e))
                time.sleep(0.1)

    threads = [threading.Thread(target=load, args=(i, s)) for i, s in enumerate(signers)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        # reissue every node certificate with a different lifetime (as the operator would)
        for n in net.nodes:
            issue_node_tls(net.data_dir, n.directory, n.organization, n.name,
                           bytes.fromhex(n.node_id), days=45)  # fmt: skip
        deadline = time.monotonic() + 30
        # Polls the nodes' metrics until every node reports the reloaded certificate.
        while any(_metric(net, i, "node") == before[i] for i in range(len(net.nodes))):
            assert time.monotonic() < deadline, "nodes did not reload their certificates"
            time.sleep(0.2)
        time.sleep(1.5)  # keep the load going over the new certificates
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    after = {i: _metric(net, i, "node") for i in range(len(net.nodes))}
    assert all(after[i] < before[i] for i in after)  # 45-day certs replaced 90-day ones
    assert len(acked) >= 30, f"load made no progress ({len(acked)} acked; errors {errors[:3]})"
    top = max(acked.values())
    deadline = time.monotonic() + 30
    with net.client(2, 10.0) as c:
        # Polls until this node has the blocks the others acknowledged (it may trail a block).
        while c.status().height < top:
            assert time.monotonic() < deadline, "node 2 does not catch up"
            time.sleep(0.1)
        for tid, h in acked.items():
            got = c.get_tx(tid)
            assert got is not None and got.receipt.height == h, f"lost {tid.hex()}"
    # ... and new connections see the new certificate; every peer link is up again (the
    # dialling side of a link re-creates its channel with the new certificate)
    with net.client(3, 5.0) as c:
        assert c.status().height > 0
    full = len(net.nodes) - 1
    deadline = time.monotonic() + 15
    # Polls the nodes' metrics until every node has all its peer links back.
    while any(_peers_connected(net, i) != full for i in range(len(net.nodes))):
        assert time.monotonic() < deadline, [
            _peers_connected(net, i) for i in range(len(net.nodes))
        ]
        time.sleep(0.2)


_PEM_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def test_no_secret_material_in_logs(net: LocalNet) -> None:
    secrets: list[bytes] = []
    for f in [*net.data_dir.glob("nodes/*/key.json"), *net.data_dir.glob("keys/*.json")]:
        secrets.append(json.loads(f.read_text())["private_key"].encode())
    for f in [*net.data_dir.glob("**/*.key")]:
        raw = f.read_bytes()
        if raw.startswith(b"-----BEGIN"):
            secrets.append(raw.split(b"\n")[1])  # first base64 line of the PEM body
        else:  # raw key bytes (the contract module cache's HMAC key), as stored and as hex
            secrets += [raw, raw.hex().encode()]
    logs = [n.directory / "node.log" for n in net.nodes]
    cfgs = [n.directory / "config.yaml" for n in net.nodes]
    for path in [*logs, *cfgs, net.data_dir / "genesis.json", net.data_dir / "endpoints.json"]:
        text = path.read_bytes()
        assert not _PEM_KEY.search(text), f"PEM private key in {path}"
        for s in secrets:
            assert s not in text, f"secret material in {path}"
    for p in net.data_dir.glob("**/*.key"):
        assert p.stat().st_mode & 0o077 == 0, f"{p} is readable by others"


def test_public_reads_and_plaintext_health_are_opt_in(net: LocalNet) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    node = net.nodes[3]
    node.stop()
    path = node.directory / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["public_listen"] = "127.0.0.1:0"
    cfg["health_listen"] = "127.0.0.1:0"
    path.write_text(yaml.safe_dump(cfg))
    node.start()
    node.wait_ready(time.monotonic() + 30)
    ready = json.loads((node.directory / "ready.json").read_text())
    public = f"127.0.0.1:{ready['public_port']}"
    # read-only API over server TLS, no client certificate
    with Client(public, 5.0, tls=_tls_with(net, None)) as c:
        assert c.status().chain_id == net.chain_id
        signer = Signer.load(net.data_dir / "keys" / "client.json")
        _, tx = signer.build_tx(net.chain_id, 10**6, types_pb2.KvPut(key=b"p", value=b"v"))
        with pytest.raises(ClientError) as e:
            c.submit([tx])
        assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
    # ... and a member's certificate does not make the public port writable either
    with Client(public, 5.0, tls=net.tls) as c, pytest.raises(ClientError):
        c.submit([tx])
    # kubelet-style plaintext health probe
    with grpc.insecure_channel(f"127.0.0.1:{ready['health_port']}") as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
