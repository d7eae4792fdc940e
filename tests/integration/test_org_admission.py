"""An organisation joins a running local consortium after genesis (real processes, TLS on,
permissioned): before its AddOrganization commits, nodes refuse its certificates; after it,
every node — without a restart — trusts its CA for client TLS, its users can be vouched for
and write, and its first node joins over mutual TLS, syncs as an observer and becomes a
validator that carries the chain."""

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
from consortium_node.crypto import Ed25519Key
from consortium_node.localnet import (
    LocalNet,
    init_data_dir,
    load_ca,
    new_org_ca,
    parse_manifest,
)

from tests.support.wait import wait_for

from .localnets import answers, running

pytestmark = pytest.mark.integration

MANIFEST = {
    "kind": "Consortium",
    "metadata": {"name": "orgs"},
    "spec": {
        "chainId": "orgs-chain",
        "consensus": {"type": "bft", "blockIntervalMs": 10, "tickMs": 5},
        "organizations": [{"name": "org1", "validators": 2}, {"name": "org2", "validators": 2}],
    },
}


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNet]:
    init_data_dir(parse_manifest(MANIFEST), tmp_path / "net", fsync=False)
    with running(tmp_path / "net") as n:
        yield n


def _org3_client(net: LocalNet) -> ClientTLS:
    ca = load_ca(net.data_dir, "org3")
    now = dt.datetime.now(dt.UTC)
    issued = pki.issue_client_cert(ca, "org3", "carol", now, pki.new_private_key(), 5)
    bundle = (net.data_dir / "tls" / "ca.pem").read_bytes()
    return ClientTLS(bundle, issued.cert_pem, issued.key_pem)


def test_an_organisation_joins_after_genesis(net: LocalNet) -> None:
    new_org_ca(net.data_dir, "org3")  # the CA exists, the chain does not know it yet
    carol_tls = _org3_client(net)
    assert not any(answers(n.endpoint, carol_tls) for n in net.nodes)
    with net.client(0) as c:
        assert sorted(c.status().organizations) == ["org1", "org2"]

    net.admit_organization("org3")
    # every node trusts org3's CA from the block that admitted it, without a restart
    for n in net.nodes:
        wait_for(functools.partial(answers, n.endpoint, carol_tls), 10, f"{n.name} to trust org3")
        with Client(n.endpoint, 5.0, tls=carol_tls) as c:
            assert sorted(c.status().organizations) == ["org1", "org2", "org3"]

    # org3 vouches for carol's key; she writes through org3's certificate
    carol = Signer.generate()
    net.vouch([carol.public_key], "org3")
    with Client(net.nodes[0].endpoint, 5.0, tls=carol_tls) as c:
        tx_id, tx = carol.build_tx(
            net.chain_id, 0, types_pb2.KvPut(key=b"org3/hello", value=b"carol")
        )
        (res,) = c.submit([tx])
        assert res.code == 0, res.message
        assert c.wait_tx(tx_id, 15).receipt.code == 0

    # org3's first node: certificate from org3's CA, syncs, becomes a validator
    newcomer = net.add_node("org3")
    newcomer.start()
    newcomer.wait_ready(time.monotonic() + 30)
    net.governance(
        [types_pb2.AddValidator(node_id=bytes.fromhex(newcomer.node_id), organization="org3")]
    )

    def validator_and_synced() -> bool:
        with net.client(newcomer, 5.0) as c:
            st = c.status()
        ids = {bytes(v.node_id).hex(): v.organization for v in st.validators}
        return ids.get(newcomer.node_id) == "org3" and st.role != "observer"

    wait_for(validator_and_synced, 30, "org3-0 to be an org3 validator")
    # the chain commits with org3 in the set, and org3's node has the writes
    net.vouch([Ed25519Key.generate().public], "org3")
    with net.client(newcomer, 5.0) as c:
        got = c.query_key(b"org3/hello")
        assert got.found and got.value == b"carol"


def test_admission_is_governance_only(net: LocalNet) -> None:
    """Only an admin may admit an organisation, and only once."""
    stranger = Signer.generate()
    net.vouch([stranger.public_key])
    ca = new_org_ca(net.data_dir, "org9")
    with net.client(0) as c:
        _, tx = stranger.build_tx(
            net.chain_id, 0, types_pb2.AddOrganization(name="org9", ca_cert=ca)
        )
        (res,) = c.submit([tx])
        assert res.code != 0 and "admin" in res.message
    net.admit_organization("org9")
    with pytest.raises(RuntimeError, match="already a member organisation"):
        net.admit_organization("org9")
