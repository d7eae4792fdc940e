"""The client-facing gRPC server of a node: the `Ledger` service, grpc.health.v1 and server
reflection, on grpc.aio in the runtime's event loop.

Untrusted input never raises through: a request that does not parse is answered
INVALID_ARGUMENT (our own deserializers, instead of grpc's INTERNAL), every rejected transaction
gets a status code and a message naming the problem, and the node stays up. The servicer talks
to the node through the `Backend` protocol (implemented by runtime.node.Node). Started by
__main__.

Security (see tls.py): with TLS the client port requires a certificate chaining to a member
organisation's CA; write methods (SubmitBatch, SubmitStream) additionally check that the call
carries one (defence in depth) and are refused outright on the opt-in read-only
`public_listen` port; so is `ExportBackup` (a whole copy of the ledger: certificate holders only). `health_listen` serves grpc.health.v1 alone in plaintext for kubelet
probes (which cannot speak TLS)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
from consortium_api.v1 import ledger_pb2, types_pb2
from google.protobuf.message import DecodeError as PbDecodeError
from google.protobuf.message import Message
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..ledger.block import Block
from ..ledger.contracts import ContractVM
from ..ledger.errors import Admission, Reject
from ..ledger.hashing import merkle_proof
from ..ledger.state import Receipt, Validator, balance_key, kv_key, nonce_key, u64
from ..ledger.tx import MAX_KEY_BYTES
from . import codec
from . import contracts as contract_queries
from . import governance as gov_queries
from .guard import MalformedGuard, listen_on, server_options
from .peers import LinkState
from .tls import CertStore, has_client_cert

log = logging.getLogger(__name__)
SERVICE = "consortium.v1.Ledger"
MAX_BATCH = 10_000
HASH_BYTES = 32  # transaction ids and block hashes (SHA-256)
# Client connections are recycled after CLIENT_MAX_AGE_MS (+ grace for calls in flight): the
# bound on how long a half-sent call (headers, never a whole message; grpc never answers it)
# holds server memory. Long `StreamBlocks --follow` readers reconnect from their last height.
CLIENT_MAX_AGE_MS = 30 * 60 * 1000
CLIENT_AGE_GRACE_MS = 5 * 60 * 1000
MIN_HEIGHT_WAIT_S = 30.0  # the longest a query waits for its min_height (QueryStateRequest)
MIN_HEIGHT_MARGIN_S = 0.25  # ... and it answers this long before the call's deadline

STATUS_OF: dict[Reject, grpc.StatusCode] = {
    Reject.MALFORMED: grpc.StatusCode.INVALID_ARGUMENT,
    Reject.BAD_SIGNATURE: grpc.StatusCode.UNAUTHENTICATED,
    Reject.WRONG_CHAIN: grpc.StatusCode.INVALID_ARGUMENT,
    Reject.NONCE_REPLAY: grpc.StatusCode.ALREADY_EXISTS,
    Reject.NONCE_GAP: grpc.StatusCode.FAILED_PRECONDITION,
    Reject.TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    Reject.UNKNOWN_TYPE: grpc.StatusCode.UNIMPLEMENTED,
    Reject.INSUFFICIENT_BALANCE: grpc.StatusCode.FAILED_PRECONDITION,
    Reject.UNAUTHORIZED: grpc.StatusCode.PERMISSION_DENIED,
    Reject.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Reject.MEMPOOL_FULL: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reject.DUPLICATE: grpc.StatusCode.ALREADY_EXISTS,
}


class Status(Protocol):
    @property
    def chain_id(self) -> str: ...

    @property
    def consensus(self) -> str: ...

    @property
    def organization(self) -> str: ...

    @property
    def node_id(self) -> bytes: ...

    @property
    def height(self) -> int: ...

    @property
    def last_hash(self) -> bytes: ...

    @property
    def state_root(self) -> bytes: ...

    @property
    def role(self) -> str: ...

    @property
    def leader(self) -> bytes | None: ...

    @property
    def validators(self) -> tuple[Validator, ...]: ...

    @property
    def syncing(self) -> bool: ...

    @property
    def mempool_size(self) -> int: ...

    @property
    def organizations(self) -> tuple[str, ...]: ...

    @property
    def base_height(self) -> int: ...

    @property
    def halted(self) -> str: ...

    @property
    def peers(self) -> tuple[LinkState, ...]: ...


class Snapshot(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...
    def close(self) -> None: ...


class Backend(Protocol):
    @property
    def height(self) -> int: ...

    @property
    def base_height(self) -> int: ...

    def submit(self, raw: bytes) -> Admission: ...
    def submit_many(self, raws: list[bytes]) -> list[Admission]: ...
    def status(self) -> Status: ...
    def block_at(self, height: int) -> Block | None: ...
    def block_by_hash(self, block_hash: bytes) -> Block | None: ...
    def receipt(self, tx_id: bytes) -> tuple[Block, Receipt] | None: ...
    def snapshot(self) -> Snapshot: ...

    @property
    def vm(self) -> ContractVM: ...

    async def wait_block(self, after_height: int, within: float | None) -> bool: ...


class ExportFailed(Exception):
    """An export the node could not make; the message is one line naming the problem."""


# Writes a verifiable backup of the node's ledger (a tar) to the given path and returns its
# height; raises ExportFailed. Injected (backup/export.py `node_exporter`): transport sits below
# the backup room.
Exporter = Callable[[Path], int]
EXPORT_CHUNK = 1024 * 1024


@dataclass
class BackupExports:
    """What ExportBackup needs: the exporter and a scratch directory on the node's own volume
    (the tar is written there, streamed, then deleted). Invariant: one export at a time
    (`lock`), so the scratch space a node needs is at most one backup."""

    exporter: Exporter
    scratch: Path
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def tx_result(a: Admission) -> ledger_pb2.TxResult:
    code = grpc.StatusCode.OK if a.reject is None else STATUS_OF[a.reject]
    return ledger_pb2.TxResult(tx_id=a.tx_id, code=code.value[0], message=a.message)


QUERY_STATUS = {
    "invalid": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "unavailable": grpc.StatusCode.FAILED_PRECONDITION,
}

WRITE_REFUSED = (
    "write methods need a client certificate issued by a member organisation's CA "
    "(this endpoint is read-only or the connection carries no certificate)"
)
EXPORT_REFUSED = (
    "ExportBackup needs a client certificate issued by a member organisation's CA "
    "(this endpoint is read-only or the connection carries no certificate)"
)


class LedgerServicer:
    """`writes`: "open" (plaintext dev node), "cert" (TLS: the call must carry a verified client
    certificate) or "never" (the read-only public port)."""

    def __init__(
        self, node: Backend, writes: str = "open", exports: BackupExports | None = None
    ) -> None:
        self.node = node
        self.writes = writes
        self.exports = exports

    def may_write(self, context: grpc.aio.ServicerContext[Any, Any]) -> bool:
        if self.writes == "open":
            return True
        return self.writes == "cert" and has_client_cert(context)

    async def SubmitBatch(
        self, request: ledger_pb2.SubmitBatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ledger_pb2.SubmitBatchResponse:
        if not self.may_write(context):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, WRITE_REFUSED)
        if len(request.txs) > MAX_BATCH:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"batch of {len(request.txs)} exceeds {MAX_BATCH}"
            )
        results = [
            tx_result(a)
            for a in self.node.submit_many([tx.SerializeToString() for tx in request.txs])
        ]
        return ledger_pb2.SubmitBatchResponse(results=results)

    async def SubmitStream(
        self,
        request_iterator: AsyncIterator[types_pb2.SignedTx],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[ledger_pb2.TxResult]:
        if not self.may_write(context):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, WRITE_REFUSED)
        async for tx in request_iterator:
            yield tx_result(self.node.submit(tx.SerializeToString()))

    async def GetBlock(
        self, request: ledger_pb2.GetBlockRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> types_pb2.Block:
        which = request.WhichOneof("by")
        if which == "height":
            if 0 < request.height <= self.node.base_height:
                await context.abort(grpc.StatusCode.OUT_OF_RANGE, self._below_base(request.height))
            block = self.node.block_at(request.height)
            what = f"height {request.height}"
        elif which == "hash":
            if len(request.hash) != HASH_BYTES:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"a block hash is {HASH_BYTES} bytes, got {len(request.hash)}",
                )
            block = self.node.block_by_hash(request.hash)
            what = f"hash {request.hash.hex()}"
        else:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give a block height or hash")
        if block is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no block at {what} (height is {self.node.height}{self._held()})",
            )
        return codec.block_to_pb(block)

    async def _reach(self, min_height: int, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Returns once this node has applied block `min_height` (read-your-writes through a
        Service that may route each call to a node a block behind). OUT_OF_RANGE, with this
        node's height, when it has not shortly before the call's deadline (so the caller
        reads that rather than a bare deadline error), or within MIN_HEIGHT_WAIT_S."""
        if min_height <= self.node.height:
            return
        remaining = context.time_remaining()
        within = MIN_HEIGHT_WAIT_S
        if remaining is not None:
            within = min(within, max(0.0, remaining - MIN_HEIGHT_MARGIN_S))
        if not await self.node.wait_block(min_height - 1, within):
            await context.abort(
                grpc.StatusCode.OUT_OF_RANGE,
                f"this node is at height {self.node.height}, below the asked minimum "
                f"height {min_height}; ask again, or another node",
            )

    def _held(self) -> str:
        base = self.node.base_height
        return f"; this node holds blocks {base + 1}..{self.node.height} only" if base else ""

    def _below_base(self, height: int) -> str:
        base = self.node.base_height
        return (
            f"block {height} is below this node's base height {base}: it was seeded from a "
            f"state snapshot and holds blocks {base + 1}..{self.node.height} only; "
            "ask a node with the full history"
        )

    async def StreamBlocks(
        self, request: ledger_pb2.StreamBlocksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[types_pb2.Block]:
        h = max(1, request.from_height)
        if h <= self.node.base_height:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, self._below_base(h))
        while True:
            while h <= self.node.height:
                block = self.node.block_at(h)
                if block is None:  # pragma: no cover - height advanced past the store: invariant
                    await context.abort(grpc.StatusCode.INTERNAL, f"block {h} missing")
                ids = [codec.tx_id(raw) for raw in block.txs] if request.ids_only else None
                yield codec.block_to_pb(
                    block,
                    with_txs=not (request.headers_only or request.ids_only),
                    tx_ids=ids,
                )
                h += 1
            if not request.follow:
                return
            await self.node.wait_block(h - 1, None)

    async def _tx_response(self, tx_id: bytes) -> ledger_pb2.GetTxResponse | None:
        found = self.node.receipt(tx_id)
        if found is None:
            return None
        block, receipt = found
        ids = [codec.tx_id(raw) for raw in block.txs]
        proof = types_pb2.InclusionProof(
            index=receipt.index,
            size=len(ids),
            path=merkle_proof(ids, receipt.index),
            tx_root=block.header.tx_root,
        )
        receipt_pb = codec.receipt_to_pb(receipt)
        snap = self.node.snapshot()
        try:  # a governance tx's receipt carries its proposal's current status
            prop = gov_queries.receipt_proposal(snap, codec.decode_tx(block.txs[receipt.index]))
            contract = contract_queries.receipt_contract(snap, tx_id)
        finally:
            snap.close()
        if prop is not None:
            receipt_pb.proposal.CopyFrom(prop)
        if contract is not None:
            receipt_pb.contract.CopyFrom(contract)
        return ledger_pb2.GetTxResponse(
            tx=types_pb2.SignedTx.FromString(block.txs[receipt.index]),
            receipt=receipt_pb,
            proof=proof,
            header=codec.header_view(block.header),
        )

    async def GetTx(
        self, request: ledger_pb2.GetTxRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ledger_pb2.GetTxResponse:
        await _check_tx_id(request.tx_id, context)
        resp = await self._tx_response(request.tx_id)
        base = self.node.base_height
        if resp is not None and resp.receipt.height <= base:
            # blocks up to the base are not this node's to serve (GetBlock says the same), even
            # where some are still on disk from a block sync before the snapshot
            resp = None
        if resp is None:
            if base:
                # it may well be committed below the base: "not found" would be a false answer
                await context.abort(
                    grpc.StatusCode.OUT_OF_RANGE,
                    f"transaction {request.tx_id.hex()} is not in blocks {base + 1}.."
                    f"{self.node.height}; this node was seeded from a state snapshot after "
                    f"block {base} and cannot tell whether it was committed before; ask a "
                    "node with the full history",
                )
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"transaction {request.tx_id.hex()} is not committed"
            )
        return resp

    async def WaitTx(
        self, request: ledger_pb2.GetTxRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ledger_pb2.GetTxResponse:
        await _check_tx_id(request.tx_id, context)
        while True:
            h = self.node.height
            resp = await self._tx_response(request.tx_id)
            if resp is not None:
                return resp
            remaining = context.time_remaining()
            if not await self.node.wait_block(h, remaining):
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"transaction {request.tx_id.hex()} not committed before the deadline"
                    + self._held(),
                )

    async def QueryState(
        self, request: ledger_pb2.QueryStateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ledger_pb2.QueryStateResponse:
        which = request.WhichOneof("query")
        if which == "key" and not 0 < len(request.key) <= MAX_KEY_BYTES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"a key is 1..{MAX_KEY_BYTES} bytes"
            )
        if which == "balance" and len(request.balance.asset.encode()) > MAX_KEY_BYTES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "asset name too long")
        if which == "balance" and len(request.balance.account) > MAX_KEY_BYTES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "account too long")
        if which == "nonce_of" and len(request.nonce_of) > MAX_KEY_BYTES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "account too long")
        await self._reach(request.min_height, context)
        snap = self.node.snapshot()
        try:
            height = self.node.height
            if which == "key":
                v = snap.get(kv_key(request.key))
                return ledger_pb2.QueryStateResponse(
                    found=v is not None, value=v or b"", height=height
                )
            if which == "balance":
                b = request.balance
                raw = snap.get(balance_key(b.asset, b.account))
                return ledger_pb2.QueryStateResponse(
                    found=raw is not None, amount=u64(raw), height=height
                )
            if which == "nonce_of":
                raw = snap.get(nonce_key(request.nonce_of))
                return ledger_pb2.QueryStateResponse(
                    found=raw is not None, amount=u64(raw), height=height
                )
        finally:
            snap.close()
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, "give a key, balance or nonce_of query"
        )

    async def GetStatus(
        self,
        request: ledger_pb2.GetStatusRequest,  # noqa: ARG002 -- gRPC servicer signature
        context: grpc.aio.ServicerContext[Any, Any],  # noqa: ARG002 -- gRPC servicer signature
    ) -> ledger_pb2.GetStatusResponse:
        s = self.node.status()
        return ledger_pb2.GetStatusResponse(
            chain_id=s.chain_id,
            height=s.height,
            last_block_hash=s.last_hash,
            node_id=s.node_id,
            role=s.role,
            leader=s.leader or b"",
            validators=[codec.validator_to_pb(v) for v in s.validators],
            sync_state="catching-up" if s.syncing else "synced",
            mempool_size=s.mempool_size,
            state_root=s.state_root,
            consensus=s.consensus,
            organization=s.organization,
            organizations=list(s.organizations),
            base_height=s.base_height,
            halted=s.halted,
            peers=[
                ledger_pb2.PeerLink(
                    node_id=p.node_id,
                    address=p.address,
                    connected=p.connected,
                    error=p.error,
                    since_seconds=p.since_seconds,
                )
                for p in s.peers
            ],
        )

    async def ExportBackup(
        self,
        request: ledger_pb2.ExportBackupRequest,  # noqa: ARG002 -- gRPC servicer signature
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[ledger_pb2.BackupChunk]:
        """The backup as a stream: first chunk with height, size and SHA-256, then the bytes.
        The tar is made in the scratch directory (in a thread: the node keeps committing,
        which the exporter needs for the certifying block H+1) and removed afterwards."""
        if not self.may_write(context):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, EXPORT_REFUSED)
        ex = self.exports
        if ex is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this node does not export backups")
            return
        if ex.lock.locked():
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "an export is running on this node: retry later"
            )
        async with ex.lock:
            if ex.scratch.exists():  # left by an export cut short (the node crashed mid-way)
                shutil.rmtree(ex.scratch, ignore_errors=True)
            ex.scratch.mkdir(parents=True)
            out = ex.scratch / f"export-{uuid.uuid4().hex}.tar"
            try:
                try:
                    height = await asyncio.to_thread(ex.exporter, out)
                except ExportFailed as e:
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
                    return
                size, digest = await asyncio.to_thread(_size_and_sha256, out)
                yield ledger_pb2.BackupChunk(height=height, total_bytes=size, sha256=digest)
                with out.open("rb") as f:
                    while data := await asyncio.to_thread(f.read, EXPORT_CHUNK):
                        yield ledger_pb2.BackupChunk(data=data)
            finally:
                shutil.rmtree(ex.scratch, ignore_errors=True)

    async def ListProposals(
        self,
        request: ledger_pb2.ListProposalsRequest,
        context: grpc.aio.ServicerContext[Any, Any],  # noqa: ARG002 -- gRPC servicer signature
    ) -> ledger_pb2.ListProposalsResponse:
        snap = self.node.snapshot()
        try:
            return gov_queries.list_proposals(snap, self.node.height, request)
        finally:
            snap.close()

    async def GetProposal(
        self, request: ledger_pb2.GetProposalRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> types_pb2.Proposal:
        snap = self.node.snapshot()
        try:
            found = gov_queries.proposal(snap, request.id)
        finally:
            snap.close()
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown proposal {request.id}")
        return found

    async def QueryContract(
        self, request: ledger_pb2.QueryContractRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ledger_pb2.QueryContractResponse:
        await self._reach(request.min_height, context)
        snap = self.node.snapshot()
        try:
            return contract_queries.query(snap, self.node.vm, self.node.height, request)
        except contract_queries.QueryError as e:
            await context.abort(QUERY_STATUS[e.kind], e.message)
        finally:
            snap.close()

    async def ListContracts(
        self,
        request: ledger_pb2.ListContractsRequest,  # noqa: ARG002 -- gRPC servicer signature
        context: grpc.aio.ServicerContext[Any, Any],  # noqa: ARG002 -- gRPC servicer signature
    ) -> ledger_pb2.ListContractsResponse:
        snap = self.node.snapshot()
        try:
            return contract_queries.list_contracts(snap, self.node.height)
        finally:
            snap.close()

    async def GetContract(
        self, request: ledger_pb2.GetContractRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> types_pb2.ContractInfo:
        snap = self.node.snapshot()
        try:
            return contract_queries.get_contract(snap, request.name)
        except contract_queries.QueryError as e:
            await context.abort(QUERY_STATUS[e.kind], e.message)
        finally:
            snap.close()

    async def StreamEvents(
        self, request: ledger_pb2.StreamEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[ledger_pb2.ContractEventRecord]:
        """Events of committed contract calls from `from_height` on, in chain order; with
        `follow`, then those of each new block as it commits."""
        if request.contract and not contract_queries.CONTRACT_RE.fullmatch(request.contract):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"contract name {request.contract!r} is not valid"
            )
        h = max(1, request.from_height)
        if h <= self.node.base_height:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, self._below_base(h))
        while True:
            while h <= self.node.height:
                block = self.node.block_at(h)
                if block is None:  # pragma: no cover - height advanced past the store: invariant
                    await context.abort(grpc.StatusCode.INTERNAL, f"block {h} missing")
                snap = self.node.snapshot()
                try:
                    records = list(
                        contract_queries.block_events(snap, block, request.contract, request.topic)
                    )
                finally:
                    snap.close()
                for r in records:
                    yield r
                h += 1
            if not request.follow:
                return
            await self.node.wait_block(h - 1, None)

    async def GetGovernance(
        self,
        request: ledger_pb2.GetGovernanceRequest,  # noqa: ARG002 -- gRPC servicer signature
        context: grpc.aio.ServicerContext[Any, Any],  # noqa: ARG002 -- gRPC servicer signature
    ) -> ledger_pb2.GetGovernanceResponse:
        snap = self.node.snapshot()
        try:
            return gov_queries.governance(snap, self.node.height)
        finally:
            snap.close()


def _size_and_sha256(path: Path) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while data := f.read(EXPORT_CHUNK):
            h.update(data)
            size += len(data)
    return size, h.hexdigest()


async def _check_tx_id(tx_id: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if len(tx_id) != HASH_BYTES:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"a transaction id is {HASH_BYTES} bytes, got {len(tx_id)}",
        )


class _Malformed:
    """A request that failed to parse; handlers answer it with INVALID_ARGUMENT."""

    def __init__(self, error: str) -> None:
        self.error = error


def _lenient(parse: Callable[[bytes], Message]) -> Callable[[bytes], Message | _Malformed]:
    def deserialize(data: bytes) -> Message | _Malformed:
        try:
            return parse(data)
        except (PbDecodeError, ValueError) as e:
            return _Malformed(str(e) or "malformed protobuf")

    return deserialize


def _guard_unary(fn: Callable[..., Any]) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, _Malformed):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {request.error}"
            )
        return await fn(request, context)

    return handler


def _guard_stream(fn: Callable[..., Any]) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, _Malformed):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {request.error}"
            )
        async for item in fn(request, context):
            yield item

    return handler


def _guard_submit_stream(svc: LedgerServicer) -> Callable[..., Any]:
    async def handler(
        request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[ledger_pb2.TxResult]:
        if not svc.may_write(context):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, WRITE_REFUSED)
        async for tx in request_iterator:
            if isinstance(tx, _Malformed):
                yield ledger_pb2.TxResult(
                    code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                    message=f"malformed transaction: {tx.error}",
                )
                continue
            yield tx_result(svc.node.submit(tx.SerializeToString()))

    return handler


def _handlers(svc: LedgerServicer) -> grpc.GenericRpcHandler[Any, Any]:
    L, T = ledger_pb2, types_pb2

    def unary(fn: Callable[..., Any], req: Any, resp: Any) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(
            _guard_unary(fn),
            request_deserializer=_lenient(req.FromString),
            response_serializer=resp.SerializeToString,
        )

    methods = {
        "SubmitBatch": unary(svc.SubmitBatch, L.SubmitBatchRequest, L.SubmitBatchResponse),
        "SubmitStream": grpc.stream_stream_rpc_method_handler(
            _guard_submit_stream(svc),
            request_deserializer=_lenient(T.SignedTx.FromString),
            response_serializer=L.TxResult.SerializeToString,
        ),
        "GetBlock": unary(svc.GetBlock, L.GetBlockRequest, T.Block),
        "StreamBlocks": grpc.unary_stream_rpc_method_handler(
            _guard_stream(svc.StreamBlocks),
            request_deserializer=_lenient(L.StreamBlocksRequest.FromString),
            response_serializer=T.Block.SerializeToString,
        ),
        "GetTx": unary(svc.GetTx, L.GetTxRequest, L.GetTxResponse),
        "WaitTx": unary(svc.WaitTx, L.GetTxRequest, L.GetTxResponse),
        "QueryState": unary(svc.QueryState, L.QueryStateRequest, L.QueryStateResponse),
        "GetStatus": unary(svc.GetStatus, L.GetStatusRequest, L.GetStatusResponse),
        "ListProposals": unary(svc.ListProposals, L.ListProposalsRequest, L.ListProposalsResponse),
        "GetProposal": unary(svc.GetProposal, L.GetProposalRequest, T.Proposal),
        "GetGovernance": unary(svc.GetGovernance, L.GetGovernanceRequest, L.GetGovernanceResponse),
        "QueryContract": unary(svc.QueryContract, L.QueryContractRequest, L.QueryContractResponse),
        "ListContracts": unary(svc.ListContracts, L.ListContractsRequest, L.ListContractsResponse),
        "GetContract": unary(svc.GetContract, L.GetContractRequest, T.ContractInfo),
        "StreamEvents": grpc.unary_stream_rpc_method_handler(
            _guard_stream(svc.StreamEvents),
            request_deserializer=_lenient(L.StreamEventsRequest.FromString),
            response_serializer=L.ContractEventRecord.SerializeToString,
        ),
        "ExportBackup": grpc.unary_stream_rpc_method_handler(
            _guard_stream(svc.ExportBackup),
            request_deserializer=_lenient(L.ExportBackupRequest.FromString),
            response_serializer=L.BackupChunk.SerializeToString,
        ),
    }
    return grpc.method_handlers_generic_handler(SERVICE, methods)


_OPTIONS = server_options(64 * 1024 * 1024, CLIENT_MAX_AGE_MS, CLIENT_AGE_GRACE_MS)


class ClientServer:
    """The node's client endpoints: Ledger + health + reflection on `listen` (mutual TLS when
    `tls` is given, plaintext otherwise); optionally the same read-only on `public_listen`
    (server TLS, no client certificate) and health alone on `health_listen` (plaintext)."""

    def __init__(
        self,
        node: Backend,
        listen: str,
        tls: CertStore | None = None,
        public_listen: str | None = None,
        health_listen: str | None = None,
        exports: BackupExports | None = None,
    ) -> None:
        self.health = health_aio.HealthServicer()
        self.servicer = LedgerServicer(node, "open" if tls is None else "cert", exports)
        self.server = self._ledger_server(self.servicer)
        self.port = listen_on(
            self.server, listen, None if tls is None else tls.server_credentials(True)
        )
        self.listen = listen
        self.servers = [self.server]
        self.public_port: int | None = None
        self.health_port: int | None = None
        if public_listen is not None and tls is not None:
            public = self._ledger_server(LedgerServicer(node, "never"))
            self.public_port = listen_on(public, public_listen, tls.server_credentials(False))
            self.servers.append(public)
        if health_listen is not None:
            probe = grpc.aio.server(options=_OPTIONS, interceptors=(MalformedGuard(),))
            health_pb2_grpc.add_HealthServicer_to_server(self.health, probe)
            self.health_port = listen_on(probe, health_listen)
            self.servers.append(probe)

    def _ledger_server(self, servicer: LedgerServicer) -> grpc.aio.Server:
        server = grpc.aio.server(options=_OPTIONS, interceptors=(MalformedGuard(),))
        server.add_generic_rpc_handlers((_handlers(servicer),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        return server

    async def start(self) -> None:
        for s in self.servers:
            await s.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float = 1.0) -> None:
        await self.health.enter_graceful_shutdown()
        for s in self.servers:
            await s.stop(grace)
