"""An organisation's CA is rotated on a running local consortium (real processes, TLS on)
without downtime, by governance: SetOrganizationCA(old + new) -> every certificate of the
organisation reissued from the new CA (nodes reload them) -> SetOrganizationCA(new). Writes
commit at every step, every peer link comes back, and at the end the old CA's certificates
are refused while the new one's are accepted."""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from consortium_api.v1 import types_pb2
from consortium_node import pki
from consortium_node.client.discovery import ClientTLS
from consortium_node.client.keys import Signer
from consortium_node.client.rpc import Client
from consortium_node.localnet import (
    LocalNet,
    init_data_dir,
    issue_client_tls,
    issue_node_tls,
    load_ca,
    parse_manifest,
)

from tests.support.wait import wait_for

from .localnets import answers, gauge, running

pytestmark = pytest.mark.integration

MANIFEST = {
    "kind": "Consortium",
    "metadata": {"name": "rot"},
    "spec": {
        "chainId": "rot-chain",
        "consensus": {"type": "bft", "blockIntervalMs": 10, "tickMs": 5},
        "organizations": [{"name": "org1", "validators": 2}, {"name": "org2", "validators": 2}],
    },
}


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNet]:
    init_data_dir(parse_manifest(MANIFEST), tmp_path / "net", fsync=False)
    with running(tmp_path / "net") as n:
        yield n


def _links_up(net: LocalNet) -> bool:
    full = len(net.nodes) - 1
    return all(gauge(n, "consortium_peers_connected") == full for n in net.nodes)


def _client_tls(ca: pki.Issued, bundle: bytes) -> ClientTLS:
    now = dt.datetime.now(dt.UTC)
    c = pki.issue_client_cert(ca, "org1", "dave", now, pki.new_private_key(), 21)
    return ClientTLS(bundle, c.cert_pem, c.key_pem)


def _writes(net: LocalNet, signer: Signer, tls: ClientTLS, key: bytes) -> None:
    """A write through node 0 commits (on every node: `governance` waits for all of them)."""
    with Client(net.nodes[0].endpoint, 5.0, tls=tls) as c:
        nonce = c.next_nonce(signer.public_key)
        tx_id, tx = signer.build_tx(net.chain_id, nonce, types_pb2.KvPut(key=key, value=b"v"))
        (res,) = c.submit([tx])
        assert res.code == 0, res.message
        assert c.wait_tx(tx_id, 15).receipt.code == 0


def test_rotate_an_organisations_ca_without_downtime(net: LocalNet) -> None:
    old = load_ca(net.data_dir, "org1")
    org2 = load_ca(net.data_dir, "org2")
    new = pki.new_ca("org1", dt.datetime.now(dt.UTC), pki.new_private_key(), 99)
    writer = Signer.generate()
    net.vouch([writer.public_key])
    both = old.cert_pem + new.cert_pem
    old_client = _client_tls(old, both + org2.cert_pem)
    new_client = _client_tls(new, both + org2.cert_pem)
    _writes(net, writer, old_client, b"before")
    assert not any(answers(n.endpoint, new_client) for n in net.nodes)  # not trusted yet

    # 1. trust both CAs of org1 (clients first: they must accept org1 nodes on either)
    (net.data_dir / "tls" / "ca.pem").write_bytes(both + org2.cert_pem)
    net.governance([types_pb2.SetOrganizationCA(name="org1", ca_cert=both)])
    for n in net.nodes:
        wait_for(
            functools.partial(answers, n.endpoint, new_client), 10, f"{n.name} to trust the new CA"
        )
    _writes(net, writer, new_client, b"both-cas")

    # 2. reissue org1's node certificates from the new CA (45 days: tells them apart)
    ca_dir = net.data_dir / "ca" / "org1"
    (ca_dir / "ca.pem").write_bytes(new.cert_pem)
    (ca_dir / "ca.key").write_bytes(new.key_pem)
    org1 = [n for n in net.nodes if n.organization == "org1"]
    before = {
        n.name: gauge(n, r'consortium_cert_expiry_timestamp_seconds\{cert="node"\}') for n in org1
    }
    for n in org1:
        issue_node_tls(net.data_dir, n.directory, "org1", n.name, bytes.fromhex(n.node_id), days=45)
    issue_client_tls(net.data_dir, net.data_dir / "tls", "org1", "client", None)  # the admin's

    def reloaded() -> bool:
        return all(
            gauge(n, r'consortium_cert_expiry_timestamp_seconds\{cert="node"\}') < before[n.name]
            for n in org1
        )

    wait_for(reloaded, 20, "org1's nodes to reload certificates from the new CA")
    wait_for(lambda: _links_up(net), 20, "every peer link up again")
    _writes(net, writer, new_client, b"reissued")

    # 3. drop the old CA: its certificates are refused, the chain goes on
    net.governance([types_pb2.SetOrganizationCA(name="org1", ca_cert=new.cert_pem)])
    for n in net.nodes:

        def old_refused(endpoint: str = n.endpoint) -> bool:
            return not answers(endpoint, old_client)

        wait_for(old_refused, 10, f"{n.name} to drop the old CA")
    wait_for(lambda: _links_up(net), 20, "every peer link up with the new CA alone")
    _writes(net, writer, new_client, b"after")
    with Client(net.nodes[3].endpoint, 5.0, tls=new_client) as c:
        for k in (b"before", b"both-cas", b"reissued", b"after"):
            assert c.query_key(k).found, k


def test_a_validator_serving_another_organisations_certificate_gets_no_links(
    net: LocalNet,
) -> None:
    """Both ends check the organisation: a validator of org1 restarted with a certificate for
    its own node id but issued by org2's CA (a consortium CA, so the handshake chain is
    fine) is refused by the nodes it dials (they check the client certificate's issuer) and
    by the nodes that dial it (their channel trusts org1's CA alone for an org1 validator)."""
    org1 = [n for n in net.nodes if n.organization == "org1"]
    victim = max(org1, key=lambda n: n.node_id)  # dialled by every node with a smaller id
    dialled_by = sum(1 for n in net.nodes if n.node_id < victim.node_id)
    assert dialled_by >= 1
    victim.stop()
    issue_node_tls(
        net.data_dir, victim.directory, "org2", victim.name, bytes.fromhex(victim.node_id)
    )
    victim.start()
    victim.wait_ready(time.monotonic() + 30)
    with net.client(victim, 5.0) as c:
        start = c.status().height
    # an observation window: the others keep committing (and re-dialling with backoff),
    # the victim never gets a peer link
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert gauge(victim, "consortium_peers_connected") == 0
        time.sleep(0.1)
    with net.client(net.nodes[0] if net.nodes[0] is not victim else net.nodes[1], 5.0) as c:
        assert c.status().height > start  # the three others go on without it
