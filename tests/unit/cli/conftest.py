"""Fixtures of the CLI/client unit tests, and an in-process fake `Ledger` gRPC service.

It is NOT the node: it keeps everything in memory, checks signatures, chain id and nonces the
way the wire contract says, and cuts a block from the pending txs every `block_ms`. Enough to
drive `consortium tx/query/status/blocks/bench` end to end without a real node."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from consortium_api.v1 import ledger_pb2, ledger_pb2_grpc, types_pb2
from consortium_node.client.tx import tx_id_of
from consortium_node.ledger.block import BlockHeader
from consortium_node.ledger.hashing import merkle_proof, merkle_root
from nacl.signing import VerifyKey

from tests.support.ports import free_port

OK = 0
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]
ALREADY_EXISTS = grpc.StatusCode.ALREADY_EXISTS.value[0]


class FakeLedger(ledger_pb2_grpc.LedgerServicer):
    # governance queries are not faked: the base answers UNIMPLEMENTED, as for any fake gap
    ListProposals = ledger_pb2_grpc.LedgerServicer.ListProposals
    GetProposal = ledger_pb2_grpc.LedgerServicer.GetProposal
    GetGovernance = ledger_pb2_grpc.LedgerServicer.GetGovernance
    QueryContract = ledger_pb2_grpc.LedgerServicer.QueryContract
    ListContracts = ledger_pb2_grpc.LedgerServicer.ListContracts
    GetContract = ledger_pb2_grpc.LedgerServicer.GetContract
    StreamEvents = ledger_pb2_grpc.LedgerServicer.StreamEvents
    ExportBackup = ledger_pb2_grpc.LedgerServicer.ExportBackup

    def __init__(self, chain_id: str = "test-chain", block_ms: int = 10) -> None:
        self.chain_id = chain_id
        self.halted = ""  # GetStatus.halted (a node that stopped applying blocks)
        self.peers: list[ledger_pb2.PeerLink] = []  # GetStatus.peers (none: a solo node)
        self.block_ms = block_ms
        self.node_id = b"\x07" * 32
        self.cond = threading.Condition()
        self.blocks: list[types_pb2.Block] = []  # index = height - 1
        self.pending: list[tuple[bytes, bytes, types_pb2.TxBody]] = []  # (id, raw, body)
        self.next_nonce: dict[bytes, int] = {}  # admitted (pending included)
        self.kv: dict[bytes, bytes] = {}
        self.balances: dict[tuple[str, bytes], int] = {}
        self.index: dict[bytes, tuple[int, int, int, str]] = {}  # id -> height, idx, code, msg
        self.stopped = False
        self.reject_all: str | None = None  # when set, admission refuses every tx with this
        self._thread = threading.Thread(target=self._cutter, daemon=True)
        self._thread.start()

    # admission -----------------------------------------------------------------------------

    def _admit(self, tx: types_pb2.SignedTx) -> ledger_pb2.TxResult:
        tx_id = tx_id_of(tx.body)
        if self.reject_all is not None:
            code = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            return ledger_pb2.TxResult(tx_id=tx_id, code=code, message=self.reject_all)
        try:
            body = types_pb2.TxBody.FromString(tx.body)
            VerifyKey(body.sender).verify(tx.body, tx.signature)
        except Exception:
            return ledger_pb2.TxResult(tx_id=tx_id, code=INVALID_ARGUMENT, message="bad signature")
        if body.chain_id != self.chain_id:
            return ledger_pb2.TxResult(
                tx_id=tx_id, code=INVALID_ARGUMENT, message=f"wrong chain id {body.chain_id!r}"
            )
        with self.cond:
            want = self.next_nonce.get(body.sender, 0)
            if body.nonce != want:
                return ledger_pb2.TxResult(
                    tx_id=tx_id,
                    code=FAILED_PRECONDITION,
                    message=f"nonce {body.nonce} != expected {want}",
                )
            self.next_nonce[body.sender] = want + 1
            self.pending.append((tx_id, tx.SerializeToString(), body))
        return ledger_pb2.TxResult(tx_id=tx_id, code=OK)

    def _execute(self, body: types_pb2.TxBody) -> tuple[int, str]:
        kind = body.WhichOneof("payload")
        if kind == "kv_put":
            self.kv[body.kv_put.key] = body.kv_put.value
        elif kind == "kv_delete":
            self.kv.pop(body.kv_delete.key, None)
        elif kind == "asset_issue":
            p = body.asset_issue
            self.balances[(p.asset, p.to)] = self.balances.get((p.asset, p.to), 0) + p.amount
        elif kind == "asset_transfer":
            t = body.asset_transfer
            have = self.balances.get((t.asset, body.sender), 0)
            if have < t.amount:
                return types_pb2.TX_CODE_INSUFFICIENT_BALANCE, f"balance {have} < {t.amount}"
            self.balances[(t.asset, body.sender)] = have - t.amount
            self.balances[(t.asset, t.to)] = self.balances.get((t.asset, t.to), 0) + t.amount
        return types_pb2.TX_CODE_OK, ""

    def _cutter(self) -> None:
        while not self.stopped:
            time.sleep(self.block_ms / 1000)
            with self.cond:
                if not self.pending:
                    continue
                batch, self.pending = self.pending, []
                height = len(self.blocks) + 1
                ids = [i for i, _, _ in batch]
                prev = self.blocks[-1].header_view.hash if self.blocks else b"\x00" * 32
                header = BlockHeader(
                    height=height,
                    time_ms=int(time.time() * 1000),
                    prev_hash=prev,
                    tx_root=merkle_root(ids),
                    state_root=b"\x00" * 32,
                    validators_hash=b"\x00" * 32,
                    proposer=self.node_id,
                )
                for n, (tx_id, _, body) in enumerate(batch):
                    code, msg = self._execute(body)
                    self.index[tx_id] = (height, n, code, msg)
                view = types_pb2.BlockHeaderView(
                    version=header.version,
                    height=height,
                    time_ms=header.time_ms,
                    prev_hash=header.prev_hash,
                    tx_root=header.tx_root,
                    state_root=header.state_root,
                    validators_hash=header.validators_hash,
                    proposer=header.proposer,
                    hash=header.hash,
                )
                self.blocks.append(
                    types_pb2.Block(
                        header=header.encode(), txs=[raw for _, raw, _ in batch], header_view=view
                    )
                )
                self.cond.notify_all()

    # RPCs ----------------------------------------------------------------------------------

    def SubmitBatch(self, request: Any, _context: Any) -> ledger_pb2.SubmitBatchResponse:
        return ledger_pb2.SubmitBatchResponse(results=[self._admit(t) for t in request.txs])

    def SubmitStream(self, request_iterator: Any, _context: Any) -> Iterator[ledger_pb2.TxResult]:
        for tx in request_iterator:
            yield self._admit(tx)

    def GetBlock(self, request: ledger_pb2.GetBlockRequest, context: Any) -> types_pb2.Block:
        with self.cond:
            if request.WhichOneof("by") == "height":
                if 1 <= request.height <= len(self.blocks):
                    return self.blocks[request.height - 1]
            else:
                for b in self.blocks:
                    if b.header_view.hash == request.hash:
                        return b
        context.abort(grpc.StatusCode.NOT_FOUND, "no such block")
        raise AssertionError

    def StreamBlocks(self, request: Any, context: Any) -> Iterator[types_pb2.Block]:
        h = max(1, request.from_height)
        while context.is_active():
            with self.cond:
                while h > len(self.blocks):
                    if not request.follow:
                        return
                    self.cond.wait(0.1)
                    if not context.is_active():
                        return
                b = self.blocks[h - 1]
            if request.ids_only:
                out = types_pb2.Block()
                out.CopyFrom(b)
                del out.txs[:]
                out.tx_ids.extend(tx_id_of(types_pb2.SignedTx.FromString(t).body) for t in b.txs)
                b = out
            yield b
            h += 1

    def _get_tx(self, tx_id: bytes) -> ledger_pb2.GetTxResponse | None:
        if tx_id not in self.index:
            return None
        height, n, code, msg = self.index[tx_id]
        b = self.blocks[height - 1]
        ids = [tx_id_of(types_pb2.SignedTx.FromString(t).body) for t in b.txs]
        return ledger_pb2.GetTxResponse(
            tx=types_pb2.SignedTx.FromString(b.txs[n]),
            receipt=types_pb2.Receipt(
                tx_id=tx_id,
                height=height,
                index=n,
                code=types_pb2.TxCode.ValueType(code),
                message=msg,
            ),
            proof=types_pb2.InclusionProof(
                index=n, size=len(ids), path=merkle_proof(ids, n), tx_root=merkle_root(ids)
            ),
            header=b.header_view,
        )

    def GetTx(self, request: Any, context: Any) -> ledger_pb2.GetTxResponse:
        with self.cond:
            r = self._get_tx(request.tx_id)
        if r is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown tx")
        assert r is not None
        return r

    def WaitTx(self, request: Any, context: Any) -> ledger_pb2.GetTxResponse:
        with self.cond:
            while (r := self._get_tx(request.tx_id)) is None:
                if not context.is_active():
                    context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "not committed")
                self.cond.wait(0.05)
        return r

    def QueryState(self, request: Any, _context: Any) -> ledger_pb2.QueryStateResponse:
        with self.cond:
            height = len(self.blocks)
            q = request.WhichOneof("query")
            if q == "key":
                v = self.kv.get(request.key)
                return ledger_pb2.QueryStateResponse(
                    found=v is not None, value=v or b"", height=height
                )
            if q == "balance":
                amt = self.balances.get((request.balance.asset, request.balance.account), 0)
                return ledger_pb2.QueryStateResponse(found=True, amount=amt, height=height)
            n = self.next_nonce.get(request.nonce_of, 0)
            return ledger_pb2.QueryStateResponse(found=True, amount=n, height=height)

    def GetStatus(self, _request: Any, _context: Any) -> ledger_pb2.GetStatusResponse:
        with self.cond:
            last = self.blocks[-1].header_view.hash if self.blocks else b""
            return ledger_pb2.GetStatusResponse(
                chain_id=self.chain_id,
                height=len(self.blocks),
                last_block_hash=last,
                node_id=self.node_id,
                role="solo",
                leader=self.node_id,
                validators=[types_pb2.Validator(node_id=self.node_id, organization="org1")],
                sync_state="synced",
                mempool_size=len(self.pending),
                consensus="solo",
                organization="org1",
                halted=self.halted,
                peers=self.peers,
            )


class FakeNode:
    """A gRPC server on 127.0.0.1:<free port> serving `FakeLedger`."""

    def __init__(self, **kw: Any) -> None:
        self.ledger = FakeLedger(**kw)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        ledger_pb2_grpc.add_LedgerServicer_to_server(self.ledger, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"127.0.0.1:{port}"
        self.server.start()

    def stop(self) -> None:
        self.ledger.stopped = True
        self.server.stop(grace=None)


@pytest.fixture
def fake_node() -> Iterator[FakeNode]:
    node = FakeNode()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def closed_port() -> int:
    """A localhost port nothing listens on."""
    return free_port()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No ambient endpoint/key settings leak into the CLI under test."""
    for var in ("CONSORTIUM_ENDPOINT", "CONSORTIUM_KEY", "CONSORTIUM_DATA_DIR", "CONSORTIUM_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
