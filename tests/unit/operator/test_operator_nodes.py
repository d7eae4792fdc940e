"""nodes.py against an in-process fake Ledger gRPC service: statuses of answering and silent
pods (with their peer links), a governance transaction signed with the admin key, submitted, and waited for, and the
operator's mutual TLS (its client certificate, the node certificate checked against the pod's
DNS name while dialling the pod IP)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from consortium_api.v1 import ledger_pb2, ledger_pb2_grpc, types_pb2
from consortium_node.client.tx import tx_id_of
from consortium_node.provision.pki import ClientCert, NodeCert
from consortium_operator import nodes, pki, plan
from consortium_operator.model import Names, PeerLinkView, PodState
from consortium_operator.settings import Settings
from nacl.signing import VerifyKey

pytestmark = pytest.mark.unit

N = Names("c")


class FakeNode(ledger_pb2_grpc.LedgerServicer):
    """Just enough of a node: status, nonces, governance txs applied at once by the admin."""

    # governance queries are not faked: the base answers UNIMPLEMENTED, as for any fake gap
    ListProposals = ledger_pb2_grpc.LedgerServicer.ListProposals
    GetProposal = ledger_pb2_grpc.LedgerServicer.GetProposal
    GetGovernance = ledger_pb2_grpc.LedgerServicer.GetGovernance
    QueryContract = ledger_pb2_grpc.LedgerServicer.QueryContract
    ListContracts = ledger_pb2_grpc.LedgerServicer.ListContracts
    GetContract = ledger_pb2_grpc.LedgerServicer.GetContract
    StreamEvents = ledger_pb2_grpc.LedgerServicer.StreamEvents
    ExportBackup = ledger_pb2_grpc.LedgerServicer.ExportBackup

    def __init__(self, admin: bytes) -> None:
        self.admin = admin
        self.lock = threading.Lock()
        self.validators: dict[bytes, str] = {b"\x01" * 32: "a"}
        self.nonce = 0
        self.receipts: dict[bytes, types_pb2.Receipt] = {}
        self.height = 5

    def GetStatus(self, request: Any, context: Any) -> ledger_pb2.GetStatusResponse:
        with self.lock:
            return ledger_pb2.GetStatusResponse(
                chain_id="test",
                height=self.height,
                role="leader",
                leader=b"\x01" * 32,
                sync_state="synced",
                validators=[
                    types_pb2.Validator(node_id=k, organization=o)
                    for k, o in self.validators.items()
                ],
                peers=[
                    ledger_pb2.PeerLink(node_id=b"\x02" * 32, address="b:1", connected=True),
                    ledger_pb2.PeerLink(
                        node_id=b"\x03" * 32,
                        address="c:1",
                        error="UNAVAILABLE: x",
                        since_seconds=31.5,
                    ),
                ],
            )

    def QueryState(self, request: Any, context: Any) -> ledger_pb2.QueryStateResponse:
        return ledger_pb2.QueryStateResponse(amount=self.nonce, height=self.height)

    def SubmitBatch(self, request: Any, context: Any) -> ledger_pb2.SubmitBatchResponse:
        results = []
        for tx in request.txs:
            tx_id = tx_id_of(tx.body)
            body = types_pb2.TxBody.FromString(tx.body)
            VerifyKey(body.sender).verify(tx.body, tx.signature)
            with self.lock:
                if tx_id in self.receipts:
                    results.append(ledger_pb2.TxResult(tx_id=tx_id, code=6, message="known"))
                    continue
                if body.sender != self.admin or body.nonce != self.nonce or body.chain_id != "test":
                    results.append(ledger_pb2.TxResult(tx_id=tx_id, code=3, message="refused"))
                    continue
                self.nonce += 1
                kind = body.WhichOneof("payload")
                if kind == "add_validator":
                    self.validators[body.add_validator.node_id] = body.add_validator.organization
                elif kind == "remove_validator":
                    self.validators.pop(body.remove_validator.node_id, None)
                self.height += 1
                self.receipts[tx_id] = types_pb2.Receipt(tx_id=tx_id, height=self.height)
            results.append(ledger_pb2.TxResult(tx_id=tx_id, code=0))
        return ledger_pb2.SubmitBatchResponse(results=results)

    def WaitTx(self, request: Any, context: Any) -> ledger_pb2.GetTxResponse:
        with self.lock:
            return ledger_pb2.GetTxResponse(receipt=self.receipts[request.tx_id])

    # not used by the operator
    def GetBlock(self, request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "fake")

    def GetTx(self, request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "fake")

    def StreamBlocks(self, request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "fake")

    def SubmitStream(self, request_iterator: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "fake")


@pytest.fixture
def node() -> Iterator[tuple[FakeNode, str, str]]:
    admin = pki.new_key()
    fake = FakeNode(admin.public)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    ledger_pb2_grpc.add_LedgerServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield fake, f"127.0.0.1:{port}", pki.key_file(admin)
    finally:
        server.stop(0)


def pod(name: str, ip: str | None) -> PodState:
    return PodState(name=name, org="a", ordinal=int(name[-1]), ready=True, revision="r", ip=ip)


async def test_statuses_leave_out_silent_nodes(node: tuple[FakeNode, str, str]) -> None:
    _fake, ep, _ = node
    host = ep.rsplit(":", 1)[0]
    pods = {"c-a-0": pod("c-a-0", host), "c-a-1": pod("c-a-1", None)}
    settings = Settings(rpc_timeout=1.0)
    # pod-ip mode dials <ip>:7050
    assert nodes.endpoint(pods["c-a-0"], N, "ns", settings) == (
        f"{host}:7050",
        "c-a-0.c-peers.ns.svc",
    )
    assert nodes.endpoint(pods["c-a-1"], N, "ns", settings) is None
    dns = Settings(node_address="dns")
    assert nodes.endpoint(pods["c-a-1"], N, "ns", dns) == (
        "c-a-1.c-peers.ns.svc.cluster.local:7050",
        "c-a-1.c-peers.ns.svc",
    )
    got = nodes._status(nodes.Endpoint(ep, "unused"), 1.0, None)
    assert got.height == 5 and got.role == "leader" and got.sync_state == "synced"
    assert got.validators == ((b"\x01" * 32, "a"),)
    assert got.peers == (
        PeerLinkView(b"\x02" * 32, "b:1", True, "", 0.0),
        PeerLinkView(b"\x03" * 32, "c:1", False, "UNAVAILABLE: x", 31.5),
    )
    # nothing listens on 127.0.0.1:7050 in unit tests: that pod is simply absent
    out = await nodes.statuses(pods, N, "ns", Settings(rpc_timeout=0.3), None)
    assert "c-a-1" not in out


async def test_governance_add_then_remove(node: tuple[FakeNode, str, str]) -> None:
    fake, ep, admin_key = node
    new = b"\x02" * 32
    settings = Settings(rpc_timeout=2.0, governance_timeout=5.0)
    tx = await nodes.governance(
        [nodes.Endpoint(ep, "")],
        "test",
        admin_key,
        plan.AddValidator("c-a-1", "a", new),
        settings,
        None,
    )
    assert len(tx) == 64 and fake.validators[new] == "a"
    await nodes.governance(
        [nodes.Endpoint(ep, "")],
        "test",
        admin_key,
        plan.RemoveValidator("c-a-1", "a", new),
        settings,
        None,
    )
    assert new not in fake.validators and fake.nonce == 2


class _LostConfirmation(FakeNode):
    """The same node state behind a second endpoint whose WaitTx fails after the submit went
    through: the client cannot tell whether the tx committed."""

    def __init__(self, inner: FakeNode) -> None:
        self.__dict__ = inner.__dict__  # one node, two endpoints

    def WaitTx(self, request: Any, context: Any) -> ledger_pb2.GetTxResponse:
        context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
        raise AssertionError("unreachable")


async def test_governance_retries_the_same_signed_tx_on_the_next_node(
    node: tuple[FakeNode, str, str],
) -> None:
    """A node that took the tx but lost the confirmation: the next node gets the same bytes
    (ALREADY_EXISTS, then its receipt), never a second tx with the next nonce (which opened a
    duplicate proposal in the e2e run)."""
    fake, ep, admin_key = node
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    ledger_pb2_grpc.add_LedgerServicer_to_server(_LostConfirmation(fake), server)
    flaky = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    try:
        tx = await nodes.governance(
            [nodes.Endpoint(flaky, ""), nodes.Endpoint(ep, "")],
            "test",
            admin_key,
            plan.AddValidator("c-a-1", "a", b"\x04" * 32),
            Settings(rpc_timeout=2.0, governance_timeout=5.0),
            None,
        )
    finally:
        server.stop(None)
    assert fake.nonce == 1 and len(fake.receipts) == 1 and bytes.fromhex(tx) in fake.receipts


async def test_governance_reports_refusal_without_key_material(
    node: tuple[FakeNode, str, str],
) -> None:
    _, ep, _ = node
    stranger = pki.key_file(pki.new_key())
    with pytest.raises(nodes.GovernanceError, match="refused") as e:
        await nodes.governance(
            [nodes.Endpoint(ep, "")],
            "test",
            stranger,
            plan.AddValidator("c-a-1", "a", b"\x03" * 32),
            Settings(),
            None,
        )
    assert "private_key" not in str(e.value)


async def test_governance_with_no_reachable_node() -> None:
    with pytest.raises(nodes.GovernanceError, match="no node accepted it"):
        await nodes.governance(
            [nodes.Endpoint("127.0.0.1:1", "")],
            "test",
            pki.key_file(pki.new_key()),
            plan.RemoveValidator("c-a-1", "a", b"\x03" * 32),
            Settings(rpc_timeout=0.5),
            None,
        )


# --------------------------------------------------------------------------- mutual TLS

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def tls_node() -> Iterator[tuple[nodes.Endpoint, nodes.ClientTLS]]:
    """A fake node serving mutual TLS with pod c-a-0's certificate (the names Renderer gives
    it) from organisation a's CA, and the operator's client TLS from the same CA. The
    endpoint dials 127.0.0.1 and checks the name c-a-0.c-peers.ns.svc."""
    now = dt.datetime.now(dt.UTC)
    ca = pki.org_ca("a", now, pki.new_tls_key(), 1)
    names = ["c-a-0.c-peers.ns.svc", "c-a-0.c-peers.ns.svc.cluster.local"]
    node_cert = pki.node_tls(
        ca,
        NodeCert("a", "c-a-0", b"\x01" * 32, tuple(names)),
        pki.Issue(now, pki.new_tls_key(), 2, 30),
    )
    client = pki.client_tls(
        ca, ClientCert("", "a", "consortium-operator"), pki.Issue(now, pki.new_tls_key(), 3, 30)
    )
    tls = nodes.ClientTLS(pki.trust_bundle({"a": ca.cert_pem}), client.cert_pem, client.key_pem)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    ledger_pb2_grpc.add_LedgerServicer_to_server(FakeNode(pki.new_key().public), server)
    creds = grpc.ssl_server_credentials(
        [(node_cert.key_pem, node_cert.cert_pem)], ca.cert_pem, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    try:
        yield nodes.Endpoint(f"127.0.0.1:{port}", "c-a-0.c-peers.ns.svc"), tls
    finally:
        server.stop(0)


async def test_statuses_over_mutual_tls_check_the_pod_name(
    tls_node: tuple[nodes.Endpoint, nodes.ClientTLS],
) -> None:
    ep, tls = tls_node
    # the pod IP is not in the certificate: the check is against c-a-0.c-peers.ns.svc
    assert nodes._status(ep, 2.0, tls).height == 5
    # a node certificate issued for another pod does not pass as c-a-1
    with pytest.raises(nodes.ClientError, match="TLS handshake failed"):
        nodes._status(nodes.Endpoint(ep.address, "c-a-1.c-peers.ns.svc"), 2.0, tls)
    # plaintext against a TLS node fails
    with pytest.raises(nodes.ClientError):
        nodes._status(ep, 1.0, None)


async def test_a_stranger_ca_client_is_refused_by_the_node(
    tls_node: tuple[nodes.Endpoint, nodes.ClientTLS],
) -> None:
    ep, tls = tls_node
    now = dt.datetime.now(dt.UTC)
    other = pki.org_ca("a", now, pki.new_tls_key(), 9)  # same name, different key
    stranger = pki.client_tls(
        other, ClientCert("", "a", "mallory"), pki.Issue(now, pki.new_tls_key(), 10, 30)
    )
    bad = nodes.ClientTLS(tls.ca_pem, stranger.cert_pem, stranger.key_pem)
    with pytest.raises(nodes.ClientError):
        nodes._status(ep, 2.0, bad)
    assert nodes._status(ep, 2.0, tls).height == 5
