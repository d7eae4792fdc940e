"""nodes.py against an in-process fake Ledger gRPC service: statuses of answering and silent
pods, and a governance transaction signed with the admin key, submitted, and waited for."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from consortium_api.v1 import ledger_pb2, ledger_pb2_grpc, types_pb2
from consortium_node.client import tx_id_of
from consortium_operator import nodes, pki, plan
from consortium_operator.model import Names, PodState
from consortium_operator.settings import Settings
from nacl.signing import VerifyKey

pytestmark = pytest.mark.unit

N = Names("c")


class FakeNode(ledger_pb2_grpc.LedgerServicer):
    """Just enough of a node: status, nonces, governance txs applied at once by the admin."""

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
    assert nodes.endpoint(pods["c-a-0"], N, "ns", settings) == f"{host}:7050"
    assert nodes.endpoint(pods["c-a-1"], N, "ns", settings) is None
    dns = Settings(node_address="dns")
    assert nodes.endpoint(pods["c-a-1"], N, "ns", dns) == "c-a-1.c-peers.ns.svc.cluster.local:7050"
    got = nodes._status(ep, 1.0)
    assert got.height == 5 and got.role == "leader" and got.sync_state == "synced"
    assert got.validators == ((b"\x01" * 32, "a"),)
    # nothing listens on 127.0.0.1:7050 in unit tests: that pod is simply absent
    out = await nodes.statuses(pods, N, "ns", Settings(rpc_timeout=0.3))
    assert "c-a-1" not in out


async def test_governance_add_then_remove(node: tuple[FakeNode, str, str]) -> None:
    fake, ep, admin_key = node
    new = b"\x02" * 32
    settings = Settings(rpc_timeout=2.0, governance_timeout=5.0)
    tx = await nodes.governance(
        [ep], "test", admin_key, plan.AddValidator("c-a-1", "a", new), settings
    )
    assert len(tx) == 64 and fake.validators[new] == "a"
    await nodes.governance(
        [ep], "test", admin_key, plan.RemoveValidator("c-a-1", "a", new), settings
    )
    assert new not in fake.validators and fake.nonce == 2


async def test_governance_reports_refusal_without_key_material(
    node: tuple[FakeNode, str, str],
) -> None:
    _, ep, _ = node
    stranger = pki.key_file(pki.new_key())
    with pytest.raises(nodes.GovernanceError, match="refused") as e:
        await nodes.governance(
            [ep], "test", stranger, plan.AddValidator("c-a-1", "a", b"\x03" * 32), Settings()
        )
    assert "private_key" not in str(e.value)


async def test_governance_with_no_reachable_node() -> None:
    with pytest.raises(nodes.GovernanceError, match="no node accepted it"):
        await nodes.governance(
            ["127.0.0.1:1"],
            "test",
            pki.key_file(pki.new_key()),
            plan.RemoveValidator("c-a-1", "a", b"\x03" * 32),
            Settings(rpc_timeout=0.5),
        )
