"""`Client`: the synchronous client of one node's `Ledger` gRPC service, and `connect()`.

`Client(endpoint, timeout, tls=...)` holds one gRPC channel and has one method per RPC; every
unary call has a deadline. gRPC failures surface as `ClientError` (or `NodeUnavailable`)
whose text is one readable line naming the node and the problem (`errors.py`). `connect()`
picks the node: an explicit endpoint, or the named / first answering node of a
`consortium up` data directory, or $CONSORTIUM_ENDPOINT / the current context.

Used by the CLI, the operator (`nodes.py`), `consortium up`, the load generator, tests and
benchmarks."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO

import grpc
from consortium_api.v1 import ledger_pb2, ledger_pb2_grpc, types_pb2

from .discovery import ClientTLS, Context, DataDir
from .errors import ClientError, NodeUnavailable, one_line, status_code_of, translate_rpc_error

DEFAULT_ENDPOINT = "127.0.0.1:7050"
DEFAULT_TIMEOUT = 5.0
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _identity(b: bytes) -> bytes:
    return b


_FIELD1 = b"\x0a"  # field 1, wire type 2 (length-delimited): SubmitBatchRequest.txs


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class ExportedBackup:
    """What ExportBackup streamed: the backup's height, its size and SHA-256 (both checked
    against the node's announcement before this is returned)."""

    height: int
    bytes: int
    sha256: str


class Client:
    """Typed synchronous wrapper of the `Ledger` service of one node.

    Unary calls use `timeout` seconds as their deadline. Streaming calls have no deadline
    unless given. Every gRPC error becomes a `ClientError` (one line, names the node)."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        options: Sequence[tuple[str, Any]] = (),
        tls: ClientTLS | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.tls = tls
        opts: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.enable_http_proxy", 0),
            *options,
        ]
        if tls is None:
            self._channel = grpc.insecure_channel(endpoint, options=opts)
        else:
            if tls.server_name:
                opts.append(("grpc.ssl_target_name_override", tls.server_name))
            self._channel = grpc.secure_channel(endpoint, tls.credentials(), options=opts)
        self._stub = ledger_pb2_grpc.LedgerStub(self._channel)
        self._batch_raw = self._channel.unary_unary(
            "/consortium.v1.Ledger/SubmitBatch",
            request_serializer=_identity,
            response_deserializer=ledger_pb2.SubmitBatchResponse.FromString,
        )
        self._submit_raw = self._channel.stream_stream(
            "/consortium.v1.Ledger/SubmitStream",
            request_serializer=_identity,
            response_deserializer=ledger_pb2.TxResult.FromString,
        )

    # lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        _exc_type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def _error(self, err: grpc.RpcError, timeout: float | None) -> ClientError:
        e = translate_rpc_error(err, self.endpoint, timeout)
        if isinstance(e, NodeUnavailable) and "closed by the node" in str(e):
            # a TLS node drops a handshake without the client certificate it requires
            if self.tls is not None and self.tls.cert_pem is None:
                return NodeUnavailable(
                    f"{e} — it may require a client certificate: the TLS directory has "
                    "ca.pem but no client.pem/client.key",
                    e.code,
                )
            if self.tls is None:
                return NodeUnavailable(
                    f"{e} — if the node runs TLS, give its TLS directory (--tls-dir, "
                    "$CONSORTIUM_TLS_DIR or a context)",
                    e.code,
                )
        return e

    # unary RPCs ----------------------------------------------------------------------------

    def status(self, timeout: float | None = None) -> ledger_pb2.GetStatusResponse:
        t = timeout or self.timeout
        try:
            return self._stub.GetStatus(ledger_pb2.GetStatusRequest(), timeout=t)
        except grpc.RpcError as e:
            raise self._error(e, t) from None

    def submit(self, txs: Sequence[types_pb2.SignedTx]) -> list[ledger_pb2.TxResult]:
        """SubmitBatch: one `TxResult` per tx, same order (code 0 = admitted)."""
        try:
            resp = self._stub.SubmitBatch(
                ledger_pb2.SubmitBatchRequest(txs=list(txs)), timeout=self.timeout
            )
        except grpc.RpcError as e:
            raise self._error(e, self.timeout) from None
        return list(resp.results)

    def submit_raw(self, txs: Sequence[bytes]) -> list[ledger_pb2.TxResult]:
        """SubmitBatch of already-serialised `SignedTx` bytes (the request is assembled by
        concatenation, no per-tx protobuf work; used by `consortium bench`)."""
        request = b"".join(_FIELD1 + _varint(len(t)) + t for t in txs)
        try:
            resp = self._batch_raw(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise self._error(e, self.timeout) from None
        return list(resp.results)

    def get_block(self, by: int | bytes) -> types_pb2.Block:
        """Block by height (int) or by 32-byte hash (bytes)."""
        req = (
            ledger_pb2.GetBlockRequest(height=by)
            if isinstance(by, int)
            else ledger_pb2.GetBlockRequest(hash=by)
        )
        try:
            return self._stub.GetBlock(req, timeout=self.timeout)
        except grpc.RpcError as e:
            raise self._error(e, self.timeout) from None

    def get_tx(self, tx_id: bytes) -> ledger_pb2.GetTxResponse | None:
        """The committed tx with its receipt, inclusion proof and block header; None if the
        node does not know it (NOT_FOUND)."""
        try:
            return self._stub.GetTx(ledger_pb2.GetTxRequest(tx_id=tx_id), timeout=self.timeout)
        except grpc.RpcError as e:
            if status_code_of(e) is grpc.StatusCode.NOT_FOUND:
                return None
            raise self._error(e, self.timeout) from None

    def wait_tx(self, tx_id: bytes, timeout: float = 30.0) -> ledger_pb2.GetTxResponse:
        """Block until the tx is committed (WaitTx); ClientError(DEADLINE_EXCEEDED) after
        `timeout` seconds."""
        try:
            return self._stub.WaitTx(ledger_pb2.GetTxRequest(tx_id=tx_id), timeout=timeout)
        except grpc.RpcError as e:
            if status_code_of(e) is grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ClientError(
                    f"tx {tx_id.hex()} not committed within {timeout:g}s",
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ) from None
            raise self._error(e, timeout) from None

    # governance --------------------------------------------------------------------------

    def list_proposals(
        self, open_only: bool = False, limit: int = 0
    ) -> ledger_pb2.ListProposalsResponse:
        """Proposals, newest first, with their votes and state."""
        req = ledger_pb2.ListProposalsRequest(open_only=open_only, limit=limit)
        try:
            return self._stub.ListProposals(req, timeout=self.timeout)
        except grpc.RpcError as e:
            raise self._error(e, self.timeout) from None

    def get_proposal(self, pid: int) -> types_pb2.Proposal:
        """One proposal; ClientError "unknown proposal N" if the chain has none by that id."""
        try:
            return self._stub.GetProposal(
                ledger_pb2.GetProposalRequest(id=pid), timeout=self.timeout
            )
        except grpc.RpcError as e:
            if status_code_of(e) is grpc.StatusCode.NOT_FOUND:
                raise ClientError(f"unknown proposal {pid}", grpc.StatusCode.NOT_FOUND) from None
            raise self._error(e, self.timeout) from None

    def governance(self) -> ledger_pb2.GetGovernanceResponse:
        """Mode, configuration sequence, policies and organisation admins."""
        try:
            return self._stub.GetGovernance(ledger_pb2.GetGovernanceRequest(), timeout=self.timeout)
        except grpc.RpcError as e:
            raise self._error(e, self.timeout) from None

    def query(self, req: ledger_pb2.QueryStateRequest) -> ledger_pb2.QueryStateResponse:
        try:
            return self._stub.QueryState(req, timeout=self.timeout)
        except grpc.RpcError as e:
            raise self._error(e, self.timeout) from None

    def query_key(self, key: bytes, min_height: int = 0) -> ledger_pb2.QueryStateResponse:
        """Raw key/value entry; `.found`, `.value`, `.height` (the height it was read at, at
        least `min_height`: the node waits for that block within the call's timeout)."""
        return self.query(ledger_pb2.QueryStateRequest(key=key, min_height=min_height))

    def balance(self, asset: str, account: bytes) -> int:
        req = ledger_pb2.QueryStateRequest(
            balance=ledger_pb2.QueryStateRequest.Balance(asset=asset, account=account)
        )
        return int(self.query(req).amount)

    def next_nonce(self, sender: bytes) -> int:
        return int(self.query(ledger_pb2.QueryStateRequest(nonce_of=sender)).amount)

    # contracts (client/contracts.py builds their transactions) ------------------------------

    def _contract_call(self, name: str, fn: Any, req: Any) -> Any:
        try:
            return fn(req, timeout=self.timeout)
        except grpc.RpcError as e:
            code = status_code_of(e)
            if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                raise ClientError(one_line(e.details() or name), code) from None
            raise self._error(e, self.timeout) from None

    def query_contract(
        self,
        contract: str,
        method: str,
        input: bytes = b"",
        *,
        fuel_limit: int = 0,
        caller: bytes = b"",
        min_height: int = 0,
    ) -> ledger_pb2.QueryContractResponse:
        """A read-only call answered by this node (writes discarded; fuel capped by the
        chain's contract_query_fuel), as of `min_height` or later (the node waits for it).
        `.receipt.ok/.reason/.fuel_used/.result/.events`."""
        req = ledger_pb2.QueryContractRequest(
            contract=contract,
            method=method,
            input=input,
            fuel_limit=fuel_limit,
            caller=caller,
            min_height=min_height,
        )
        out: ledger_pb2.QueryContractResponse = self._contract_call(
            contract, self._stub.QueryContract, req
        )
        return out

    def list_contracts(self) -> ledger_pb2.ListContractsResponse:
        out: ledger_pb2.ListContractsResponse = self._contract_call(
            "contracts", self._stub.ListContracts, ledger_pb2.ListContractsRequest()
        )
        return out

    def get_contract(self, name: str) -> types_pb2.ContractInfo:
        """ClientError "unknown contract 'x'" (NOT_FOUND) if there is none by that name."""
        out: types_pb2.ContractInfo = self._contract_call(
            name, self._stub.GetContract, ledger_pb2.GetContractRequest(name=name)
        )
        return out

    def stream_events(
        self,
        contract: str = "",
        topic: bytes = b"",
        from_height: int = 1,
        *,
        follow: bool = False,
        timeout: float | None = None,
    ) -> Iterator[ledger_pb2.ContractEventRecord]:
        """Contract events from `from_height` on, filtered by contract and topic (empty:
        any); with `follow`, keeps yielding those of new blocks."""
        req = ledger_pb2.StreamEventsRequest(
            contract=contract, topic=topic, from_height=from_height, follow=follow
        )
        call = self._stub.StreamEvents(req, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as e:
            if status_code_of(e) is grpc.StatusCode.CANCELLED:
                return
            raise self._error(e, timeout) from None
        finally:
            call.cancel()  # type: ignore[no-untyped-call]

    # streaming RPCs ------------------------------------------------------------------------

    def submit_stream(
        self, txs: Iterable[types_pb2.SignedTx], timeout: float | None = None
    ) -> Iterator[ledger_pb2.TxResult]:
        """SubmitStream: yields one `TxResult` per tx sent, in order."""
        try:
            yield from self._stub.SubmitStream(iter(txs), timeout=timeout)
        except grpc.RpcError as e:
            raise self._error(e, timeout) from None

    def submit_stream_raw(
        self, txs: Iterable[bytes], timeout: float | None = None
    ) -> Iterator[ledger_pb2.TxResult]:
        """Like `submit_stream`, but takes already-serialised `SignedTx` bytes (no per-tx
        serialisation on the hot path; used by `consortium bench`)."""
        try:
            yield from self._submit_raw(iter(txs), timeout=timeout)
        except grpc.RpcError as e:
            raise self._error(e, timeout) from None

    def export_backup(self, out: BinaryIO, timeout: float | None = None) -> ExportedBackup:
        """Streams the node's backup tar into `out` (one chunk in memory at a time) and checks its
        size and SHA-256 against what the node announced; ClientError (one line) otherwise."""
        try:
            call = self._stub.ExportBackup(ledger_pb2.ExportBackupRequest(), timeout=timeout)
            head: ledger_pb2.BackupChunk | None = None
            h, size = hashlib.sha256(), 0
            for chunk in call:
                if head is None:
                    head = chunk
                if chunk.data:
                    out.write(chunk.data)
                    h.update(chunk.data)
                    size += len(chunk.data)
        except grpc.RpcError as e:
            raise self._error(e, timeout) from None
        if head is None:
            raise ClientError(f"{self.endpoint}: the node sent no backup")
        if size != head.total_bytes or h.hexdigest() != head.sha256:
            raise ClientError(
                f"{self.endpoint}: the backup stream was cut or damaged ({size} of "
                f"{head.total_bytes} bytes; checksum {'ok' if h.hexdigest() == head.sha256 else 'differs'})"
            )
        return ExportedBackup(int(head.height), size, head.sha256)

    def stream_blocks(
        self,
        from_height: int = 1,
        *,
        follow: bool = False,
        ids_only: bool = False,
        headers_only: bool = False,
        timeout: float | None = None,
    ) -> Iterator[types_pb2.Block]:
        """Blocks from `from_height` on; with `follow`, keeps yielding new blocks as they
        commit. `ids_only` fills `Block.tx_ids` instead of `Block.txs`."""
        req = ledger_pb2.StreamBlocksRequest(
            from_height=from_height, follow=follow, ids_only=ids_only, headers_only=headers_only
        )
        call = self._stub.StreamBlocks(req, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as e:
            if status_code_of(e) is grpc.StatusCode.CANCELLED:
                return
            raise self._error(e, timeout) from None
        finally:
            call.cancel()  # type: ignore[no-untyped-call]


def connect(
    endpoint: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    node: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    tls: ClientTLS | None = None,
) -> Client:
    """A `Client` for `endpoint`, or for the named / first answering node of `data_dir`.
    Without either: $CONSORTIUM_ENDPOINT or 127.0.0.1:7050. Does not probe a plain endpoint.
    `tls` None: found as `ClientTLS.discover` does."""
    if tls is None:
        tls = ClientTLS.discover(data_dir)
    if endpoint:
        return Client(endpoint, timeout, tls=tls)
    if data_dir is None:
        ep = os.environ.get("CONSORTIUM_ENDPOINT")
        if not ep:
            ctx = Context.current()
            ep = ctx.endpoint if ctx is not None else None
        return Client(ep or DEFAULT_ENDPOINT, timeout, tls=tls)
    dd = DataDir.load(data_dir)
    if node is not None:
        return Client(dd.node(node).endpoint, timeout, tls=tls)
    if not dd.nodes:
        raise ClientError(f"{dd.path / 'endpoints.json'} lists no nodes")
    tried: list[str] = []
    probe = min(timeout, 2.0)
    for n in dd.nodes:
        c = Client(n.endpoint, timeout, tls=tls)
        try:
            c.status(timeout=probe)
        except ClientError as e:
            c.close()
            tried.append(f"{n.name} {n.endpoint}: {_short_reason(e)}")
            continue
        return c
    raise NodeUnavailable(f"no node of {dd.path} answers ({'; '.join(tried)})")


def _short_reason(e: ClientError) -> str:
    m = re.search(r"\(([^()]*)\)$", e.message)
    return m.group(1) if m else e.message
