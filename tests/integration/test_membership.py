"""Validator-set change on a running local BFT consortium of real processes: a fifth node
joins as an observer and catches up by block sync; an AddValidator governance tx makes it a
validator at a defined height (h + 2); it then carries the quorum when an original validator
is killed; a RemoveValidator takes one out again and that node stops voting."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from consortium_api.v1 import ledger_pb2, types_pb2
from consortium_node.client.errors import ClientError
from consortium_node.client.rpc import Client
from consortium_node.localnet import LocalNet, LocalNode, init_data_dir, parse_manifest

from tests.support.wait import wait_for

from .localnets import running

pytestmark = pytest.mark.integration


def _status(n: LocalNode) -> ledger_pb2.GetStatusResponse | None:
    try:
        with Client(n.endpoint, 2.0, tls=n.tls) as c:
            return c.status()
    except ClientError:
        return None


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNet]:
    doc = {
        "kind": "Consortium",
        "metadata": {"name": "members"},
        "spec": {
            "chainId": "members",
            "consensus": {"type": "bft"},
            "organizations": [{"name": "org1", "validators": 2}, {"name": "org2", "validators": 2}],
        },
    }
    init_data_dir(parse_manifest(doc), tmp_path / "net")
    with running(tmp_path / "net") as n:
        yield n


def test_join_as_observer_then_validator_then_removed(net: LocalNet) -> None:
    # A node of an existing organisation (its CA signs the newcomer's TLS certificate; a new
    # organisation joins first with AddOrganization: tests/integration/test_org_admission.py).
    newcomer = net.add_node("org2")
    newcomer.start()
    newcomer.wait_ready(time.monotonic() + 30)
    # Observer: catches up by block sync although nobody sends it consensus traffic.
    wait_for(
        lambda: (
            (s := _status(newcomer)) is not None
            and s.height >= max(x.height for n in net.nodes[:4] if (x := _status(n))) - 1
            and s.height >= 3
        ),
        30,
        "the observer to catch up",
    )
    height = net.governance(
        [types_pb2.AddValidator(node_id=bytes.fromhex(newcomer.node_id), organization="org2")]
    )
    effective = height + 2
    wait_for(
        lambda: (s := _status(net.nodes[0])) is not None and s.height >= effective + 2,
        30,
        "the change to take effect",
    )
    st = _status(net.nodes[0])
    assert st is not None
    assert bytes.fromhex(newcomer.node_id) in {v.node_id for v in st.validators}
    # 5 validators, quorum 4: with one original killed, the newcomer's votes are needed.
    victim = net.nodes[1]
    victim.stop(signal.SIGKILL)
    before = max(s.height for n in net.nodes if n is not victim and (s := _status(n)))
    wait_for(
        lambda: (
            max(s.height for n in net.nodes if n is not victim and (s := _status(n))) >= before + 3
        ),
        20,
        "progress with the newcomer in the quorum",
    )
    # Its commit certificates now include the newcomer's precommits.
    with net.client(0, 5.0) as c:
        tip = c.status().height
        signers = {s.signer for s in c.get_block(tip).certificate.signatures}
    assert bytes.fromhex(newcomer.node_id) in signers
    victim.start()
    victim.wait_ready(time.monotonic() + 30)
    # Remove it again; afterwards it signs nothing.
    h2 = net.governance([types_pb2.RemoveValidator(node_id=bytes.fromhex(newcomer.node_id))])
    wait_for(
        lambda: (s := _status(net.nodes[0])) is not None and s.height >= h2 + 5,
        30,
        "blocks after the removal",
    )
    with net.client(0, 5.0) as c:
        tip = c.status().height
        for h in range(h2 + 3, tip + 1):
            signers = {s.signer for s in c.get_block(h).certificate.signatures}
            assert bytes.fromhex(newcomer.node_id) not in signers, f"removed node signed {h}"
