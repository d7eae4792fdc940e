"""WebAssembly contracts on a local consortium (issue 16): three organisations under
governance by organisations, real node processes with TLS, real gRPC.

One chain walks the whole path: a deploy needs a second organisation's vote; every "Bad
input" item is a clean failed transaction or a refused deploy (invalid wasm; imports outside
the ABI; an infinite loop; unbounded recursion; a memory bomb; a huge result and event;
out-of-bounds host pointers; deploy by a non-member; invoke of an unknown contract or
method; an upgrade that was not approved); queries never write; events stream by contract
and topic; and at the end every node is up and all report the same state root."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from consortium_api.v1 import types_pb2
from consortium_node.cli import app
from consortium_node.client import contracts
from consortium_node.client.errors import ClientError
from consortium_node.client.keys import Signer
from consortium_node.client.rpc import Client
from consortium_node.client.tx import Payload
from consortium_node.localnet import LocalNet, init_data_dir, parse_manifest
from typer.testing import CliRunner

from tests.support import wat
from tests.support.wait import wait_for

from .localnets import running

pytestmark = pytest.mark.integration

CHAIN = "wasm-chain"
MANIFEST = {
    "kind": "Consortium",
    "metadata": {"name": "wasm"},
    "spec": {
        "chainId": CHAIN,
        "consensus": {"type": "raft", "blockIntervalMs": 10, "tickMs": 10},
        "organizations": [
            {"name": "org1", "validators": 1},
            {"name": "org2", "validators": 1},
            {"name": "org3", "validators": 1},
        ],
    },
}
FAILED = types_pb2.TX_CODE_CONTRACT_FAILED


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    d = tmp_path_factory.mktemp("wasm") / "net"
    init_data_dir(parse_manifest(MANIFEST), d, fsync=False, org_governance=True)
    with running(d) as n:
        yield n


def admin(net: LocalNet, org: str) -> Signer:
    return Signer.from_json((net.data_dir / "keys" / f"admin-{org}.json").read_text())


# The highest height at which a transaction of this module was seen committed. Tests share
# one chain and use different nodes; a node that trails that height would hand out a nonce
# an earlier test already used (ALREADY_EXISTS instead of the refusal a test expects).
_confirmed = [0]


def _catch_up(c: Client) -> Client:
    """c, once its node holds every block a transaction of this module was confirmed in (a
    read or a nonce from a trailing node would miss an earlier test's deploy or tx)."""
    wait_for(lambda: c.status().height >= _confirmed[0], within=30, what="node catches up")
    return c


@contextmanager
def client(net: LocalNet, i: int) -> Iterator[Client]:
    """A client of node i that has caught up (see _catch_up)."""
    with net.client(i) as c:
        yield _catch_up(c)


def _nonce(c: Client, who: Signer) -> int:
    return _catch_up(c).next_nonce(who.public_key)


def send(c: Client, who: Signer, payload: Payload) -> types_pb2.Receipt:
    """Sign, submit, wait for the commit; the receipt (ClientError if refused at admission)."""
    tx_id, tx = who.build_tx(CHAIN, _nonce(c, who), payload)
    (res,) = c.submit([tx])
    if res.code:
        raise ClientError(res.message, _status(res.code))
    got = c.wait_tx(tx_id, timeout=30)
    _confirmed[0] = max(_confirmed[0], got.header.height)
    return got.receipt


def _status(code: int) -> grpc.StatusCode:
    return next(s for s in grpc.StatusCode if s.value[0] == code)


def refused(c: Client, who: Signer, payload: Payload) -> tuple[grpc.StatusCode, str]:
    _, tx = who.build_tx(CHAIN, _nonce(c, who), payload)
    (res,) = c.submit([tx])
    assert res.code != 0, "expected a refusal at admission"
    return _status(res.code), res.message


def deploy(
    net: LocalNet, c: Client, name: str, code: bytes, init: bytes = b""
) -> types_pb2.Proposal:
    r = send(c, admin(net, "org1"), contracts.deploy_proposal(name, code, init, ttl=200))
    assert r.code == 0 and r.proposal.state == types_pb2.PROPOSAL_STATE_PENDING, r
    v = send(c, admin(net, "org2"), types_pb2.Vote(proposal=r.proposal.id, approve=True))
    assert v.code == 0, v
    return c.get_proposal(r.proposal.id)


def u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


@pytest.fixture(scope="module")
def deployed(net: LocalNet) -> LocalNet:
    with client(net, 0) as c:
        p = deploy(net, c, "counter", wat.counter(), u64(100))
        assert p.state == types_pb2.PROPOSAL_STATE_EXECUTED, p
        assert deploy(net, c, "bad", wat.bad()).state == types_pb2.PROPOSAL_STATE_EXECUTED
    return net


def test_deploy_invoke_query_events(deployed: LocalNet) -> None:
    net = deployed
    me = admin(net, "org3")
    with client(net, 1) as c:
        info = c.get_contract("counter")
        assert info.version == 1 and "incr" in info.methods and "init" not in info.methods
        assert [x.name for x in c.list_contracts().contracts] == ["bad", "counter"]
        r1 = send(c, me, contracts.invoke("counter", "incr"))
        r2 = send(c, me, contracts.invoke("counter", "incr"))
        assert (r1.code, r2.code) == (0, 0)
        assert r2.contract.ok and r2.contract.result == u64(102)
        assert r2.contract.fuel_used == 4068  # golden: the same figure as the unit test
        q = c.query_contract("counter", "incr")  # a query's writes are discarded
        assert q.receipt.ok and q.receipt.result == u64(103)
        assert c.query_contract("counter", "get").receipt.result == u64(102)
        ticks = [e.data for e in c.stream_events("counter", b"tick")]
        assert ticks[-2:] == [u64(101), u64(102)]
        assert all(
            e.contract == "counter" and e.method == "incr" for e in c.stream_events("counter")
        )
        assert list(c.stream_events("counter", b"no-such-topic")) == []


@pytest.mark.parametrize(
    ("method", "reason"),
    [
        ("spin", "out of fuel"),
        ("recurse", "stack overflow"),
        ("membomb", "trap: unreachable"),
        ("huge_result", "set_result: result exceeds"),
        ("huge_event", "emit: event exceeds"),
        ("oob_put", "put: pointer out of bounds"),
        ("oob_get", "get: pointer out of bounds"),
        ("write_then_spin", "out of fuel"),
    ],
)
def test_bad_contract_calls_fail_cleanly(deployed: LocalNet, method: str, reason: str) -> None:
    with client(deployed, 2) as c:
        r = send(c, admin(deployed, "org1"), contracts.invoke("bad", method, fuel_limit=2_000_000))
        assert r.code == FAILED and r.message.startswith(reason), r
        assert not r.contract.ok and r.contract.fuel_used <= 2_000_000
        assert not r.contract.events and not r.contract.result
        assert c.status().height > 0  # the node is up


def test_refused_deploys_and_invokes(deployed: LocalNet) -> None:
    net = deployed
    with client(net, 0) as c:
        for code in (b"\x00asm junk", wat.wasm(wat.WASI_WAT)):
            status, msg = refused(c, admin(net, "org1"), contracts.deploy_proposal("x", code))
            assert status == grpc.StatusCode.INVALID_ARGUMENT
            assert "not a valid WebAssembly" in msg or "outside the contract ABI" in msg
        stranger = Signer.generate()
        status, _ = refused(c, stranger, contracts.deploy_proposal("x", wat.counter()))
        assert status == grpc.StatusCode.PERMISSION_DENIED
        status, msg = refused(c, admin(net, "org1"), contracts.invoke("nope", "incr"))
        assert (status, msg) == (grpc.StatusCode.INVALID_ARGUMENT, "unknown contract 'nope'")
        status, msg = refused(c, admin(net, "org1"), contracts.invoke("counter", "nope"))
        assert "has no method 'nope'" in msg
        with pytest.raises(ClientError, match="unknown contract 'nope'"):
            c.query_contract("nope", "get")
        with pytest.raises(ClientError, match="has no method"):
            c.query_contract("counter", "nope")
        with pytest.raises(ClientError, match="unknown contract"):
            c.get_contract("nope")


def test_an_unapproved_upgrade_changes_nothing(deployed: LocalNet) -> None:
    net = deployed
    with client(net, 0) as c:
        before = c.get_contract("counter")
        r = send(c, admin(net, "org1"), contracts.upgrade_proposal("counter", wat.counter_v2()))
        assert r.proposal.state == types_pb2.PROPOSAL_STATE_PENDING
        value = c.query_contract("counter", "get").receipt.result
        after_incr = send(c, admin(net, "org1"), contracts.invoke("counter", "incr"))
        assert after_incr.contract.result == u64(int.from_bytes(value, "little") + 1)
        assert c.get_contract("counter") == before


def test_a_backup_of_a_chain_with_contracts_replays(deployed: LocalNet, tmp_path: Path) -> None:
    """`backup verify --replay` re-executes every contract call (backup/replay.py gives
    execute_block an engine) and reaches the backup's state root."""
    tar = tmp_path / "wasm.tar"
    cfg = deployed.nodes[1].directory / "config.yaml"
    r = CliRunner().invoke(app, ["backup", "create", str(tar), "-c", str(cfg)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["backup", "verify", str(tar), "--replay"])
    assert r.exit_code == 0 and r.stdout.startswith("ok: "), r.output


def test_all_nodes_agree(deployed: LocalNet) -> None:
    """Runs last in this module: every node up, at one height, with one state root."""
    net = deployed

    def same() -> tuple[int, bytes] | None:
        seen = set()
        for i in range(len(net.nodes)):
            with net.client(i) as c:
                s = c.status()
            seen.add((s.height, s.state_root))
        return next(iter(seen)) if len(seen) == 1 else None

    height, root = wait_for(
        same, 30, "all nodes at one height with one state root", retry_on=(ClientError,)
    )
    assert height > 0 and len(root) == 32
